"""Checks shared by every entry point: each names the argument and the problem."""
from __future__ import annotations

import numbers

import numpy as np

from . import _core


def as_features(X, name: str = "X", n_features: int | None = None, who: str = "the stack") -> np.ndarray:
    """Return X as a C-contiguous float32 2-D array (a copy only when needed).

    The messages follow scikit-learn's wording where it has one, so that estimators built on
    segfast pass its estimator checks."""
    if hasattr(X, "toarray") or type(X).__module__.startswith("scipy.sparse"):
        raise TypeError(f"{name} is a sparse matrix: sparse input is not supported; pass {name}.toarray()")
    X = np.asarray(X)
    if np.iscomplexobj(X):
        raise ValueError(f"{name} holds complex numbers: Complex data not supported")
    if X.dtype == object:
        X = X.astype(np.float64)  # numbers stored as objects convert; anything else raises TypeError
    if not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer) or X.dtype == bool):
        raise TypeError(f"{name} must be a numeric array, got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows, features), got shape {X.shape}. Reshape your data: "
                         f"{name}.reshape(-1, 1) for one feature, {name}.reshape(1, -1) for one row")
    if X.shape[0] == 0:
        raise ValueError(f"{name} has no rows: Found array with 0 sample(s) (shape={X.shape})")
    if X.shape[1] == 0:
        raise ValueError(f"{name} has no features: Found array with 0 feature(s) (shape={X.shape}) while a "
                         "minimum of 1 is required.")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{name} has {X.shape[1]} features, but {who} is expecting {n_features} "
                         "features as input")
    X = np.ascontiguousarray(X, dtype=np.float32)
    first = _core.first_non_finite(X)
    if first >= 0:
        bad = int(np.count_nonzero(~np.isfinite(X)))
        row, col = divmod(first, X.shape[1])
        raise ValueError(f"{name} holds {bad} NaN or infinite values (the first at row {row}, column {col})")
    return X


def as_labels(y, n_rows: int, n_classes: int | None, name: str = "y") -> np.ndarray:
    """Return y as a C-contiguous int64 1-D array of labels in [0, n_classes) (n_classes None:
    any labels >= 0, where no model fixes the number of classes yet)."""
    y = np.asarray(y)
    if y.dtype == bool or not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {y.shape}")
    if len(y) != n_rows:
        raise ValueError(f"{name} has {len(y)} labels but X has {n_rows} rows")
    y = np.ascontiguousarray(y, dtype=np.int64)
    if n_classes is None:
        if len(y) and y.min() < 0:
            raise ValueError(f"{name} must hold labels >= 0, found {int(y.min())}")
    elif len(y) and (y.min() < 0 or y.max() >= n_classes):
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
