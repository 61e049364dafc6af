"""rounds()' arguments, checked once before anything is written or trained: the plan the rounds
loop follows (participants, evaluation rows, merge, server step, clusters, privacy).

What it is not: the loop itself (rounds.py), nor what the checks guard (the merge, the server
step, the clustering and the privacy live in their own modules).
"""

from __future__ import annotations

import functools
import numbers
import warnings
from dataclasses import dataclass

import numpy as np

from . import _clustered as clustered_rounds
from . import schedule as schedules
from ._dp import DPConfig
from ._epochs import TrainConfig
from ._server import ServerOptimizer
from ._threads import resolve_n_jobs
from ._validate import finite_float, integer, val_pair
from ._validate import seed as checked_seed
from .merge import METHODS as MERGE_METHODS
from .merge import NEEDS_VAL as MERGE_NEEDS_VAL
from .merge import _explicit_weights, checked_options
from .segments import Segments, as_segments
from .stack import MLPStack

# More rounds than this is a mistyped or hostile count (each round trains every participant at
# least one epoch); an unbounded one would spin in rounds()' check of the schedule, round by
# round, before any training.
_MAX_ROUNDS = 10**6

# val_segments="auto": the segment models and their vote are scored on as many val rows as
# AUTO_VAL_SHARE times the rows one participant trained on in the round, so the scoring costs a
# fixed share of the round's training however many segments take part: with the global model's
# evaluation, 10-15% of a round (bench/bench_rounds.py measures it; 0.5 gave 19-23%).
AUTO_VAL_SHARE = 0.25


def _merge_spec(merge):
    if isinstance(merge, str):
        spec = {"method": merge}
    elif isinstance(merge, dict):
        spec = dict(merge)
        spec.setdefault("method", "uniform")
    else:
        raise TypeError(f"merge must be a method name or a dict of segfast.merge arguments, got {merge!r}")
    if spec["method"] not in MERGE_METHODS or spec["method"] == "cluster-merge":
        raise ValueError(
            f"unknown merge method {spec['method']!r} for rounds; choose one of "
            f"{', '.join(m for m in MERGE_METHODS if m != 'cluster-merge')}"
        )
    return spec


# what rounds passes to local SGD
_TRAIN_OPTIONS = ("lr", "batch_size", "momentum", "weight_decay", "augment", "loss", "huber_delta")


@dataclass(frozen=True)
class Plan:
    """rounds()' arguments, checked once before anything is written."""

    n_rounds: int
    local_epochs: object  # an int, a list or a schedule (segfast.schedule)
    merge: dict  # segfast.merge's arguments, "method" included
    fraction: float
    n_chosen: int  # participants a round
    server: ServerOptimizer  # the server step: FedAvg(M), or FedAdam / FedYogi / FedAdagrad
    lr_decay: float
    config: TrainConfig  # local SGD; its lr is round 0's
    train_options: dict  # the local SGD options as given, but lr (config.json records them)
    threads: int
    val: tuple | None
    val_segments: bool | int | str  # True, False, "auto" or a number of val rows a round
    device: str
    clusters: int = 1  # global models
    cluster_by: str = "loss"  # how segments choose theirs: "loss" (IFCA) or "weights" (k-means)
    recluster_every: int = 1  # cluster_by="weights": k-means every this many rounds
    segment_val: Segments | None = None  # each segment's own val rows
    dp: DPConfig | None = None  # user-level differential privacy (DP-FedAvg)
    personalize_epochs: int | None = None  # score each participant's model after this many local epochs

    def reclusters(self, r: int) -> bool:
        """Whether round r clusters the trained segment models again (cluster_by="weights")."""
        return self.clusters > 1 and self.cluster_by == "weights" and r % self.recluster_every == 0

    def participants(self, r: int, n_segments: int) -> np.ndarray:
        """Round r's segments: all, or a sample keyed by (seed, round) (with dp, a Poisson sample
        drawn from dp's secret key)."""
        if self.dp is not None:
            return self.dp.participants(r, n_segments, self.fraction)
        if self.fraction == 1:
            return np.arange(n_segments)
        rng = np.random.default_rng([self.config.seed, r])
        return np.sort(rng.choice(n_segments, self.n_chosen, replace=False))

    def segments_val_rows(self, r: int, rows_trained: int) -> int:
        """How many val rows round r scores the segment models (and their vote) on: all of them in
        the last round (unless val_segments=False), else as val_segments says; 0 for none."""
        n_val = 0 if self.val is None else len(self.val[1])
        if self.val_segments is False or self.dp is not None:  # dp: the local models stay private
            return 0
        if self.val_segments is True or r == self.n_rounds - 1:
            return n_val
        if self.val_segments == "auto":
            return min(n_val, int(AUTO_VAL_SHARE * rows_trained / self.n_chosen))
        return min(n_val, int(self.val_segments))

    def val_subsample(self, rows: int) -> tuple:
        """The first ``rows`` of one seeded order of the val rows (the same rows every round, so
        rounds compare), in their original order."""
        assert self.val is not None  # asked for only with val rows
        X, y = self.val
        if rows == len(y):
            return X, y
        keep = np.sort(self._val_order[:rows])
        return X[keep], y[keep]

    @functools.cached_property
    def _val_order(self) -> np.ndarray:  # drawn once a run, not once a round
        assert self.val is not None
        return np.random.default_rng([self.config.seed, 0x5E9]).permutation(len(self.val[1]))


def renamed(options: dict) -> dict:
    """The old names of val/val_segments (deprecated: they named one idea two ways)."""
    for old, new, default in (("eval", "val", None), ("eval_segments", "val_segments", "auto")):
        if old in options:
            if options.get(new, default) is not default:
                raise TypeError(f"pass {new}= only ({old}= is its deprecated name)")
            warnings.warn(
                f"rounds(): {old}= is deprecated and will be removed; use {new}=", FutureWarning, stacklevel=4
            )  # renamed, run_rounds, rounds (or distributed.rounds), the caller
            options[new] = options.pop(old)
    return options


_MERGE_OPTIONS = {
    *("method", "weights", "align", "repair", "rescale", "temperature", "trim", "k", "margin"),
    *("threshold", "coefficients"),
}


def _check_merge_early(spec: dict, start: MLPStack, n_chosen: int, val) -> None:
    """What segfast.merge would refuse at the end of the first round, refused before any training."""
    unknown = set(spec) - _MERGE_OPTIONS
    if unknown:
        raise TypeError(f"merge has unknown option(s) {sorted(unknown)}; rounds() takes {sorted(_MERGE_OPTIONS)}")
    method = spec["method"]
    weights = spec.get("weights", np.ones(n_chosen)) if method == "weighted" else spec.get("weights")
    checked = ("repair", "temperature", "trim", "margin", "threshold", "coefficients")
    options = {key: spec[key] for key in checked if key in spec}
    uses_val = method in MERGE_NEEDS_VAL  # _merge_call gives val to these only
    checked_options(
        start.n_features,
        start.n_classes,
        n_chosen,
        method,
        weights=weights,
        val=val if uses_val else None,
        task=start.task,
        **options,
    )


def checked_plan(
    start: MLPStack,
    n_segments: int,
    n_rounds,
    local_epochs,
    merge,
    *,
    fraction=1.0,
    server_lr=None,
    server_momentum=0.0,
    server_optimizer="sgd",
    betas=(0.9, 0.99),
    tau=1e-3,
    proximal_mu=0.0,
    lr_decay=1.0,
    val=None,
    val_segments="auto",
    seed=0,
    n_jobs=-1,
    device="cpu",
    clusters=1,
    cluster_by="loss",
    recluster_every=1,
    segment_val=None,
    dp=None,
    personalize_epochs=None,
    **train_options,
) -> Plan:
    n_rounds = integer(n_rounds, "rounds", 1, _MAX_ROUNDS)
    # a bool is a Real, but fraction=True is a mistake, as it is for every other number here
    if isinstance(fraction, bool) or not (isinstance(fraction, numbers.Real) and 0 < float(fraction) <= 1):
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    fraction = float(fraction)
    server = ServerOptimizer.checked(server_optimizer, server_lr, server_momentum, betas, tau)
    lr_decay = finite_float(lr_decay, "lr_decay", minimum=0.0)
    spec = _merge_spec(merge)
    if "weights" in spec:
        # Checked before anything is written: a bad value must not leave a half-begun run directory.
        if fraction < 1:
            raise ValueError(
                "explicit merge weights need fraction=1 (the participants change every round); "
                "use method='weighted' without weights to weight by segment size"
            )
        spec["weights"] = _explicit_weights(spec["weights"], n_segments)
    if spec["method"] == "cluster-best" and not (isinstance(clusters, numbers.Integral) and clusters == 1):
        raise ValueError(
            "merge='cluster-best' clusters the segment models itself; with clusters= each cluster merges "
            "its own members: choose a merge into one model (uniform, weighted, loss, ...)"
        )
    n_chosen = max(1, int(round(fraction * n_segments))) if fraction < 1 else n_segments
    _check_merge_early(spec, start, n_chosen, val)
    for r in range(n_rounds):
        schedules.resolve(local_epochs, r)
    unknown = set(train_options) - set(_TRAIN_OPTIONS)
    if unknown:
        raise TypeError(f"unexpected argument(s) {sorted(unknown)}")
    config = TrainConfig.checked(
        start.n_features, proximal_mu=proximal_mu, seed=checked_seed(seed), task=start.task, **train_options
    )
    val = val_pair(val, start.n_features, start.n_classes, task=start.task)
    return Plan(
        n_rounds=n_rounds,
        local_epochs=local_epochs,
        merge=spec,
        fraction=fraction,
        n_chosen=n_chosen,
        server=server,
        lr_decay=lr_decay,
        config=config,
        train_options={k: v for k, v in train_options.items() if k != "lr"},
        threads=resolve_n_jobs(n_jobs),
        val=val,
        val_segments=_checked_val_segments(val_segments, dp),
        device=device,
        **clustered_rounds.checked_clusters(clusters, cluster_by, recluster_every, n_segments, device, fraction),
        segment_val=_checked_segment_val(segment_val, val, n_segments),
        dp=DPConfig.checked(dp, fraction, spec, clusters, n_segments),
        personalize_epochs=_checked_personalize_epochs(personalize_epochs, segment_val, local_epochs, n_rounds, dp),
    )


def _checked_personalize_epochs(epochs, segment_val, local_epochs, n_rounds: int, dp):
    if epochs is None:
        return None
    epochs = integer(epochs, "personalize_epochs", 1)
    if segment_val is None:
        raise ValueError("personalize_epochs scores each segment's own val rows: pass segment_val= (and val=)")
    if dp is not None:
        raise ValueError("personalize_epochs reports non-private local models' scores; it does not go with dp=")
    shortest = min(schedules.resolve(local_epochs, r) for r in range(n_rounds))
    if epochs > shortest:
        raise ValueError(
            f"personalize_epochs={epochs} must be <= every round's local epochs (the fewest: {shortest}): the "
            "personalised models are the round's own local models after that many epochs"
        )
    return epochs


def _checked_segment_val(segment_val, val, n_segments: int) -> Segments | None:
    """Each segment's own held-out rows: indices into the val rows, one list per segment."""
    if segment_val is None:
        return None
    if val is None:
        raise ValueError("segment_val indexes the val rows; pass val= too")
    try:
        checked = as_segments(segment_val, len(val[1]))
    except (TypeError, ValueError) as e:  # as_segments speaks of segments: say which argument
        raise type(e)(f"segment_val (each segment's own val rows, at least one each): {e}") from None
    if len(checked) != n_segments:
        raise ValueError(f"segment_val must give one list of val rows per segment ({n_segments}), got {len(checked)}")
    return checked


def _checked_val_segments(val_segments, dp=None):
    if dp is not None and val_segments not in ("auto", False):
        raise ValueError("val_segments scores the local models, which dp= keeps private: leave it at 'auto' (none)")
    if isinstance(val_segments, (bool, np.bool_)):
        return bool(val_segments)
    if isinstance(val_segments, str) and val_segments == "auto":
        return val_segments
    if isinstance(val_segments, numbers.Integral) and val_segments >= 1:
        return int(val_segments)
    raise ValueError(f"val_segments must be True, False, 'auto' or a number of val rows >= 1, got {val_segments!r}")
