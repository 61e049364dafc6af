"""RegressionEnsemble against references computed here: the models' values from a float64 numpy
forward pass, mean and median by sorting, ridge against lstsq and scikit-learn's Ridge, nnls
against SciPy and an exhaustive search of supports, competence against a brute-force loop; and
the dispatch from Ensemble, k > 1 targets, include=, and the bad input each entry point refuses."""

import itertools
import pickle

import numpy as np
import pytest

import segfast
from conftest import blobs
from reference import forward
from segfast import Ensemble, MLPStack
from segfast.ensemble import NotFittedError
from segfast.regression_ensemble import (
    METHODS,
    RegressionEnsemble,
    fit_ridge,
    fit_simplex,
    inverse_error_weights,
    learns_from_rows,
)
from segfast.stacking import L2_GRID, holdout_cut


def regression_data(n, d=6, k=1, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = X @ rng.normal(size=(d, k)) + 0.5 * np.sin(2 * X[:, :k])
    return X, y.astype(np.float32)


def trained_stack(k, n_models=6, seed=0):
    """Models trained for different numbers of epochs on their own segments, so they differ."""
    X, y = regression_data(1200, k=k, seed=seed)
    stack = MLPStack([6, 12, k], n_models, init="shared", seed=seed, task="regression")
    segments = segfast.segment(y[:600], n_models, seed=seed)
    segfast.train(stack, X[:600], y[:600], segments, epochs=list(range(1, n_models + 1)), lr=0.02)
    return stack, (X[600:900], y[600:900]), (X[900:], y[900:])


@pytest.fixture(scope="module")
def one_target():
    return trained_stack(k=1)


@pytest.fixture(scope="module")
def three_targets():
    return trained_stack(k=3, n_models=5, seed=1)


def values_of(stack, X):
    """(N, n, k) float64: every model's outputs, from numpy."""
    return np.stack([forward(stack.dims, row, X)[0] for row in stack.params])


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


# -- the dispatch -----------------------------------------------------------------------------------
def test_ensemble_of_a_regression_stack_is_a_regression_ensemble(one_target):
    sklearn_base = pytest.importorskip("sklearn.base")
    stack, val, test = one_target
    ens = Ensemble(stack, "stacking", l2=1e-3)
    assert type(ens) is RegressionEnsemble and isinstance(ens, Ensemble)
    assert type(Ensemble(MLPStack([6, 4, 3], 2))) is Ensemble  # classification keeps its class
    assert Ensemble(stack).method is None and "method='mean'" in repr(Ensemble(stack))
    assert sklearn_base.is_regressor(ens) and not sklearn_base.is_classifier(ens)
    params = ens.get_params()
    assert params["include"] is None and params["l2"] == 1e-3 and params["combiner"] is None
    copy = sklearn_base.clone(ens)
    assert type(copy) is RegressionEnsemble and copy.get_params()["method"] == "stacking"
    ens.fit(*val)
    back = pickle.loads(pickle.dumps(ens))
    assert type(back) is RegressionEnsemble
    np.testing.assert_array_equal(back.predict(test[0]), ens.predict(test[0]))
    assert ens.set_params(method="median") is ens and ens.method == "median"


def test_classification_defaults_are_unchanged():
    rng = np.random.default_rng(3)
    X, y = blobs(rng, n=300, d=6, classes=3)
    stack = MLPStack([6, 8, 3], 4, seed=0)
    segfast.train(stack, X, y, segfast.segment(y, 4, seed=0), epochs=2)
    np.testing.assert_array_equal(Ensemble(stack).predict_proba(X), Ensemble(stack, "soft").predict_proba(X))
    default = Ensemble(stack, "stacking").fit(X, y)
    logistic = Ensemble(stack, "stacking", combiner="logistic").fit(X, y)
    np.testing.assert_array_equal(default.coef_, logistic.coef_)
    assert default.coef_.shape == (4 * 3, 3)


def test_cross_val_score_scores_r2(one_target):
    model_selection = pytest.importorskip("sklearn.model_selection")
    stack, val, _ = one_target
    scores = model_selection.cross_val_score(Ensemble(stack, "stacking"), *val, cv=3)
    assert scores.shape == (3,) and (scores > 0.5).all()


# -- the methods against numpy ------------------------------------------------------------------------
def test_mean_median_and_agreement(one_target):
    stack, _, test = one_target
    V = values_of(stack, test[0])  # (6, n, 1)
    close(Ensemble(stack).predict(test[0]), V.mean(0)[:, 0])
    ordered = np.sort(V, axis=0)
    close(Ensemble(stack, "median").predict(test[0]), (ordered[2] + ordered[3])[:, 0] / 2)  # six models
    spread = np.sqrt(((V - V.mean(0)) ** 2).mean(0))[:, 0]
    close(Ensemble(stack).agreement(test[0]), spread)


def test_median_of_even_counts_with_ties():
    # Four models whose outputs are their own bias: 1, 3, 3, 10 (a tie in the middle) and
    # 1, 2, 7, 10 (the two middle values averaged); three models: the middle one.
    def constant_models(values):
        params = np.zeros((len(values), 2 * 1 + 1), dtype=np.float32)  # dims [2, 1]: W (2, 1), b (1,)
        params[:, -1] = values
        return MLPStack.from_params([2, 1], params, task="regression")

    X = np.ones((3, 2), dtype=np.float32)
    for values, want in (([3, 1, 10, 3], 3.0), ([10, 2, 1, 7], 4.5), ([5, 5, 5, 5], 5.0), ([9, -1, 4], 4.0)):
        np.testing.assert_array_equal(Ensemble(constant_models(values), "median").predict(X), [want] * 3)
        assert Ensemble(constant_models(values)).predict(X)[0] == pytest.approx(np.mean(values))


def test_weighted_by_inverse_validation_mse(one_target):
    stack, val, test = one_target
    mse = ((values_of(stack, val[0])[:, :, 0] - val[1][:, 0]) ** 2).mean(1)
    want = (1 / mse) / (1 / mse).sum()
    ens = Ensemble(stack, "weighted").fit(*val)
    np.testing.assert_allclose(ens.weights_, want, rtol=1e-4)
    V = values_of(stack, test[0])[:, :, 0]
    close(ens.predict(test[0]), want @ V)
    given = Ensemble(stack, "weighted", weights=[0, 0, 2, 0, 0, 2])
    close(given.predict(test[0]), (V[2] + V[5]) / 2)  # given weights need no fit


def test_inverse_error_weights_edge_cases():
    errors = np.array([[1.0, 2.0, 4.0], [0.0, 0.0, 1.0], [np.nan, np.inf, 2.0], [np.nan, np.inf, np.nan]])
    tiny = np.finfo(np.float64).tiny  # a perfect model's error, floored: the others weigh tiny / error
    np.testing.assert_array_equal(inverse_error_weights(errors), [[1, 0.5, 0.25], [1, 1, tiny], [0, 0, 1], [1, 1, 1]])


# -- stacking: ridge ----------------------------------------------------------------------------------
def ridge_reference(F, y, l2):
    """The ridge of fit_ridge's objective as an augmented least-squares problem solved by lstsq:
    rows [1, F] for the data, rows [0, sqrt(n var l2) I] for the penalty (not on the intercept)."""
    n, m = F.shape
    var = y.var() if y.var() > 0 else 1.0
    A = np.vstack([np.hstack([np.ones((n, 1)), F]), np.hstack([np.zeros((m, 1)), np.sqrt(n * var * l2) * np.eye(m)])])
    b = np.concatenate([y, np.zeros(m)])
    theta = np.linalg.lstsq(A, b, rcond=None)[0]
    return theta[1:], theta[0]


@pytest.mark.parametrize("seed", range(6))
def test_ridge_against_lstsq_and_scikit_learn(seed):
    linear_model = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(seed)
    n, m = int(rng.integers(8, 200)), int(rng.integers(1, 12))
    base = rng.normal(size=n) * rng.uniform(0.1, 100)
    F = base[:, None] + rng.normal(size=(n, m)) * rng.uniform(0.01, 1, size=m) * abs(base).mean()
    y = base + rng.normal(size=n) * abs(base).mean() * 0.3 + rng.normal() * 50
    for l2 in (0.0, 1e-4, 1e-2, 1.0):
        coef, intercept = fit_ridge(F, y, l2)
        want_coef, want_intercept = ridge_reference(F, y, l2)
        np.testing.assert_allclose(coef, want_coef, rtol=1e-6, atol=1e-9)
        assert intercept == pytest.approx(want_intercept, rel=1e-6, abs=1e-9)
        if l2 > 0:
            sk = linear_model.Ridge(alpha=n * y.var() * l2, solver="svd").fit(F, y)
            np.testing.assert_allclose(coef, sk.coef_, rtol=1e-6, atol=1e-9)
            assert intercept == pytest.approx(sk.intercept_, rel=1e-6, abs=1e-9)
    plain = linear_model.LinearRegression().fit(F, y)  # l2 = 0 is ordinary least squares
    np.testing.assert_allclose(fit_ridge(F, y, 0.0)[0], plain.coef_, rtol=1e-6, atol=1e-9)


def test_stacking_ridge_per_target_against_scikit_learn(three_targets):
    linear_model = pytest.importorskip("sklearn.linear_model")
    stack, val, test = three_targets
    ens = Ensemble(stack, "stacking", l2=1e-2).fit(*val)
    assert ens.coef_.shape == (5, 3) and ens.intercept_.shape == (3,) and ens.l2_ == 1e-2
    V, Vt = values_of(stack, val[0]), values_of(stack, test[0])
    want = np.empty((len(test[0]), 3))
    for t in range(3):
        y = val[1][:, t].astype(np.float64)
        sk = linear_model.Ridge(alpha=len(y) * y.var() * 1e-2, solver="svd").fit(V[:, :, t].T, y)
        np.testing.assert_allclose(ens.coef_[:, t], sk.coef_, rtol=1e-3, atol=1e-4)  # float32 values
        want[:, t] = sk.predict(Vt[:, :, t].T)
    pred = ens.predict(test[0])
    assert pred.shape == (len(test[0]), 3) and pred.dtype == np.float64
    np.testing.assert_allclose(pred, want, rtol=1e-4, atol=1e-4)


def test_stacking_auto_l2_picks_on_the_last_fifth_then_refits(one_target):
    linear_model = pytest.importorskip("sklearn.linear_model")
    stack, val, test = one_target
    F = values_of(stack, val[0])[:, :, 0].T
    y = val[1][:, 0].astype(np.float64)
    cut = len(y) - len(y) // 5
    scores = []
    for l2 in L2_GRID:
        head = y[:cut]
        sk = linear_model.Ridge(alpha=cut * head.var() * l2, solver="svd").fit(F[:cut], head)
        scores.append(np.mean((sk.predict(F[cut:]) - y[cut:]) ** 2))
    chosen = L2_GRID[int(np.argmin(scores))]
    ens = Ensemble(stack, "stacking", l2="auto").fit(*val)
    assert ens.l2_ == chosen
    refit = linear_model.Ridge(alpha=len(y) * y.var() * chosen, solver="svd").fit(F, y)
    np.testing.assert_allclose(ens.coef_[:, 0], refit.coef_, rtol=1e-3, atol=1e-4)


def test_auto_l2_needs_two_validation_rows(one_target, classification_stack):
    stack, val, test = one_target
    assert [holdout_cut(n) for n in (2, 4, 5, 9, 10, 300)] == [1, 3, 4, 8, 8, 240]
    with pytest.raises(ValueError, match="l2='auto' needs at least 2 validation rows; pass a number"):
        Ensemble(stack, "stacking", l2="auto").fit(val[0][:1], val[1][:1])
    with pytest.raises(ValueError, match="l2='auto' needs at least 2 validation rows; pass a number"):
        X = np.zeros((1, 6), dtype=np.float32)
        Ensemble(classification_stack, "stacking", l2="auto").fit(X, [0])  # the same cut, shared
    ens = Ensemble(stack, "stacking", l2="auto").fit(val[0][:2], val[1][:2])  # fits on one row, scores one
    assert ens.l2_ in L2_GRID and np.isfinite(ens.predict(test[0])).all()
    one_row = Ensemble(stack, "stacking", l2=1e-3).fit(val[0][:1], val[1][:1])  # a number holds no rows out
    close(one_row.predict(test[0]), np.full(len(test[0]), val[1][0, 0]))  # nothing to learn but the mean


def auto_l2_reference(V, y):
    """l2='auto' with scikit-learn's Ridge: fit on the first four fifths, the mean over targets
    of the last fifth's MSE / var(target), the first best of the grid."""
    linear_model = pytest.importorskip("sklearn.linear_model")
    n = len(y)
    cut = n - max(1, n // 5)
    scores = []
    for l2 in L2_GRID:
        score = 0.0
        for t in range(y.shape[1]):
            head = y[:cut, t]
            alpha = cut * (head.var() if head.var() > 0 else 1.0) * l2
            sk = linear_model.Ridge(alpha=alpha, solver="svd").fit(V[:, :cut, t].T, head)
            score += np.mean((sk.predict(V[:, cut:, t].T) - y[cut:, t]) ** 2) / y[:, t].var()
        scores.append(score)
    return L2_GRID[int(np.argmin(scores))]


def test_auto_l2_choice_against_scikit_learn():
    from segfast.regression_ensemble import choose_ridge_l2

    chosen = set()
    for seed in range(12):  # few rows, nearly collinear models: the penalty matters
        rng = np.random.default_rng(seed)
        n, m, k = int(rng.integers(10, 40)), int(rng.integers(3, 10)), int(rng.integers(1, 3))
        base = rng.normal(size=(n, k))
        V = base[None] + 0.05 * rng.normal(size=(m, n, k))
        y = base + 0.5 * rng.normal(size=(n, k))
        assert choose_ridge_l2(V, y) == auto_l2_reference(V, y), seed
        chosen.add(choose_ridge_l2(V, y))
    assert len(chosen) > 1  # the problems tell the grid's values apart


# -- stacking: nnls ---------------------------------------------------------------------------------
def objective(F, y, w):
    return float(np.sum((y - F @ w) ** 2))


def best_over_supports(F, y):
    """The exact optimum for a few models: on every support, the least squares with weights
    summing to one (its KKT system); the best of those with no negative weight."""
    m = F.shape[1]
    best = np.inf
    for size in range(1, m + 1):
        for support in itertools.combinations(range(m), size):
            A = F[:, support]
            kkt = np.block([[2 * A.T @ A, np.ones((size, 1))], [np.ones((1, size)), np.zeros((1, 1))]])
            rhs = np.concatenate([2 * A.T @ y, [1.0]])
            w = np.linalg.lstsq(kkt, rhs, rcond=None)[0][:size]
            if (w >= -1e-12).all():
                full = np.zeros(m)
                full[list(support)] = w
                best = min(best, objective(F, y, full))
    return best


def random_simplex_problem(seed):
    rng = np.random.default_rng(seed)
    n, m = int(rng.integers(3, 150)), int(rng.integers(1, 9))
    base = rng.normal(size=n)
    F = base[:, None] + rng.normal(size=(n, m)) * rng.uniform(0.05, 2, size=m) + rng.normal(size=m)
    if seed % 3 == 0 and m > 1:
        F[:, -1] = F[:, 0]  # two identical models: the optimum's weights are not unique
    y = base + 0.3 * rng.normal(size=n) + rng.normal()
    return F, y


@pytest.mark.parametrize("seed", range(12))
def test_nnls_is_the_best_convex_combination(seed):
    optimize = pytest.importorskip("scipy.optimize")
    F, y = random_simplex_problem(seed)
    m = F.shape[1]
    w = fit_simplex(F, y)
    assert (w >= 0).all() and w.sum() == pytest.approx(1, abs=1e-12)
    got = objective(F, y, w)
    assert got <= best_over_supports(F, y) * (1 + 1e-9) + 1e-12
    # SciPy's SLSQP on the same problem, from the uniform weights
    slsqp = optimize.minimize(
        lambda v: objective(F, y, v),
        np.full(m, 1.0 / m),
        jac=lambda v: -2 * F.T @ (y - F @ v),
        method="SLSQP",
        bounds=[(0, None)] * m,
        constraints=[{"type": "eq", "fun": lambda v: v.sum() - 1, "jac": lambda v: np.ones(m)}],
        options={"ftol": 1e-14, "maxiter": 1000},
    )
    assert got <= objective(F, y, slsqp.x) * (1 + 1e-6)
    # and SciPy's NNLS with the sum constraint as a heavily weighted extra row
    heavy = 1e4 * np.sqrt((F**2).sum(axis=0).max())
    v = optimize.nnls(np.vstack([F, heavy * np.ones(m)]), np.concatenate([y, [heavy]]))[0]
    assert got <= objective(F, y, v / v.sum()) * (1 + 1e-6)
    # optimality: no model's gradient undercuts the common one of the models in use (KKT)
    grad = F.T @ (F @ w - y)
    assert grad.min() >= grad[w > 0].max() - 1e-9 * max(1.0, float(y @ y))


def test_stacking_nnls_weights_are_a_convex_combination(three_targets):
    stack, val, test = three_targets
    ens = Ensemble(stack, "stacking", combiner="nnls").fit(*val)
    assert (ens.coef_ >= 0).all() and (ens.intercept_ == 0).all()
    np.testing.assert_allclose(ens.coef_.sum(0), 1, atol=1e-12)
    V = values_of(stack, val[0])
    for t in range(3):
        F, y = V[:, :, t].T, val[1][:, t].astype(np.float64)
        assert objective(F, y, ens.coef_[:, t]) <= best_over_supports(F, y) * (1 + 1e-5)
    close(ens.predict(test[0]), np.einsum("mrt,mt->rt", values_of(stack, test[0]), ens.coef_))


# -- competence -------------------------------------------------------------------------------------
def brute_force_competence(V_val, y_val, V, X_val, X, k):
    """One row at a time: each model's mean squared error on the row's k nearest validation rows
    (over the targets too), weights 1 / max(error, tiny), the weighted mean of the values."""
    out = np.empty(V.shape[1:])
    for r in range(len(X)):
        dist = ((X_val.astype(np.float64) - X[r]) ** 2).sum(1)
        near = np.argsort(dist, kind="stable")[:k]
        error = ((V_val[:, near] - y_val[near]) ** 2).mean(axis=(1, 2))
        w = 1 / np.maximum(error, np.finfo(np.float64).tiny)
        out[r] = np.einsum("m,mt->t", w, V[:, r]) / w.sum()
    return out


@pytest.mark.parametrize("fixture, k", [("one_target", 1), ("one_target", 7), ("three_targets", 12)])
def test_competence_matches_brute_force(request, fixture, k):
    stack, val, test = request.getfixturevalue(fixture)
    ens = Ensemble(stack, "competence", k=k).fit(*val)
    want = brute_force_competence(values_of(stack, val[0]), val[1], values_of(stack, test[0]), val[0], test[0], k)
    close(ens.predict(test[0]).reshape(want.shape), want)


# -- include=, k > 1, score -------------------------------------------------------------------------
def test_include_joins_the_members(one_target):
    stack, val, test = one_target
    merged = segfast.merge(stack, "uniform")
    V = np.concatenate([values_of(stack, test[0]), values_of(merged, test[0])])[:, :, 0]  # (7, n)
    close(Ensemble(stack, include=merged).predict(test[0]), V.mean(0))
    close(Ensemble(stack, "median", include=merged).predict(test[0]), np.sort(V, axis=0)[3])
    weighted = Ensemble(stack, "weighted", include=merged).fit(*val)
    assert weighted.weights_.shape == (7,)
    close(weighted.predict(test[0]), weighted.weights_ @ V)
    alone = Ensemble(stack, "weighted", weights=[0] * 6 + [1], include=merged)
    close(alone.predict(test[0]), V[6])
    assert not np.allclose(Ensemble(stack).predict(test[0]), V.mean(0))  # the merged model changed it
    assert Ensemble(stack, "stacking", include=merged).fit(*val).coef_.shape == (7, 1)


def test_several_targets_and_r2(three_targets):
    metrics = pytest.importorskip("sklearn.metrics")
    stack, val, test = three_targets
    V = values_of(stack, test[0])
    ens = Ensemble(stack).fit(*val)
    pred = ens.predict(test[0])
    assert pred.shape == (len(test[0]), 3)
    close(pred, V.mean(0))
    assert ens.score(*test) == pytest.approx(metrics.r2_score(test[1], pred), rel=1e-6)
    spread = np.sqrt(((V - V.mean(0)) ** 2).mean(0)).mean(1)
    close(ens.agreement(test[0]), spread)
    one, val1, test1 = trained_stack(k=1, n_models=3, seed=2)
    ens1 = Ensemble(one, "median")
    assert ens1.predict(test1[0]).shape == (len(test1[0]),)
    assert ens1.score(test1[0], test1[1][:, 0]) == pytest.approx(
        metrics.r2_score(test1[1][:, 0], ens1.predict(test1[0])), rel=1e-6
    )


def test_which_methods_learn_from_validation_rows(one_target):
    stack, _, test = one_target
    assert {m: learns_from_rows(m) for m in METHODS} == {
        "mean": False,
        "median": False,
        "weighted": True,
        "stacking": True,
        "competence": True,
    }
    assert not learns_from_rows("weighted", weights=[1] * 6) and not learns_from_rows("soft")
    for method in ("mean", "median"):
        assert Ensemble(stack, method).predict(test[0]).shape == (len(test[0]),)


# -- bad input --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def classification_stack():
    return MLPStack([6, 4, 3], 3, seed=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(method="soft"), "unknown ensemble method 'soft' for a regression stack"),
        (dict(method="hard"), "unknown ensemble method 'hard' for a regression stack"),
    ],
)
def test_classification_methods_refused_for_regression(one_target, kwargs, match):
    with pytest.raises(ValueError, match=match):
        Ensemble(one_target[0], **kwargs)


@pytest.mark.parametrize("method", ["mean", "median"])
def test_regression_methods_refused_for_classification(classification_stack, method):
    with pytest.raises(ValueError, match=f"unknown ensemble method '{method}' for a classification stack"):
        Ensemble(classification_stack, method)


@pytest.mark.parametrize("combiner", ["ridge", "nnls"])
def test_regression_combiners_refused_for_classification(classification_stack, combiner):
    X = np.zeros((4, 6), dtype=np.float32)
    with pytest.raises(ValueError, match=f"combiner must be 'weights' or 'logistic' .*got '{combiner}'"):
        Ensemble(classification_stack, "stacking", combiner=combiner).fit(X, np.arange(4) % 3)


def test_include_refused_for_classification(classification_stack):
    X = np.zeros((4, 6), dtype=np.float32)
    with pytest.raises(ValueError, match="include= adds a model to a regression ensemble"):
        Ensemble(classification_stack, include=classification_stack[0]).predict(X)


@pytest.mark.parametrize(
    "kwargs, call, error, match",
    [
        (dict(method="stacking", combiner="logistic"), "fit", ValueError, "combiner must be 'ridge' or 'nnls'"),
        (dict(method="stacking", combiner="weights"), "fit", ValueError, "combiner must be 'ridge' or 'nnls'"),
        (dict(), "fit_strings", TypeError, "y_val must hold real numbers"),
        (dict(), "fit_objects", TypeError, "y_val must hold real numbers"),
        (dict(), "fit_nan", ValueError, "y_val holds NaN or inf"),
        (dict(), "fit_inf", ValueError, "y_val holds NaN or inf"),
        (dict(), "fit_wide", ValueError, r"y_val must have shape \(300,\) or \(300, 1\)"),
        (dict(), "fit_short", ValueError, "y_val has 299 targets but X has 300 rows"),
        (dict(), "score_wide", ValueError, "y must have shape"),
        (dict(method="weighted"), "predict", segfast.ensemble.NotFittedError, "call fit"),
        (dict(method="stacking"), "predict", segfast.ensemble.NotFittedError, "call fit"),
        (dict(method="competence"), "predict", segfast.ensemble.NotFittedError, "call fit"),
        (dict(method="competence", k=301), "fit", ValueError, "k=301 is larger than the 300 validation rows"),
        (dict(method="competence", k=0), "fit", ValueError, "k must be an integer >= 1"),
        (dict(method="competence", region="train"), "fit", ValueError, "region='train'.*region='val'"),
        (dict(method="competence", knora="eliminate"), "fit", ValueError, "knora='eliminate' is a classification"),
        (dict(method="stacking", l2=-1.0), "fit", ValueError, "l2 must be 'auto' or a finite number"),
        (dict(), "fit_train_rows", ValueError, "X_train, y_train and segments serve region='train'"),
        (dict(method="weighted", weights=[1, 1]), "predict", ValueError, "weights must be 6 finite"),
        (dict(method="weighted", weights=[1, 1, np.nan, 1, 1, 1]), "predict", ValueError, "weights must be 6 finite"),
        (dict(method="weighted", weights=[1, 1, np.inf, 1, 1, 1]), "fit", ValueError, "weights must be 6 finite"),
        (dict(method="weighted", weights=[1, 1, -0.5, 1, 1, 1]), "predict", ValueError, "weights must be 6 finite"),
        (dict(method="weighted", weights=[0] * 6), "predict", ValueError, "with a positive sum"),
        (dict(method="weighted", weights=[0] * 6), "fit", ValueError, "with a positive sum"),
        (dict(tiebreak="merged"), "predict", ValueError, "tiebreak breaks classification's tied votes"),
        (dict(include="merged"), "predict", TypeError, "include must be a one-model MLPStack"),
        (dict(include="two models"), "predict", TypeError, "include must be a one-model MLPStack"),
        (dict(include="classifier"), "predict", ValueError, "include must be a regression stack"),
        (dict(include="two targets"), "predict", ValueError, "include must take the same features and give"),
        (dict(device="cuda"), "predict", ValueError, "device='cuda' runs classification stacks only"),
        (dict(), "predict_proba", AttributeError, "predicts values, not probabilities"),
        (dict(), "predict_wide", ValueError, "X has 7 features, but the stack is expecting 6"),
        (dict(), "classification_stack", ValueError, "RegressionEnsemble combines regression stacks"),
    ],
)
def test_bad_input(one_target, kwargs, call, error, match):
    stack, val, test = one_target
    X, y = val
    stand_ins = {
        "merged": "merged",
        "two models": MLPStack([6, 12, 1], 2, task="regression"),
        "classifier": MLPStack([6, 12, 2], 1),
        "two targets": MLPStack([6, 12, 2], 1, task="regression"),
    }
    if "include" in kwargs:
        kwargs = dict(kwargs, include=stand_ins[kwargs["include"]])
    ens = Ensemble(stack, **kwargs)
    with pytest.raises(error, match=match):
        if call == "fit":
            ens.fit(X, y)
        elif call == "fit_strings":
            ens.fit(X, y.astype(str))
        elif call == "fit_objects":
            ens.fit(X, np.array([{"y": v} for v in y[:, 0]], dtype=object))
        elif call in ("fit_nan", "fit_inf"):
            bad = y.copy()
            bad[5] = np.nan if call == "fit_nan" else np.inf
            ens.fit(X, bad)
        elif call == "fit_wide":
            ens.fit(X, np.hstack([y, y]))
        elif call == "fit_short":
            ens.fit(X, y[:-1])
        elif call == "score_wide":
            ens.score(X, np.hstack([y, y]))
        elif call == "fit_train_rows":
            ens.fit(X, y, X_train=X, y_train=y, segments=segfast.segment(y, 6))
        elif call == "predict_proba":
            ens.predict_proba(test[0])
        elif call == "predict_wide":
            ens.predict(np.zeros((3, 7), dtype=np.float32))
        elif call == "classification_stack":
            ens.set_params(stack=MLPStack([6, 4, 3], 2)).fit(X, y)
        else:
            ens.predict(test[0])


def bad_rows(X, kind):
    if kind == "nan":
        X = X.copy()
        X[5, 2] = np.nan
        return X
    return {"empty": X[:0], "1-d": X[:, 0], "strings": X.astype(str)}[kind]


@pytest.mark.parametrize(
    "kind, error, match",
    [
        ("nan", ValueError, r"holds 1 NaN or infinite values \(the first at row 5, column 2\)"),
        ("empty", ValueError, r"has no rows"),
        ("1-d", ValueError, r"must be 2-D \(rows, features\)"),
        ("strings", TypeError, r"must be a numeric array"),
    ],
)
@pytest.mark.parametrize("method", ["mean", "stacking", "competence"])
def test_bad_rows_are_refused_naming_the_argument(one_target, method, kind, error, match):
    stack, val, test = one_target
    ens = Ensemble(stack, method)
    with pytest.raises(error, match="^X_val " + match):
        ens.fit(bad_rows(val[0], kind), val[1])
    ens.fit(*val)
    for call in (ens.predict, ens.agreement, lambda X: ens.score(X, test[1])):
        with pytest.raises(error, match="^X " + match):
            call(bad_rows(test[0], kind))


def test_a_regression_ensemble_has_no_predict_proba(one_target, classification_stack):
    ens = Ensemble(one_target[0])
    assert not hasattr(ens, "predict_proba")  # what code probing for probabilities sees
    with pytest.raises(AttributeError, match=r"predicts values, not probabilities: use predict\(\)"):
        ens.predict_proba(one_target[2][0])
    assert hasattr(Ensemble(classification_stack), "predict_proba")


def test_tiebreak_is_checked_as_include_is(classification_stack):
    X = np.zeros((4, 6), dtype=np.float32)
    with pytest.raises(ValueError, match="tiebreak must be a classification stack, got a regression one"):
        Ensemble(classification_stack, "hard", tiebreak=MLPStack([6, 4, 3], 1, task="regression")).predict(X)
    with pytest.raises(
        ValueError,
        match="tiebreak must take the same features and give the same outputs as the stack: 6 -> 2 against 6 -> 3",
    ):
        Ensemble(classification_stack, "hard", tiebreak=MLPStack([6, 4, 2], 1)).predict(X)


def test_changing_the_members_after_fit_asks_for_a_refit():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(200, 4)).astype(np.float32)
    y = (X[:, 0] - X[:, 1]).astype(np.float32)
    stack = segfast.MLPStack([4, 8, 1], 5, task="regression", seed=1)
    ens = segfast.Ensemble(stack, "stacking").fit(X, y)
    ens.set_params(stack=stack.select([0, 1, 2]))
    with pytest.raises(NotFittedError, match="fitted with 5 members and now has 3"):
        ens.predict(X)
    ens.fit(X, y)
    assert ens.predict(X).shape == (200,)
    mean = segfast.Ensemble(stack.select([0, 1, 2]), "mean")  # learns nothing: no refit needed
    mean.set_params(stack=stack)
    assert mean.predict(X).shape == (200,)
