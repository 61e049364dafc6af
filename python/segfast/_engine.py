"""Where a round's local training runs: the protocol rounds() drives, and its engine for this
process. segfast.distributed's engine implements the same protocol on a Dask cluster, so one
rounds loop (rounds.run_rounds) serves both.

What it is not: the rounds loop itself (merging, the server step, evaluation and the run
directory are rounds.py's), nor the training loop (_epochs.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import _core
from ._clustered import segment_losses
from ._epochs import FusedMerge, History, TrainConfig, run_epochs
from ._segment_scores import ScoreCarry, add_part
from ._validate import as_features, as_outputs
from .results import fingerprint
from .segments import Segments, as_segments
from .stack import MLPStack


@dataclass
class RoundTraining:
    """What an engine returns for one round: the History of the participants (round positions,
    not segment indices), ``merged_sum`` = sum_i w_i * params_i over the participants that did
    not diverge when fused merge weights were given (else None), ``models()``, the trained
    participants as an MLPStack (fetched only when called: on a GPU or a cluster it moves them),
    and ``score_segments(X, y, threads)``, their scores and vote on val rows computed where the
    models are (a _segment_scores.ScoreCarry)."""

    history: History
    merged_sum: np.ndarray | None
    models: Callable[[], MLPStack]
    score_segments: Callable[[np.ndarray, np.ndarray, int], ScoreCarry]


class Engine:
    """The protocol: ``sizes`` (rows per segment), ``fingerprints()``, ``round()``, ``losses()``,
    ``close()``."""

    sizes: np.ndarray  # (n_segments,)

    def fingerprints(self) -> dict:
        """Hashes of the data and the segments, for the run directory's config."""
        raise NotImplementedError

    def round(
        self,
        chosen: np.ndarray,
        epochs: int,
        config: TrainConfig,
        threads: int,
        start_epoch: int,
        start_row: np.ndarray,
        fused_weights: np.ndarray | None,
        download: bool,
        snapshot_epoch: int | None = None,
    ) -> RoundTraining:
        """Train segments ``chosen`` (sorted) for ``epochs`` from ``start_row`` ((P,), or
        (len(chosen), P): one start each), their random
        streams keyed by round position and ``start_epoch`` + epoch. ``fused_weights``: sum
        the trained models with these weights inside the last epoch. ``download``: the caller
        will read the trained models (a GPU engine may skip bringing them back). snapshot_epoch=E:
        history.snapshot holds the models after E of the epochs (personalisation)."""
        raise NotImplementedError

    def losses(self, chosen: np.ndarray, models: np.ndarray, threads: int) -> np.ndarray:
        """(len(chosen), k) float64: each segment's mean loss of each of the k models (rows of
        ``models``) on its own rows (_clustered.segment_losses), for clustered rounds."""
        raise NotImplementedError

    def close(self) -> None:
        """Let go of what the engine holds (a cluster's placed data); the default holds nothing."""


class LocalEngine(Engine):
    """This process: the CPU cores, or the GPU with X, y and the segment models resident on it."""

    def __init__(self, start: MLPStack, X, y, segments, device: str):
        self.X = as_features(X, "X", start.n_features)
        self.y = as_outputs(y, len(self.X), start.n_outputs, start.task)
        self.segments = as_segments(segments, len(self.X))
        self.sizes = self.segments.sizes
        self.dims, self.device, self.start = start.dims, device, start
        self.local = self.gpu = None  # the segment models (and their GPU copy), reused from round to round

    def fingerprints(self) -> dict:
        return {
            "X": fingerprint(self.X),
            "y": fingerprint(self.y),
            "segments": fingerprint(self.segments.order, self.segments.offsets),
        }

    def round(
        self, chosen, epochs, config, threads, start_epoch, start_row, fused_weights, download, snapshot_epoch=None
    ):
        n = len(chosen)
        part = self.segments if n == len(self.sizes) else Segments.from_indices([self.segments[i] for i in chosen])
        if self.local is None or self.local.n_models != n:
            self.local = self.start.like(np.zeros((n, start_row.shape[-1]), dtype=np.float32))
        self.local.diverged[:] = False
        if self.device == "cuda":
            if self.gpu is None:
                self.gpu = _core.CudaTrainer(list(self.dims), self.X, self.y)
            self.gpu.resize_models(n)
        fused = None if fused_weights is None else FusedMerge(fused_weights)
        history, merged = run_epochs(
            self.local,
            self.X,
            self.y,
            part,
            np.full(n, epochs),
            config,
            threads,
            start_epoch=start_epoch,
            start_row=start_row,
            fused=fused,
            gpu=self.gpu,
            download=download,
            snapshot_epoch=snapshot_epoch,
        )
        local, task, device = self.local, self.start.task, self.device

        def score_segments(X, y, threads):
            return add_part(None, local.dims, task, local.params, X, y, threads, device)

        return RoundTraining(history, None if merged is None else merged.total, lambda: local, score_segments)

    def losses(self, chosen, models, threads):
        task = self.start.task
        return segment_losses(self.dims, task, models, self.X, self.y, self.segments, chosen, threads)
