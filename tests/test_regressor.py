"""SegmentRegressor: scikit-learn's estimator checks, a real nonlinear fit, determinism, grid
search, targets of every shape and scale, and the bad input it refuses."""

import pickle
import warnings

import numpy as np
import pytest

import segfast
from segfast.regressor import SegmentRegressor

FAST = dict(n_segments=2, hidden=(16,), local_epochs=20)


def nonlinear(n, k=1, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    y = np.sin(2 * X[:, 0]) + X[:, 1] * X[:, 2] + 0.5 * X[:, 3] + 0.1 * rng.normal(size=n)
    if k > 1:
        y = np.stack([y, 2 * X[:, 4] - np.cos(X[:, 0])][:k], axis=1)
    return X, y


@pytest.mark.parametrize(
    "kwargs",
    [
        FAST,
        dict(FAST, rounds=2, combine="ensemble", ensemble="stacking"),
        dict(FAST, combine="ensemble", ensemble="competence", loss="huber", local_epochs=40),  # huber: slower steps
    ],
)
def test_passes_scikit_learns_estimator_checks(kwargs):
    estimator_checks = pytest.importorskip("sklearn.utils.estimator_checks")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the checks' own SkipTestWarnings (no pandas, no array API)
        results = estimator_checks.check_estimator(SegmentRegressor(**kwargs), on_fail=None)
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in results if r["status"] == "failed"]
    assert not failed, failed
    assert sum(r["status"] == "passed" for r in results) > 40  # the checks ran, not skipped


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(n_segments=4, rounds=10, local_epochs=3),
        dict(n_segments=4, rounds=10, local_epochs=3, combine="ensemble", ensemble="stacking"),
    ],
)
def test_learns_a_nonlinear_function(kwargs):
    metrics = pytest.importorskip("sklearn.metrics")
    X, y = nonlinear(4000)
    model = SegmentRegressor(hidden=(64,), **kwargs).fit(X[:3000], y[:3000])
    score = model.score(X[3000:], y[3000:])
    assert score > 0.8, score
    assert score == pytest.approx(metrics.r2_score(y[3000:], model.predict(X[3000:])))


def test_scale_and_offset_of_the_data_do_not_matter():
    # standardised inside: targets in the millions and a feature near a timestamp (1.7e9, where
    # float32 steps by 128) learn as the unit-scale data do
    X, y = nonlinear(2000, seed=1)
    options = dict(n_segments=2, hidden=(32,), local_epochs=10, seed=3)
    unit = SegmentRegressor(**options).fit(X[:1500], y[:1500])
    shifted = X.copy()
    shifted[:, 0] = 1.7e9 + 1000 * shifted[:, 0]
    scaled = SegmentRegressor(**options).fit(shifted[:1500], 1e6 + 1e5 * y[:1500])
    np.testing.assert_allclose(
        (scaled.predict(shifted[1500:]) - 1e6) / 1e5, unit.predict(X[1500:]), rtol=1e-3, atol=1e-3
    )


def test_several_targets_keep_their_shape():
    X, y = nonlinear(1500, k=2)
    model = SegmentRegressor(n_segments=3, hidden=(32,), local_epochs=5).fit(X, y)
    assert model.predict(X[:7]).shape == (7, 2) and model.n_targets_ == 2
    column = SegmentRegressor(n_segments=3, hidden=(32,), local_epochs=5).fit(X, y[:, :1])
    row = SegmentRegressor(n_segments=3, hidden=(32,), local_epochs=5).fit(X, y[:, 0])
    assert column.predict(X[:7]).shape == (7, 1) and row.predict(X[:7]).shape == (7,)
    np.testing.assert_array_equal(column.predict(X[:7])[:, 0], row.predict(X[:7]))
    ensemble = SegmentRegressor(n_segments=3, hidden=(32,), local_epochs=5, combine="ensemble", ensemble="median")
    assert ensemble.fit(X, y).predict(X[:7]).shape == (7, 2)


def test_a_seed_gives_the_same_model_and_another_seed_another():
    X, y = nonlinear(800)
    options = dict(n_segments=3, hidden=(16,), local_epochs=3, combine="ensemble", ensemble="weighted")
    a = SegmentRegressor(seed=5, **options).fit(X, y)
    b = SegmentRegressor(seed=5, **options).fit(X, y)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    np.testing.assert_array_equal(a.model_.params, b.model_.params)
    assert not np.array_equal(SegmentRegressor(seed=6, **options).fit(X, y).predict(X), a.predict(X))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(a)).predict(X), a.predict(X))


def test_grid_search():
    model_selection = pytest.importorskip("sklearn.model_selection")
    X, y = nonlinear(1200)
    grid = model_selection.GridSearchCV(
        SegmentRegressor(n_segments=2, hidden=(32,), local_epochs=10), {"lr": [0.001, 0.05]}, cv=2
    )
    grid.fit(X, y)
    assert grid.best_params_["lr"] == 0.05 and grid.best_score_ > 0.5, grid.cv_results_["mean_test_score"]


def test_parameters_are_keyword_only():
    with pytest.raises(TypeError, match="positional"):
        SegmentRegressor(5)
    assert SegmentRegressor(n_segments=5).get_params()["ensemble"] == "mean"


@pytest.mark.parametrize(
    "kwargs, y, error, match",
    [
        (dict(), "strings", TypeError, "y must hold real numbers"),
        (dict(), "objects", TypeError, "y must hold real numbers"),
        (dict(), "nan", ValueError, "y holds NaN or inf"),
        (dict(), "inf", ValueError, "y holds NaN or inf"),
        (dict(), "short", ValueError, "y has 19 targets but X has 20 rows"),
        (dict(), "3-d", ValueError, "y must have shape"),
        (dict(), None, ValueError, "requires y to be passed"),
        (dict(n_segments=30), "ok", ValueError, "cannot fill 30 segments"),
        (dict(combine="vote"), "ok", ValueError, "combine must be 'merge' or 'ensemble'"),
        (dict(combine="ensemble", ensemble="soft"), "ok", ValueError, "ensemble must be one of mean, median"),
        (dict(combine="ensemble", ensemble="stacking", validation_fraction=0.0), "ok", ValueError, "raise valid"),
        (dict(loss="hinge"), "ok", ValueError, "loss must be 'mse' or 'huber'"),
    ],
)
def test_refuses_bad_input(kwargs, y, error, match):
    rng = np.random.default_rng(0)
    X = rng.random((20, 3))
    targets = {
        "ok": rng.random(20),
        "strings": rng.random(20).astype(str),
        "objects": np.array([{"y": 1}] * 20, dtype=object),
        "nan": np.where(np.arange(20) == 3, np.nan, 1.0),
        "inf": np.where(np.arange(20) == 3, np.inf, 1.0),
        "short": rng.random(19),
        "3-d": rng.random((20, 1, 1)),
        None: None,
    }
    with pytest.raises(error, match=match):
        SegmentRegressor(**{"n_segments": 2, **kwargs}).fit(X, targets[y])


def test_refuses_to_predict_before_fit_and_on_other_features():
    X, y = nonlinear(100)
    with pytest.raises(segfast.ensemble.NotFittedError, match="call fit"):
        SegmentRegressor().predict(X)
    model = SegmentRegressor(n_segments=2, hidden=(8,), local_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="X has 4 features, but SegmentRegressor is expecting 5"):
        model.predict(X[:, :4])
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.predict(np.full((2, 5), np.nan))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_refuses_nan_features_naming_x(bad):
    X, y = nonlinear(40)
    X[7, 2] = bad
    with pytest.raises(ValueError, match=r"^X holds 1 NaN or infinite values \(the first at row 7, column 2\)"):
        SegmentRegressor(n_segments=2).fit(X, y)


def test_a_constant_feature_is_not_blown_up_at_predict_time():
    X, y = nonlinear(600)
    X = np.column_stack([X, np.full(len(X), 0.1)])  # constant, with a float std of ~1e-17, not 0
    model = SegmentRegressor(n_segments=2, hidden=(16,), local_epochs=5).fit(X, y)
    assert model.X_scale_[-1] == 1.0
    shifted = X.copy()
    shifted[:, -1] = 0.2
    assert np.abs(model.predict(shifted) - model.predict(X)).max() < 10 * np.abs(y).max()
