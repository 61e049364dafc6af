"""train(): minibatch SGD of every model of a stack on its own segment, one C++ call an epoch."""

from __future__ import annotations

from . import _core, _device
from ._epochs import History, TrainConfig, run_epochs
from ._threads import resolve_n_jobs
from ._validate import as_features, as_outputs, check_stack, epochs_per_model
from ._validate import start_epoch as checked_start_epoch
from .segments import as_segments
from .stack import MLPStack

__all__ = ["History", "train"]


def train(
    stack: MLPStack,
    X,
    y,
    segments,
    *,
    epochs=1,
    batch_size: int = 32,
    lr: float = 0.05,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    seed: int = 0,
    augment=None,
    n_jobs: int = -1,
    progress: bool = False,
    proximal_mu: float = 0.0,
    start_epoch: int = 0,
    device: str = "cpu",
    loss: str | None = None,
    huber_delta: float = 1.0,
) -> History:
    """Train every model of ``stack`` in place, model i on rows ``segments[i]`` of (X, y).

    Softmax cross-entropy for a classification stack; for a regression stack
    (``task="regression"``) ``loss="mse"`` (the default) or ``"huber"`` (quadratic within
    ``huber_delta``, linear beyond), each averaged over the k outputs, with y float targets of
    shape (n,) or (n, k). Minibatch SGD (PyTorch's rule: ``v = momentum*v + g + wd*w;
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
    check_stack(stack)
    X = as_features(X, "X", stack.n_features)
    y = as_outputs(y, len(X), stack.n_outputs, stack.task)
    segments = as_segments(segments, len(X), stack.n_models)
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
    threads = resolve_n_jobs(n_jobs)
    start_epoch = checked_start_epoch(start_epoch)
    gpu = None
    if _device.check_device(device, stack.task) == "cuda":
        gpu = _core.CudaTrainer(list(stack.dims), X, y)
        gpu.set_models(stack.params)
    return run_epochs(
        stack, X, y, segments, per_model, config, threads, progress=progress, start_epoch=start_epoch, gpu=gpu
    )[0]
