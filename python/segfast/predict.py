"""Every model of a stack on the same rows, in one C++ call."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _device
from ._threads import resolve_n_jobs
from ._validate import as_features, as_labels, check_stack
from .stack import MLPStack


class Evaluation(NamedTuple):
    loss: np.ndarray  # (N,) mean cross-entropy
    accuracy: np.ndarray  # (N,) share of rows predicted right


def predict_proba(stack: MLPStack, X, *, n_jobs: int = -1, device: str = "cpu") -> np.ndarray:
    """Class probabilities of every model on every row: (N, n_rows, n_classes) float32.
    device="cuda" runs the forward passes on the GPU (all models batched, rows in chunks)."""
    check_stack(stack)
    device = _device.check_device(device)
    X = as_features(X, "X", stack.n_features)
    return _device.predict_proba(stack.dims, stack.params, X, device, resolve_n_jobs(n_jobs))


def predict(stack: MLPStack, X, *, n_jobs: int = -1, device: str = "cpu") -> np.ndarray:
    """Predicted class of every model on every row: (N, n_rows) int64."""
    return predict_proba(stack, X, n_jobs=n_jobs, device=device).argmax(axis=2)


def evaluate(stack: MLPStack, X, y, *, n_jobs: int = -1, device: str = "cpu") -> Evaluation:
    """Mean cross-entropy and accuracy of every model on (X, y), without storing probabilities."""
    check_stack(stack)
    device = _device.check_device(device)
    X = as_features(X, "X", stack.n_features)
    y = as_labels(y, len(X), stack.n_classes)
    loss, accuracy = _device.evaluate(stack.dims, stack.params, X, y, device, resolve_n_jobs(n_jobs))
    return Evaluation(loss, accuracy)
