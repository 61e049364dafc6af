"""segfast.distributed: train() and rounds() on a Dask cluster, each segment's rows staying on
the worker that holds them.

What it is for: more segments, data or rounds than one machine holds. The segments are cut into
blocks; each block's rows go to a worker once (scattered from this process, or read there from
shard files written by segfast.datasets.save_shards) and stay there. In a round only weights
travel: the global row to each block, and back the block's share of the merge. Each task trains
its block with the same C++ core as segfast.train, its random streams keyed by global model
index, so a run ends bit-identical to the single-machine run whatever the number of workers and
blocks. What it is not: a scheduler. Running tasks and moving results are Dask's (an optional
extra: pip install "segfast[dask]"); segfast only pins each block's tasks to the worker that
holds its rows and, when that worker is lost, places the block again and reruns the round.
"""
from __future__ import annotations

import numbers
import time
import uuid
import warnings
from concurrent.futures import CancelledError
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._validate import finite_float, positive_int
from .datasets import Shards, load_shards, segment_rows
from .results import fingerprint
from .rounds import RoundsResult, _Here, _Training, rounds as _local_rounds
from .segments import Segments
from .stack import MLPStack
from .train import History, _epochs_per_model, _flip_width, _train_loop

__all__ = ["train", "rounds"]

_MERGE_BLOCKS = 64  # the fused merge of segfast.rounds adds its models in at most 64 blocks (cpp/train.cpp)
_RETRIES = 3  # times a round is rerun after losing a worker that held blocks
_POLL_S = 1.0  # while a round runs, how often to look whether a worker holding a block is gone


def _dask():
    try:
        import dask.distributed
    except ImportError as e:
        raise ImportError('segfast.distributed needs Dask: pip install "segfast[dask]" (or "dask[distributed]")') from e
    return dask.distributed


def _workers(client) -> list:
    if not isinstance(client, _dask().Client):
        raise TypeError(f"client must be a dask.distributed.Client, got {type(client).__name__}")
    workers = sorted(client.nthreads())
    if not workers:
        raise ValueError("client has no workers: start some (e.g. LocalCluster(n_workers=2), or dask worker "
                         "processes pointed at the scheduler) or wait for them with client.wait_for_workers(n)")
    return workers


# -- what each worker holds --------------------------------------------------------------------
@dataclass
class _Block:
    """One block's data on a worker: segments [first, first + len(segments)) over its own rows."""

    X: np.ndarray  # (rows, features) float32: only the rows these segments use
    y: np.ndarray  # (rows,) int64
    segments: Segments  # indices into X
    first: int  # global index of the first segment

    def __sizeof__(self) -> int:  # what Dask's scheduler weighs when it decides where tasks run
        return self.X.nbytes + self.y.nbytes + self.segments.order.nbytes + self.segments.offsets.nbytes


def _read_block(shards: Shards, u: int, v: int) -> _Block:
    """Shards u..v-1 joined into one block (runs on the worker, which reads only these files)."""
    parts = [shards.load(k) for k in range(u, v)]
    base = np.cumsum([0] + [len(p[0]) for p in parts])
    starts = np.cumsum([0] + [len(p[2]) for p in parts])
    order = np.concatenate([p[2] + b for p, b in zip(parts, base)])
    offsets = np.concatenate([[0]] + [p[3][1:] + s for p, s in zip(parts, starts)])
    return _Block(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                  Segments(order, offsets), int(shards.bounds[u]))


class _Arrays:
    """Data in this process: each block's rows are scattered to its worker once, and scattered
    again if that worker is lost (scattered data has no recipe Dask could rerun)."""

    def __init__(self, X, y, segments, start: MLPStack):
        self.here = _Here(start, X, y, segments, "cpu")  # the checks of segfast.rounds
        self.sizes = self.here.sizes
        self.cuts = np.arange(len(self.sizes) + 1)  # a block may end after any segment

    def fingerprints(self) -> dict:
        return self.here.fingerprints()

    def place(self, client, first: int, stop: int, worker: str):
        X, y, order, offsets = segment_rows(self.here.X, self.here.y, self.here.segments, first, stop)
        return client.scatter(_Block(X, y, Segments(order, offsets), first), workers=[worker], hash=False)


class _FromShards:
    """Shard files: each worker reads its own blocks' files; Dask reads a lost worker's again
    on another worker."""

    def __init__(self, shards, segments, start: MLPStack):
        if not isinstance(shards, Shards):
            shards = load_shards(shards)
        self.shards = shards
        missing = shards.missing()
        if missing:
            raise FileNotFoundError(f"{len(missing)} of the {shards.n_shards} shard files listed in {shards.path} are "
                                    f"missing (the first: {missing[0]}); write them again with save_shards")
        if segments is not None:
            if isinstance(segments, (list, tuple)):
                segments = Segments.from_indices(segments)
            if not isinstance(segments, Segments):
                raise TypeError(f"segments must be a segfast.Segments, a list of index arrays or None, got "
                                f"{type(segments).__name__}")
            if fingerprint(segments.order, segments.offsets) != shards.fingerprints["segments"]:
                raise ValueError(f"segments do not match the shard files in {shards.path}: they were written for "
                                 f"other segments ({shards.n_segments} of them); pass segments=None to use theirs, "
                                 "or write the shards again")
        if shards.n_features != start.n_features:
            raise ValueError(f"the shards in {shards.path} have {shards.n_features} features, but the models expect "
                             f"{start.n_features}")
        if shards.n_labels > start.n_classes:
            raise ValueError(f"the shards in {shards.path} hold labels up to {shards.n_labels - 1}, but the models "
                             f"have {start.n_classes} classes")
        self.sizes = shards.sizes
        self.cuts = shards.bounds  # blocks are whole shards

    def fingerprints(self) -> dict:
        return dict(self.shards.fingerprints)

    def place(self, client, first: int, stop: int, worker: str):
        u, v = np.searchsorted(self.shards.bounds, [first, stop])
        return client.submit(_read_block, self.shards, int(u), int(v), workers=[worker], pure=False, key=f"segfast-shards-{uuid.uuid4().hex[:12]}-{u}")


def _source(X, y, segments, start: MLPStack):
    if isinstance(X, (Shards, str, Path)):
        if y is not None:
            raise ValueError("with shards (a Shards or a shard directory in place of X) y must be None: the labels "
                             "are in the shard files")
        return _FromShards(X, segments, start)
    if y is None or segments is None:
        raise ValueError("X as an array needs y and segments too (or pass shards in place of X)")
    return _Arrays(X, y, segments, start)


def _plan(cuts: np.ndarray, n_blocks: int, align: int) -> np.ndarray:
    """Block bounds (segment indices) from the allowed cuts: about equal blocks, each ending on a
    multiple of ``align`` where the cuts allow it (merge blocks kept whole train at full speed)."""
    n = int(cuts[-1])
    aligned = cuts[(cuts % align == 0) | (cuts == n)]
    targets = np.arange(1, n_blocks) * n / n_blocks
    picks = aligned[np.clip(np.searchsorted(aligned, targets), 0, len(aligned) - 1)]
    return np.unique(np.concatenate([[0], picks, [n]]))


class _Placement:
    """Blocks of segments placed on workers, each task pinned to the worker that holds its block.

    Pinned, because Dask's work stealing would otherwise move a block's rows to an idle worker
    (a block weighs far more than a round's work). The price: Dask cannot rerun a pinned task
    elsewhere, so when a worker holding blocks is lost, run() places those blocks again on the
    workers left (scattered anew, or read there from the shards) and reruns the round, which
    depends only on its inputs: the result is the same."""

    def __init__(self, client, source, blocks, align: int):
        self.client, self.source = client, source
        workers = _workers(client)
        n_blocks = len(workers) if blocks is None else positive_int(blocks, "blocks")
        self.bounds = _plan(np.asarray(source.cuts), n_blocks, align)
        # Neighbouring blocks share a worker: a block's merge sums go on from the one before it.
        self.workers = [workers[i * len(workers) // (len(self.bounds) - 1)] for i in range(len(self.bounds) - 1)]
        self.data = [source.place(client, int(a), int(b), w)
                     for a, b, w in zip(self.bounds[:-1], self.bounds[1:], self.workers)]

    def run(self, submit):
        """submit(data futures) -> future(s) of tasks pinned to self.workers; their results."""
        dd = _dask()
        for attempt in range(_RETRIES + 1):
            futures = submit(self.data)
            try:
                while True:
                    try:  # one future: its result in one round trip; several: wait, then gather
                        if isinstance(futures, list):
                            dd.wait(futures, timeout=_POLL_S)
                            return self.client.gather(futures)
                        return futures.result(timeout=_POLL_S)
                    except TimeoutError:
                        if not set(self.workers) <= set(self.client.nthreads()):
                            raise CancelledError("a worker holding blocks is gone") from None
            except CancelledError:
                if attempt == _RETRIES:
                    raise
                self._place_lost()

    def _place_lost(self):
        alive = _workers(self.client)
        for t, (worker, data) in enumerate(zip(self.workers, self.data)):
            if worker not in alive or data.status in ("cancelled", "lost"):
                load = {w: self.workers.count(w) for w in alive}
                self.workers[t] = min(alive, key=load.get)
                self.data[t] = self.source.place(self.client, int(self.bounds[t]), int(self.bounds[t + 1]),
                                                 self.workers[t])

    def close(self):
        self.data = []  # the last references: Dask forgets the blocks' data


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


def _view(dims, params: np.ndarray) -> MLPStack:
    """A stack over rows of a worker's buffer (MLPStack.from_params would copy them)."""
    stack = MLPStack.__new__(MLPStack)
    stack.dims, stack.params, stack.diverged = tuple(dims), params, np.zeros(len(params), dtype=bool)
    return stack


def _subset(segments: Segments, ids: np.ndarray) -> Segments:
    if ids[-1] - ids[0] + 1 == len(ids):  # consecutive: a slice of the order, no copy
        lo, hi = segments.offsets[ids[0]], segments.offsets[ids[-1] + 1]
        return Segments(segments.order[lo:hi], segments.offsets[ids[0]:ids[-1] + 2] - lo)
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

    def __sizeof__(self) -> int:  # heavy: the fold runs where the part is, never the other way round
        return self.rows.nbytes + sum(s.nbytes for _, s in self.sums) + self.loss.nbytes


def _train_part(block: _Block, buffer_key, dims, ids, first, epochs, settings, start_epoch, start_row, weights,
                merge_block):
    from dask.distributed import get_worker

    n = len(ids)
    part = _Part(_buffer(buffer_key, n, start_row.size), np.full((epochs, n), np.nan), np.zeros(n, dtype=bool),
                 np.zeros(n, dtype=np.int64), first + n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the client reports divergence, by round position
        # The merge fused into the last epoch, in the pieces of the single-machine call over all
        # positions (cpp/train.h, merge_pieces): _fold adds them on in that call's order.
        hist = _train_loop(_view(dims, part.rows), block.X, block.y, _subset(block.segments, ids), np.full(n, epochs),
                           progress=False, start_epoch=start_epoch, start_row=start_row, first_model=first,
                           merge_weights=weights, merge_block=merge_block, merge_first=first,
                           merge_pieces=weights is not None, **dict(settings, threads=get_worker().state.nthreads))
    part.loss[:], part.diverged[:], part.epochs[:] = hist.loss, hist.diverged, hist.epochs
    if weights is not None:
        part.sums = hist.merge_pieces or []
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


def _warn_diverged(diverged: np.ndarray, epochs: np.ndarray) -> None:
    for e in np.unique(epochs[diverged]):
        names = ", ".join(str(i) for i in np.flatnonzero(diverged & (epochs == e)))
        warnings.warn(f"model(s) {names} diverged in epoch {e + 1} (loss became NaN or inf); they keep their "
                      "parameters from the end of their last finished epoch. Try a smaller lr.", RuntimeWarning,
                      stacklevel=3)


class _OnCluster(_Training):
    """rounds() with each block of segments trained by a task on the worker that holds its rows."""

    def __init__(self, client, source, dims, blocks):
        _workers(client)  # a clear error now, before rounds() writes a run directory
        self.client, self.source, self.dims, self.blocks = client, source, dims, blocks
        self.sizes = source.sizes
        self.token = uuid.uuid4().hex[:12]
        self.placement, self.parts, self.calls = None, [], 0

    def fingerprints(self) -> dict:
        return self.source.fingerprints()

    def round(self, chosen, epochs, settings, start_epoch, start_row, fused, download):
        n = len(chosen)
        block = -(-n // _MERGE_BLOCKS)  # the merge block of the single-machine call for n models
        if self.placement is None:  # placed on first use: bad arguments fail before any data moves
            self.placement = _Placement(self.client, self.source, self.blocks, -(-len(self.sizes) // _MERGE_BLOCKS))
        bounds = self.placement.bounds
        positions = np.searchsorted(chosen, bounds)  # block t trains round positions [positions[t], positions[t+1])

        def submit(data):
            self.calls += 1
            carry, parts = None, []
            for t, (a, b) in enumerate(zip(positions[:-1], positions[1:])):
                if a == b:
                    continue
                name = f"{self.token}-{self.calls}-{t}"
                part = self.client.submit(
                    _train_part, data[t], (self.token, t), self.dims, chosen[a:b] - bounds[t], int(a), epochs,
                    settings, start_epoch, start_row, None if fused is None else fused[a:b], block,
                    key=f"segfast-train-{name}", workers=[self.placement.workers[t]])
                carry = self.client.submit(_fold, carry, part, block, n, key=f"segfast-fold-{name}",
                                           workers=[self.placement.workers[t]])
                parts.append(part)
            self.parts = parts
            return carry

        carry = self.placement.run(submit)
        diverged, done = np.concatenate(carry["diverged"]), np.concatenate(carry["epochs"])
        hist = History(loss=np.concatenate(carry["loss"], axis=1), diverged=diverged, epochs=done,
                       merged_sum=None if fused is None else carry["sum"])
        if diverged.any():
            _warn_diverged(diverged, done)
        local = {}

        def local_models():  # pulled from the workers only when something reads them
            if not local:
                rows = self.client.gather([self.client.submit(_rows, p, pure=False, workers=[w])
                                           for p, w in zip(self.parts, self.placement.workers)])
                local["stack"] = MLPStack.from_params(self.dims, np.concatenate(rows), diverged)
            return local["stack"]
        return hist, local_models

    def close(self):
        self.parts = []
        if self.placement is not None:
            self.placement.close()
        self.client.run(_release, self.token)


def _rows(part: _Part) -> np.ndarray:
    return part.rows


def _start_model(stack_or_architecture, seed) -> MLPStack:
    if isinstance(stack_or_architecture, MLPStack):
        return stack_or_architecture
    return MLPStack(stack_or_architecture, n_models=1, seed=seed)


def rounds(stack_or_architecture, X, y=None, segments=None, rounds: int = 20, local_epochs=1, merge="uniform", *,
           client, blocks=None, **options) -> RoundsResult:
    """segfast.rounds with the local training on a Dask cluster; same arguments, same result.

    X, y, segments: arrays as segfast.rounds takes them (each block's rows are scattered to a
    worker once), or shards in place of X (a segfast.datasets.Shards or a shard directory, with
    y=None; segments=None, or the segments the shards were written for, checked): each worker
    reads only its own blocks' files. client: a dask.distributed.Client. blocks: how many blocks
    of segments (default: one per worker); with shards, blocks are whole shards.
    Every other keyword is segfast.rounds' (eval, out, resume, fraction, merge, lr, ...), and the
    run directory is the same: a run can be resumed here or on one machine.

    What travels each round: the global model to each block, and back a running sum of the
    merge (float64, P numbers, passed from block to block). Merges other than the plain and
    weighted average, and eval with eval_segments=True, also pull every segment model to this
    process each round; the last round's segment models come back once, at the end.
    """
    _dask()
    if "device" in options:
        raise TypeError("segfast.distributed trains on the workers' CPUs; device= is not supported here")
    start = _start_model(stack_or_architecture, options.get("seed", 0))
    where = _OnCluster(client, _source(X, y, segments, start), start.dims, blocks)
    try:
        return _local_rounds(start, where, None, None, rounds, local_epochs, merge, **options)
    finally:
        where.close()


def _train_rows(block: _Block, rows, dims, per_model, settings, start_epoch):
    from dask.distributed import get_worker

    stack = MLPStack.from_params(dims, rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the client reports divergence, by model index
        hist = _train_loop(stack, block.X, block.y, block.segments, per_model, progress=False,
                           start_epoch=start_epoch, first_model=block.first,
                           **dict(settings, threads=get_worker().state.nthreads))
    return stack.params, hist


def train(stack: MLPStack, X, y=None, segments=None, epochs=1, batch_size: int = 32, lr: float = 0.05,
          momentum: float = 0.0, weight_decay: float = 0.0, seed: int = 0, augment=None,
          proximal_mu: float = 0.0, start_epoch: int = 0, *, client, blocks=None) -> History:
    """segfast.train with each block of models trained on a Dask worker; same result, bit for bit.

    X, y, segments as in :func:`rounds` (arrays, or shards in place of X). The models' rows go to
    the workers and come back trained into ``stack``; the data stays where it was placed.
    ``history.seconds`` holds one entry: the wall time of the whole call (each block trains all
    its epochs in one task, so there is no progress bar per epoch).
    """
    _dask()
    if not isinstance(stack, MLPStack):
        raise TypeError(f"stack must be a segfast.MLPStack, got {type(stack).__name__}")
    source = _source(X, y, segments, stack)
    if len(source.sizes) != stack.n_models:
        raise ValueError(f"segments has {len(source.sizes)} segments but the stack has {stack.n_models} models")
    per_model = _epochs_per_model(epochs, stack.n_models)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if isinstance(start_epoch, bool) or not isinstance(start_epoch, numbers.Integral) or start_epoch < 0:
        raise ValueError(f"start_epoch must be an integer >= 0, got {start_epoch!r}")
    settings = dict(batch_size=positive_int(batch_size, "batch_size"), lr=finite_float(lr, "lr", minimum=0.0),
                    momentum=finite_float(momentum, "momentum", minimum=0.0),
                    weight_decay=finite_float(weight_decay, "weight_decay", minimum=0.0), seed=seed,
                    flip=_flip_width(augment, stack.n_features),
                    proximal_mu=finite_float(proximal_mu, "proximal_mu", minimum=0.0))
    t0 = time.perf_counter()
    placement = _Placement(client, source, blocks, 1)
    bounds = placement.bounds

    def submit(data):
        futures = []
        for t, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            w = [placement.workers[t]]
            rows = client.scatter(stack.params[a:b], workers=w, hash=False)
            futures.append(client.submit(_train_rows, data[t], rows, stack.dims, per_model[a:b], settings,
                                         int(start_epoch), pure=False, workers=w))
        return futures

    try:
        results = placement.run(submit)
    finally:
        placement.close()
    n_epochs = int(per_model.max(initial=0))
    hist = History(loss=np.full((n_epochs, stack.n_models), np.nan), diverged=np.zeros(stack.n_models, dtype=bool),
                   epochs=np.zeros(stack.n_models, dtype=np.int64))
    for a, b, (params, part) in zip(bounds[:-1], bounds[1:], results):
        stack.params[a:b] = params
        hist.loss[:part.loss.shape[0], a:b], hist.diverged[a:b], hist.epochs[a:b] = part.loss, part.diverged, part.epochs
    stack.diverged |= hist.diverged
    hist.seconds.append(time.perf_counter() - t0)
    if hist.diverged.any():
        _warn_diverged(hist.diverged, hist.epochs)
    return hist
