"""RegressionEnsemble: the segment models' predicted values combined into one; what
``Ensemble(stack)`` builds for a regression stack (segfast.ensemble holds the classification one).

Methods (``fit(X_val, y_val)`` with float targets, (n,) or (n, k); fitted attributes end in _):
  ``mean``        the mean of the models' values (the default).
  ``median``      the median over models (an even count averages the two middle values).
  ``weighted``    values weighted by 1 / each model's validation MSE (or by ``weights``).
  ``stacking``    a combiner learned on the validation rows, one per target:
                  ``combiner="ridge"`` (the default): the target regressed on the models' values
                  with an intercept, minimising MSE / var(target) + ``l2`` * |w|^2 (the intercept
                  is not penalised) in closed form. Dividing by the variance makes ``l2`` mean the
                  same at any target scale, as the classification combiners' log-probabilities do;
                  it is scikit-learn's Ridge with alpha = n * var(target) * l2. ``l2="auto"``
                  picks l2 from stacking.L2_GRID as classification does (chosen value in ``l2_``).
                  ``combiner="nnls"``: the convex combination with the least squared error
                  (weights >= 0 summing to 1, no intercept, no penalty), solved exactly by an
                  active-set method.
  ``competence``  each model weighted per row by 1 / its mean squared error on the row's ``k``
                  nearest validation rows (floored at the smallest positive float64).
``include=``: a one-model regression stack (e.g. the merged model) that joins the members as one
more model in every method. ``predict`` gives (n,) float64 values for one target, (n, k) for k;
``score`` is R^2 (scikit-learn's convention); ``agreement`` the members' spread per row.
What it is not: a GPU path (regression stacks run on the CPU), nor a classifier: ``tiebreak``,
``knora``, ``region="train"`` and ``predict_proba`` are classification's.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from . import _core, _device, stacking
from ._validate import as_features, as_targets
from .ensemble import Ensemble, NotFittedError
from .predict import evaluate, r2_scores
from .stack import MLPStack

COMBINERS = ("ridge", "nnls")


class RegressionEnsemble(Ensemble):
    _TASK = "regression"
    _DEFAULT_METHOD = "mean"
    _DEFAULT_COMBINER = "ridge"
    _FITTED = "n_outputs_"

    # scikit-learn sees a regressor (is_regressor, cross_val_score's KFold, R^2 scores).
    _estimator_type = "regressor"  # scikit-learn before 1.6

    def __sklearn_tags__(self):
        from sklearn.base import BaseEstimator, RegressorMixin

        class _Regressor(RegressorMixin, BaseEstimator):
            pass

        tags = _Regressor().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _method_names(self) -> tuple[str, ...]:
        return METHODS

    def _learns(self) -> bool:
        return learns_from_rows(self._method(), self.weights)

    # -- checks ---------------------------------------------------------------------------------
    def _check_task_options(self) -> None:
        if self.tiebreak is not None:
            raise ValueError(
                "tiebreak breaks classification's tied votes; a regression ensemble has none: "
                "pass the merged model as include= to make it one more member"
            )
        if self.include is not None:
            self._check_one_model(self.include, "include")
        if self._combiner() not in COMBINERS:
            raise ValueError(
                f"combiner must be {' or '.join(map(repr, COMBINERS))} for a regression stack, got {self.combiner!r}"
            )
        if self.knora != "union":  # left at its default: it names a classification rule
            raise ValueError(
                f"knora={self.knora!r} is a classification rule (KNORA); regression's competence "
                "weights each model by its error on the nearest validation rows"
            )
        if self.region != "val":
            raise ValueError(
                f"region={self.region!r}: a regression ensemble judges competence on the validation rows "
                "only (region='val')"
            )
        _device.check_device(self.device, self._TASK)

    def _members(self) -> MLPStack:
        """The stack's models and, last, the ``include`` model: one stack, one forward pass."""
        if self.include is None:
            return self.stack
        return self.stack.like(
            np.concatenate([self.stack.params, self.include.params]),
            np.concatenate([self.stack.diverged, self.include.diverged]),
        )

    def _values(self, members: MLPStack, X: np.ndarray, threads: int) -> np.ndarray:
        """(M, n, k) float64: every member's values on every row of X, already checked (by the
        entry point, once: segfast.predict would check it again)."""
        return _core.predict_proba(list(members.dims), members.params, X, threads, softmax=False).astype(np.float64)

    # -- fitting --------------------------------------------------------------------------------
    def fit(self, X_val, y_val, *, X_train=None, y_train=None, segments=None) -> RegressionEnsemble:
        threads = self._check()
        if X_train is not None or y_train is not None or segments is not None:
            raise ValueError("X_train, y_train and segments serve region='train', which regression does not have")
        X_val = as_features(X_val, "X_val", self.stack.n_features)
        y_val = as_targets(y_val, len(X_val), self.stack.n_outputs, "y_val").astype(np.float64)
        self.n_outputs_ = self.stack.n_outputs
        members = self._members()
        self.n_members_ = members.n_models
        learn = _METHODS[self._method()].fit
        if learn is not None:
            learn(self, members, X_val, y_val, threads)
        return self

    def _fit_inverse_mse(self, members, X_val, y_val, threads) -> None:
        if self.weights is not None:
            self.weights_ = self._given_weights(members.n_models)
            return
        mse = evaluate(members, X_val, y_val, n_jobs=threads).loss
        w = inverse_error_weights(mse[None, :])[0]
        self.weights_ = w / w.sum()

    def _fit_combiner(self, members, X_val, y_val, threads) -> None:
        values = self._values(members, X_val, threads)
        self.coef_ = np.zeros((members.n_models, self.n_outputs_))  # (M, k)
        self.intercept_ = np.zeros(self.n_outputs_)  # (k,)
        if self._combiner() == "nnls":
            for t in range(self.n_outputs_):
                self.coef_[:, t] = fit_simplex(values[:, :, t].T, y_val[:, t])
            return
        self.l2_ = choose_ridge_l2(values, y_val) if self.l2 == "auto" else float(self.l2)
        for t in range(self.n_outputs_):
            self.coef_[:, t], self.intercept_[t] = fit_ridge(values[:, :, t].T, y_val[:, t], self.l2_)

    def _fit_local_errors(self, members, X_val, y_val, threads) -> None:
        if self.k > len(X_val):
            raise ValueError(f"k={self.k} is larger than the {len(X_val)} validation rows")
        self.X_region_ = X_val
        values = self._values(members, X_val, threads)
        self.sq_error_ = ((values - y_val[None]) ** 2).mean(axis=2)  # (M, n_val), mean over targets

    # -- prediction -----------------------------------------------------------------------------
    def _mean_values(self, values, X, threads):
        return values.mean(axis=0)

    def _median_values(self, values, X, threads):
        return np.median(values, axis=0)

    def _weighted_values(self, values, X, threads):
        # given weights win over fitted ones: set_params(weights=...) needs no refit
        w = self._given_weights(len(values)) if self.weights is not None else self.weights_
        return np.einsum("m,mrt->rt", w, values)

    def _stacked_values(self, values, X, threads):
        return np.einsum("mrt,mt->rt", values, self.coef_) + self.intercept_

    def _competent_values(self, values, X, threads):
        w = self._local_weights(X, threads)
        return np.einsum("rm,mrt->rt", w, values) / w.sum(axis=1)[:, None]

    def _local_weights(self, X, threads) -> np.ndarray:
        """(n, M) weight of every member on every row: 1 / its mean squared error on the row's
        k nearest validation rows."""
        idx, _ = _core.knn(X, self.X_region_, self.k, threads)
        errors = np.ascontiguousarray(self.sq_error_.T)  # (n_val, M)
        # One (n, M) slice per neighbour rank instead of an (n, k, M) gather, as classification's
        local = np.zeros((len(X), errors.shape[1]))
        for j in range(self.k):
            local += errors[idx[:, j]]
        return inverse_error_weights(local / self.k)

    def _combined(self, X: np.ndarray, threads: int) -> np.ndarray:
        """(n, k) float64 ensemble values on rows X, already checked, of a fitted ensemble."""
        members = self._members()
        if self._learns() and getattr(self, "n_members_", members.n_models) != members.n_models:
            # set_params(stack=...) or include= after fit: the fitted weights are for other members
            raise NotFittedError(
                f"this ensemble was fitted with {self.n_members_} members and now has {members.n_models} "
                "(stack or include changed): call fit(X_val, y_val) again"
            )
        values = self._values(members, X, threads)
        return _METHODS[self._method()].combine(self, values, X, threads)

    def predict(self, X) -> np.ndarray:
        """(n,) float64 values for one target, (n, k) for k."""
        threads = self._check()
        self._fitted()
        out = self._combined(self._X(X), threads)
        return out[:, 0] if out.shape[1] == 1 else out

    @property
    def predict_proba(self):  # hides the classification method
        # An AttributeError, so hasattr(ens, "predict_proba") is False, as scikit-learn's
        # available_if does: code that probes for probabilities sees a regressor.
        raise AttributeError("a regression ensemble predicts values, not probabilities: use predict()")

    def score(self, X, y) -> float:
        """R^2 on (X, y), the mean over targets (scikit-learn's r2_score)."""
        X = self._X(X)
        y = as_targets(y, len(X), self.stack.n_outputs)
        threads = self._check()
        self._fitted()
        error = self._combined(X, threads) - y
        return float(r2_scores((error**2).sum(axis=0)[None, :], y)[0])

    def agreement(self, X) -> np.ndarray:
        """(n,) the standard deviation of the members' values on each row (the mean over targets):
        0 = unanimous, high values mark contested rows."""
        threads = self._check()
        return self._values(self._members(), self._X(X), threads).std(axis=0).mean(axis=1)


# -- the combiners ----------------------------------------------------------------------------------
def inverse_error_weights(errors: np.ndarray) -> np.ndarray:
    """(rows, M) errors -> (rows, M) weights proportional to 1 / max(error, tiny) in each row,
    scaled so that the largest is 1 (1 / tiny would overflow a sum). A NaN or infinite error (a
    diverged model) weighs 0; a row where every error is one weighs every model equally."""
    errors = np.where(np.isfinite(errors), np.maximum(errors, np.finfo(np.float64).tiny), np.inf)
    best = errors.min(axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):  # inf / inf in the rows the next line replaces
        w = best / errors
    return np.where(np.isfinite(best), w, 1.0)


def _variance(y: np.ndarray) -> float:
    """The target's variance, 1 where it is constant: the scale of the ridge penalty."""
    v = float(y.var())
    return v if v > 0 else 1.0


def fit_ridge(values: np.ndarray, y: np.ndarray, l2: float, variance: float | None = None) -> tuple[np.ndarray, float]:
    """(coef (M,), intercept) minimising mean((y - values @ coef - intercept)^2) / var(y) +
    l2 * |coef|^2, for values (n, M) and y (n,), both float64 (``variance``: _variance(y), where
    the caller has it already).

    Centring removes the unpenalised intercept; the penalty becomes M extra rows of a least
    squares problem, which lstsq solves without forming values.T @ values (whose condition number
    is the square of values', large when the models agree) and at its least norm when l2 = 0 and
    models coincide."""
    n, n_models = values.shape
    variance = _variance(y) if variance is None else variance
    centre = values.mean(axis=0)
    A = np.vstack([values - centre, np.sqrt(n * variance * l2) * np.eye(n_models)])
    b = np.concatenate([y - y.mean(), np.zeros(n_models)])
    coef = np.linalg.lstsq(A, b, rcond=None)[0]
    return coef, float(y.mean() - centre @ coef)


def choose_ridge_l2(values: np.ndarray, y: np.ndarray) -> float:
    """The l2 of stacking.L2_GRID whose ridge fits on the first four fifths of the rows (values
    (M, n, k), y (n, k)) score best on the last fifth: the mean over targets of MSE / var(target),
    the first of equal scores (the strongest l2) winning, as classification's choice does."""
    cut = stacking.holdout_cut(y.shape[0])
    scores = np.zeros(len(stacking.L2_GRID))
    for t in range(y.shape[1]):  # the variances are the same for every l2: once per target
        fitted, scored = _variance(y[:cut, t]), _variance(y[:, t])
        for i, l2 in enumerate(stacking.L2_GRID):
            coef, intercept = fit_ridge(values[:, :cut, t].T, y[:cut, t], l2, variance=fitted)
            residual = y[cut:, t] - values[:, cut:, t].T @ coef - intercept
            scores[i] += float(np.mean(residual**2)) / scored
    return stacking.L2_GRID[int(np.argmin(scores))]


def _on_face(R: np.ndarray, t: np.ndarray, face: list[int]) -> np.ndarray:
    """argmin |t - R[:, face] @ w| subject to sum(w) = 1 (signs free): w = 1/s + Z z with Z an
    orthonormal basis of the sum-zero vectors, z by least squares (its least norm when models
    coincide)."""
    s = len(face)
    if s == 1:
        return np.ones(1)
    A = R[:, face]
    Z = np.linalg.qr(np.ones((s, 1)), mode="complete")[0][:, 1:]  # (s, s - 1)
    base = np.full(s, 1.0 / s)
    z = np.linalg.lstsq(A @ Z, t - A @ base, rcond=None)[0]
    return base + Z @ z


def fit_simplex(values: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The (M,) weights w >= 0 with sum(w) = 1 minimising |y - values @ w|^2, for values (n, M)
    and y (n,) float64.

    Lawson and Hanson's active-set NNLS with the sum constraint added to every subproblem: start
    at the best single model; add the model whose gradient most undercuts the common gradient of
    the models in use (the multiplier of the sum constraint), solve on that face, and where the
    solution leaves the simplex step back to its edge and drop the models that reached 0. It stops
    when no model undercuts, which bounds the distance to the optimum by the Frank-Wolfe gap
    (the undercut, at most 1e-12 of the problem's scale). The problem is first reduced by QR to
    M rows: |y - values @ w|^2 = |t - R w|^2 + a constant."""
    n_models = values.shape[1]
    q, R = np.linalg.qr(values)  # (n, r), (r, M) with r = min(n, M)
    t = q.T @ y
    scale = max(float(t @ t), float((R * R).sum(axis=0).max()), np.finfo(np.float64).tiny)
    tol = 1e-12 * scale
    start = int(np.argmin(((t[:, None] - R) ** 2).sum(axis=0)))
    w = np.zeros(n_models)
    w[start] = 1.0
    face = [start]
    refused: set[int] = set()  # models whose addition changed nothing (ties, rounding): not retried
    for _ in range(10 * n_models + 100):  # every addition lowers the error; this bound is a backstop
        grad = R.T @ (R @ w - t)
        common = grad[face].mean()
        outside = [m for m in range(n_models) if m not in face and m not in refused]
        if not outside:
            break
        enter = outside[int(np.argmin(grad[outside]))]
        if grad[enter] >= common - tol:
            break
        face = face + [enter]
        current = w[face]
        while True:
            solution = _on_face(R, t, face)
            if (solution > 0).all():
                break
            # step from the current weights toward the solution until the first weight hits 0
            leaving = solution <= 0
            gap = current[leaving] - solution[leaving]  # >= 0; 0 where a weight is 0 and stays there
            ratios = np.divide(current[leaving], gap, out=np.zeros_like(gap), where=gap > 0)
            step = ratios.min()
            current = current + step * (solution - current)
            current[np.flatnonzero(leaving)[int(np.argmin(ratios))]] = 0.0
            keep = current > 0
            face = [m for m, kept in zip(face, keep) if kept]
            current = current[keep]
        new = np.zeros(n_models)
        new[face] = solution / solution.sum()  # the sum is 1 up to rounding
        if enter not in face:
            refused.add(enter)
        else:
            refused.clear()
        w = new
    return w


# -- the table of methods -------------------------------------------------------------------------
class _Method(NamedTuple):
    combine: Callable  # (ensemble, values (M, n, k) float64, X (n, d), threads) -> (n, k) float64
    fit: Callable | None = None  # (ensemble, members, X_val, y_val (n, k) float64, threads)
    learns: Callable = lambda weights: False  # (the weights given) -> whether predicting needs fit first


_METHODS = {
    "mean": _Method(RegressionEnsemble._mean_values),
    "median": _Method(RegressionEnsemble._median_values),
    "weighted": _Method(
        RegressionEnsemble._weighted_values, RegressionEnsemble._fit_inverse_mse, learns=lambda weights: weights is None
    ),
    "stacking": _Method(
        RegressionEnsemble._stacked_values, RegressionEnsemble._fit_combiner, learns=lambda weights: True
    ),
    "competence": _Method(
        RegressionEnsemble._competent_values, RegressionEnsemble._fit_local_errors, learns=lambda weights: True
    ),
}
METHODS = tuple(_METHODS)


def learns_from_rows(method, weights=None) -> bool:
    """Whether a RegressionEnsemble of this method (with these weights) must be fitted on
    validation rows before it predicts (False for a name that is no method: the constructor
    refuses those)."""
    entry = _METHODS.get(method) if isinstance(method, str) else None
    return entry is not None and entry.learns(weights)
