"""Train / validation / test holdout by position, returning views of the caller's arrays.

What it is for: the fixed holdout convention of segfast (the last rows are held out), so that
runs are comparable and no data is copied. What it is not: a shuffler or a stratified splitter;
shuffle the rows first if the data is sorted (by class, by time, ...).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._validate import integer
from .datasets import Dataset

__all__ = ["Split", "holdout"]


class Split(NamedTuple):
    X_train: np.ndarray  # (n_train, d)
    y_train: np.ndarray  # (n_train,)
    X_val: np.ndarray  # (n_val, d), possibly (0, d)
    y_val: np.ndarray  # (n_val,)
    X_test: np.ndarray  # (n_test, d), possibly (0, d)
    y_test: np.ndarray  # (n_test,)

    @property
    def train(self) -> tuple[np.ndarray, np.ndarray]:
        return self.X_train, self.y_train

    @property
    def val(self) -> tuple[np.ndarray, np.ndarray]:
        return self.X_val, self.y_val

    @property
    def test(self) -> tuple[np.ndarray, np.ndarray]:
        return self.X_test, self.y_test


def _check_xy(X, y):
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_rows, n_features), got shape {X.shape}")
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D (n_rows,), got shape {y.shape}")
    if len(X) != len(y):
        raise ValueError(f"X and y differ in length: len(X) = {len(X)}, len(y) = {len(y)}")
    return X, y


def holdout(X, y=None, val: int = 5000, test: int = 5000) -> Split:
    """Split rows by position: ``[train | val | test]``; every part is a view, nothing is copied.

    Arrays: the last `test` rows are the test set, the `val` rows before them the validation
    set, the rest the training set. No shuffling: shuffle first if the rows are sorted.

    A `Dataset`: pass it as X with y=None. If it has an official test split, that split is the
    test set (`test` is ignored) and the last `val` training rows are the validation set;
    otherwise its training rows are split as arrays are.

    `val` and `test` may be 0 (empty (0, d) parts); at least one row must be left to train on.
    """
    if isinstance(X, Dataset):
        if y is not None:
            raise ValueError("y must be None when X is a Dataset (its labels are used)")
        ds = X
        X, y = _check_xy(ds.X_train, ds.y_train)
        if ds.X_test is not None:
            X_test, y_test = _check_xy(ds.X_test, ds.y_test)
            val = integer(val, "val", minimum=0)
            n_train = len(X) - val
            if n_train <= 0:
                raise ValueError(f"val = {val} leaves no training rows: {ds.name} has {len(X)} training rows")
            return Split(X[:n_train], y[:n_train], X[n_train:], y[n_train:], X_test, y_test)
    elif y is None:
        raise ValueError("y is required when X is an array")

    X, y = _check_xy(X, y)
    val = integer(val, "val", minimum=0)
    test = integer(test, "test", minimum=0)
    n = len(X)
    n_train = n - val - test
    if n_train <= 0:
        raise ValueError(f"val + test = {val} + {test} = {val + test} leaves no training rows out of n = {n}")
    a, b = n_train, n_train + val
    return Split(X[:a], y[:a], X[a:b], y[a:b], X[b:], y[b:])
