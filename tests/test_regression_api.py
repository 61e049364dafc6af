"""Regression through the public API (issue 18): the task in the stack and its files, train's
losses and targets, predict's values and evaluate's scores against numpy, merges ranking by
validation MSE, rounds with run directories and resume, segments cut by target quantile, and
the bad input each entry point refuses."""

import json

import numpy as np
import pytest

import segfast
from segfast import MLPStack
from segfast.merge import rank_weights

DIMS = [6, 16, 1]


def regression_data(n=600, d=6, k=1, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    W = rng.normal(size=(d, k))
    y = X @ W + 0.5 * np.sin(2 * X[:, :k])
    y = y.astype(np.float32)
    return X, (y[:, 0] if k == 1 else y)


def forward(stack, X):
    """Every model's outputs in float64 numpy: ReLU hidden layers, a linear last layer."""
    out = []
    for m in range(stack.n_models):
        h = X.astype(np.float64)
        for layer in range(stack.n_layers):
            h = h @ stack.weights(layer)[m].astype(np.float64) + stack.biases(layer)[m]
            if layer < stack.n_layers - 1:
                h = np.maximum(h, 0)
        out.append(h)
    return np.stack(out)  # (N, n, k)


# -- the task in the stack and its files ---------------------------------------------------------
def test_task_travels_with_the_stack(tmp_path):
    stack = MLPStack(DIMS, 3, task="regression")
    assert stack.is_regression and stack.n_outputs == 1 and "task='regression'" in repr(stack)
    for derived in (stack.copy(), stack.select([0, 2]), stack[1], stack.like(stack.params[:1])):
        assert derived.task == "regression"
    back = MLPStack.load(stack.save(tmp_path / "r.npz"))
    assert back.task == "regression" and np.array_equal(back.params, stack.params)
    assert MLPStack.load(MLPStack([6, 4, 3], 2).save(tmp_path / "c.npz")).task == "classification"
    one = MLPStack.from_state_dict(stack.state_dict(0), task="regression")
    assert one.task == "regression" and np.array_equal(one.params[0], stack.params[0])


def test_file_from_before_regression_loads_as_classification(tmp_path):
    stack = MLPStack([6, 4, 3], 2)
    np.savez(tmp_path / "old.npz", format=np.array("segfast.MLPStack/1"), dims=np.array(stack.dims),
             params=stack.params, diverged=stack.diverged)  # fmt: skip
    assert MLPStack.load(tmp_path / "old.npz").task == "classification"


@pytest.mark.parametrize("task", [np.array("regress"), np.array(["regression"]), np.array(3), np.array("x" * 500)])
def test_forged_task_in_a_file_is_refused(tmp_path, task):
    stack = MLPStack(DIMS, 1, task="regression")
    path = tmp_path / "forged.npz"
    np.savez(path, format=np.array("segfast.MLPStack/1"), dims=np.array(stack.dims), params=stack.params,
             diverged=stack.diverged, task=task)  # fmt: skip
    with pytest.raises(ValueError, match=r"forged.npz: task"):
        MLPStack.load(path)


def test_output_width_one_is_for_regression_only():
    with pytest.raises(ValueError, match=r"output width \(classes\) must be >= 2.*task='regression'"):
        MLPStack(DIMS, 1)
    with pytest.raises(ValueError, match="task must be 'classification' or 'regression'"):
        MLPStack(DIMS, 1, task="Regression")


def test_safetensors_keep_the_task(tmp_path):
    pytest.importorskip("safetensors")
    stack = MLPStack([6, 8, 2], 3, task="regression")
    back = MLPStack.load_safetensors(stack.save_safetensors(tmp_path / "r.safetensors"))
    assert back.task == "regression" and np.array_equal(back.params, stack.params)


# -- train ------------------------------------------------------------------------------------------
def test_train_learns_and_is_deterministic_across_threads():
    X, y = regression_data()
    segments = segfast.segment(y, 4, "iid", seed=1)
    runs = []
    for n_jobs in (1, 2):
        stack = MLPStack(DIMS, 4, init="shared", task="regression")
        segfast.train(stack, X, y, segments, epochs=30, lr=0.02, n_jobs=n_jobs)
        runs.append(stack.params.copy())
    assert np.array_equal(*runs)
    scores = segfast.evaluate(stack, X, y)
    assert (scores.r2 > 0.9).all(), scores.r2


def test_targets_of_shape_n_and_n1_train_the_same():
    X, y = regression_data()
    segments = segfast.segment(y, 2, seed=0)
    a, b = MLPStack(DIMS, 2, task="regression"), MLPStack(DIMS, 2, task="regression")
    segfast.train(a, X, y, segments, epochs=2)
    segfast.train(b, X, y[:, None], segments, epochs=2)
    assert np.array_equal(a.params, b.params)


def test_huber_is_not_mse():
    X, y = regression_data()
    y = y * 10  # residuals beyond delta
    segments = segfast.segment(y, 2, seed=0)
    a, b = MLPStack(DIMS, 2, task="regression"), MLPStack(DIMS, 2, task="regression")
    ha = segfast.train(a, X, y, segments, epochs=1, lr=0.001, loss="mse")
    hb = segfast.train(b, X, y, segments, epochs=1, lr=0.001, loss="huber", huber_delta=1.0)
    assert not np.array_equal(a.params, b.params)
    assert (hb.loss < ha.loss).all()  # Huber grows linearly where MSE grows quadratically


def test_train_refuses_bad_regression_input():
    X, y = regression_data()
    segments = segfast.segment(y, 2, seed=0)
    stack = MLPStack(DIMS, 2, task="regression")
    before = stack.params.copy()
    with pytest.raises(TypeError, match="y must hold real numbers"):
        segfast.train(stack, X, y.astype(str), segments)
    with pytest.raises(TypeError, match="y must hold real numbers"):
        segfast.train(stack, X, y > 0, segments)
    bad = y.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="y holds NaN or inf"):
        segfast.train(stack, X, bad, segments)
    with pytest.raises(ValueError, match="y holds values beyond float32"):
        segfast.train(stack, X, y.astype(np.float64) * 1e300, segments)
    with pytest.raises(ValueError, match=r"y must have shape \(600,\) or \(600, 1\)"):
        segfast.train(stack, X, np.stack([y, y], axis=1), segments)
    with pytest.raises(ValueError, match="loss must be 'mse' or 'huber'"):
        segfast.train(stack, X, y, segments, loss="cross_entropy")
    for delta in (0, -1.0, np.nan, 1e-50):
        with pytest.raises(ValueError, match="huber_delta"):
            segfast.train(stack, X, y, segments, loss="huber", huber_delta=delta)
    with pytest.raises(ValueError, match="device='cuda' runs classification stacks only"):
        segfast.train(stack, X, y, segments, device="cuda")
    assert np.array_equal(stack.params, before)  # nothing trained by a refused call
    integer_targets = np.round(y * 3).astype(np.int64)  # integers are numbers too
    segfast.train(stack, X, integer_targets, segments, epochs=1, lr=0.001)


def test_regression_loss_on_a_classification_stack_is_refused():
    X, _ = regression_data()
    labels = (X[:, 0] > 0).astype(np.int64)
    stack = MLPStack([6, 8, 2], 2)
    with pytest.raises(ValueError, match="loss='mse' needs a regression stack"):
        segfast.train(stack, X, labels, segfast.segment(labels, 2), loss="mse")
    with pytest.raises(TypeError, match="integer class labels"):
        segfast.train(stack, X, X[:, 0], segfast.segment(labels, 2))


# -- predict and evaluate ---------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 3])
def test_predict_and_evaluate_match_numpy(k):
    X, y = regression_data(k=k)
    stack = MLPStack([6, 16, k], 5, task="regression", seed=3)
    values = segfast.predict(stack, X)
    reference = forward(stack, X)
    assert values.dtype == np.float32
    assert values.shape == ((5, 600) if k == 1 else (5, 600, k))
    np.testing.assert_allclose(values.reshape(5, 600, k), reference, rtol=1e-4, atol=1e-5)
    scores = segfast.evaluate(stack, X, y)
    t = y.reshape(600, k).astype(np.float64)
    residual = reference - t[None]
    np.testing.assert_allclose(scores.loss, (residual**2).mean(axis=(1, 2)), rtol=1e-4)
    np.testing.assert_allclose(scores.rmse, np.sqrt((residual**2).mean(axis=(1, 2))), rtol=1e-4)
    np.testing.assert_allclose(scores.mae, np.abs(residual).mean(axis=(1, 2)), rtol=1e-4)
    metrics = pytest.importorskip("sklearn.metrics")
    r2 = [metrics.r2_score(t, reference[m]) for m in range(5)]
    np.testing.assert_allclose(scores.r2, r2, rtol=1e-4, atol=1e-6)


def test_evaluate_is_thread_independent_and_handles_a_constant_target():
    X, y = regression_data(n=1000)
    stack = MLPStack(DIMS, 7, task="regression")
    a, b = segfast.evaluate(stack, X, y, n_jobs=1), segfast.evaluate(stack, X, y, n_jobs=2)
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    constant = np.full(len(X), 2.0, dtype=np.float32)
    assert (segfast.evaluate(stack, X, constant).r2 == 0).all()  # as scikit-learn's r2_score


def test_classification_only_calls_refuse_a_regression_stack():
    X, y = regression_data()
    stack = MLPStack(DIMS, 2, task="regression")
    with pytest.raises(ValueError, match="predict_proba needs a classification stack"):
        segfast.predict_proba(stack, X)
    with pytest.raises(ValueError, match=r"y has 10 targets but X has 600 rows"):
        segfast.evaluate(stack, X, y[:10])
    with pytest.raises(ValueError, match="X has no rows"):
        segfast.evaluate(stack, X[:0], y[:0])
    with pytest.raises(ValueError, match="X has 5 features, but the stack is expecting 6"):
        segfast.predict(stack, X[:, :5])
    with pytest.raises(ValueError, match="X holds 18 NaN or infinite values"):
        segfast.predict(stack, np.full((3, 6), np.nan, dtype=np.float32))
    # the kernel's own guard, whatever a caller passes: targets of the wrong width or dtype
    with pytest.raises(ValueError, match=r"y must have shape \(600, 1\), got \(600, 2\)"):
        segfast._core.regression_errors(list(stack.dims), stack.params, X, np.zeros((600, 2), np.float32), 1)
    with pytest.raises(TypeError, match="y must have dtype float32"):
        segfast._core.regression_errors(list(stack.dims), stack.params, X, np.zeros((600, 1)), 1)


# -- merge ------------------------------------------------------------------------------------------
def test_ranking_merges_rank_by_validation_mse():
    X, y = regression_data(n=900)
    segments = segfast.segment(y[:600], 5, seed=2)
    stack = MLPStack(DIMS, 5, init="shared", task="regression")
    segfast.train(stack, X[:600], y[:600], segments, epochs=[1, 2, 3, 5, 8], lr=0.02)
    val = (X[600:], y[600:])
    mse = segfast.evaluate(stack, *val).loss
    merged, details = segfast.merge(stack, "rank", val=val, return_details=True)
    np.testing.assert_array_equal(details["weights"], rank_weights(mse))
    assert merged.task == "regression"
    for method, options in (("uniform", {}), ("loss", {"val": val}), ("greedy", {"val": val}), ("median", {}),
                            ("cluster-best", {"val": val, "k": 2})):  # fmt: skip
        out = segfast.merge(stack, method, **options)
        assert out.task == "regression" and np.isfinite(out.params).all()
    aligned = segfast.merge(stack, "uniform", align=True, repair=X[:200])
    assert aligned.task == "regression"
    with pytest.raises(TypeError, match="val y must hold real numbers"):
        segfast.merge(stack, "rank", val=(X[600:], y[600:].astype(str)))


# -- rounds -----------------------------------------------------------------------------------------
def regression_rounds(out=None, n_rounds=4, resume=False, **options):
    X, y = regression_data(n=900)
    segments = segfast.segment(y[:600], 6, seed=4)
    start = MLPStack(DIMS, 1, task="regression", seed=5)
    return segfast.rounds(start, X[:600], y[:600], segments, n_rounds, local_epochs=2, val=(X[600:], y[600:]),
                          lr=0.02, out=out, resume=resume, progress=False, **options)  # fmt: skip


def test_rounds_regression_records_and_best_model():
    result = regression_rounds(val_segments=True)
    assert result.global_model.task == "regression" and result.local_models.task == "regression"
    first, last = result.history[0], result.history[-1]
    assert {"global_loss", "global_rmse", "global_r2", "segment_rmse_mean", "ensemble_rmse"} <= set(last)
    assert "global_accuracy" not in last
    assert last["global_loss"] < first["global_loss"]
    X, y = regression_data(n=900)
    scores = segfast.evaluate(result.global_model, X[600:], y[600:])
    assert scores.loss[0] == pytest.approx(last["global_loss"], rel=1e-9)
    assert scores.r2[0] == pytest.approx(last["global_r2"], rel=1e-9)
    best = min(result.history, key=lambda h: h["global_loss"])
    assert segfast.evaluate(result.best_model, X[600:], y[600:]).loss[0] == pytest.approx(best["global_loss"])
    # the segment models' mean prediction is the "ensemble" of the record
    values = segfast.predict(result.local_models, X[600:]).astype(np.float64)
    assert np.sqrt(((values.mean(axis=0) - y[600:]) ** 2).mean()) == pytest.approx(last["ensemble_rmse"], rel=1e-6)


def test_rounds_regression_resume_is_bit_identical(tmp_path):
    straight = regression_rounds(tmp_path / "a", merge="rank", loss="huber", huber_delta=0.5)
    regression_rounds(tmp_path / "b", n_rounds=2, merge="rank", loss="huber", huber_delta=0.5)
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert config["task"] == "regression" and config["train"]["loss"] == "huber"
    resumed = regression_rounds(tmp_path / "b", resume=True, merge="rank", loss="huber", huber_delta=0.5)
    assert np.array_equal(straight.global_model.params, resumed.global_model.params)
    assert MLPStack.load(tmp_path / "b" / "best.npz").task == "regression"
    assert MLPStack.load(tmp_path / "b" / "final.npz").task == "regression"


def test_rounds_regression_refuses_bad_input(tmp_path):
    X, y = regression_data()
    segments = segfast.segment(y, 3)
    start = MLPStack(DIMS, 1, task="regression")
    with pytest.raises(ValueError, match="loss must be 'mse' or 'huber'"):
        segfast.rounds(start, X, y, segments, 2, loss="hinge", progress=False, out=tmp_path / "r")
    assert not (tmp_path / "r").exists()  # refused before the run directory is made
    with pytest.raises(TypeError, match="val y must hold real numbers"):
        segfast.rounds(start, X, y, segments, 2, val=(X, y.astype(str)), progress=False)
    with pytest.raises(TypeError, match="integer class labels"):
        segfast.rounds([6, 8, 3], X, y, segments, 2, progress=False)  # a classifier given targets


# -- segments ---------------------------------------------------------------------------------------
def test_float_targets_segment_by_quantile():
    y = np.random.default_rng(0).normal(size=1001)
    parts = list(segfast.segment(y, 4, "by_label"))
    assert [len(p) for p in parts] == [251, 250, 250, 250]
    for low, high in zip(parts[:-1], parts[1:]):
        assert y[low].max() <= y[high].min()  # segment 0 holds the lowest targets

    def spread(segments):  # how far apart the segments' mean targets are
        means = [y[p].mean() for p in segments]
        return max(means) - min(means)

    iid = segfast.segment(y, 5, "iid", seed=0)
    skewed = segfast.segment(y, 5, "dirichlet", alpha=0.1, seed=0)
    assert spread(skewed) > 3 * spread(iid)  # each segment sees its own ranges of the target
    two = np.stack([y, -y], axis=1)
    assert [list(p) for p in segfast.segment(two, 4, "by_label")] == [list(p) for p in parts]
