"""Every model of a stack on the same rows, in one C++ call."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _core, _device
from ._threads import resolve_n_jobs
from ._validate import as_features, as_labels, as_targets, check_stack
from .stack import MLPStack


class Evaluation(NamedTuple):
    loss: np.ndarray  # (N,) mean cross-entropy
    accuracy: np.ndarray  # (N,) share of rows predicted right


class RegressionEvaluation(NamedTuple):
    """A regression stack's scores, each (N,), averaged over the k targets as scikit-learn does."""

    loss: np.ndarray  # mean squared error (over rows and targets): what merges rank by
    rmse: np.ndarray  # sqrt(loss)
    mae: np.ndarray  # mean absolute error
    r2: np.ndarray  # coefficient of determination, the mean over targets


def r2_scores(sq_err: np.ndarray, y: np.ndarray) -> np.ndarray:
    """R^2 per model from its (N, k) summed squared errors and the (n, k) targets: the mean over
    targets of 1 - SSE/SST; a constant target scores 1 when predicted exactly, else 0 (as
    scikit-learn's r2_score does by default)."""
    y = y.astype(np.float64)
    total = ((y - y.mean(axis=0)) ** 2).sum(axis=0)  # (k,)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_target = np.where(total > 0, 1.0 - sq_err / total, np.where(sq_err == 0, 1.0, 0.0))
    return per_target.mean(axis=1)


def regression_scores(sq_err: np.ndarray, abs_err: np.ndarray, y: np.ndarray) -> RegressionEvaluation:
    """Scores from summed errors (N, k) against targets y (n, k)."""
    count = max(y.size, 1)
    mse = sq_err.sum(axis=1) / count
    return RegressionEvaluation(mse, np.sqrt(mse), abs_err.sum(axis=1) / count, r2_scores(sq_err, y))


def predict_proba(stack: MLPStack, X, *, n_jobs: int = -1, device: str = "cpu") -> np.ndarray:
    """Class probabilities of every model on every row: (N, n_rows, n_classes) float32.
    device="cuda" runs the forward passes on the GPU (all models batched, rows in chunks)."""
    check_stack(stack)
    if stack.is_regression:
        raise ValueError("predict_proba needs a classification stack; a regression stack's values come from predict()")
    device = _device.check_device(device)
    X = as_features(X, "X", stack.n_features)
    return _device.predict_proba(stack.dims, stack.params, X, device, resolve_n_jobs(n_jobs))


def predict(stack: MLPStack, X, *, n_jobs: int = -1, device: str = "cpu") -> np.ndarray:
    """Predicted class of every model on every row, (N, n_rows) int64; for a regression stack the
    predicted values, (N, n_rows) float32 for one target and (N, n_rows, k) for k."""
    check_stack(stack)
    if stack.is_regression:
        _device.check_device(device, stack.task)
        X = as_features(X, "X", stack.n_features)
        values = _core.predict_proba(list(stack.dims), stack.params, X, resolve_n_jobs(n_jobs), softmax=False)
        return values[:, :, 0] if stack.n_outputs == 1 else values
    return predict_proba(stack, X, n_jobs=n_jobs, device=device).argmax(axis=2)


def evaluate(stack: MLPStack, X, y, *, n_jobs: int = -1, device: str = "cpu"):
    """Mean cross-entropy and accuracy of every model on (X, y), without storing probabilities
    (an Evaluation); for a regression stack its MSE (``loss``), RMSE, MAE and R^2 against float
    targets y (a RegressionEvaluation), from one fused pass that stores no predictions."""
    check_stack(stack)
    device = _device.check_device(device, stack.task)
    X = as_features(X, "X", stack.n_features)
    if stack.is_regression:
        if len(X) == 0:  # an R^2 of no rows would read as a perfect 1.0
            raise ValueError("X has no rows: a regression stack's errors need at least one row to score")
        t = as_targets(y, len(X), stack.n_outputs)
        sq_err, abs_err = _core.regression_errors(list(stack.dims), stack.params, X, t, resolve_n_jobs(n_jobs))
        return regression_scores(sq_err, abs_err, t)
    y = as_labels(y, len(X), stack.n_classes)
    loss, accuracy = _device.evaluate(stack.dims, stack.params, X, y, device, resolve_n_jobs(n_jobs))
    return Evaluation(loss, accuracy)
