"""The training loop every entry point shares: train(), rounds(), segfast.distributed's tasks and
the CUDA path all check their settings into one TrainConfig and call run_epochs.

What it is not: argument checking of the data (the entry points do it once, at the boundary) or
the choice of where training runs (_engine.py).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from . import _core
from ._progress import progress_bar
from ._validate import finite_float, positive_int
from ._validate import seed as checked_seed


@dataclass
class History:
    """What train() saw. ``loss[e, i]``: model i's mean training loss in epoch e (NaN when the
    model did not train that epoch); ``diverged[i]``: its loss became NaN or inf."""

    loss: np.ndarray  # (epochs, N)
    diverged: np.ndarray  # (N,) bool
    epochs: np.ndarray  # (N,) epochs each model finished
    seconds: list = field(default_factory=list)  # wall time of each epoch
    # (N, P) the models as they were after run_epochs' snapshot_epoch epochs, when asked for
    snapshot: np.ndarray | None = None

    def __repr__(self) -> str:  # the arrays are (epochs, models): a summary, not a dump
        last = self.loss[-1] if len(self.loss) else np.array([np.nan])
        mean = f"{np.nanmean(last):.4f}" if np.isfinite(last).any() else "nan"
        return (
            f"History(epochs={self.loss.shape[0]}, models={self.loss.shape[1]}, mean loss in the last "
            f"epoch {mean}, diverged={int(self.diverged.sum())}, seconds={sum(self.seconds):.3f})"
        )

    @property
    def final_loss(self) -> np.ndarray:
        """Each model's mean loss in the last epoch it trained, (N,)."""
        seen = ~np.isnan(self.loss)  # (epochs, N); vectorised: a Python loop over models costs per round
        if not seen.size:
            return np.full(self.loss.shape[1], np.nan)
        last = self.loss.shape[0] - 1 - np.argmax(seen[::-1], axis=0)  # each model's last trained epoch
        out = self.loss[last, np.arange(self.loss.shape[1])]
        return np.where(seen.any(axis=0), out, np.nan)


@dataclass(frozen=True)
class TrainConfig:
    """Local SGD's settings, checked once (``TrainConfig.checked``). PyTorch's rule:
    ``v = momentum*v + g + weight_decay*w; w -= lr*v``, plus FedProx's ``proximal_mu`` pull
    towards the parameters a call starts from."""

    batch_size: int = 32
    lr: float = 0.05
    momentum: float = 0.0
    weight_decay: float = 0.0
    proximal_mu: float = 0.0
    seed: int = 0  # keys the shuffles' random streams, with (model, epoch)
    flip_width: int = 0  # augment="hflip": the side of the square images flipped left-right; 0: none
    loss: str = "cross_entropy"  # "mse" or "huber" for a regression stack
    huber_delta: float = 1.0

    @property
    def task(self) -> str:
        """The task of the stacks this trains (what a worker wraps its rows as)."""
        return "classification" if self.loss == "cross_entropy" else "regression"

    @classmethod
    def checked(
        cls,
        n_features: int,
        *,
        batch_size=32,
        lr=0.05,
        momentum=0.0,
        weight_decay=0.0,
        proximal_mu=0.0,
        seed=0,
        augment=None,
        task="classification",
        loss=None,
        huber_delta=1.0,
    ) -> TrainConfig:
        loss = checked_loss(loss, task)
        return cls(
            loss=loss,
            huber_delta=_huber_delta(huber_delta),
            batch_size=positive_int(batch_size, "batch_size"),
            lr=finite_float(lr, "lr", minimum=0.0),
            momentum=finite_float(momentum, "momentum", minimum=0.0),
            weight_decay=finite_float(weight_decay, "weight_decay", minimum=0.0),
            proximal_mu=finite_float(proximal_mu, "proximal_mu", minimum=0.0),
            seed=checked_seed(seed),
            flip_width=_flip_width(augment, n_features),
        )


REGRESSION_LOSSES = ("mse", "huber")


def _huber_delta(value) -> float:
    delta = finite_float(value, "huber_delta")
    if not np.float32(delta) > 0:  # the kernel's float: 1e-50 would be 0 there
        raise ValueError(f"huber_delta must be a number > 0 (as a float32), got {value!r}")
    return delta


def checked_loss(loss, task: str) -> str:
    """The loss a stack of this task trains with: softmax cross-entropy for classification (the
    only one), mean squared error (the default) or Huber for regression."""
    if task == "regression":
        if loss is None:
            return "mse"
        if loss not in REGRESSION_LOSSES:
            raise ValueError(f"loss must be 'mse' or 'huber' for a regression stack, got {loss!r}")
        return loss
    if loss not in (None, "cross_entropy"):
        raise ValueError(
            f"loss={loss!r} needs a regression stack (MLPStack(..., task='regression')); "
            "a classification stack trains with loss='cross_entropy'"
        )
    return "cross_entropy"


def _flip_width(augment, n_features: int) -> int:
    if augment is None:
        return 0
    if augment != "hflip":
        raise ValueError(f"augment must be None or 'hflip', got {augment!r}")
    side = math.isqrt(n_features)
    if side * side != n_features:
        raise ValueError(f"augment='hflip' needs square images, but {n_features} features is not a square")
    return side


@dataclass(frozen=True)
class FusedMerge:
    """A weighted sum of the models fused into the last epoch (each model added while its row is
    in cache). ``block``, ``first``: the sum's blocks and the position of this call's first model
    (cpp/train.h); ``pieces``: also return the blocks' partial sums, which a caller training a
    stack in parts (segfast.distributed) adds in order to get the whole call's sum exactly."""

    weights: np.ndarray  # (N,) float64
    block: int = 0
    first: int = 0
    pieces: bool = False


@dataclass
class MergedSum:
    """What a FusedMerge returns: ``total`` = sum_i w_i * params_i over the models that did not
    diverge (the caller divides by their total weight), and with ``pieces`` the blocks' partial
    sums as [(position of the block's first model, (P,) float64)]."""

    total: np.ndarray  # (P,) float64
    pieces: list | None = None


def run_epochs(
    stack,
    X,
    y,
    segments,
    per_model: np.ndarray,
    config: TrainConfig,
    threads: int,
    *,
    progress: bool = False,
    start_epoch: int = 0,
    start_row=None,
    first_model: int = 0,
    fused: FusedMerge | None = None,
    gpu=None,
    download: bool = True,
    snapshot_epoch: int | None = None,
) -> tuple[History, MergedSum | None]:
    """Train ``stack`` in place on checked inputs: model i ``per_model[i]`` epochs on rows
    ``segments[i]``. start_row: a (P,) row every model is reset to first, written by the C++
    epoch itself (a round's broadcast, fused), or (n_models, P), one row each. first_model: the
    global index of model 0, which keys its random streams. gpu: a _core.CudaTrainer holding X, y and the models; their
    parameters come back into stack.params at the end when ``download`` is set. snapshot_epoch=E:
    history.snapshot keeps a copy of the models after their first E epochs (personalisation:
    the global model after E local epochs, from the same call). Ctrl-C is
    honoured between epochs, leaving every model at the end of its last finished epoch."""
    n_epochs = int(per_model.max(initial=0))
    dims = list(stack.dims)
    if start_row is not None and start_row.ndim == 2:  # a start per model (clustered rounds)
        if gpu is not None:
            raise ValueError("a start row per model is a CPU feature (clustered rounds); not with a GPU")
        stack.params[:] = start_row  # one copy here: the fused broadcast takes one row only
        start_row = None
    if gpu is None:
        velocity = np.zeros_like(stack.params) if config.momentum > 0 else None
        if config.proximal_mu > 0:
            anchor = (
                np.repeat(start_row[None], stack.n_models, axis=0) if start_row is not None else stack.params.copy()
            )
        else:
            anchor = None

        def run_epoch(active, epoch, start, weights):
            c = config
            settings = _core.EpochSettings(
                batch_size=c.batch_size,
                lr=c.lr,
                momentum=c.momentum,
                weight_decay=c.weight_decay,
                proximal_mu=c.proximal_mu,
                seed=c.seed,
                flip_width=c.flip_width,
                n_jobs=threads,
                first_model=first_model,
                merge_block=fused.block if fused else 0,
                merge_first=fused.first if fused else 0,
                merge_pieces=bool(fused and fused.pieces and weights is not None),
                loss=c.loss,
                huber_delta=c.huber_delta,
            )
            return _core.train_epoch(
                dims,
                stack.params,
                velocity,
                anchor,
                X,
                y,
                segments.order,
                segments.offsets,
                active,
                epoch,
                settings,
                start=start,
                merge_weights=weights,
            )
    else:
        if fused is not None and (fused.pieces or fused.block):
            raise ValueError("merge pieces are a CPU feature (segfast.distributed); not with a GPU")
        if config.proximal_mu > 0:
            gpu.set_anchor(start_row)  # None: the models' parameters as this call begins

        def run_epoch(active, epoch, start, weights):
            c = config
            return gpu.epoch(
                segments.order,
                segments.offsets,
                active,
                epoch,
                c.seed,
                c.batch_size,
                c.lr,
                c.momentum,
                c.weight_decay,
                c.proximal_mu,
                c.flip_width,
                first_model,
                threads,
                start,
                weights,
            )

    history = History(
        loss=np.full((n_epochs, stack.n_models), np.nan),
        diverged=np.zeros(stack.n_models, dtype=bool),
        epochs=np.zeros(stack.n_models, dtype=np.int64),
    )
    merged = None
    bar = progress_bar(n_epochs, "train", "epoch", enabled=progress)
    try:
        for e in range(n_epochs):
            active = ((per_model > e) & ~history.diverged & ~stack.diverged).astype(np.uint8)
            start = time.perf_counter()
            weights = fused.weights if fused is not None and e == n_epochs - 1 else None
            loss, diverged, *sums = run_epoch(
                active, np.full(stack.n_models, start_epoch + e, dtype=np.int64), start_row if e == 0 else None, weights
            )
            if sums:
                merged = MergedSum(sums[0])
            if len(sums) == 2:  # pieces: asked for by a FusedMerge, with the total
                assert fused is not None and merged is not None
                bounds = _core.merge_pieces(stack.n_models, fused.block, fused.first)
                merged.pieces = [(fused.first + a, row) for (a, _), row in zip(bounds, sums[1])]
            history.seconds.append(time.perf_counter() - start)
            history.loss[e] = loss
            history.epochs += active.astype(bool) & ~diverged
            if diverged.any():
                history.diverged |= diverged
                stack.diverged |= diverged
                names = ", ".join(str(i) for i in np.flatnonzero(diverged))
                warnings.warn(
                    f"model(s) {names} diverged in epoch {e + 1} (loss became NaN or inf); they keep "
                    "their parameters from the end of their last finished epoch and are marked in "
                    "stack.diverged. Try a smaller lr.",
                    RuntimeWarning,
                    stacklevel=2,
                )
            if snapshot_epoch == e + 1:
                history.snapshot = stack.params.copy() if gpu is None else np.empty_like(stack.params)
                if gpu is not None:
                    gpu.get_models(history.snapshot)
            if np.isfinite(loss).any():
                bar.set_postfix_str(f"train loss {np.nanmean(loss):.4f}", refresh=False)
            bar.update()
    finally:  # also on Ctrl-C: the models as they were at the end of the last finished epoch
        bar.close()
        if gpu is not None and download:
            gpu.get_models(stack.params)
    return history, merged
