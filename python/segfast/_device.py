"""device="cpu", "cuda" or "auto": which engine runs the kernels, with a clear error when CUDA
can't. "auto" is the GPU where one is usable (a CUDA build and a visible GPU), else the CPU."""

from __future__ import annotations

import numpy as np

from . import _core

DEVICES = ("cpu", "cuda", "auto")


def check_device(device, task: str = "classification") -> str:
    """The device that will run: "cpu" or "cuda" ("auto" resolved), after checking that this
    build and this machine can use it. The CUDA kernels know softmax cross-entropy only, so a
    regression stack runs on the CPU ("auto" picks it)."""
    if not isinstance(device, str) or device not in DEVICES:
        raise ValueError(f"device must be 'cpu', 'cuda' or 'auto', got {device!r}")
    if task == "regression":
        if device == "cuda":
            raise ValueError("device='cuda' runs classification stacks only; a regression stack runs on device='cpu'")
        return "cpu"
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device == "cuda":
        if not _core.has_cuda:
            raise RuntimeError(
                "device='cuda' needs segfast built with CUDA, and this build has none: reinstall it on a "
                "machine where nvcc is on PATH (the default SEGFAST_CUDA=AUTO then builds the CUDA path), or "
                "require it with: pip install . -C cmake.define.SEGFAST_CUDA=ON"
            )
        reason = _core.cuda_unavailable_reason()
        if reason:
            raise RuntimeError(
                f"device='cuda': this build of segfast has CUDA, but this machine has no usable GPU ({reason})"
            )
    return device


def cuda_available() -> bool:
    """True when device='cuda' will run here: a CUDA build and a visible GPU."""
    return bool(_core.has_cuda) and not _core.cuda_unavailable_reason()


def evaluate(dims, params, X, y, device: str, threads: int):
    """(loss, accuracy) of every row of params on (X, y), on the given (checked) device."""
    device = check_device(device)
    if device == "cuda":
        return _core.cuda_evaluate(list(dims), params, X, y)
    return _core.evaluate(list(dims), params, X, y, threads)


def predict_proba(dims, params, X, device: str, threads: int):
    device = check_device(device)
    if device == "cuda":
        return _core.cuda_predict_proba(list(dims), params, X)
    return _core.predict_proba(list(dims), params, X, threads)


def evaluate_and_vote(dims, params, X, y, device: str, threads: int):
    """(loss, accuracy, summed probabilities) of every model on (X, y): on the CPU from one forward
    pass; on the GPU from its evaluate and predict passes."""
    if check_device(device) == "cpu":
        return _core.evaluate(list(dims), params, X, y, threads, with_vote=True)
    loss, accuracy = evaluate(dims, params, X, y, device, threads)
    return loss, accuracy, combine(dims, params, X, "proba", None, None, device, threads)


_COMBINE_MODES = ("proba", "votes", "log_proba")


def combine(
    dims, params, X, mode: str, model_weights, row_weights, device: str, threads: int, with_votes: bool = False
):
    """_core.combine on either device. On the GPU the forward passes (nearly all the work) run
    there, and the weighted sum over models of the (N, n, C) result is formed here."""
    device = check_device(device)
    if device == "cpu":
        return _core.combine(list(dims), params, X, mode, model_weights, row_weights, threads, with_votes=with_votes)
    if mode not in _COMBINE_MODES:
        raise ValueError(f"mode must be one of {_COMBINE_MODES}, got {mode!r}")
    scores = _core.cuda_predict_proba(list(dims), params, X, log=mode == "log_proba")  # (N, n, C)
    return combine_scores(scores, mode, model_weights, row_weights, with_votes)


def combine_scores(scores, mode: str, model_weights, row_weights, with_votes: bool = False):
    """What _core.combine computes, from every model's (log-)probabilities (N, n, C)."""
    n_models, n_rows, classes = scores.shape
    weight = np.ones((n_rows, n_models))
    if model_weights is not None:
        weight = weight * np.asarray(model_weights, dtype=np.float64)[None, :]
    if row_weights is not None:
        weight = weight * np.asarray(row_weights, dtype=np.float64).reshape(n_rows, n_models)
    votes = None
    if mode == "votes" or with_votes:
        top = scores.argmax(axis=2)  # (N, n)
        votes = np.zeros((n_rows, classes))
        np.add.at(votes, (np.arange(n_rows)[None, :], top), weight.T)
        votes = votes.astype(np.float32)
    out = votes if mode == "votes" else np.einsum("rm,mrc->rc", weight, scores.astype(np.float64)).astype(np.float32)
    return (out, votes) if with_votes else out
