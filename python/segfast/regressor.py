"""SegmentRegressor: the whole pipeline (segment, train in rounds, merge or ensemble) as a
scikit-learn regressor, SegmentClassifier's counterpart for float targets."""

from __future__ import annotations

import numpy as np

from ._estimator import NOT_FITTED, train_segment_models
from ._params import ParamsMixin
from ._validate import as_features, as_targets
from .ensemble import Ensemble
from .predict import predict, r2_scores
from .regression_ensemble import METHODS, learns_from_rows
from .tabular import _standardiser  # a constant column keeps scale 1, even when its std is 1e-17

_BASES: tuple[type, ...]  # SegmentRegressor's: scikit-learn's mixins where it is installed
try:  # scikit-learn is optional: with it, the estimator gets its mixins (tags, clone, score)
    from sklearn.base import BaseEstimator as _Base
    from sklearn.base import RegressorMixin as _Regressor

    _BASES = (_Regressor, _Base)
except ImportError:  # pragma: no cover - exercised where scikit-learn is absent

    class _Params(ParamsMixin):
        def score(self, X, y):
            """R^2, the mean over targets, as scikit-learn's RegressorMixin scores."""
            X = as_features(X, "X", self.n_features_in_, who="SegmentRegressor")
            y = as_targets(y, len(X), self.n_targets_)
            error = self.predict(X).reshape(y.shape) - y
            return float(r2_scores((error**2).sum(axis=0)[None, :], y)[0])

    _BASES = (_Params,)


def _numbers(y) -> np.ndarray:
    """y as an array, numbers stored as objects (a pandas column) converted as X's are."""
    y = np.asarray(y)
    if y.dtype == object:
        try:
            return y.astype(np.float64)
        except (TypeError, ValueError):
            raise TypeError("y must hold real numbers (regression targets); it holds other objects") from None
    return y


class SegmentRegressor(*_BASES):  # type: ignore[misc]  # bases chosen at import
    """Cut the training rows into ``n_segments`` segments, train one MLP per segment (in
    ``rounds`` rounds of local training and merging from a shared start), then predict with the
    merged model (``combine="merge"``) or an ensemble of the segment models
    (``combine="ensemble"``, a method of segfast.regression_ensemble: ``ensemble``). y: float
    targets, (n,) or (n, k); predictions have y's shape. X and y are standardised on the rows
    given to fit (an MLP trained by SGD needs targets near unit scale) and predictions are mapped
    back. Methods that learn from validation rows (weighted, stacking, competence) use a seeded
    ``validation_fraction`` of the rows, held out from the segments. ``loss`` is "mse" or "huber"
    (``huber_delta`` in standard deviations of the target). Runs on the CPU.
    """

    def __init__(
        self,
        *,
        n_segments=10,
        hidden=(128,),
        combine="merge",
        rounds=1,
        local_epochs=5,
        scheme="iid",
        alpha=0.5,
        merge="uniform",
        ensemble="mean",
        lr=0.05,
        batch_size=32,
        momentum=0.0,
        weight_decay=0.0,
        loss="mse",
        huber_delta=1.0,
        validation_fraction=0.1,
        seed=0,
        n_jobs=-1,
    ):
        self.n_segments = n_segments
        self.hidden = hidden
        self.combine = combine
        self.rounds = rounds
        self.local_epochs = local_epochs
        self.scheme = scheme
        self.alpha = alpha
        self.merge = merge
        self.ensemble = ensemble
        self.lr = lr
        self.batch_size = batch_size
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.loss = loss
        self.huber_delta = huber_delta
        self.validation_fraction = validation_fraction
        self.seed = seed
        self.n_jobs = n_jobs

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # y (n, k): one network with k outputs
        return tags

    def fit(self, X, y):
        if self.combine not in ("merge", "ensemble"):
            raise ValueError(f"combine must be 'merge' or 'ensemble', got {self.combine!r}")
        if self.combine == "ensemble" and self.ensemble not in METHODS:  # before training, not after
            raise ValueError(f"ensemble must be one of {', '.join(METHODS)}, got {self.ensemble!r}")
        if y is None:
            raise ValueError("SegmentRegressor requires y to be passed, but the target y is None")
        X = self._features(X, None)
        y = _numbers(y)
        n_targets = y.shape[1] if y.ndim == 2 and y.shape[1] > 0 else 1
        as_targets(y, len(X), n_targets, "y")  # the checks; the values stay float64 below
        self.n_features_in_ = X.shape[1]
        self.n_targets_ = n_targets
        self._y_is_2d = y.ndim == 2  # predict gives y's shape: (n, 1) stays (n, 1)
        y = y.astype(np.float64).reshape(len(X), n_targets)
        self.X_mean_, self.X_scale_ = _standardiser(X)
        self.y_mean_, self.y_scale_ = _standardiser(y)
        X = self._scaled(X)
        z = ((y - self.y_mean_) / self.y_scale_).astype(np.float32)
        needs_val = self.combine == "ensemble" and learns_from_rows(self.ensemble)
        result, val_rows = train_segment_models(
            self, X, z, n_targets, needs_val, "regression", loss=self.loss, huber_delta=self.huber_delta
        )
        self.model_ = result.global_model
        self.segment_models_ = result.local_models
        if self.combine == "ensemble":
            ens = Ensemble(self.segment_models_, self.ensemble, n_jobs=self.n_jobs)
            ens.set_params(k=min(ens.k, max(len(val_rows), 1)))  # competence's neighbours: as many as there are
            self.ensemble_ = ens.fit(X[val_rows], z[val_rows]) if needs_val else ens
        return self

    @staticmethod
    def _features(X, n_features: int | None) -> np.ndarray:
        """X checked as every entry point checks it, in float64: standardising before the cast
        to float32 keeps what float32 would round away (a timestamp near 1.7e9 to 128 s)."""
        as_features(X, "X", n_features, who="SegmentRegressor")
        return np.asarray(X, dtype=np.float64)

    def _scaled(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.X_mean_) / self.X_scale_).astype(np.float32)

    def predict(self, X) -> np.ndarray:
        """(n,) float64 values where fit's y was 1-D, else (n, k)."""
        if not hasattr(self, "model_"):
            raise NOT_FITTED("this SegmentRegressor is not fitted yet: call fit(X, y) first")
        X = self._scaled(self._features(X, self.n_features_in_))
        z = self.ensemble_.predict(X) if self.combine == "ensemble" else predict(self.model_, X, n_jobs=self.n_jobs)[0]
        values = z.reshape(len(X), self.n_targets_) * self.y_scale_ + self.y_mean_
        return values if self._y_is_2d else values[:, 0]
