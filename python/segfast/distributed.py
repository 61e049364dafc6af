"""segfast.distributed: train() and rounds() on a Dask cluster, each segment's rows staying on
the worker that holds them.

What it is for: more segments, data or rounds than one machine holds. The segments are cut into
blocks; each block's rows go to a worker once (scattered from this process, or read there from
shard files written by segfast.shards.save_shards) and stay there. In a round only weights
travel: the global row to each block, and back the block's share of the merge. Each task trains
its block with the same C++ core as segfast.train, its random streams keyed by global model
index, so a run ends bit-identical to the single-machine run whatever the number of workers and
blocks. What it is not: a scheduler. Running tasks and moving results are Dask's (an optional
extra: pip install "segfast-mlp[dask]"); segfast only pins each block's tasks to the worker that
holds its rows and, when that worker is lost, places the block again and reruns the round.
"""

from __future__ import annotations

import time
import uuid
import warnings
from dataclasses import dataclass, field

import numpy as np

from . import _core
from ._clustered import segment_losses
from ._engine import Engine, RoundTraining
from ._epochs import FusedMerge, History, TrainConfig, run_epochs
from ._placement import Block, Placement, dask_distributed, data_source, workers_of
from ._segment_scores import ScoreCarry, add_part
from ._validate import check_stack, epochs_per_model
from ._validate import start_epoch as checked_start_epoch
from .rounds import RoundsResult, run_rounds, start_model
from .segments import Segments
from .stack import MLPStack

__all__ = ["train", "rounds"]

_MERGE_BLOCKS = _core.MERGE_BLOCK  # the fused merge adds its models in at most this many blocks


# -- one round's block on a worker --------------------------------------------------------------
_BUFFERS: dict = {}  # (run token, block) -> (models, P) float32 in this worker process, reused by rounds


def _buffer(key, n: int, n_params: int) -> np.ndarray:
    buf = _BUFFERS.get(key)
    if buf is None or len(buf) < n:
        buf = _BUFFERS[key] = np.empty((n, n_params), dtype=np.float32)
    return buf[:n]


def _release(token: str) -> None:
    for key in [k for k in _BUFFERS if k[0] == token]:
        del _BUFFERS[key]


def _subset(segments: Segments, ids: np.ndarray) -> Segments:
    if ids[-1] - ids[0] + 1 == len(ids):  # consecutive: a slice of the order, no copy
        lo, hi = segments.offsets[ids[0]], segments.offsets[ids[-1] + 1]
        return Segments(segments.order[lo:hi], segments.offsets[ids[0] : ids[-1] + 2] - lo)
    return Segments.from_indices([segments[i] for i in ids])


@dataclass
class _Part:
    """What a round's task leaves on its worker; only ``sums`` and the small arrays move on."""

    rows: np.ndarray  # (n, P) the trained models, a view of the worker's buffer
    loss: np.ndarray  # (epochs, n)
    diverged: np.ndarray  # (n,) bool
    epochs: np.ndarray  # (n,) epochs finished
    stop: int  # one past the part's last round position
    sums: list = field(default_factory=list)  # [(first position of a call, its merged_sum (P,) float64)]
    snapshot: np.ndarray | None = None  # (n, P) after personalize_epochs epochs, when asked for

    def __sizeof__(self) -> int:  # heavy: the fold runs where the part is, never the other way round
        extra = 0 if self.snapshot is None else self.snapshot.nbytes
        return self.rows.nbytes + sum(s.nbytes for _, s in self.sums) + self.loss.nbytes + extra


def _train_part(
    block: Block,
    buffer_key,
    dims,
    ids,
    first,
    epochs,
    config: TrainConfig,
    start_epoch,
    start_row,
    weights,
    merge_block,
    snapshot_epoch,
):
    from dask.distributed import get_worker

    n = len(ids)
    part = _Part(
        _buffer(buffer_key, n, start_row.shape[-1]),
        np.full((epochs, n), np.nan),
        np.zeros(n, dtype=bool),
        np.zeros(n, dtype=np.int64),
        first + n,
    )
    # The merge fused into the last epoch, in the pieces of the single-machine call over all
    # positions (cpp/train.h, merge_pieces): _fold adds them on in that call's order.
    fused = None if weights is None else FusedMerge(weights, block=merge_block, first=first, pieces=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the client reports divergence, by round position
        hist, merged = run_epochs(
            MLPStack._wrap(dims, part.rows, task=config.task),
            block.X,
            block.y,
            _subset(block.segments, ids),
            np.full(n, epochs),
            config,
            get_worker().state.nthreads,
            start_epoch=start_epoch,
            start_row=start_row,
            first_model=first,
            fused=fused,
            snapshot_epoch=snapshot_epoch,
        )
    part.loss[:], part.diverged[:], part.epochs[:] = hist.loss, hist.diverged, hist.epochs
    part.snapshot = hist.snapshot
    if merged is not None:
        part.sums = merged.pieces or []
    return part


def _close_block(carry: dict) -> None:
    if carry["open"] is not None:
        carry["sum"] = carry["sum"] + carry["open"]  # the C++ call: merged = 0.0, then += each block's sum
        carry["open"], carry["open_block"] = None, -1


def _fold(carry, part: _Part, block: int, n: int) -> dict:
    """The running merge sum after one more part, added in the single-machine call's order: block
    partial sums in block order, each block's models in model order. Runs on the part's worker;
    only this (one or two (P,) float64 rows and the losses) travels to the next part's worker."""
    if carry is None:
        carry = {"sum": 0.0, "open": None, "open_block": -1, "loss": [], "diverged": [], "epochs": []}
    carry = dict(carry)  # Dask keeps the input; never change it in place
    for position, partial in part.sums:
        if position // block == carry["open_block"]:
            carry["open"] = carry["open"] + partial  # one more model of a block an earlier part began
        else:
            _close_block(carry)
            carry["open"], carry["open_block"] = partial, position // block
    if part.stop % block == 0 or part.stop == n:
        _close_block(carry)
    for name in ("loss", "diverged", "epochs"):
        carry[name] = carry[name] + [getattr(part, name)]
    return carry


def _score_part(carry, part: _Part, dims, task: str, X, y) -> ScoreCarry:
    """The scores after one more part's models: runs on the part's worker, so only the scores and
    the vote's running sum, (rows, C) float64, travel to the next part's worker."""
    from dask.distributed import get_worker

    return add_part(carry, dims, task, part.rows, X, y, get_worker().state.nthreads)


def _warn_diverged(diverged: np.ndarray, epochs: np.ndarray) -> None:
    for e in np.unique(epochs[diverged]):
        names = ", ".join(str(i) for i in np.flatnonzero(diverged & (epochs == e)))
        warnings.warn(
            f"model(s) {names} diverged in epoch {e + 1} (loss became NaN or inf); they keep their "
            "parameters from the end of their last finished epoch. Try a smaller lr.",
            RuntimeWarning,
            stacklevel=3,
        )


class _OnCluster(Engine):
    """rounds() with each block of segments trained by a task on the worker that holds its rows."""

    def __init__(self, client, source, dims, blocks, task: str = "classification"):
        workers_of(client)  # a clear error now, before rounds() writes a run directory
        self.client, self.source, self.dims, self.blocks = client, source, dims, blocks
        self.task = task
        self.sizes = source.sizes
        self.token = uuid.uuid4().hex[:12]
        self.placement, self.calls = None, 0
        self.parts: list = []

    def fingerprints(self) -> dict:
        return self.source.fingerprints()

    def round(self, chosen, epochs, config, threads, start_epoch, start_row, fused, download, snapshot_epoch=None):
        n = len(chosen)
        block = -(-n // _MERGE_BLOCKS)  # the merge block of the single-machine call for n models
        bounds, positions = self._positions(chosen)  # block t trains round positions [positions[t], positions[t+1])

        def submit(data):
            self.calls += 1
            carry, parts = None, []
            for t, (a, b) in enumerate(zip(positions[:-1], positions[1:])):
                if a == b:
                    continue
                name = f"{self.token}-{self.calls}-{t}"
                part = self.client.submit(
                    _train_part,
                    data[t],
                    (self.token, t),
                    self.dims,
                    chosen[a:b] - bounds[t],
                    int(a),
                    epochs,
                    config,
                    start_epoch,
                    start_row if start_row.ndim == 1 else start_row[a:b],
                    None if fused is None else fused[a:b],
                    block,
                    snapshot_epoch,
                    key=f"segfast-train-{name}",
                    workers=[self.placement.workers[t]],
                )
                carry = self.client.submit(
                    _fold, carry, part, block, n, key=f"segfast-fold-{name}", workers=[self.placement.workers[t]]
                )
                parts.append((part, self.placement.workers[t]))
            self.parts = parts
            return carry

        carry = self.placement.run(submit)
        diverged, done = np.concatenate(carry["diverged"]), np.concatenate(carry["epochs"])
        hist = History(loss=np.concatenate(carry["loss"], axis=1), diverged=diverged, epochs=done)
        if snapshot_epoch is not None:  # personalisation: the participants' models after E epochs come here
            hist.snapshot = self._pull("snapshot")
        if diverged.any():
            _warn_diverged(diverged, done)
        local = {}

        def local_models():  # pulled from the workers only when something reads them
            if not local:
                local["stack"] = MLPStack.from_params(self.dims, self._pull("rows"), diverged, task=self.task)
            return local["stack"]

        return RoundTraining(hist, None if fused is None else carry["sum"], local_models, self._score_segments)

    def _pull(self, name: str) -> np.ndarray:
        """One (n, P) array of every part of the round (its trained models, or their snapshot),
        brought here in round order."""
        pulls = [self.client.submit(_part_array, p, name, pure=False, workers=[w]) for p, w in self.parts]
        return np.concatenate(self.client.gather(pulls))

    def _score_segments(self, X, y, threads):
        """The round's segment models scored where they trained, part after part in model order
        (a chain like the merge's folds): the models never move, only the vote's running sum."""
        self.calls += 1
        X, y = self.client.scatter([X, y], hash=False)
        carry = None
        for t, (part, worker) in enumerate(self.parts):
            carry = self.client.submit(
                _score_part,
                carry,
                part,
                self.dims,
                self.task,
                X,
                y,
                key=f"segfast-score-{self.token}-{self.calls}-{t}",
                workers=[worker],
            )
        return carry.result()

    def _positions(self, chosen):
        """(block bounds in segments, block bounds in round positions), placing the blocks on first
        use: bad arguments fail before any data moves."""
        if self.placement is None:
            self.placement = Placement(self.client, self.source, self.blocks, -(-len(self.sizes) // _MERGE_BLOCKS))
        return self.placement.bounds, np.searchsorted(chosen, self.placement.bounds)

    def losses(self, chosen, models, threads):
        bounds, positions = self._positions(chosen)
        self.calls += 1

        def submit(data):
            return [
                self.client.submit(
                    _block_losses,
                    data[t],
                    self.dims,
                    self.task,
                    models,
                    chosen[a:b] - bounds[t],
                    key=f"segfast-losses-{self.token}-{self.calls}-{t}",
                    workers=[self.placement.workers[t]],
                )
                for t, (a, b) in enumerate(zip(positions[:-1], positions[1:]))
                if a < b
            ]

        return np.concatenate(self.placement.run(submit))

    def close(self):
        self.parts = []
        if self.placement is not None:
            self.placement.close()
        self.client.run(_release, self.token)


def _block_losses(block: Block, dims, task: str, models: np.ndarray, ids: np.ndarray) -> np.ndarray:
    from dask.distributed import get_worker

    threads = get_worker().state.nthreads
    return segment_losses(dims, task, models, block.X, block.y, block.segments, ids, threads)


def _part_array(part: _Part, name: str) -> np.ndarray:
    value = getattr(part, name)
    assert value is not None  # a snapshot is asked for only when the round took one
    return value


def rounds(
    stack_or_architecture,
    X,
    y=None,
    segments=None,
    rounds: int = 20,
    local_epochs=1,
    merge="uniform",
    *,
    client,
    blocks=None,
    **options,
) -> RoundsResult:
    """segfast.rounds with the local training on a Dask cluster; same arguments, same result.

    X, y, segments: arrays as segfast.rounds takes them (each block's rows are scattered to a
    worker once), or shards in place of X (a segfast.shards.Shards or a shard directory, with
    y=None; segments=None, or the segments the shards were written for, checked): each worker
    reads only its own blocks' files. client: a dask.distributed.Client. blocks: how many blocks
    of segments (default: one per worker); with shards, blocks are whole shards.
    Every other keyword is segfast.rounds' (val, out, resume, fraction, merge, lr, ...), and the
    run directory is the same: a run can be resumed here or on one machine.

    What travels each round: the global model to each block, and back a running sum of the
    merge (float64, P numbers, passed from block to block). Merges other than the plain and
    weighted average also pull every segment model to this process each round. val with
    val_segments (its default "auto" included) scores the segment models where they trained:
    the val rows it scores on go to the workers (a few rows a round for "auto", all of them in
    the last round), and their scores and the vote's running sum ((rows, classes) float64) pass
    from block to block, with the bits of the single-machine run. personalize_epochs (with
    segment_val) pulls the participants' models after E epochs to this process each round, to
    score them on their own rows. The last round's segment models come back once, at the end.
    """
    dask_distributed()
    if "device" in options:
        raise TypeError("segfast.distributed trains on the workers' CPUs; device= is not supported here")
    seed = options.get("seed", 0)
    given = stack_or_architecture
    probe = given[0] if isinstance(given, MLPStack) else MLPStack(given, 1, seed=seed)  # one model checks the data
    source = data_source(X, y, segments, probe)
    clusters, cluster_by = options.get("clusters", 1), options.get("cluster_by", "loss")
    start = start_model(stack_or_architecture, seed, clusters, cluster_by, len(source.sizes))
    engine = _OnCluster(client, source, start.dims, blocks, start.task)
    try:
        return run_rounds(engine, start, rounds, local_epochs, merge, **options)
    finally:
        engine.close()


def _train_rows(block: Block, rows, dims, per_model, config: TrainConfig, start_epoch):
    from dask.distributed import get_worker

    stack = MLPStack.from_params(dims, rows, task=config.task)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the client reports divergence, by model index
        hist, _ = run_epochs(
            stack,
            block.X,
            block.y,
            block.segments,
            per_model,
            config,
            get_worker().state.nthreads,
            start_epoch=start_epoch,
            first_model=block.first,
        )
    return stack.params, hist


def train(
    stack: MLPStack,
    X,
    y=None,
    segments=None,
    *,
    epochs=1,
    batch_size: int = 32,
    lr: float = 0.05,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    seed: int = 0,
    augment=None,
    proximal_mu: float = 0.0,
    start_epoch: int = 0,
    loss: str | None = None,
    huber_delta: float = 1.0,
    client,
    blocks=None,
) -> History:
    """segfast.train with each block of models trained on a Dask worker; same result, bit for bit.

    X, y, segments as in :func:`rounds` (arrays, or shards in place of X). The models' rows go to
    the workers and come back trained into ``stack``; the data stays where it was placed.
    ``history.seconds`` holds one entry: the wall time of the whole call (each block trains all
    its epochs in one task, so there is no progress bar per epoch).
    """
    dask_distributed()
    check_stack(stack)
    source = data_source(X, y, segments, stack)
    if len(source.sizes) != stack.n_models:
        raise ValueError(f"segments has {len(source.sizes)} segments but the stack has {stack.n_models} models")
    per_model = epochs_per_model(epochs, stack.n_models)
    config = TrainConfig.checked(
        stack.n_features,
        batch_size=batch_size,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        proximal_mu=proximal_mu,
        seed=seed,
        augment=augment,
        task=stack.task,
        loss=loss,
        huber_delta=huber_delta,
    )
    start_epoch = checked_start_epoch(start_epoch)
    t0 = time.perf_counter()
    placement = Placement(client, source, blocks, 1)
    bounds = placement.bounds

    def submit(data):
        futures = []
        for t, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            w = [placement.workers[t]]
            rows = client.scatter(stack.params[a:b], workers=w, hash=False)
            futures.append(
                client.submit(
                    _train_rows, data[t], rows, stack.dims, per_model[a:b], config, start_epoch, pure=False, workers=w
                )
            )
        return futures

    try:
        results = placement.run(submit)
    finally:
        placement.close()
    n_epochs = int(per_model.max(initial=0))
    hist = History(
        loss=np.full((n_epochs, stack.n_models), np.nan),
        diverged=np.zeros(stack.n_models, dtype=bool),
        epochs=np.zeros(stack.n_models, dtype=np.int64),
    )
    for a, b, (params, part) in zip(bounds[:-1], bounds[1:], results):
        stack.params[a:b] = params
        hist.loss[: part.loss.shape[0], a:b], hist.diverged[a:b], hist.epochs[a:b] = (
            part.loss,
            part.diverged,
            part.epochs,
        )
    stack.diverged |= hist.diverged
    hist.seconds.append(time.perf_counter() - t0)
    if hist.diverged.any():
        _warn_diverged(hist.diverged, hist.epochs)
    return hist
