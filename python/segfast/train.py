"""train(): minibatch SGD of every model of a stack on its own segment, one C++ call an epoch."""
from __future__ import annotations

import math
import numbers
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from . import _core, _device
from ._progress import Progress
from ._threads import resolve_n_jobs
from ._validate import as_features, as_labels, finite_float, positive_int
from .segments import as_segments
from .stack import MLPStack


@dataclass
class History:
    """What train() saw. ``loss[e, i]``: model i's mean training loss in epoch e (NaN when the
    model did not train that epoch); ``diverged[i]``: its loss became NaN or inf."""

    loss: np.ndarray                      # (epochs, N)
    diverged: np.ndarray                  # (N,) bool
    epochs: np.ndarray                    # (N,) epochs each model finished
    seconds: list = field(default_factory=list)  # wall time of each epoch
    merged_sum: np.ndarray = None  # (P,) with _train_loop(merge_weights=...): the fused merge's sum
    merge_pieces: list = None  # with _train_loop(merge_pieces=True): [(position, (P,) float64 sum)]

    def __repr__(self) -> str:  # the arrays are (epochs, models): a summary, not a dump
        last = self.loss[-1] if len(self.loss) else np.array([np.nan])
        mean = f"{np.nanmean(last):.4f}" if np.isfinite(last).any() else "nan"
        return (f"History(epochs={self.loss.shape[0]}, models={self.loss.shape[1]}, mean loss in the last "
                f"epoch {mean}, diverged={int(self.diverged.sum())}, seconds={sum(self.seconds):.3f})")

    @property
    def final_loss(self) -> np.ndarray:
        """Each model's mean loss in the last epoch it trained, (N,)."""
        seen = ~np.isnan(self.loss)  # (epochs, N); vectorised: a Python loop over 1,000 models cost 9 ms a round
        if not seen.size:
            return np.full(self.loss.shape[1], np.nan)
        last = self.loss.shape[0] - 1 - np.argmax(seen[::-1], axis=0)  # each model's last trained epoch
        out = self.loss[last, np.arange(self.loss.shape[1])]
        return np.where(seen.any(axis=0), out, np.nan)


MAX_EPOCHS = 10**6  # a call's epochs (and a round's): more is a mistyped count, or one that wraps int64


def _epochs_per_model(epochs, n_models: int) -> np.ndarray:
    if isinstance(epochs, numbers.Integral) and not isinstance(epochs, bool):
        if not 0 <= epochs <= MAX_EPOCHS:
            raise ValueError(f"epochs must be >= 0 and <= {MAX_EPOCHS}, got {epochs!r}")
        epochs = np.full(n_models, int(epochs))
    else:
        epochs = np.asarray(epochs)
        if epochs.dtype == bool or not np.issubdtype(epochs.dtype, np.integer) or epochs.shape != (n_models,):
            raise ValueError(f"epochs must be an int or {n_models} ints (one per model), got {epochs!r}")
    if (epochs < 0).any() or (epochs > MAX_EPOCHS).any():
        raise ValueError(f"epochs must be >= 0 and <= {MAX_EPOCHS}, got values from {epochs.min()} to "
                         f"{epochs.max()}")
    return epochs.astype(np.int64)


def _flip_width(augment, n_features: int) -> int:
    if augment is None:
        return 0
    if augment != "hflip":
        raise ValueError(f"augment must be None or 'hflip', got {augment!r}")
    side = math.isqrt(n_features)
    if side * side != n_features:
        raise ValueError(f"augment='hflip' needs square images, but {n_features} features is not a square")
    return side


def train(stack: MLPStack, X, y, segments, epochs=1, batch_size: int = 32, lr: float = 0.05,
          momentum: float = 0.0, weight_decay: float = 0.0, seed: int = 0, augment=None,
          n_jobs: int = -1, progress: bool = False, proximal_mu: float = 0.0, start_epoch: int = 0,
          device: str = "cpu") -> History:
    """Train every model of ``stack`` in place, model i on rows ``segments[i]`` of (X, y).

    Softmax cross-entropy, minibatch SGD (PyTorch's rule: ``v = momentum*v + g + wd*w;
    w -= lr*v``), each segment reshuffled every epoch by a random stream keyed by
    (seed, model, epoch): the result is bit-identical whatever ``n_jobs`` is.
    ``epochs`` may be one number per model. ``augment="hflip"`` flips square images
    left-right with probability 1/2. A model whose loss turns NaN/inf goes back to the end of
    its last finished epoch, stops training, is marked in ``history.diverged`` and ``stack.diverged``, and a
    RuntimeWarning names it. Ctrl-C is honoured between epochs, leaving every model at the
    end of its last finished epoch.

    ``proximal_mu > 0`` adds FedProx's proximal term ``mu/2 |w - w_start|^2`` to every model's
    loss, w_start being the model's parameters when this call began (in the fused C++ update).
    ``start_epoch`` offsets the epoch numbers that key the random streams, so that successive
    calls (rounds of federated training) draw fresh minibatch orders.

    ``device="cuda"`` trains on the GPU: X and y are copied there once, the parameters stay
    there until the last epoch, and every step serves all models in a few batched launches.
    The shuffles come from the same random streams as on the CPU, so both devices take the
    same minibatches; results agree to float32 rounding (sums run in a different order).
    """
    if not isinstance(stack, MLPStack):
        raise TypeError(f"stack must be a segfast.MLPStack, got {type(stack).__name__}")
    X = as_features(X, "X", stack.n_features)
    y = as_labels(y, len(X), stack.n_classes)
    segments = as_segments(segments, len(X), stack.n_models)
    per_model = _epochs_per_model(epochs, stack.n_models)
    batch_size = positive_int(batch_size, "batch_size")
    lr = finite_float(lr, "lr", minimum=0.0)
    momentum = finite_float(momentum, "momentum", minimum=0.0)
    weight_decay = finite_float(weight_decay, "weight_decay", minimum=0.0)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**64:
        raise ValueError(f"seed must be an integer in [0, 2**64), got {seed!r}")
    flip = _flip_width(augment, stack.n_features)
    threads = resolve_n_jobs(n_jobs)
    proximal_mu = finite_float(proximal_mu, "proximal_mu", minimum=0.0)
    # epoch numbers are int64 in the random streams' keys: room for any number of epochs after it
    if isinstance(start_epoch, bool) or not isinstance(start_epoch, numbers.Integral) or not 0 <= start_epoch < 2**62:
        raise ValueError(f"start_epoch must be an integer in [0, 2**62), got {start_epoch!r}")
    gpu = None
    if _device.check_device(device) == "cuda":
        gpu = _core.CudaTrainer(list(stack.dims), X, y)
        gpu.set_models(stack.params)

    return _train_loop(stack, X, y, segments, per_model, batch_size, lr, momentum, weight_decay, seed, flip,
                       threads, progress, proximal_mu, start_epoch, gpu=gpu)


def _train_loop(stack, X, y, segments, per_model, batch_size, lr, momentum, weight_decay, seed, flip, threads,
                progress, proximal_mu=0.0, start_epoch=0, start_row=None, merge_weights=None,
                first_model=0, gpu=None, download=True, merge_block=0, merge_first=0,
                merge_pieces=False) -> History:
    """train() after its checks (rounds() calls it directly with inputs it checked once).
    start_row: a parameter row every model is reset to at the start, written by the C++ epoch
    itself (the broadcast of a round, fused). merge_weights: (N,) weights of a merge fused into
    the last epoch; history.merged_sum gets sum_i w_i * params_i over the models that did not
    diverge (the caller divides by their total weight). merge_block, merge_first, merge_pieces:
    the fused merge's blocks and position (cpp/train.h), and its pieces, which a caller training
    a stack in parts adds in order to get the whole call's sum exactly (history.merge_pieces,
    each with the position of its first model). gpu: a _core.CudaTrainer holding X, y and the
    models; the parameters come back into stack.params at the end when download is set."""
    n_epochs = int(per_model.max(initial=0))
    dims = list(stack.dims)
    if gpu is None:
        velocity = np.zeros_like(stack.params) if momentum > 0 else None
        if proximal_mu > 0:
            anchor = (np.repeat(start_row[None], stack.n_models, axis=0) if start_row is not None
                      else stack.params.copy())
        else:
            anchor = None

        def run_epoch(active, epoch, start, fuse):
            return _core.train_epoch(dims, stack.params, velocity, anchor, proximal_mu, X, y, segments.order,
                                     segments.offsets, active, epoch, seed, batch_size, lr, momentum, weight_decay,
                                     flip, threads, start, fuse, first_model, merge_block, merge_first,
                                     merge_pieces and fuse is not None)
    else:
        if merge_pieces or merge_block:
            raise ValueError("merge pieces are a CPU feature (segfast.distributed); not with a GPU")
        if proximal_mu > 0:
            gpu.set_anchor(start_row)  # None: the models' parameters as this call begins

        def run_epoch(active, epoch, start, fuse):
            return gpu.epoch(segments.order, segments.offsets, active, epoch, seed, batch_size, lr, momentum,
                             weight_decay, proximal_mu, flip, first_model, threads, start, fuse)
    history = History(loss=np.full((n_epochs, stack.n_models), np.nan),
                      diverged=np.zeros(stack.n_models, dtype=bool),
                      epochs=np.zeros(stack.n_models, dtype=np.int64))
    bar = Progress(n_epochs, "train", enabled=progress)
    try:
        for e in range(n_epochs):
            active = ((per_model > e) & ~history.diverged & ~stack.diverged).astype(np.uint8)
            start = time.perf_counter()
            fuse = merge_weights if e == n_epochs - 1 else None
            loss, diverged, *merged = run_epoch(active, np.full(stack.n_models, start_epoch + e, dtype=np.int64),
                                                start_row if e == 0 else None, fuse)
            if merged:
                history.merged_sum = merged[0]
            if len(merged) == 2:
                bounds = _core.merge_pieces(stack.n_models, merge_block, merge_first)
                history.merge_pieces = [(merge_first + a, row) for (a, _), row in zip(bounds, merged[1])]
            history.seconds.append(time.perf_counter() - start)
            history.loss[e] = loss
            history.epochs += (active.astype(bool) & ~diverged)
            if diverged.any():
                history.diverged |= diverged
                stack.diverged |= diverged
                names = ", ".join(str(i) for i in np.flatnonzero(diverged))
                warnings.warn(f"model(s) {names} diverged in epoch {e + 1} (loss became NaN or inf); they keep "
                              f"their parameters from the end of their last finished epoch and are marked in stack.diverged. Try a smaller lr.",
                              RuntimeWarning, stacklevel=2)
            bar.advance(f"loss {np.nanmean(loss):.4f}" if np.isfinite(loss).any() else "")
    finally:  # also on Ctrl-C: the models as they were at the end of the last finished epoch
        if gpu is not None and download:
            gpu.get_models(stack.params)
    return history
