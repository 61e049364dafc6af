"""Placement for segfast.distributed: which Dask worker holds which block of segments, how a
block's rows get there (scattered from this process, or read there from shard files), and
placing blocks again when a worker is lost.

What it is not: the training tasks or the rounds (distributed.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import time
import uuid
from concurrent.futures import CancelledError
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._engine import LocalEngine
from ._validate import positive_int
from .results import fingerprint
from .segments import Segments
from .shards import Shards, load_shards, segment_rows
from .stack import MLPStack

_RETRIES = 3  # times a round is rerun after losing a worker that held blocks
# What a wait that timed out raises: one class from Python 3.11 on, three before it (Dask's wait
# raises asyncio's, a future's result concurrent.futures').
_TIMEOUTS = (TimeoutError, asyncio.TimeoutError, concurrent.futures.TimeoutError)
_POLL_S = 1.0  # while a round runs, how often to look whether a worker holding a block is gone
_RESTART_WAIT_S = 60.0  # after losing workers, how long to wait for at least one to be back


def dask_distributed():
    try:
        import dask.distributed
    except ImportError as e:
        raise ImportError(
            'segfast.distributed needs Dask: pip install "segfast-mlp[dask]" (or "dask[distributed]")'
        ) from e
    return dask.distributed


def workers_of(client) -> list:
    if not isinstance(client, dask_distributed().Client):
        raise TypeError(f"client must be a dask.distributed.Client, got {type(client).__name__}")
    workers = sorted(client.nthreads())
    if not workers:
        raise ValueError(
            "client has no workers: start some (e.g. LocalCluster(n_workers=2), or dask worker "
            "processes pointed at the scheduler) or wait for them with client.wait_for_workers(n)"
        )
    return workers


# -- what each worker holds --------------------------------------------------------------------
@dataclass
class Block:
    """One block's data on a worker: segments [first, first + len(segments)) over its own rows."""

    X: np.ndarray  # (rows, features) float32: only the rows these segments use
    y: np.ndarray  # (rows,) int64
    segments: Segments  # indices into X
    first: int  # global index of the first segment

    def __sizeof__(self) -> int:  # what Dask's scheduler weighs when it decides where tasks run
        return self.X.nbytes + self.y.nbytes + self.segments.order.nbytes + self.segments.offsets.nbytes


def read_block(shards: Shards, u: int, v: int) -> Block:
    """Shards u..v-1 joined into one block (runs on the worker, which reads only these files)."""
    parts = [shards.load(k) for k in range(u, v)]
    base = np.cumsum([0] + [len(p[0]) for p in parts])
    starts = np.cumsum([0] + [len(p[2]) for p in parts])
    order = np.concatenate([p[2] + b for p, b in zip(parts, base)])
    offsets = np.concatenate([[0]] + [p[3][1:] + s for p, s in zip(parts, starts)])
    return Block(
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        Segments(order, offsets),
        int(shards.bounds[u]),
    )


class ArraysSource:
    """Data in this process: each block's rows are scattered to its worker once, and scattered
    again if that worker is lost (scattered data has no recipe Dask could rerun)."""

    def __init__(self, X, y, segments, start: MLPStack):
        self.here = LocalEngine(start, X, y, segments, "cpu")  # the checks of segfast.rounds
        self.sizes = self.here.sizes
        self.cuts = np.arange(len(self.sizes) + 1)  # a block may end after any segment

    def fingerprints(self) -> dict:
        return self.here.fingerprints()

    def place(self, client, first: int, stop: int, worker: str):
        X, y, order, offsets = segment_rows(self.here.X, self.here.y, self.here.segments, first, stop)
        return client.scatter(Block(X, y, Segments(order, offsets), first), workers=[worker], hash=False)


class ShardsSource:
    """Shard files: each worker reads its own blocks' files; Dask reads a lost worker's again
    on another worker."""

    def __init__(self, shards, segments, start: MLPStack):
        if start.is_regression:
            raise ValueError("shard files hold class labels; a regression stack trains from arrays X, y and segments")
        if not isinstance(shards, Shards):
            shards = load_shards(shards)
        self.shards = shards
        missing = shards.missing()
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} of the {shards.n_shards} shard files listed in {shards.path} are "
                f"missing (the first: {missing[0]}); write them again with save_shards"
            )
        if segments is not None:
            if isinstance(segments, (list, tuple)):
                segments = Segments.from_indices(segments)
            if not isinstance(segments, Segments):
                raise TypeError(
                    f"segments must be a segfast.Segments, a list of index arrays or None, got "
                    f"{type(segments).__name__}"
                )
            if fingerprint(segments.order, segments.offsets) != shards.fingerprints["segments"]:
                raise ValueError(
                    f"segments do not match the shard files in {shards.path}: they were written for "
                    f"other segments ({shards.n_segments} of them); pass segments=None to use theirs, "
                    "or write the shards again"
                )
        if shards.n_features != start.n_features:
            raise ValueError(
                f"the shards in {shards.path} have {shards.n_features} features, but the models expect "
                f"{start.n_features}"
            )
        if shards.n_labels > start.n_classes:
            raise ValueError(
                f"the shards in {shards.path} hold labels up to {shards.n_labels - 1}, but the models "
                f"have {start.n_classes} classes"
            )
        self.sizes = shards.sizes
        self.cuts = shards.bounds  # blocks are whole shards

    def fingerprints(self) -> dict:
        return dict(self.shards.fingerprints)

    def place(self, client, first: int, stop: int, worker: str):
        u, v = np.searchsorted(self.shards.bounds, [first, stop])
        return client.submit(
            read_block,
            self.shards,
            int(u),
            int(v),
            workers=[worker],
            pure=False,
            key=f"segfast-shards-{uuid.uuid4().hex[:12]}-{u}",
        )


def data_source(X, y, segments, start: MLPStack):
    if isinstance(X, (Shards, str, Path)):
        if y is not None:
            raise ValueError(
                "with shards (a Shards or a shard directory in place of X) y must be None: the labels "
                "are in the shard files"
            )
        return ShardsSource(X, segments, start)
    if y is None or segments is None:
        raise ValueError("X as an array needs y and segments too (or pass shards in place of X)")
    return ArraysSource(X, y, segments, start)


def plan_blocks(cuts: np.ndarray, n_blocks: int, align: int) -> np.ndarray:
    """Block bounds (segment indices) from the allowed cuts: about equal blocks, each ending on a
    multiple of ``align`` where the cuts allow it (merge blocks kept whole train at full speed)."""
    n = int(cuts[-1])
    aligned = cuts[(cuts % align == 0) | (cuts == n)]
    targets = np.arange(1, n_blocks) * n / n_blocks
    picks = aligned[np.clip(np.searchsorted(aligned, targets), 0, len(aligned) - 1)]
    return np.unique(np.concatenate([[0], picks, [n]]))


class Placement:
    """Blocks of segments placed on workers, each task pinned to the worker that holds its block.

    Pinned, because Dask's work stealing would otherwise move a block's rows to an idle worker
    (a block weighs far more than a round's work). The price: Dask cannot rerun a pinned task
    elsewhere, so when a worker holding blocks is lost, run() places those blocks again on the
    workers left (scattered anew, or read there from the shards) and reruns the round, which
    depends only on its inputs: the result is the same."""

    def __init__(self, client, source, blocks, align: int):
        self.client, self.source = client, source
        workers = workers_of(client)
        n_blocks = len(workers) if blocks is None else positive_int(blocks, "blocks")
        self.bounds = plan_blocks(np.asarray(source.cuts), n_blocks, align)
        # Neighbouring blocks share a worker: a block's merge sums go on from the one before it.
        self.workers = [workers[i * len(workers) // (len(self.bounds) - 1)] for i in range(len(self.bounds) - 1)]
        self.data = [
            source.place(client, int(a), int(b), w) for a, b, w in zip(self.bounds[:-1], self.bounds[1:], self.workers)
        ]

    def run(self, submit):
        """submit(data futures) -> future(s) of tasks pinned to self.workers; their results."""
        dd = dask_distributed()
        for attempt in range(_RETRIES + 1):
            try:
                if attempt:  # placing the lost blocks again may meet a worker that is dying too
                    self._place_lost()
                futures = submit(self.data)
                while True:
                    try:  # one future: its result in one round trip; several: wait, then gather
                        if isinstance(futures, list):
                            dd.wait(futures, timeout=_POLL_S)
                            return self.client.gather(futures)
                        return futures.result(timeout=_POLL_S)
                    except _TIMEOUTS:
                        if not set(self.workers) <= set(self.client.nthreads()):
                            raise CancelledError("a worker holding blocks is gone") from None
            except CancelledError:
                if attempt == _RETRIES:
                    raise

    def _place_lost(self):
        alive = self._workers_after_losses()
        for t, (worker, data) in enumerate(zip(self.workers, self.data)):
            if worker not in alive or data.status in ("cancelled", "lost"):
                load = {w: self.workers.count(w) for w in alive}
                self.workers[t] = min(alive, key=load.get)
                try:
                    self.data[t] = self.source.place(
                        self.client, int(self.bounds[t]), int(self.bounds[t + 1]), self.workers[t]
                    )
                except (KeyError, OSError) as e:  # Dask's words for "that worker died meanwhile" (OSError: comms)
                    raise CancelledError(f"worker {self.workers[t]} was lost while blocks were placed on it") from e

    def _workers_after_losses(self) -> list:
        """The workers there are now. With every one gone at once (the OOM killer, say), wait up
        to _RESTART_WAIT_S for the nannies to restart some. One listed here may still be dying:
        the round placed on it fails and is retried."""
        deadline = time.monotonic() + _RESTART_WAIT_S
        while True:
            alive = sorted(self.client.nthreads())
            if alive or time.monotonic() >= deadline:
                return alive or workers_of(self.client)  # none: workers_of's error says what to do
            with contextlib.suppress(*_TIMEOUTS):
                self.client.wait_for_workers(1, timeout=max(0.1, deadline - time.monotonic()))

    def close(self):
        self.data = []  # the last references: Dask forgets the blocks' data
