"""Checks shared by every entry point: each names the argument and the problem."""
from __future__ import annotations

import numbers

import numpy as np

from . import _core


def as_features(X, name: str = "X", n_features: int | None = None) -> np.ndarray:
    """Return X as a C-contiguous float32 2-D array (a copy only when needed)."""
    X = np.asarray(X)
    if X.dtype == object or not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)):
        raise TypeError(f"{name} must be a numeric array, got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows, features), got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"{name} has no rows")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{name} has {X.shape[1]} features but the models take {n_features}")
    X = np.ascontiguousarray(X, dtype=np.float32)
    first = _core.first_non_finite(X)
    if first >= 0:
        bad = int(np.count_nonzero(~np.isfinite(X)))
        row, col = divmod(first, X.shape[1])
        raise ValueError(f"{name} holds {bad} NaN or infinite values (the first at row {row}, column {col})")
    return X


def as_labels(y, n_rows: int, n_classes: int, name: str = "y") -> np.ndarray:
    """Return y as a C-contiguous int64 1-D array of labels in [0, n_classes)."""
    y = np.asarray(y)
    if y.dtype == bool or not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {y.shape}")
    if len(y) != n_rows:
        raise ValueError(f"{name} has {len(y)} labels but X has {n_rows} rows")
    y = np.ascontiguousarray(y, dtype=np.int64)
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        lo, hi = int(y.min()), int(y.max())
        raise ValueError(f"{name} holds labels in [{lo}, {hi}] but the models have {n_classes} classes "
                         f"(labels must be in [0, {n_classes - 1}])")
    return y


def positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def finite_float(value, name: str, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return float(value)
