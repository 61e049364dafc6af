"""Learned merge coefficients: the core's gradient against numpy, the coefficients' gradient
against finite differences, the fit against a numpy/scipy optimiser, threshold's fallback."""

import warnings

import numpy as np
import pytest

import reference
import segfast
from conftest import blobs
from segfast import MLPStack, _core, learned_merge

DIMS = [12, 10, 4]


@pytest.fixture(scope="module")
def trained():
    """Four shared-start 12-10-4 models trained on skewed segments, and val rows."""
    rng = np.random.default_rng(1)
    X, y = blobs(rng, n=1400, d=12, classes=4, spread=1.2)
    segs = segfast.segment(y[:1000], 4, "dirichlet", alpha=0.3, seed=2)
    stack = MLPStack(DIMS, 4, init="shared", seed=3)
    segfast.train(stack, X[:1000], y[:1000], segs, epochs=4, lr=0.1, progress=False)
    return stack, (X[1000:], y[1000:])


# -- the core's gradient ----------------------------------------------------------------------------
@pytest.mark.parametrize("rows", [1, 255, 256, 1000])
def test_loss_gradient_matches_numpy(rows):
    rng = np.random.default_rng(rows)
    dims = [7, 9, 5, 3]
    row = MLPStack(dims, 1, seed=1).params[0]
    X = rng.normal(size=(rows, 7)).astype(np.float32)
    y = rng.integers(0, 3, rows)
    loss, grad = _core.loss_gradient(dims, row, X, y, 2)
    want_loss, want_grad = reference.loss_and_grad(dims, row, X, y)
    assert loss == pytest.approx(want_loss, rel=1e-5)
    np.testing.assert_allclose(grad, want_grad, atol=1e-6 * max(1.0, np.abs(want_grad).max()))
    for threads in (1, 3):  # the same bits whatever the threads
        again = _core.loss_gradient(dims, row, X, y, threads)
        assert again[0] == loss and np.array_equal(again[1], grad)


def test_loss_gradient_for_regression_matches_finite_differences():
    rng = np.random.default_rng(0)
    dims = [4, 6, 2]
    row = MLPStack(dims, 1, seed=2, task="regression").params[0].astype(np.float64)
    X = rng.normal(size=(300, 4)).astype(np.float32)
    t = rng.normal(size=(300, 2)).astype(np.float32)

    def mse(r):
        z, _ = reference.forward(dims, r, X)
        return ((z - t) ** 2).mean()

    loss, grad = _core.loss_gradient(dims, row.astype(np.float32), X, t, 1, loss="mse")
    assert loss == pytest.approx(mse(row), rel=1e-5)
    for p in rng.choice(row.size, 12, replace=False):
        e = np.zeros_like(row)
        e[p] = 1e-4
        assert grad[p] == pytest.approx((mse(row + e) - mse(row - e)) / 2e-4, rel=1e-3, abs=1e-6)


def test_loss_gradient_refuses_bad_labels():
    with pytest.raises(ValueError, match="label"):
        _core.loss_gradient(
            DIMS, np.zeros(MLPStack(DIMS, 1).n_params, np.float32), np.ones((2, 12), np.float32), np.array([0, 9]), 1
        )


# -- the coefficients -------------------------------------------------------------------------------
def _numpy_val_loss(stack, theta, val, per):
    """The merged model's validation loss at the flat theta, in numpy float64, built independently:
    each layer's units averaged with softmax-over-models weights."""
    dims, n = list(stack.dims), stack.n_models
    layers, start = [], 0
    for layer, width in enumerate(dims[1:]):
        m = 1 if per == "layer" else width
        t = theta[start : start + n * m].reshape(n, m)
        start += n * m
        a = np.exp(t - t.max(axis=0)) / np.exp(t - t.max(axis=0)).sum(axis=0)
        W, b = stack.weights(layer).astype(np.float64), stack.biases(layer).astype(np.float64)
        layers.append(((a[:, None, :] * W).sum(axis=0), (a * b).sum(axis=0)))
    return reference.loss(dims, reference.pack(layers), *val)


@pytest.mark.parametrize("per, size", [("layer", 8), ("unit", 56)])
def test_coefficient_gradient_matches_finite_differences(trained, per, size):
    stack, val = trained
    theta = np.random.default_rng(4).normal(size=size)
    loss, grad = learned_merge.loss_and_gradient(stack, theta, val, threads=2, per=per)
    assert loss == pytest.approx(_numpy_val_loss(stack, theta, val, per), rel=1e-5)
    for i in np.random.default_rng(5).choice(size, 8, replace=False):
        e = np.zeros_like(theta)
        e[i] = 1e-4
        numeric = (_numpy_val_loss(stack, theta + e, val, per) - _numpy_val_loss(stack, theta - e, val, per)) / 2e-4
        assert grad[i] == pytest.approx(numeric, rel=2e-3, abs=1e-6)


@pytest.mark.parametrize("per, size", [("layer", 8), ("unit", 56)])
def test_fit_reaches_the_optimum_a_reference_optimiser_finds(trained, per, size):
    scipy_optimize = pytest.importorskip("scipy.optimize")
    stack, val = trained
    fitted = learned_merge.fit_coefficients(stack, val, threads=2, per=per)
    assert [a.shape for a in fitted] == learned_merge.coefficient_shapes(stack, per)
    assert all(np.allclose(a.sum(axis=0), 1) and (a >= 0).all() for a in fitted)
    theta = np.concatenate([np.log(np.maximum(a, 1e-300)).ravel() for a in fitted])
    ours = _numpy_val_loss(stack, theta, val, per)
    theirs = scipy_optimize.minimize(lambda t: _numpy_val_loss(stack, t, val, per), np.zeros(size), method="BFGS")
    assert ours <= theirs.fun + 1e-4
    assert ours < _numpy_val_loss(stack, np.zeros(size), val, per)  # better than the uniform merge it starts from


# -- merge(method="learned") ------------------------------------------------------------------------
@pytest.mark.parametrize("per", ["layer", "unit"])
def test_learned_merge_beats_uniform_on_val_and_reports_its_coefficients(trained, per):
    stack, val = trained
    merged, details = segfast.merge(stack, "learned", val=val, coefficients=per, return_details=True)
    uniform = segfast.merge(stack, "uniform")
    assert segfast.evaluate(merged, *val).loss[0] < segfast.evaluate(uniform, *val).loss[0]
    np.testing.assert_array_equal(merged.params[0], learned_merge.merged_row(stack, details["coefficients"]))
    assert details["weights"].shape == (4,) and details["weights"].sum() == pytest.approx(1)


def test_learned_merge_with_align_and_repair(trained):
    stack, val = trained
    for per in ("layer", "unit"):
        merged = segfast.merge(stack, "learned", val=val, align=True, repair=val[0][:200], coefficients=per)
        assert merged.n_models == 1 and np.isfinite(merged.params).all()


def test_threshold_keeps_or_falls_back_to_the_best_fixed_merge(trained):
    stack, val = trained
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reaching it: no warning
        kept, details = segfast.merge(stack, "learned", val=val, threshold=0.0, return_details=True)
    assert "fallback" not in details and details["val_score"] == segfast.evaluate(kept, *val).accuracy[0]
    fixed = {m: segfast.merge(stack, m, val=val, return_details=True) for m in ("uniform", "loss", "rank", "greedy")}
    best_fixed = max(segfast.evaluate(model, *val).accuracy[0] for model, _ in fixed.values())
    for per in ("layer", "unit"):
        with pytest.warns(RuntimeWarning, match=r"below threshold 1.0"):
            model, details = segfast.merge(
                stack, "learned", val=val, threshold=1.0, coefficients=per, return_details=True
            )
        if details["val_score"] >= best_fixed:  # nothing does better: the learned merge stays
            assert "fallback" not in details and "coefficients" in details
            np.testing.assert_array_equal(model.params[0], learned_merge.merged_row(stack, details["coefficients"]))
        else:  # the best fixed merge, and the details describe it
            best = details["fallback"]
            assert details["fallback_score"] == best_fixed > details["val_score"]
            np.testing.assert_array_equal(model.params, fixed[best][0].params)
            np.testing.assert_array_equal(details["weights"], fixed[best][1]["weights"])
            assert "learned_coefficients" in details and "coefficients" not in details


@pytest.mark.parametrize(
    "options, match",
    [
        ({"threshold": 1.5}, r"threshold must be a number in \[0, 1\]"),
        ({"threshold": -0.1}, r"threshold must be a number in \[0, 1\]"),
        ({"threshold": "high"}, r"threshold must be a number in \[0, 1\]"),
        ({"method": "uniform", "threshold": 0.5}, r"threshold= is only used by method='learned', not 'uniform'"),
        ({"val": None}, r"method='learned' needs val="),
        ({"coefficients": "model"}, r"coefficients must be 'layer' or 'unit', got 'model'"),
        ({"method": "rank", "coefficients": "unit"}, r"coefficients= is only used by method='learned', not 'rank'"),
    ],
)
def test_bad_learned_options_are_refused(trained, options, match):
    stack, val = trained
    options = {"method": "learned", "val": val, **options}
    with pytest.raises(ValueError, match=match):
        segfast.merge(stack, **options)


def test_rounds_merge_learned(trained):
    stack, val = trained
    rng = np.random.default_rng(5)
    X, y = blobs(rng, n=600, d=12, classes=4, spread=1.2)
    segs = segfast.segment(y, 4, seed=0)
    result = segfast.rounds(
        DIMS, X, y, segs, rounds=2, merge={"method": "learned", "threshold": 0.1}, val=val, progress=False
    )
    assert result.global_model.n_models == 1 and "global_accuracy" in result.history[-1]
    with pytest.raises(ValueError, match="needs val="):
        segfast.rounds(DIMS, X, y, segs, rounds=1, merge="learned", progress=False)


def test_repair_with_equal_unit_coefficients_is_the_plain_repair(trained):
    from segfast.repair import repair

    stack, val = trained
    merged = segfast.merge(stack, "uniform")
    per_unit = [np.full((4, width), 0.25) for width in stack.dims[1:]]
    plain = repair(merged, stack, val[0], np.full(4, 0.25), 1)
    np.testing.assert_allclose(repair(merged, stack, val[0], per_unit, 1).params, plain.params, rtol=1e-6)


def test_a_learned_merge_of_unaligned_models_falls_back_to_a_better_fixed_one():
    # independent starts, not aligned: per-layer coefficients cannot undo the permuted units,
    # and greedy's single best model beats them, so threshold=1 falls back (seen on this seed)
    rng = np.random.default_rng(1)
    X, y = blobs(rng, n=1400, d=12, classes=4, spread=1.2)
    stack = MLPStack(DIMS, 4, init="independent", seed=0)
    segfast.train(
        stack,
        X[:1000],
        y[:1000],
        segfast.segment(y[:1000], 4, "dirichlet", alpha=0.3, seed=2),
        epochs=4,
        lr=0.1,
        progress=False,
    )
    val = (X[1000:], y[1000:])
    with pytest.warns(RuntimeWarning, match=r"returning the best fixed merge instead"):
        model, details = segfast.merge(stack, "learned", val=val, threshold=1.0, return_details=True)
    assert details["fallback_score"] > details["val_score"]
    assert segfast.evaluate(model, *val).accuracy[0] == details["fallback_score"]


def test_loss_gradient_refuses_bad_shapes_and_takes_no_rows():
    row = MLPStack(DIMS, 1).params[0]
    X, y = np.ones((3, 12), np.float32), np.array([0, 1, 2])
    with pytest.raises(ValueError, match="params"):
        _core.loss_gradient(DIMS, row[:-1], X, y, 1)
    with pytest.raises(ValueError, match="X"):
        _core.loss_gradient(DIMS, row, X[:, :5], y, 1)
    with pytest.raises(ValueError, match="y"):
        _core.loss_gradient(DIMS, row, X, y[:2], 1)
    with pytest.raises((TypeError, ValueError), match="y"):
        _core.loss_gradient(DIMS, row, X, y.astype(np.float32), 1)  # class labels are integers
    with pytest.raises(ValueError, match="loss must be"):
        _core.loss_gradient(DIMS, row, X, y, 1, loss="hinge")
    loss, grad = _core.loss_gradient(DIMS, row, X[:0], y[:0], 1)
    assert loss == 0 and (grad == 0).all()


@pytest.mark.parametrize("bad", ["nan_val", "nan_model"])
def test_learned_merge_refuses_nan(trained, bad):
    stack, (X_val, y_val) = trained
    if bad == "nan_val":
        X_val = X_val.copy()
        X_val[3, 1] = np.nan
        match = r"NaN or infinite"
    else:
        stack = stack.copy()
        stack.params[1, 5] = np.nan
        match = r"model 1 of the stack holds NaN or infinite parameters but is not marked diverged"
    with pytest.raises(ValueError, match=match):
        segfast.merge(stack, "learned", val=(X_val, y_val))
