"""SegmentClassifier: the whole pipeline (segment, train in rounds, merge or ensemble) as a
scikit-learn estimator, so segfast drops into pipelines and grid searches."""

from __future__ import annotations

import warnings

import numpy as np

from ._estimator import NOT_FITTED, train_segment_models
from ._params import ParamsMixin
from ._validate import as_features
from .ensemble import Ensemble, learns_from_rows
from .predict import predict_proba

_BASES: tuple[type, ...]  # SegmentClassifier's: scikit-learn's mixins where it is installed
try:  # scikit-learn is optional: with it, the estimator gets its mixins (tags, clone, score)
    from sklearn.base import BaseEstimator as _Base
    from sklearn.base import ClassifierMixin as _Classifier
    from sklearn.exceptions import DataConversionWarning as _DataConversionWarning

    _BASES = (_Classifier, _Base)
except ImportError:  # pragma: no cover - exercised where scikit-learn is absent
    _DataConversionWarning = UserWarning

    class _Params(ParamsMixin):
        def score(self, X, y):
            return float(np.mean(self.predict(X) == np.asarray(y)))

    _BASES = (_Params,)


class SegmentClassifier(*_BASES):  # type: ignore[misc]  # bases chosen at import
    """Cut the training rows into ``n_segments`` segments, train one MLP per segment (in
    ``rounds`` rounds of local training and merging from a shared start), then predict with
    the merged model (``combine="merge"``) or an ensemble of the segment models
    (``combine="ensemble"``, method ``ensemble``). Labels may be any values (``classes_``).
    Methods that learn from validation rows (stacking, competence, weighted) use a seeded
    ``validation_fraction`` of the training rows, held out from the segments. ``device="cuda"``
    trains and predicts on an NVIDIA GPU.
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
        ensemble="soft",
        lr=0.05,
        batch_size=32,
        momentum=0.0,
        weight_decay=0.0,
        validation_fraction=0.1,
        seed=0,
        n_jobs=-1,
        device="cpu",
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
        self.validation_fraction = validation_fraction
        self.seed = seed
        self.n_jobs = n_jobs
        self.device = device

    def fit(self, X, y):
        if self.combine not in ("merge", "ensemble"):
            raise ValueError(f"combine must be 'merge' or 'ensemble', got {self.combine!r}")
        if y is None:
            raise ValueError("SegmentClassifier requires y to be passed, but the target y is None")
        X = as_features(X, "X")
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            warnings.warn(
                "A column-vector y was passed when a 1d array was expected; raveling it",
                _DataConversionWarning,
                stacklevel=2,
            )
            y = y.ravel()
        if y.ndim != 1 or len(y) != len(X):
            raise ValueError(f"y must be 1-D with one label per row of X ({len(X)}), got shape {y.shape}")
        if np.issubdtype(y.dtype, np.floating) and not np.all(np.isfinite(y) & (y == np.round(y))):
            raise ValueError(
                "Unknown label type: continuous. SegmentClassifier is a classifier: y must hold "
                "class labels, not continuous values"
            )
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"SegmentClassifier needs at least 2 classes in y, got 1 class ({self.classes_[0]!r})")
        self.n_features_in_ = X.shape[1]
        needs_val = self.combine == "ensemble" and learns_from_rows(self.ensemble)
        result, val_rows = train_segment_models(
            self, X, y_idx, max(2, len(self.classes_)), needs_val, "classification", device=self.device
        )
        self.model_ = result.global_model
        self.segment_models_ = result.local_models
        if self.combine == "ensemble":
            ens = Ensemble(
                self.segment_models_, self.ensemble, tiebreak=self.model_, n_jobs=self.n_jobs, device=self.device
            )
            self.ensemble_ = ens.fit(X[val_rows], y_idx[val_rows]) if needs_val else ens
        return self

    def _check_fitted(self):
        if not hasattr(self, "model_"):
            raise NOT_FITTED("this SegmentClassifier is not fitted yet: call fit(X, y) first")

    def predict_proba(self, X) -> np.ndarray:
        self._check_fitted()
        X = as_features(X, "X", self.n_features_in_, who="SegmentClassifier")
        if self.combine == "ensemble":
            return self.ensemble_.predict_proba(X)
        return predict_proba(self.model_, X, n_jobs=self.n_jobs, device=self.device)[0]

    def predict(self, X) -> np.ndarray:
        self._check_fitted()
        if self.combine == "ensemble":
            X = as_features(X, "X", self.n_features_in_, who="SegmentClassifier")
            return self.classes_[self.ensemble_.predict(X)]
        return self.classes_[self.predict_proba(X).argmax(axis=1)]
