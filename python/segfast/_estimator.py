"""What SegmentClassifier and SegmentRegressor share: the error they raise before fit, and the
pipeline of their fit (hold out validation rows, cut the rest into segments, train the segment
models in rounds). What it is not: either estimator; each keeps its own targets, outputs,
ensemble and scikit-learn mixin."""

from __future__ import annotations

import numbers

import numpy as np

from .ensemble import NotFittedError
from .rounds import RoundsResult
from .rounds import rounds as run_rounds
from .segments import segment
from .stack import MLPStack

NOT_FITTED: type[NotFittedError]  # what predicting before fit raises
try:  # scikit-learn is optional: with it, its own NotFittedError catches this one too
    from sklearn.exceptions import NotFittedError as _SklearnNotFitted

    class _NotFitted(NotFittedError, _SklearnNotFitted):
        """Caught both as segfast's and as scikit-learn's NotFittedError."""

    NOT_FITTED = _NotFitted
except ImportError:  # pragma: no cover - exercised where scikit-learn is absent
    NOT_FITTED = NotFittedError


def train_segment_models(
    estimator, X: np.ndarray, y: np.ndarray, n_outputs: int, needs_val: bool, task: str, **train_options
) -> tuple[RoundsResult, np.ndarray]:
    """(the rounds' result, the held-out validation rows) for an estimator's parameters
    (n_segments, hidden, rounds, ...): a seeded ``validation_fraction`` of the rows is held out
    where ``needs_val`` (its ensemble learns from rows), the rest is segmented by ``y`` and
    trained on. ``train_options`` go to rounds() (device, loss, ...)."""
    rows = np.random.default_rng(estimator.seed).permutation(len(X))
    n_val = int(round(estimator.validation_fraction * len(X))) if needs_val else 0
    val_rows, train_rows = rows[:n_val], np.sort(rows[n_val:])
    if len(train_rows) < estimator.n_segments:
        raise ValueError(
            f"{len(train_rows)} training rows (n_samples = {len(X)}) cannot fill {estimator.n_segments} segments"
        )
    if needs_val and n_val < 1:
        raise ValueError(f"ensemble={estimator.ensemble!r} needs validation rows: raise validation_fraction")
    X_train, y_train = X[train_rows], y[train_rows]
    segs = segment(y_train, estimator.n_segments, estimator.scheme, alpha=estimator.alpha, seed=estimator.seed)
    hidden = [estimator.hidden] if isinstance(estimator.hidden, numbers.Integral) else list(estimator.hidden)
    start = MLPStack([X.shape[1], *hidden, n_outputs], 1, seed=estimator.seed, task=task)
    result = run_rounds(
        start,
        X_train,
        y_train,
        segs,
        rounds=estimator.rounds,
        local_epochs=estimator.local_epochs,
        merge=estimator.merge,
        seed=estimator.seed,
        n_jobs=estimator.n_jobs,
        progress=False,
        lr=estimator.lr,
        batch_size=estimator.batch_size,
        momentum=estimator.momentum,
        weight_decay=estimator.weight_decay,
        **train_options,
    )
    return result, val_rows
