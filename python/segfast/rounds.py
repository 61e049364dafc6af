"""rounds(): grand epochs, i.e. federated averaging simulated on one machine.

Each round: broadcast the global model to the participating segments, train locally (one C++
call an epoch for all of them), merge with any method of segfast.merge, apply the server update
(replacement, a server learning rate, or FedAvgM momentum), evaluate, record, checkpoint.
Every random choice is keyed by (seed, round), so a run resumed from its last checkpoint ends
exactly where an uninterrupted run ends.
"""
from __future__ import annotations

import numbers
import time
import warnings
from dataclasses import dataclass

import numpy as np

from . import _core, _device, schedule as schedules
from ._device import check_device
from ._progress import Progress
from ._threads import resolve_n_jobs
from ._validate import as_features, as_labels, finite_float, positive_int
from .merge import METHODS as MERGE_METHODS, _explicit_weights, merge as merge_models
from .predict import evaluate
from .results import RunDirectory, fingerprint
from .segments import Segments, as_segments
from .split import Split
from .stack import MLPStack
from .train import _flip_width, _train_loop

# More rounds than this is a mistyped or hostile count (each round trains every participant at
# least one epoch); an unbounded one would spin in rounds()' check of the schedule, round by
# round, before any training.
_MAX_ROUNDS = 10**6


@dataclass
class RoundsResult:
    global_model: MLPStack          # the final global model (one model)
    history: list                   # one dict per round
    best_model: MLPStack = None     # the global model of the round with the best eval accuracy
    local_models: MLPStack = None   # the segment models of the last round, before merging
    run_dir: object = None

    def __repr__(self) -> str:  # a summary: the history has one dict per round
        last = self.history[-1] if self.history else {}
        acc = f", global accuracy {100 * last['global_accuracy']:.2f}%" if "global_accuracy" in last else ""
        local = f", {self.local_models.n_models} local models" if self.local_models is not None else ""
        return (f"RoundsResult({len(self.history)} rounds, dims {list(self.global_model.dims)}{acc}{local}"
                f"{f', run directory {self.run_dir.path}' if getattr(self.run_dir, 'path', None) else ''})")


class _Training:
    """Where the local training of a round runs: in this process (_Here), or on a Dask cluster
    (segfast.distributed passes one in place of X, with y and segments None)."""

    sizes: np.ndarray  # (n_segments,) rows per segment

    def fingerprints(self) -> dict:
        """Hashes of X, y and the segments, for the run directory's config."""
        raise NotImplementedError

    def round(self, chosen, epochs: int, settings: dict, start_epoch: int, start_row, fused, download: bool):
        """Train segments ``chosen`` for ``epochs`` from ``start_row``. Returns the History (its
        merged_sum set when ``fused`` merge weights are given) and a function that returns the
        trained segment models as an MLPStack (download: they will be read)."""
        raise NotImplementedError


class _Here(_Training):
    def __init__(self, start: MLPStack, X, y, segments, device: str):
        self.X = as_features(X, "X", start.n_features)
        self.y = as_labels(y, len(self.X), start.n_classes)
        self.segments = as_segments(segments, len(self.X))
        self.sizes = self.segments.sizes
        self.dims, self.device = start.dims, device
        self.local = self.gpu = None  # the segment models (and their GPU copy), reused from round to round

    def fingerprints(self) -> dict:
        return {"X": fingerprint(self.X), "y": fingerprint(self.y),
                "segments": fingerprint(self.segments.order, self.segments.offsets)}

    def round(self, chosen, epochs, settings, start_epoch, start_row, fused, download):
        n = len(chosen)
        part = self.segments if n == len(self.sizes) else Segments.from_indices([self.segments[i] for i in chosen])
        if self.local is None or self.local.n_models != n:
            self.local = MLPStack.from_params(self.dims, np.zeros((n, start_row.size), dtype=np.float32))
        self.local.diverged[:] = False
        if self.device == "cuda":
            if self.gpu is None:
                self.gpu = _core.CudaTrainer(list(self.dims), self.X, self.y)
            self.gpu.resize_models(n)
        hist = _train_loop(self.local, self.X, self.y, part, np.full(n, epochs), progress=False,
                           start_epoch=start_epoch, start_row=start_row, merge_weights=fused, gpu=self.gpu,
                           download=download, **settings)
        return hist, lambda: self.local


def _merge_spec(merge):
    if isinstance(merge, str):
        spec = {"method": merge}
    elif isinstance(merge, dict):
        spec = dict(merge)
        spec.setdefault("method", "uniform")
    else:
        raise TypeError(f"merge must be a method name or a dict of segfast.merge arguments, got {merge!r}")
    if spec["method"] not in MERGE_METHODS or spec["method"] == "cluster-merge":
        raise ValueError(f"unknown merge method {spec['method']!r} for rounds; choose one of "
                         f"{', '.join(m for m in MERGE_METHODS if m != 'cluster-merge')}")
    return spec


def _eval_pair(eval, n_features, n_classes):
    if eval is None:
        return None
    if isinstance(eval, Split):
        eval = eval.val if len(eval.y_val) else eval.test
    try:
        X, y = eval
    except (TypeError, ValueError):
        raise TypeError("eval must be an (X, y) pair or a Split") from None
    X = as_features(X, "eval X", n_features)
    return X, as_labels(y, len(X), n_classes, "eval y")


def rounds(stack_or_architecture, X, y, segments, rounds: int = 20, local_epochs=1, merge="uniform", *,
           fraction: float = 1.0, server_lr: float = 1.0, server_momentum: float = 0.0,
           proximal_mu: float = 0.0, lr_decay: float = 1.0, eval=None, eval_segments: bool = True,
           out=None, resume: bool = False,
           seed: int = 0, n_jobs: int = -1, progress: bool = True, device: str = "cpu",
           **train_kwargs) -> RoundsResult:
    """Simulate ``rounds`` rounds of federated training of one global model over ``segments``.

    stack_or_architecture: a one-model MLPStack (the shared start) or layer widths like
    [784, 128, 10] (a fresh model, seeded). local_epochs: an int, a list (one per round, the last
    repeated) or a schedule such as ``segfast.schedule.progressive()``. merge: a method of
    segfast.merge or a dict of its arguments (``{"method": "weighted", "align": True}``);
    "weighted" without weights uses the participants' segment sizes. fraction: the share of
    segments taking part each round (sampled per round, seeded). server_lr / server_momentum:
    the server step ``global += server_lr * m`` with ``m = server_momentum * m + (merged - global)``
    (FedAvgM; 1 and 0 give plain replacement). proximal_mu: FedProx's proximal term in local
    training. lr_decay: the local learning rate is multiplied by it every round. eval: (X, y)
    or a Split evaluated every round: the global model, and with eval_segments=True also every
    segment model and their soft-vote ensemble (which costs a forward pass of every model). out: a run directory (config.json, rounds.jsonl,
    summary.csv, checkpoint, best and final weights), resumable with ``resume=True``.
    Other keyword arguments go to segfast.train (lr, batch_size, momentum, weight_decay, augment).
    device="cuda": X and y go to the GPU once; the segment models stay there from round to round
    (with a plain or weighted average only the merged row comes back each round).
    """
    if isinstance(stack_or_architecture, MLPStack):
        if stack_or_architecture.n_models != 1:
            raise ValueError(f"rounds starts from one global model; got a stack of {stack_or_architecture.n_models}"
                             " (pass stack[0] or the layer widths)")
        start = stack_or_architecture.copy()
    else:
        start = MLPStack(stack_or_architecture, n_models=1, seed=seed)
    dims = start.dims
    device = check_device(device)
    where = X if isinstance(X, _Training) else _Here(start, X, y, segments, device)
    if isinstance(rounds, bool) or not isinstance(rounds, numbers.Integral) or not 1 <= rounds <= _MAX_ROUNDS:
        raise ValueError(f"rounds must be an integer >= 1 and <= {_MAX_ROUNDS}, got {rounds!r}")
    rounds = int(rounds)  # numpy integers too: config.json holds plain JSON numbers
    n_segments = len(where.sizes)
    # a bool is a Real, but fraction=True is a mistake, as it is for every other number here
    if isinstance(fraction, bool) or not (isinstance(fraction, numbers.Real) and 0 < fraction <= 1):
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    fraction = float(fraction)
    n_chosen = max(1, int(round(fraction * n_segments))) if fraction < 1 else n_segments  # participants a round
    server_lr = finite_float(server_lr, "server_lr", minimum=0.0)
    server_momentum = finite_float(server_momentum, "server_momentum", minimum=0.0)
    if server_momentum >= 1:
        raise ValueError(f"server_momentum must be < 1, got {server_momentum}")
    proximal_mu = finite_float(proximal_mu, "proximal_mu", minimum=0.0)
    lr_decay = finite_float(lr_decay, "lr_decay", minimum=0.0)
    spec = _merge_spec(merge)
    if "weights" in spec:
        # Checked before anything is written: a bad value must not leave a half-begun run directory.
        if fraction < 1:
            raise ValueError("explicit merge weights need fraction=1 (the participants change every round); "
                             "use method='weighted' without weights to weight by segment size")
        spec["weights"] = _explicit_weights(spec["weights"], n_segments)
    for r in range(rounds):
        schedules.resolve(local_epochs, r)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    seed = int(seed)
    unknown = set(train_kwargs) - {"lr", "batch_size", "momentum", "weight_decay", "augment"}
    if unknown:
        raise TypeError(f"unexpected argument(s) {sorted(unknown)}")
    threads = resolve_n_jobs(n_jobs)
    evaluation = _eval_pair(eval, start.n_features, start.n_classes)
    base_lr = finite_float(train_kwargs.get("lr", 0.05), "lr", minimum=0.0)
    batch = positive_int(train_kwargs.get("batch_size", 32), "batch_size")
    momentum = finite_float(train_kwargs.get("momentum", 0.0), "momentum", minimum=0.0)
    weight_decay = finite_float(train_kwargs.get("weight_decay", 0.0), "weight_decay", minimum=0.0)
    flip = _flip_width(train_kwargs.get("augment"), start.n_features)
    train_kwargs.pop("lr", None)

    if resume and out is None:
        raise ValueError("resume=True needs out=, the run directory to continue")
    run_dir = None
    if out is not None:  # the config, with the data's fingerprints, only for a run directory (hashing costs)
        config = {
            "dims": list(dims), "rounds": rounds, "local_epochs": schedules.describe(local_epochs), "merge": {
                k: (v if not isinstance(v, np.ndarray) else "array") for k, v in spec.items()},
            "fraction": fraction, "server_lr": server_lr, "server_momentum": server_momentum,
            "proximal_mu": proximal_mu, "lr": base_lr, "lr_decay": lr_decay, "seed": seed,
            "train": {k: v for k, v in train_kwargs.items()},
            "data": dict(where.fingerprints(), eval=None if evaluation is None else fingerprint(*evaluation)),
            "start": fingerprint(start.params),
        }
        run_dir = RunDirectory(out, config, resume)

    global_params = start.params[0].astype(np.float32).copy()
    # Server state in float64: with server_lr 1 and no momentum the update is then exactly a
    # replacement by the merged model (float32 would round g + (m - g)).
    server_buffer = np.zeros(global_params.shape, dtype=np.float64)
    history, first_round, best = [], 0, (-np.inf, None)
    if run_dir is not None and run_dir.resumed:
        # every field read back is checked against the config and the other files (ValueError naming them)
        state = run_dir.load_checkpoint(start.n_params)
        global_params, server_buffer, first_round = state["global"], state["server_buffer"], state["round"] + 1
        history = run_dir.history(first_round, evaluation is not None)
        best_params = run_dir.load_best(evaluation is not None)
        if best_params is not None:
            best = (max(h["global_accuracy"] for h in history), best_params)

    bar = Progress(rounds, "round", enabled=progress)
    bar.done = first_round
    epochs_before = sum(schedules.resolve(local_epochs, r) for r in range(first_round))
    settings = dict(batch_size=batch, momentum=momentum, weight_decay=weight_decay, seed=seed, flip=flip,
                    threads=threads, proximal_mu=proximal_mu)
    local = None  # returns the segment models of the last round
    for r in range(first_round, rounds):
        record, t0 = {"round": r + 1}, time.perf_counter()
        rng = np.random.default_rng([seed, r])
        if fraction < 1:
            chosen = np.sort(rng.choice(n_segments, n_chosen, replace=False))
        else:
            chosen = np.arange(n_segments)
        epochs = schedules.resolve(local_epochs, r)
        lr = base_lr * lr_decay ** r
        kw = dict(spec)
        method = kw.pop("method")
        if method == "weighted" and "weights" not in kw:
            kw["weights"] = where.sizes[chosen]
        # Plain averages are fused into the last local epoch (each model added while its row is
        # in cache), like the broadcast (start_row) is fused into the first.
        fused = None
        if method == "uniform" and not kw:
            fused = np.ones(len(chosen))
        elif method == "weighted" and set(kw) == {"weights"}:
            fused = _explicit_weights(kw["weights"], len(chosen))  # checked: finite, >= 0, positive sum
        # On the GPU the segment models come back only when something here reads them.
        download = fused is None or (evaluation is not None and eval_segments) or r == rounds - 1
        hist, local = where.round(chosen, epochs, dict(settings, lr=lr), epochs_before, global_params, fused,
                                  download)
        epochs_before += epochs
        t1 = time.perf_counter()

        kept_weight = fused[~hist.diverged].sum() if fused is not None else 0.0
        if fused is not None and kept_weight > 0:
            merged = (hist.merged_sum / kept_weight).astype(np.float32)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # diverged models: counted in the record
                merged = merge_models(local(), method, val=evaluation if method in ("loss", "rank", "greedy",
                                      "cluster-best") else None, seed=seed, n_jobs=threads, device=device,
                                      **kw).params[0]
        server_buffer = server_momentum * server_buffer + (merged.astype(np.float64) - global_params)
        global_params = (global_params + server_lr * server_buffer).astype(np.float32)
        t2 = time.perf_counter()

        record.update(local_epochs=epochs, lr=lr, participants=len(chosen),
                      train_loss=float(np.nanmean(hist.final_loss)), diverged=int(hist.diverged.sum()))
        if evaluation is not None:
            loss, acc = _device.evaluate(dims, global_params[None], *evaluation, device, threads)
            record.update(global_loss=float(loss[0]), global_accuracy=float(acc[0]))
            if eval_segments:
                from .ensemble import Ensemble
                seg = evaluate(local(), *evaluation, n_jobs=threads, device=device).accuracy
                record.update(segment_accuracy_mean=float(seg.mean()), segment_accuracy_std=float(seg.std()),
                              ensemble_accuracy=Ensemble(local(), "soft", n_jobs=threads, device=device).score(*evaluation))
            if record["global_accuracy"] > best[0]:
                best = (record["global_accuracy"], global_params.copy())
        t3 = time.perf_counter()
        record.update(seconds_train=t1 - t0, seconds_merge=t2 - t1, seconds_eval=t3 - t2)
        history.append(record)
        if run_dir is not None:
            if r == rounds - 1:
                # The end-of-run files go before the checkpoint that marks the run finished, so that
                # checkpoint always has them beside it; a kill before it redoes the last round from
                # the checkpoint before, which (keyed by (seed, round)) writes them again bit for bit.
                # Keeping the segment models in the checkpoint instead would make it n_segments
                # times larger every round.
                run_dir.finish(MLPStack.from_params(dims, global_params[None]), local())
            run_dir.write_round(history, {"round": r, "global": global_params, "server_buffer": server_buffer},
                                best[1] if best[1] is not None and best[0] == record.get("global_accuracy") else None)
        note = f"acc {100 * record['global_accuracy']:.2f}%" if "global_accuracy" in record else \
            f"loss {record['train_loss']:.4f}"
        bar.advance(note)

    final = MLPStack.from_params(dims, global_params[None])
    best_model = MLPStack.from_params(dims, best[1][None]) if best[1] is not None else None
    if local is not None:
        local = local()
    elif run_dir is not None:  # resumed after its last checkpoint: every round had finished
        local = run_dir.load_local(n_chosen)
        run_dir.finish(final, None)  # from the checkpoint, the authority on the final model
    return RoundsResult(final, history, best_model, local, run_dir)
