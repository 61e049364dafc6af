"""Ensemble: the segment models predict together instead of being merged.

Methods (scikit-learn conventions: ``fit(X_val, y_val)`` returns self; fitted attributes end in _):
  ``hard``        majority vote; ties go to the ``tiebreak`` model (usually the merged one), else to
                  the largest summed probability.
  ``soft``        mean of the probabilities.
  ``weighted``    probabilities weighted by validation accuracy (or by ``weights``).
  ``stacking``    a combiner learned on the validation rows: ``combiner="weights"`` (one weight per
                  model on its log-probabilities, softmaxed) or ``combiner="logistic"``
                  (multinomial logistic regression on all models' probabilities side by side, on
                  a log scale: log(max(p, 1e-6)); on raw probabilities the fit needed a finely
                  tuned penalty, on logs it was within 0.2 points for l2 from 1e-3 to 1e-5),
                  both with an L2 penalty ``l2`` (default 1e-4), fitted by L-BFGS. ``l2="auto"``
                  picks it from 1e-2 ... 1e-6 on the last fifth of the validation rows, then
                  refits on all of them (chosen value in ``l2_``).
  ``competence``  dynamic selection by local accuracy on the ``k`` nearest validation rows:
                  ``knora="union"`` (KNORA-U: each model votes once per neighbour it got right)
                  or ``knora="eliminate"`` (KNORA-E: only models right on every neighbour vote,
                  shrinking the neighbourhood until one is). ``region="train"`` judges each model on
                  the nearest rows of its own training segment instead (fit needs X_train,
                  y_train, segments).
Every forward pass is the core's batched C++ call; nothing loops over models in Python.
``device="cuda"`` runs the forward passes on the GPU; the weighted sums over models of their
outputs (and the neighbour search of ``competence``) stay on the host.
"""
from __future__ import annotations

import numbers

import numpy as np

from . import _core, _device
from ._lbfgs import minimize
from ._params import ParamsMixin
from ._threads import resolve_n_jobs
from ._validate import as_features, as_labels
from .predict import predict_proba as stack_proba
from .segments import as_segments
from .stack import MLPStack

METHODS = ("hard", "soft", "weighted", "stacking", "competence")


def _logistic_features(probs) -> np.ndarray:
    """(N, n, C) probabilities -> (n, N * C) log-probabilities, the logistic combiner's input."""
    n_models, n, C = probs.shape
    return np.log(np.maximum(probs, 1e-6)).transpose(1, 0, 2).reshape(n, n_models * C).astype(np.float64)


class NotFittedError(ValueError, AttributeError):
    """predict() was called before fit() on an estimator that learns from data (the same bases
    as scikit-learn's NotFittedError; SegmentClassifier raises a subclass of both)."""


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Ensemble(ParamsMixin):
    def __init__(self, stack: MLPStack, method: str = "soft", *, tiebreak=None, weights=None,
                 combiner: str = "logistic", l2=1e-4, k: int = 20, knora: str = "union",
                 region: str = "val", n_jobs: int = -1, device: str = "cpu"):
        self.stack = stack
        self.method = method
        self.tiebreak = tiebreak
        self.weights = weights
        self.combiner = combiner
        self.l2 = l2
        self.k = k
        self.knora = knora
        self.region = region
        self.n_jobs = n_jobs
        self.device = device
        if method not in METHODS:  # a misspelt method fails here, not at the first predict
            raise ValueError(f"unknown ensemble method {method!r}; choose one of {', '.join(METHODS)}")

    def __repr__(self) -> str:
        return f"Ensemble({self.stack!r}, method={self.method!r})"

    # scikit-learn sees a classifier (is_classifier, cross_val_score, clone) without `import
    # segfast` importing scikit-learn: the tags are built on first use, from its own mixins.
    _estimator_type = "classifier"  # scikit-learn before 1.6

    def __sklearn_tags__(self):
        from sklearn.base import BaseEstimator, ClassifierMixin

        class _Classifier(ClassifierMixin, BaseEstimator):
            pass
        return _Classifier().__sklearn_tags__()

    # -- checks ---------------------------------------------------------------------------------
    def _check(self) -> int:
        if not isinstance(self.stack, MLPStack):
            raise TypeError(f"stack must be a segfast.MLPStack, got {type(self.stack).__name__}")
        if self.method not in METHODS:
            raise ValueError(f"unknown ensemble method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.tiebreak is not None:
            if not isinstance(self.tiebreak, MLPStack) or self.tiebreak.n_models != 1:
                raise TypeError("tiebreak must be a one-model MLPStack (e.g. the merged model)")
            if self.tiebreak.dims[0] != self.stack.dims[0] or self.tiebreak.dims[-1] != self.stack.dims[-1]:
                raise ValueError("tiebreak must take the same features and classes as the stack")
        if self.combiner not in ("weights", "logistic"):
            raise ValueError(f"combiner must be 'weights' or 'logistic', got {self.combiner!r}")
        if not (self.l2 == "auto" or (isinstance(self.l2, numbers.Real) and not isinstance(self.l2, bool)
                                      and np.isfinite(self.l2) and self.l2 >= 0)):
            raise ValueError(f"l2 must be 'auto' or a finite number >= 0, got {self.l2!r}")
        if isinstance(self.k, bool) or not isinstance(self.k, numbers.Integral) or self.k < 1:
            raise ValueError(f"k must be an integer >= 1, got {self.k!r}")
        if self.knora not in ("union", "eliminate"):
            raise ValueError(f"knora must be 'union' or 'eliminate', got {self.knora!r}")
        if self.region not in ("val", "train"):
            raise ValueError(f"region must be 'val' or 'train', got {self.region!r}")
        _device.check_device(self.device)
        return resolve_n_jobs(self.n_jobs)

    def _needs_fit(self) -> bool:
        return self.method in ("stacking", "competence") or (self.method == "weighted" and self.weights is None)

    def _fitted(self) -> None:
        if self._needs_fit() and not hasattr(self, "n_classes_"):
            raise NotFittedError(f"this Ensemble (method={self.method!r}) learns from validation rows: "
                                 "call fit(X_val, y_val) before predicting")

    def _X(self, X) -> np.ndarray:
        return as_features(X, "X", self.stack.n_features)

    # -- fitting --------------------------------------------------------------------------------
    def fit(self, X_val, y_val, *, X_train=None, y_train=None, segments=None) -> "Ensemble":
        threads = self._check()
        X_val = as_features(X_val, "X_val", self.stack.n_features)
        y_val = as_labels(y_val, len(X_val), self.stack.n_classes, "y_val")
        self.n_classes_ = self.stack.n_classes
        if self.method == "weighted":
            if self.weights is not None:
                self.weights_ = self._given_weights()
            else:
                acc = self._votes_correct(X_val, y_val, threads).mean(axis=1)
                self.weights_ = acc / acc.sum() if acc.sum() > 0 else np.full(len(acc), 1.0 / len(acc))
        elif self.method == "stacking":
            probs = stack_proba(self.stack, X_val, threads, self.device).astype(np.float64)
            self._fit_stacking(probs, y_val)
        elif self.method == "competence":
            if self.region == "val":
                if self.k > len(X_val):
                    raise ValueError(f"k={self.k} is larger than the {len(X_val)} validation rows")
                self.X_region_ = X_val
                self.correct_ = self._votes_correct(X_val, y_val, threads)  # (N, n_val)
            else:
                self._fit_train_region(X_train, y_train, segments, threads)
        return self

    def _given_weights(self) -> np.ndarray:
        w = np.asarray(self.weights, dtype=np.float64)
        if w.shape != (self.stack.n_models,) or not np.isfinite(w).all() or (w < 0).any() or w.max() <= 0:
            raise ValueError(f"weights must be {self.stack.n_models} finite numbers >= 0 with a positive sum")
        w = w / w.max()  # first to at most 1: the sum of weights near 1e308 would overflow
        return w / w.sum()

    def _votes_correct(self, X, y, threads) -> np.ndarray:
        """(N, n) whether each model predicts each row right."""
        return stack_proba(self.stack, X, threads, self.device).argmax(axis=2) == y[None, :]

    def _fit_stacking(self, probs, y) -> None:
        """Fit the combiner; with l2="auto", pick l2 on a held-out fifth of the rows first."""
        fit = self._fit_weights if self.combiner == "weights" else self._fit_logistic
        if self.l2 == "auto":
            n = len(y)
            cut = n - max(1, n // 5)
            if cut < 1:
                raise ValueError("l2='auto' needs at least 2 validation rows; pass a number")
            theta, best = None, None
            for l2 in (1e-2, 1e-3, 1e-4, 1e-5, 1e-6):  # strong to weak, each warm-started
                theta = fit(probs[:, :cut], y[:cut], l2, theta)
                loss = self._stacking_loss(theta, probs[:, cut:], y[cut:])
                if best is None or loss < best[0]:
                    best = (loss, l2, theta)
            self.l2_, start = best[1], best[2]
        else:
            self.l2_, start = float(self.l2), None
        theta = fit(probs, y, self.l2_, start)
        if self.combiner == "weights":
            self.weights_ = theta
        else:
            size = probs.shape[0] * probs.shape[2] * probs.shape[2]
            C = probs.shape[2]
            self.coef_, self.intercept_ = theta[:size].reshape(-1, C), theta[size:]

    def _stacking_logits(self, theta, probs):
        if self.combiner == "weights":
            return np.einsum("m,mrc->rc", theta, np.log(np.maximum(probs, 1e-30)))
        size = probs.shape[0] * probs.shape[2] ** 2
        return _logistic_features(probs) @ theta[:size].reshape(-1, probs.shape[2]) + theta[size:]

    def _stacking_loss(self, theta, probs, y) -> float:
        p = _softmax(self._stacking_logits(theta, probs))
        return float(-np.log(np.maximum(p[np.arange(len(y)), y], 1e-300)).mean())

    @staticmethod
    def _fit_weights(probs, y, l2, start=None) -> np.ndarray:
        log_p = np.log(np.maximum(probs, 1e-30))
        n_models, n, _ = log_p.shape
        rows = np.arange(n)

        def loss_grad(w):
            p = _softmax(np.einsum("m,mrc->rc", w, log_p))
            nll = -np.log(np.maximum(p[rows, y], 1e-300)).mean()
            g = p
            g[rows, y] -= 1.0
            grad = np.einsum("mrc,rc->m", log_p, g) / n + 2 * l2 * w
            return nll + l2 * w @ w, grad

        return minimize(loss_grad, np.full(n_models, 1.0 / n_models) if start is None else start)

    @staticmethod
    def _fit_logistic(probs, y, l2, start=None) -> np.ndarray:
        n_models, n, C = probs.shape
        F = _logistic_features(probs)
        rows = np.arange(n)
        size = F.shape[1] * C

        def loss_grad(theta):
            W, b = theta[:size].reshape(F.shape[1], C), theta[size:]
            p = _softmax(F @ W + b)
            nll = -np.log(np.maximum(p[rows, y], 1e-300)).mean()
            g = p
            g[rows, y] -= 1.0
            g /= n
            grad = np.concatenate([(F.T @ g + 2 * l2 * W).ravel(), g.sum(axis=0)])
            return nll + l2 * np.sum(W * W), grad

        return minimize(loss_grad, np.zeros(size + C) if start is None else start)

    def _fit_train_region(self, X_train, y_train, segments, threads) -> None:
        if X_train is None or y_train is None or segments is None:
            raise ValueError("region='train' needs fit(..., X_train=, y_train=, segments=): the rows each "
                             "model was trained on")
        X_train = as_features(X_train, "X_train", self.stack.n_features)
        y_train = as_labels(y_train, len(X_train), self.stack.n_classes, "y_train")
        segments = as_segments(segments, len(X_train), self.stack.n_models, min_size=self.k)
        self.segment_rows_ = [np.ascontiguousarray(X_train[segments[i]]) for i in range(len(segments))]
        self.segment_correct_ = []
        for i, rows in enumerate(self.segment_rows_):
            pred = stack_proba(self.stack[i], rows, threads, self.device)[0].argmax(axis=1)
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
            idx = [_core.knn(X, rows, self.k, threads)[0] for rows in self.segment_rows_]

            def hits(j):
                return np.stack([c[i[:, j]] for c, i in zip(self.segment_correct_, idx)], axis=1)
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
        return _device.combine(self.stack.dims, self.stack.params, X, mode, model_weights, row_weights,
                               self.device, threads, with_votes)

    def _combined(self, X, threads):
        """(probabilities, votes or None), each (n, C)."""
        if self.method == "soft":
            return self._combine(X, "proba", None, None, threads) / self.stack.n_models, None
        if self.method == "hard":
            probs, votes = self._combine(X, "proba", None, None, threads, with_votes=True)
            return probs / self.stack.n_models, votes
        if self.method == "weighted":
            w = self.weights_ if hasattr(self, "weights_") else self._given_weights()
            return self._combine(X, "proba", w, None, threads), None
        if self.method == "stacking":
            if self.combiner == "weights":
                z = self._combine(X, "log_proba", self.weights_.astype(np.float64), None, threads)
                return _softmax(z.astype(np.float64)), None
            F = _logistic_features(stack_proba(self.stack, X, threads, self.device))
            return _softmax(F @ self.coef_ + self.intercept_), None
        w = self._competence_weights(X, threads)
        probs, votes = self._combine(X, "proba", None, w, threads, with_votes=True)
        return probs / w.sum(axis=1, keepdims=True), votes

    def predict_proba(self, X) -> np.ndarray:
        """(n, C) combined class probabilities (vote shares for ``hard``)."""
        threads = self._check()
        self._fitted()
        X = self._X(X)
        probs, votes = self._combined(X, threads)
        if self.method == "hard":
            return votes / self.stack.n_models
        return probs

    def predict(self, X) -> np.ndarray:
        threads = self._check()
        self._fitted()
        X = self._X(X)
        probs, votes = self._combined(X, threads)
        if votes is None:
            return probs.argmax(axis=1)
        top = votes.max(axis=1, keepdims=True)
        tied = votes >= top - 1e-6 * np.maximum(top, 1)
        pred = votes.argmax(axis=1)
        contested = np.flatnonzero(tied.sum(axis=1) > 1)
        if contested.size:
            if self.tiebreak is not None:
                judge = stack_proba(self.tiebreak, X[contested], threads, self.device)[0]
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
