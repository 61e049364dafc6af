"""Ensemble: the segment models predict together instead of being merged.

Methods (scikit-learn conventions: ``fit(X_val, y_val)`` returns self; fitted attributes end in _):
  ``hard``        majority vote; ties go to the ``tiebreak`` model (usually the merged one), else to
                  the largest summed probability.
  ``soft``        mean of the probabilities.
  ``weighted``    probabilities weighted by validation accuracy (or by ``weights``).
  ``stacking``    a combiner learned on the validation rows (segfast.stacking): ``combiner="weights"``
                  (one weight per model on its log-probabilities, softmaxed) or
                  ``combiner="logistic"`` (multinomial logistic regression on all models'
                  log-probabilities side by side), both with an L2 penalty ``l2`` (default 1e-4),
                  fitted by L-BFGS. ``l2="auto"`` picks it from 1e-2 ... 1e-6 on the last fifth of
                  the validation rows, then refits on all of them (chosen value in ``l2_``).
  ``competence``  dynamic selection by local accuracy on the ``k`` nearest validation rows:
                  ``knora="union"`` (KNORA-U: each model votes once per neighbour it got right)
                  or ``knora="eliminate"`` (KNORA-E: only models right on every neighbour vote,
                  shrinking the neighbourhood until one is). ``region="train"`` judges each model on
                  the nearest rows of its own training segment instead (fit needs X_train,
                  y_train, segments).
Every forward pass is the core's batched C++ call; nothing loops over models in Python. What
each method learns and how it combines is one entry of the table of methods at the end of this file.
``device="cuda"`` runs the forward passes on the GPU; the weighted sums over models of their
outputs (and the neighbour search of ``competence``) stay on the host.
``method=None`` is ``soft`` here; ``Ensemble(stack)`` of a regression stack builds a
segfast.regression_ensemble.RegressionEnsemble (its methods and its ``include=``) instead.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from . import _core, _device, stacking
from ._params import ParamsMixin
from ._threads import resolve_n_jobs
from ._validate import as_features, as_labels, check_stack, finite_float, integer
from .predict import predict_proba as stack_proba
from .segments import as_segments
from .stack import MLPStack


class NotFittedError(ValueError, AttributeError):
    """predict() was called before fit() on an estimator that learns from data (the same bases
    as scikit-learn's NotFittedError; SegmentClassifier raises a subclass of both)."""


class Ensemble(ParamsMixin):
    # What this class combines and what None means for it; RegressionEnsemble sets its own.
    _TASK = "classification"
    _DEFAULT_METHOD = "soft"
    _DEFAULT_COMBINER = "logistic"
    _FITTED = "n_classes_"  # the attribute fit() sets: its absence means "not fitted"

    def __new__(cls, stack=None, *args, **kwargs):
        # One constructor for both tasks: a regression stack's models give values, not
        # probabilities, so its ensemble is a subclass with its own methods. Chosen here rather
        # than by a factory function so that Ensemble(stack, ...) stays the one entry point, and
        # clone() (which calls the subclass) and pickle (which calls __new__ with no arguments)
        # rebuild the class they were given.
        if cls is Ensemble and isinstance(stack, MLPStack) and stack.is_regression:
            from .regression_ensemble import RegressionEnsemble  # it imports this module

            cls = RegressionEnsemble
        return super().__new__(cls)

    def __init__(
        self,
        stack: MLPStack,
        method: str | None = None,
        *,
        tiebreak=None,
        include=None,
        weights=None,
        combiner: str | None = None,
        l2=1e-4,
        k: int = 20,
        knora: str = "union",
        region: str = "val",
        n_jobs: int = -1,
        device: str = "cpu",
    ):
        self.stack = stack
        self.method = method
        self.tiebreak = tiebreak
        self.include = include
        self.weights = weights
        self.combiner = combiner
        self.l2 = l2
        self.k = k
        self.knora = knora
        self.region = region
        self.n_jobs = n_jobs
        self.device = device
        self._check_method()  # a misspelt method fails here, not at the first predict

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.stack!r}, method={self._method()!r})"

    def _method(self) -> str:
        """The method that runs: ``method``, or this task's default where it is None."""
        return self._DEFAULT_METHOD if self.method is None else self.method

    def _combiner(self) -> str:
        return self._DEFAULT_COMBINER if self.combiner is None else self.combiner

    def _method_names(self) -> tuple[str, ...]:
        return METHODS

    def _learns(self) -> bool:
        return learns_from_rows(self._method(), self.weights)

    # scikit-learn sees a classifier (is_classifier, cross_val_score, clone) without `import
    # segfast` importing scikit-learn: the tags are built on first use, from its own mixins.
    _estimator_type = "classifier"  # scikit-learn before 1.6

    def __sklearn_tags__(self):
        from sklearn.base import BaseEstimator, ClassifierMixin

        class _Classifier(ClassifierMixin, BaseEstimator):
            pass

        return _Classifier().__sklearn_tags__()

    # -- checks ---------------------------------------------------------------------------------
    def _check_method(self) -> None:
        names = self._method_names()
        if not isinstance(self._method(), str) or self._method() not in names:
            raise ValueError(
                f"unknown ensemble method {self.method!r} for a {self._TASK} stack; choose one of {', '.join(names)}"
            )

    def _check(self) -> int:
        check_stack(self.stack)
        if self.stack.task != self._TASK:  # set_params(stack=...) can swap the task under the class
            raise ValueError(
                f"{type(self).__name__} combines {self._TASK} stacks, got a {self.stack.task} stack: "
                "Ensemble(stack, ...) builds the class for the stack's task"
            )
        self._check_method()
        self._check_task_options()
        if not (isinstance(self.l2, str) and self.l2 == "auto"):
            try:
                finite_float(self.l2, "l2", minimum=0)
            except ValueError:
                raise ValueError(f"l2 must be 'auto' or a finite number >= 0, got {self.l2!r}") from None
        integer(self.k, "k", minimum=1)
        return resolve_n_jobs(self.n_jobs)

    def _check_task_options(self) -> None:
        """The options whose meaning depends on the task (here: classification's)."""
        if self.tiebreak is not None:
            self._check_one_model(self.tiebreak, "tiebreak")
        if self.include is not None:
            raise ValueError(
                "include= adds a model to a regression ensemble; a classification ensemble takes the "
                "merged model as tiebreak="
            )
        if self._combiner() not in stacking.COMBINERS:
            raise ValueError(
                f"combiner must be {' or '.join(map(repr, stacking.COMBINERS))} for a classification stack, "
                f"got {self.combiner!r}"
            )
        if self.knora not in ("union", "eliminate"):
            raise ValueError(f"knora must be 'union' or 'eliminate', got {self.knora!r}")
        if self.region not in ("val", "train"):
            raise ValueError(f"region must be 'val' or 'train', got {self.region!r}")
        _device.check_device(self.device)

    def _check_one_model(self, model, name: str) -> None:
        """The model of ``tiebreak`` (classification) or ``include`` (regression): one model of
        the stack's task, taking its features and giving its outputs."""
        if not isinstance(model, MLPStack) or model.n_models != 1:
            raise TypeError(f"{name} must be a one-model MLPStack (e.g. the merged model)")
        if model.task != self._TASK:
            raise ValueError(f"{name} must be a {self._TASK} stack, got a {model.task} one")
        if model.dims[0] != self.stack.dims[0] or model.dims[-1] != self.stack.dims[-1]:
            raise ValueError(
                f"{name} must take the same features and give the same outputs as the stack: "
                f"{model.dims[0]} -> {model.dims[-1]} against {self.stack.dims[0]} -> {self.stack.dims[-1]}"
            )

    def _fitted(self) -> None:
        if self._learns() and not hasattr(self, self._FITTED):
            raise NotFittedError(
                f"this {type(self).__name__} (method={self._method()!r}) learns from validation rows: "
                "call fit(X_val, y_val) before predicting"
            )

    def _X(self, X) -> np.ndarray:
        return as_features(X, "X", self.stack.n_features)

    # -- fitting --------------------------------------------------------------------------------
    def fit(self, X_val, y_val, *, X_train=None, y_train=None, segments=None) -> Ensemble:
        threads = self._check()
        X_val = as_features(X_val, "X_val", self.stack.n_features)
        y_val = as_labels(y_val, len(X_val), self.stack.n_classes, "y_val")
        self.n_classes_ = self.stack.n_classes
        learn = _METHODS[self._method()].fit
        if learn is not None:
            learn(self, X_val, y_val, threads, (X_train, y_train, segments))
        return self

    def _fit_weighted(self, X_val, y_val, threads, train) -> None:
        if self.weights is not None:
            self.weights_ = self._given_weights(self.stack.n_models)
        else:
            acc = self._votes_correct(X_val, y_val, threads).mean(axis=1)
            self.weights_ = acc / acc.sum() if acc.sum() > 0 else np.full(len(acc), 1.0 / len(acc))

    def _fit_stacking(self, X_val, y_val, threads, train) -> None:
        probs = stack_proba(self.stack, X_val, n_jobs=threads, device=self.device).astype(np.float64)
        self.l2_, theta = stacking.fit(self._combiner(), probs, y_val, self.l2)
        if self._combiner() == "weights":
            self.weights_ = theta
        else:
            self.coef_, self.intercept_ = stacking.logistic_parts(theta, self.stack.n_models, self.stack.n_classes)

    def _fit_competence(self, X_val, y_val, threads, train) -> None:
        if self.region == "val":
            if self.k > len(X_val):
                raise ValueError(f"k={self.k} is larger than the {len(X_val)} validation rows")
            self.X_region_ = X_val
            self.correct_ = self._votes_correct(X_val, y_val, threads)  # (N, n_val)
        else:
            X_train, y_train, segments = train
            self._fit_train_region(X_train, y_train, segments, threads)

    def _given_weights(self, n_models: int) -> np.ndarray:
        """``weights`` checked and normalised to sum 1, one for each of ``n_models`` models."""
        w = np.asarray(self.weights, dtype=np.float64)
        if w.shape != (n_models,) or not np.isfinite(w).all() or (w < 0).any() or w.max() <= 0:
            raise ValueError(f"weights must be {n_models} finite numbers >= 0 with a positive sum")
        w = w / w.max()  # first to at most 1: the sum of weights near 1e308 would overflow
        return w / w.sum()

    def _votes_correct(self, X, y, threads) -> np.ndarray:
        """(N, n) whether each model predicts each row right."""
        return stack_proba(self.stack, X, n_jobs=threads, device=self.device).argmax(axis=2) == y[None, :]

    def _fit_train_region(self, X_train, y_train, segments, threads) -> None:
        if X_train is None or y_train is None or segments is None:
            raise ValueError(
                "region='train' needs fit(..., X_train=, y_train=, segments=): the rows each model was trained on"
            )
        X_train = as_features(X_train, "X_train", self.stack.n_features)
        y_train = as_labels(y_train, len(X_train), self.stack.n_classes, "y_train")
        segments = as_segments(segments, len(X_train), self.stack.n_models, min_size=self.k)
        self.segment_rows_ = [np.ascontiguousarray(X_train[segments[i]]) for i in range(len(segments))]
        self.segment_correct_ = []
        for i, rows in enumerate(self.segment_rows_):
            pred = stack_proba(self.stack[i], rows, n_jobs=threads, device=self.device)[0].argmax(axis=1)
            self.segment_correct_.append(pred == y_train[segments[i]])

    # -- prediction -----------------------------------------------------------------------------
    def _competence_weights(self, X, threads) -> np.ndarray:
        """(n, N) weight of every model on every row."""
        if self.region == "val":
            idx, _ = _core.knn(X, self.X_region_, self.k, threads)
            right = np.ascontiguousarray(self.correct_.T)  # (n_val, N)

            def hits(j):  # (n, N): which models got each row's j-th nearest neighbour right
                return right[idx[:, j]]
        else:
            idxs = [_core.knn(X, rows, self.k, threads)[0] for rows in self.segment_rows_]

            def hits(j):
                return np.stack([c[i[:, j]] for c, i in zip(self.segment_correct_, idxs)], axis=1)

        # One (n, N) slice per neighbour rank instead of the (N, n, k) tensor: 0.1 s -> 0.01 s for
        # 100 models, 10,000 rows and k = 20.
        score = np.zeros((len(X), self.stack.n_models), dtype=np.int32)
        if self.knora == "union":  # right answers among the k neighbours
            for j in range(self.k):
                score += hits(j)
            w = score.astype(np.float32)
            w[score.sum(axis=1) == 0] = 1.0  # nobody is competent here: every model votes
            return w
        # KNORA-E: the models right on the longest run of nearest neighbours. Where no model
        # gets the nearest one right, every run is 0 and every model votes.
        alive = np.ones_like(score, dtype=bool)
        for j in range(self.k):
            alive &= hits(j)
            score += alive
        return (score == score.max(axis=1, keepdims=True)).astype(np.float32)

    def _combine(self, X, mode, model_weights, row_weights, threads, with_votes=False):
        return _device.combine(
            self.stack.dims, self.stack.params, X, mode, model_weights, row_weights, self.device, threads, with_votes
        )

    def _soft(self, X, threads):
        return self._combine(X, "proba", None, None, threads) / self.stack.n_models, None

    def _hard(self, X, threads):
        probs, votes = self._combine(X, "proba", None, None, threads, with_votes=True)
        return probs / self.stack.n_models, votes

    def _weighted(self, X, threads):
        w = self.weights_ if hasattr(self, "weights_") else self._given_weights(self.stack.n_models)
        return self._combine(X, "proba", w, None, threads), None

    def _stacking(self, X, threads):
        if self._combiner() == "weights":
            z = self._combine(X, "log_proba", self.weights_.astype(np.float64), None, threads)
            return stacking.softmax(z.astype(np.float64)), None
        F = stacking.log_features(stack_proba(self.stack, X, n_jobs=threads, device=self.device))
        return stacking.softmax(F @ self.coef_ + self.intercept_), None

    def _competence(self, X, threads):
        w = self._competence_weights(X, threads)
        probs, votes = self._combine(X, "proba", None, w, threads, with_votes=True)
        return probs / w.sum(axis=1, keepdims=True), votes

    def predict_proba(self, X) -> np.ndarray:
        """(n, C) combined class probabilities (vote shares for ``hard``)."""
        threads = self._check()
        self._fitted()
        X = self._X(X)
        method = _METHODS[self._method()]
        probs, votes = method.combined(self, X, threads)
        if method.vote_shares:
            return votes / self.stack.n_models
        return probs

    def predict(self, X) -> np.ndarray:
        threads = self._check()
        self._fitted()
        X = self._X(X)
        probs, votes = _METHODS[self._method()].combined(self, X, threads)
        if votes is None:
            return probs.argmax(axis=1)
        top = votes.max(axis=1, keepdims=True)
        tied = votes >= top - 1e-6 * np.maximum(top, 1)
        pred = votes.argmax(axis=1)
        contested = np.flatnonzero(tied.sum(axis=1) > 1)
        if contested.size:
            if self.tiebreak is not None:
                judge = stack_proba(self.tiebreak, X[contested], n_jobs=threads, device=self.device)[0]
            else:
                judge = probs[contested]
            pred[contested] = np.where(tied[contested], judge, -np.inf).argmax(axis=1)
        return pred

    def score(self, X, y) -> float:
        """Accuracy on (X, y)."""
        X = self._X(X)
        y = as_labels(y, len(X), self.stack.n_classes)
        return float(np.mean(self.predict(X) == y))

    def agreement(self, X) -> np.ndarray:
        """(n,) share of the models whose own prediction is the ensemble's: 1.0 = unanimous,
        low values mark contested rows."""
        threads = self._check()
        X = self._X(X)
        votes = self._combine(X, "votes", None, None, threads)
        pred = self.predict(X)
        return votes[np.arange(len(X)), pred] / self.stack.n_models


# -- the table of methods -------------------------------------------------------------------------
class _Method(NamedTuple):
    combined: Callable  # (ensemble, X, threads) -> (probabilities (n, C), votes (n, C) or None)
    fit: Callable | None = None  # (ensemble, X_val, y_val, threads, (X_train, y_train, segments))
    learns: Callable = lambda weights: False  # (the weights given) -> whether predicting needs fit first
    vote_shares: bool = False  # predict_proba gives the vote shares, not the combined probabilities


_METHODS = {
    "hard": _Method(Ensemble._hard, vote_shares=True),
    "soft": _Method(Ensemble._soft),
    "weighted": _Method(Ensemble._weighted, Ensemble._fit_weighted, learns=lambda weights: weights is None),
    "stacking": _Method(Ensemble._stacking, Ensemble._fit_stacking, learns=lambda weights: True),
    "competence": _Method(Ensemble._competence, Ensemble._fit_competence, learns=lambda weights: True),
}
METHODS = tuple(_METHODS)


def learns_from_rows(method: str, weights=None) -> bool:
    """Whether an Ensemble of this method (with these weights) must be fitted on validation rows
    before it predicts (False for a name that is no method: the constructor refuses those)."""
    entry = _METHODS.get(method) if isinstance(method, str) else None
    return entry is not None and entry.learns(weights)
