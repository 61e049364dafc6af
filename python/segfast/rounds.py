"""rounds(): grand epochs, i.e. federated averaging simulated on one machine.

Each round: broadcast the global model to the participating segments, train locally (one C++
call an epoch for all of them), merge with any method of segfast.merge (or DP-FedAvg's clipped
noisy sum, _dp.py), apply the server step (_server.py: FedAvg(M), FedAdam, FedYogi, FedAdagrad),
evaluate (_round_eval.py), record, checkpoint. Every random choice is keyed by (seed, round), so a
run resumed from its last checkpoint ends exactly where an uninterrupted run ends. With
clusters=k the global model is a (k, P) stack: each participant starts from its cluster's row and
each cluster merges its own members (_clustered.py chooses the clusters). The arguments are
checked once, before anything is written, into a plan (_round_plan.py).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, replace

import numpy as np

from . import _clustered as clustered_rounds
from . import schedule as schedules
from ._device import check_device
from ._dp import DPConfig
from ._engine import Engine, LocalEngine
from ._progress import progress_bar
from ._round_eval import evaluated, personalized
from ._round_plan import Plan, checked_plan, renamed
from ._validate import integer
from .merge import NEEDS_VAL as MERGE_NEEDS_VAL
from .merge import _explicit_weights
from .merge import merge as merge_models
from .results import RunDirectory, fingerprint
from .segments import Segments
from .stack import MLPStack


@dataclass
class RoundsResult:
    global_model: MLPStack  # the final global model (one model; with clusters=k, the k cluster models)
    history: list  # one dict per round
    # the global model(s) of the round with the best val score (global_accuracy; minus global_loss
    # for regression)
    best_model: MLPStack | None = None
    local_models: MLPStack | None = None  # the segment models of the last round, before merging
    run_dir: RunDirectory | None = None
    # The segment each local model trained on: the last round's participants (all segments, in
    # order, unless fraction < 1).
    local_segments: np.ndarray | None = None
    # clusters=k > 1: each segment's cluster after the last round, (n_segments,) int64, -1 for a
    # segment that never took part; None for one global model.
    clusters: np.ndarray | None = None

    def __repr__(self) -> str:  # a summary: the history has one dict per round
        last = self.history[-1] if self.history else {}
        acc = f", global accuracy {100 * last['global_accuracy']:.2f}%" if "global_accuracy" in last else ""
        local = f", {self.local_models.n_models} local models" if self.local_models is not None else ""
        where = f", run directory {self.run_dir.path}" if self.run_dir is not None else ""
        return f"RoundsResult({len(self.history)} rounds, dims {list(self.global_model.dims)}{acc}{local}{where})"


def start_model(stack_or_architecture, seed, clusters=1, cluster_by="loss", n_segments=None) -> MLPStack:
    """rounds()' first argument as a stack of the ``clusters`` starting global models (a copy: the
    caller's stays as it was). IFCA (cluster_by="loss") needs k different starts, or every segment
    would choose the first of k equal models forever: k seeded models, or the caller's k. Weight
    clustering starts k copies of one model: k-means of the trained models splits them.
    clusters is checked here, against ``n_segments`` where known, before k models are made."""
    k = integer(clusters, "clusters", 1, n_segments)
    cluster_by = clustered_rounds.checked_cluster_by(cluster_by)
    if isinstance(stack_or_architecture, MLPStack):
        given = stack_or_architecture
        if given.n_models == k:
            return given.copy()
        if given.n_models == 1 and cluster_by == "weights":
            return given.like(np.repeat(given.params, k, axis=0))
        if k == 1:
            raise ValueError(
                f"rounds starts from one global model; got a stack of {given.n_models}"
                " (pass stack[0] or the layer widths)"
            )
        raise ValueError(
            f"clusters={k} starts from {k} global models; got a stack of {given.n_models} (pass {k} models, "
            "the layer widths, or one model with cluster_by='weights': IFCA needs different starts)"
        )
    start = MLPStack(stack_or_architecture, n_models=1 if cluster_by == "weights" else k, seed=seed)
    return start.like(np.repeat(start.params, k, axis=0)) if start.n_models < k else start


def rounds(
    stack_or_architecture,
    X,
    y,
    segments,
    rounds: int = 20,
    local_epochs=1,
    merge="uniform",
    *,
    fraction: float = 1.0,
    server_lr: float | None = None,
    server_momentum: float = 0.0,
    server_optimizer: str = "sgd",
    betas: tuple = (0.9, 0.99),
    tau: float = 1e-3,
    proximal_mu: float = 0.0,
    lr_decay: float = 1.0,
    val=None,
    val_segments: bool | int | str = "auto",
    out=None,
    resume: bool = False,
    seed: int = 0,
    n_jobs: int = -1,
    progress: bool = True,
    device: str = "cpu",
    clusters: int = 1,
    cluster_by: str = "loss",
    recluster_every: int = 1,
    segment_val=None,
    dp=None,
    personalize_epochs=None,
    **train_options,
) -> RoundsResult:
    """Simulate ``rounds`` rounds of federated training of one global model over ``segments``.

    stack_or_architecture: a one-model MLPStack (the shared start) or layer widths like
    [784, 128, 10] (a fresh model, seeded). local_epochs: an int, a list (one per round, the last
    repeated) or a schedule such as ``segfast.schedule.progressive()``. merge: a method of
    segfast.merge or a dict of its arguments (``{"method": "weighted", "align": True}``);
    "weighted" without weights uses the participants' segment sizes. fraction: the share of
    segments taking part each round (sampled per round, seeded). server_lr / server_momentum:
    the server step ``global += server_lr * m`` with ``m = server_momentum * m + (merged - global)``
    (FedAvgM; server_lr 1, the default, and momentum 0 give plain replacement).
    server_optimizer="adam" | "yogi" | "adagrad": FedAdam, FedYogi, FedAdagrad (Reddi et al.
    2021) on the pseudo-gradient merged - global, with betas=(b1, b2) and tau (the adaptivity;
    v starts at tau^2); server_lr then defaults to 0.01. proximal_mu: FedProx's proximal term in local
    training. lr_decay: the local learning rate is multiplied by it every round. val: (X, y)
    or a Split evaluated every round: the global model on every row, and the segment models
    and their soft-vote ensemble as ``val_segments`` says (one forward pass of every model over
    the rows it picks). "auto" (the default) scores them on a seeded subsample of the val rows,
    a quarter as many as the rows a participant trained on that round, so the evaluation stays
    near a tenth of the round whatever the number of segments; True on every val row; an int on that
    many rows; False never. The last round scores them on every val row (unless False); each
    round's record says on how many (``segments_val_rows``).
    out: a run directory (config.json, rounds.jsonl, summary.csv, checkpoint, best and final
    weights), resumable with ``resume=True``.
    Other keyword arguments go to segfast.train (lr, batch_size, momentum, weight_decay, augment).
    device="cuda": X and y go to the GPU once; the segment models stay there from round to round
    (with a plain or weighted average only the merged row comes back each round).
    ``eval=``/``eval_segments=`` are deprecated names of ``val=``/``val_segments=``.

    server_optimizer="adam" | "yogi" | "adagrad" (with betas, tau; see above). dp=dict(clip=C,
    noise_multiplier=z, delta=1e-5, seed=None): user-level DP-FedAvg. fraction is then the
    probability q with which each segment takes part (Poisson sampling); each update is clipped
    to norm C, Gaussian noise of std z*C is added to their sum, and the sum is divided by q*N
    (N, the number of segments, is public). The sampling and noise come from a secret key (from
    the OS, kept in the checkpoint only; dp seed= gives one), each record holds ``epsilon`` and
    ``delta`` from Google's RDP accountant, and nothing of the local models is returned,
    written or scored. personalize_epochs=E (with segment_val): each participant's model after E
    of the round's own local epochs, scored on its own val rows (``personalized_accuracy_*``).

    clusters=k > 1 keeps k global models (clustered federated learning); the first argument may
    then be k models. cluster_by="loss" (IFCA, Ghosh et al. 2020): each round every participant
    trains the global model with the lowest loss on (up to 128 of) its own rows and joins that
    cluster's merge. cluster_by="weights": every ``recluster_every`` rounds the trained segment
    models are clustered by k-means in weight space and each cluster's members merge into its
    model (between reclusterings a segment keeps its cluster; a newcomer picks by loss).
    ``result.global_model`` is then the k-model stack and ``result.clusters`` each segment's
    cluster. segment_val: each segment's own held-out rows, as indices into val's rows (a
    Segments or a list of index arrays, one per segment): every round reports
    ``own_accuracy_mean``/``_std`` (regression ``own_rmse_*``) over segments, each segment's
    rows through its cluster's model, and with k > 1 the ``global_*`` scores are those routed
    ones (without segment_val, the best cluster model's). Clustered rounds train on the CPU.
    """
    n_segments = len(segments) if isinstance(segments, (Segments, list, tuple)) else None
    start = start_model(stack_or_architecture, seed, clusters, cluster_by, n_segments)
    if start.n_models > 1:  # clustered rounds give each segment its own start: a CPU feature
        device = "cpu" if device == "auto" else device
        clustered_rounds.check_device(device)
    device = check_device(device, start.task)
    engine = LocalEngine(start, X, y, segments, device)
    return run_rounds(
        engine,
        start,
        rounds,
        local_epochs,
        merge,
        fraction=fraction,
        server_lr=server_lr,
        server_momentum=server_momentum,
        server_optimizer=server_optimizer,
        betas=betas,
        tau=tau,
        proximal_mu=proximal_mu,
        lr_decay=lr_decay,
        val=val,
        val_segments=val_segments,
        out=out,
        resume=resume,
        seed=seed,
        n_jobs=n_jobs,
        progress=progress,
        device=device,
        clusters=clusters,
        cluster_by=cluster_by,
        recluster_every=recluster_every,
        segment_val=segment_val,
        dp=dp,
        personalize_epochs=personalize_epochs,
        **train_options,
    )


def run_rounds(
    engine: Engine, start: MLPStack, n_rounds, local_epochs, merge, *, out=None, resume=False, progress=True, **options
) -> RoundsResult:
    """The rounds loop, with local training on ``engine`` (this process, or a Dask cluster for
    segfast.distributed). ``options``: rounds()' keyword arguments."""
    plan = checked_plan(start, len(engine.sizes), n_rounds, local_epochs, merge, **renamed(options))
    if resume and out is None:
        raise ValueError("resume=True needs out=, the run directory to continue")
    run_dir = None if out is None else RunDirectory(out, _run_config(plan, engine, start), resume)

    global_params, server_state, assignment, first_round, history, best, dp_key = _first_state(
        plan, start, run_dir, engine
    )
    if plan.dp is not None and dp_key is not None:  # the secret the run's first part drew from
        plan = replace(plan, dp=plan.dp.resumed(dp_key))
    epochs_before = sum(schedules.resolve(plan.local_epochs, r) for r in range(first_round))
    local = None  # returns the segment models of the last round
    clustered = plan.clusters > 1
    with progress_bar(plan.n_rounds, "round", "round", enabled=progress, initial=first_round) as bar:
        for r in range(first_round, plan.n_rounds):
            t0 = time.perf_counter()
            chosen = plan.participants(r, len(engine.sizes))
            epochs = schedules.resolve(plan.local_epochs, r)
            lr = plan.config.lr * plan.lr_decay**r
            method, merge_args, fused = _round_merge(plan, engine.sizes[chosen])
            segment_rows = plan.segments_val_rows(r, epochs * int(engine.sizes[chosen].sum()))
            if clustered:
                assignment = clustered_rounds.chosen_clusters(plan, engine, chosen, global_params, assignment)
                starts = global_params[assignment[chosen]]
            else:
                starts = global_params[0]
            # On the GPU the segment models come back only when something here reads them.
            download = fused is None or segment_rows > 0 or r == plan.n_rounds - 1
            trained = None  # dp's Poisson sample may take nobody: the round is then its noise alone
            if len(chosen):
                config = replace(plan.config, lr=lr)
                snapshot_at = {"snapshot_epoch": plan.personalize_epochs} if plan.personalize_epochs else {}
                trained = engine.round(
                    chosen, epochs, config, plan.threads, epochs_before, starts, fused, download, **snapshot_at
                )
            local = trained.models if trained is not None else None
            epochs_before += epochs
            t1 = time.perf_counter()

            fallbacks: list = []  # the merges that missed merge's threshold= and fell back to a fixed one
            if plan.dp is not None:
                row = plan.dp.merged(global_params[0], _kept(local), plan.fraction, len(engine.sizes), r, plan.threads)
                merged = {0: row}
            elif clustered:
                assert local is not None  # without dp every round has participants
                if plan.reclusters(r):
                    assignment = clustered_rounds.reclustered(plan, local(), chosen, assignment, r)
                merged = _cluster_merges(plan, local(), assignment[chosen], method, merge_args, fallbacks)
            else:
                merged = {0: _merged(plan, trained, fused, method, merge_args, fallbacks)}
            for c, row in merged.items():  # the server step, for each cluster whose members trained
                global_params[c] = plan.server.step(global_params[c], row, server_state, c)
            if clustered and plan.cluster_by == "loss":
                assert local is not None
                for c, i in clustered_rounds.reseeded(assignment, chosen, local(), merged, plan.clusters).items():
                    global_params[c], assignment[chosen[i]] = local().params[i], c
                    plan.server.reset(server_state, c)
            t2 = time.perf_counter()

            record = {"round": r + 1, "local_epochs": epochs, "lr": lr}
            if plan.dp is not None:  # the participants, their losses and models stay private
                record.update(epsilon=plan.dp.epsilon(plan.fraction, r + 1), delta=plan.dp.delta)
            else:
                assert trained is not None  # without dp every round has participants
                record.update(
                    participants=len(chosen),
                    train_loss=float(np.nanmean(trained.history.final_loss)),
                    diverged=int(trained.history.diverged.sum()),
                )
            if plan.merge.get("threshold") is not None:
                record["merge_fallbacks"] = len(fallbacks)
            if clustered:
                known = assignment[assignment >= 0]
                record.update(cluster_sizes=np.bincount(known, minlength=plan.clusters).tolist())
            if plan.val is not None:
                routes = clustered_rounds.routes(plan, engine, global_params, assignment)
                score_segments = trained.score_segments if trained is not None else None
                record.update(evaluated(plan, start, global_params, score_segments, segment_rows, routes))
                if plan.personalize_epochs and trained is not None and trained.history.snapshot is not None:
                    snapshot, diverged = trained.history.snapshot, trained.history.diverged
                    record.update(personalized(plan, start, snapshot, chosen, diverged))
                if _score(record) > best[0]:
                    best = (_score(record), global_params.copy())
            if clustered:
                record.update(clusters=assignment.tolist())  # last: the longest field of a record
            record.update(seconds_train=t1 - t0, seconds_merge=t2 - t1, seconds_eval=time.perf_counter() - t2)
            history.append(record)
            if run_dir is not None:
                if r == plan.n_rounds - 1:
                    # The end-of-run files go before the checkpoint that marks the run finished, so that
                    # checkpoint always has them beside it; a kill before it redoes the last round from
                    # the checkpoint before, which (keyed by (seed, round)) writes them again bit for bit.
                    # Keeping the segment models in the checkpoint instead would make it n_segments
                    # times larger every round.
                    run_dir.finish(start.like(global_params), _released(plan, local))
                state = {"round": r, "global": global_params, **server_state}
                if plan.dp is not None:
                    state["dp_key"] = plan.dp.key_words  # the secret: in the checkpoint only
                if clustered:
                    state["clusters"] = assignment
                else:  # one model: the (P,) rows of the format older runs wrote
                    state.update({name: state[name][0] for name in ("global", *server_state)})
                run_dir.write_round(
                    history,
                    state,
                    best[1] if best[1] is not None and "global_loss" in record and best[0] == _score(record) else None,
                )
            bar.set_postfix_str(_progress_text(record), refresh=False)
            bar.update()

    final = start.like(global_params)
    best_model = start.like(best[1]) if best[1] is not None else None
    local_models = _released(plan, local)
    last = plan.participants(plan.n_rounds - 1, len(engine.sizes))
    if local is None and run_dir is not None and first_round == plan.n_rounds:  # resumed after its last checkpoint
        local_models = run_dir.load_local(len(last)) if len(last) and plan.dp is None else None
        run_dir.finish(final, None)  # from the checkpoint, the authority on the final model
    local_segments = last if local_models is not None else None
    clusters = assignment.copy() if clustered else None
    return RoundsResult(final, history, best_model, local_models, run_dir, local_segments, clusters)


def _released(plan: Plan, local) -> MLPStack | None:
    """The last round's local models as the run returns and writes them: none under dp."""
    return local() if local is not None and plan.dp is None else None


def _first_state(plan: Plan, start: MLPStack, run_dir: RunDirectory | None, engine: Engine):
    """((k, P) global rows, the server state (name -> (k, P) float64), (n_segments,) clusters
    (-1: none yet), first round to run, history, (best score, its rows), dp's key or None): a
    fresh start, or what a resumed run directory holds."""
    global_params = start.params.astype(np.float32).copy()
    server_state = plan.server.initial_state(global_params.shape)
    assignment = np.full(len(engine.sizes), -1, dtype=np.int64)
    if run_dir is None or not run_dir.resumed:
        return global_params, server_state, assignment, 0, [], (-np.inf, None), None
    # every field read back is checked against the config and the other files (ValueError naming them)
    state = run_dir.load_checkpoint(
        start.n_params, plan.clusters, len(engine.sizes), plan.server.state_names(), plan.dp is not None
    )
    first_round = state["round"] + 1
    history = run_dir.history(first_round, plan.val is not None)
    best_params = run_dir.load_best(plan.val is not None, plan.clusters)
    best = (max(_score(h) for h in history), best_params) if best_params is not None else (-np.inf, None)
    shape = global_params.shape
    server_state = {name: state[name].reshape(shape) for name in server_state}
    assignment = state.get("clusters", assignment)
    dp_key = DPConfig.key_of(state["dp_key"]) if plan.dp is not None else None
    return state["global"].reshape(shape), server_state, assignment, first_round, history, best, dp_key


def _cluster_merges(
    plan: Plan, models: MLPStack, labels: np.ndarray, method: str, merge_args: dict, fallbacks: list
) -> dict:
    """{cluster: its merged model (P,) float32} for each cluster with trained members (``labels``:
    the participants' clusters); a cluster whose members all diverged keeps its model."""
    merged = {}
    for c in range(plan.clusters):
        members = np.flatnonzero((labels == c) & ~models.diverged)
        args = dict(merge_args)
        if "weights" in args:  # sizes or explicit weights, one per participant
            args["weights"] = np.asarray(args["weights"])[members]
            members = members[args["weights"] > 0]  # weight 0: as if absent
            args["weights"] = args["weights"][args["weights"] > 0]
        if len(members):
            merged[c] = _merge_call(plan, models.select(members), method, args, fallbacks)
    return merged


def _kept(local) -> MLPStack | None:
    """The round's trained models that did not diverge, or None."""
    if local is None:
        return None
    models = local()
    return models.select(np.flatnonzero(~models.diverged)) if (~models.diverged).any() else None


def _round_merge(plan: Plan, sizes: np.ndarray):
    """(method, its other arguments, fused weights or None) for a round whose participants hold
    ``sizes`` rows. Plain averages are fused into the last local epoch (each model added while
    its row is in cache), like the broadcast (start_row) is fused into the first; not a clustered
    round's k sums, nor DP-FedAvg's, which clips each update before the sum."""
    merge_args = dict(plan.merge)
    method = merge_args.pop("method")
    if method == "weighted" and "weights" not in merge_args:
        merge_args["weights"] = sizes
    fused = None
    one_sum = plan.clusters == 1 and plan.dp is None
    if one_sum and method == "uniform" and not merge_args:
        fused = np.ones(len(sizes))
    elif one_sum and method == "weighted" and set(merge_args) == {"weights"}:
        fused = _explicit_weights(merge_args["weights"], len(sizes))  # checked: finite, >= 0, positive sum
    return method, merge_args, fused


def _run_config(plan: Plan, engine: Engine, start: MLPStack) -> dict:
    """config.json: what a resumed run must match (the data's fingerprints included; the key
    names are the run directory's format, kept from earlier versions: "eval" is the val rows)."""
    task = {"task": start.task} if start.is_regression else {}  # absent: classification, as older runs
    if plan.dp is not None:  # the settings, never the key
        optional_dp = {
            "dp": {"clip": plan.dp.clip, "noise_multiplier": plan.dp.noise_multiplier, "delta": plan.dp.delta}
        }
    else:
        optional_dp = {}
    server = {}  # absent: FedAvg(M), as older runs
    if plan.server.adaptive:
        server = {"server_optimizer": plan.server.name, "betas": list(plan.server.betas), "tau": plan.server.tau}
    optional = {}  # keys absent when unused, as older runs wrote them
    if plan.clusters > 1:
        optional = {"clusters": plan.clusters, "cluster_by": plan.cluster_by, "recluster_every": plan.recluster_every}
    if plan.segment_val is not None:
        optional["segment_val"] = fingerprint(plan.segment_val.order, plan.segment_val.offsets)
    return {
        **task,
        "dims": list(start.dims),
        "rounds": plan.n_rounds,
        "local_epochs": schedules.describe(plan.local_epochs),
        "merge": {k: (v if not isinstance(v, np.ndarray) else "array") for k, v in plan.merge.items()},
        "fraction": plan.fraction,
        "server_lr": plan.server.lr,
        "server_momentum": plan.server.momentum,
        **server,
        "proximal_mu": plan.config.proximal_mu,
        "lr": plan.config.lr,
        "lr_decay": plan.lr_decay,
        "seed": plan.config.seed,
        "train": dict(plan.train_options),
        "data": dict(engine.fingerprints(), eval=None if plan.val is None else fingerprint(*plan.val)),
        "start": fingerprint(start.params),
        **optional,
        **optional_dp,
    }


def _merged(plan: Plan, trained, fused, method: str, merge_args: dict, fallbacks: list) -> np.ndarray:
    """The round's merged model (P,) float32: the sum fused into training, or segfast.merge."""
    kept_weight = fused[~trained.history.diverged].sum() if fused is not None else 0.0
    if fused is not None and kept_weight > 0:
        return (trained.merged_sum / kept_weight).astype(np.float32)
    return _merge_call(plan, trained.models(), method, merge_args, fallbacks)


def _merge_call(plan: Plan, models: MLPStack, method: str, merge_args: dict, fallbacks: list) -> np.ndarray:
    """segfast.merge of ``models`` as the round's plan asks, (P,) float32; a learned merge that
    fell back to a fixed one (threshold=) is appended to ``fallbacks`` (the record counts them)."""
    with warnings.catch_warnings():
        # diverged models and threshold's fallbacks: counted in the record, not warned every round
        warnings.simplefilter("ignore", RuntimeWarning)
        val = plan.val if method in MERGE_NEEDS_VAL else None
        merged, details = merge_models(
            models,
            method,
            val=val,
            seed=plan.config.seed,
            n_jobs=plan.threads,
            device=plan.device,
            return_details=True,
            **merge_args,
        )
    if "fallback" in details:
        fallbacks.append(details["fallback"])
    return merged.params[0]


def _score(record: dict) -> float:
    """How good a round's global model is, higher is better: its val accuracy, or minus its val
    mean squared error for regression (what best.npz keeps)."""
    if "global_accuracy" in record:
        return record["global_accuracy"]
    return -record["global_loss"]


def _progress_text(record: dict) -> str:
    if "global_accuracy" in record:
        return f"val accuracy {100 * record['global_accuracy']:.2f}%"
    if "global_rmse" in record:
        return f"val RMSE {record['global_rmse']:.4f}"
    if "train_loss" in record:
        return f"train loss {record['train_loss']:.4f}"
    return f"epsilon {record['epsilon']:.2f}" if "epsilon" in record else ""
