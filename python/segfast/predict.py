"""Every model of a stack on the same rows, in one C++ call."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _core
from ._threads import resolve_n_jobs
from ._validate import as_features, as_labels
from .stack import MLPStack


class Evaluation(NamedTuple):
    loss: np.ndarray      # (N,) mean cross-entropy
    accuracy: np.ndarray  # (N,) share of rows predicted right


def _check_stack(stack) -> None:
    if not isinstance(stack, MLPStack):
        raise TypeError(f"stack must be a segfast.MLPStack, got {type(stack).__name__}")


def predict_proba(stack: MLPStack, X, n_jobs: int = -1) -> np.ndarray:
    """Class probabilities of every model on every row: (N, n_rows, n_classes) float32."""
    _check_stack(stack)
    X = as_features(X, "X", stack.n_features)
    return _core.predict_proba(list(stack.dims), stack.params, X, resolve_n_jobs(n_jobs))


def predict(stack: MLPStack, X, n_jobs: int = -1) -> np.ndarray:
    """Predicted class of every model on every row: (N, n_rows) int64."""
    return predict_proba(stack, X, n_jobs).argmax(axis=2)


def evaluate(stack: MLPStack, X, y, n_jobs: int = -1) -> Evaluation:
    """Mean cross-entropy and accuracy of every model on (X, y), without storing probabilities."""
    _check_stack(stack)
    X = as_features(X, "X", stack.n_features)
    y = as_labels(y, len(X), stack.n_classes)
    loss, accuracy = _core.evaluate(list(stack.dims), stack.params, X, y, resolve_n_jobs(n_jobs))
    return Evaluation(loss, accuracy)
