"""The regression losses of the C++ epoch (the foundation of issue 18's regression task): MSE and
Huber against numpy float64 oracles, whose gradients are checked by finite differences; the same
bits on any thread count; bad settings and targets refused."""

import numpy as np
import pytest

from segfast import MLPStack, _core

DIMS = [5, 7, 3]  # three regression outputs


def oracle_loss(z, t, loss, delta=1.0):
    """Per row: the mean over outputs of (z - t)^2 (MSE) or of the Huber function of z - t."""
    r = z - t
    if loss == "mse":
        return (r**2).mean(axis=1)
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r**2, delta * (a - 0.5 * delta)).mean(axis=1)


def oracle_slope(z, t, loss, delta=1.0):
    """d(mean over rows of the row losses)/dz, written out by hand."""
    r = z - t
    per_output = 2 * r if loss == "mse" else np.clip(r, -delta, delta)
    return per_output / (z.shape[0] * z.shape[1])


def layers(params):
    """[(W (d_in, d_out), b (d_out,)), ...] of one model's parameter row, float64."""
    out, at = [], 0
    for d_in, d_out in zip(DIMS[:-1], DIMS[1:]):
        w = params[at : at + d_in * d_out].reshape(d_in, d_out).astype(np.float64)
        at += d_in * d_out
        out.append((w, params[at : at + d_out].astype(np.float64)))
        at += d_out
    return out


def oracle_step(params, X, T, loss, lr, delta=1.0):
    """One SGD step of one model on all rows (float64), and the summed loss before it."""
    (W0, b0), (W1, b1) = layers(params)
    h_pre = X @ W0 + b0
    h = np.maximum(h_pre, 0)
    z = h @ W1 + b1
    g = oracle_slope(z, T, loss, delta)
    gW1, gb1 = h.T @ g, g.sum(0)
    gh = (g @ W1.T) * (h_pre > 0)
    gW0, gb0 = X.T @ gh, gh.sum(0)
    new = np.concatenate([(W0 - lr * gW0).ravel(), b0 - lr * gb0, (W1 - lr * gW1).ravel(), b1 - lr * gb1])
    return new, oracle_loss(z, T, loss, delta).sum()


def epoch(stack, X, T, offsets, loss, lr=0.1, delta=1.0, n_jobs=1, batch_size=64):
    n = stack.n_models
    settings = _core.EpochSettings(batch_size=batch_size, lr=lr, n_jobs=n_jobs, loss=loss, huber_delta=delta)
    return _core.train_epoch(
        DIMS,
        stack.params,
        None,
        None,
        X,
        T,
        np.arange(len(X), dtype=np.int64),
        np.asarray(offsets, dtype=np.int64),
        np.ones(n, dtype=np.uint8),
        np.zeros(n, dtype=np.int64),
        settings,
    )


@pytest.mark.parametrize("loss,delta", [("mse", 1.0), ("huber", 1.0), ("huber", 0.05)])
def test_one_step_matches_the_numpy_oracle(rng, loss, delta):
    X = rng.standard_normal((24, 5)).astype(np.float32)
    T = (2 * rng.standard_normal((24, 3))).astype(np.float32)  # residuals on both sides of delta
    stack = MLPStack(DIMS, 1, seed=3)
    want, want_loss = oracle_step(stack.params[0], X.astype(np.float64), T.astype(np.float64), loss, 0.1, delta)
    mean_loss, diverged = epoch(stack, X, T, [0, 24], loss, delta=delta)[:2]
    np.testing.assert_allclose(stack.params[0], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mean_loss[0], want_loss / 24, rtol=1e-5)
    assert not diverged[0]


@pytest.mark.parametrize("loss,delta", [("mse", 1.0), ("huber", 0.3)])
def test_the_oracles_gradient_is_the_losss_gradient(rng, loss, delta):
    z = rng.standard_normal((6, 3))
    t = rng.standard_normal((6, 3))
    g = oracle_slope(z, t, loss, delta)
    eps = 1e-6
    for i, c in [(0, 0), (2, 1), (5, 2), (3, 0)]:
        up, down = z.copy(), z.copy()
        up[i, c] += eps
        down[i, c] -= eps
        numeric = (oracle_loss(up, t, loss, delta).mean() - oracle_loss(down, t, loss, delta).mean()) / (2 * eps)
        assert abs(numeric - g[i, c]) < 1e-7


def test_many_models_train_to_the_same_bits_on_any_thread_count(rng):
    X = rng.standard_normal((300, 5)).astype(np.float32)
    T = rng.standard_normal((300, 3)).astype(np.float32)
    offsets = [0, 40, 90, 150, 200, 260, 300]
    ends = []
    for n_jobs in (1, 2):
        stack = MLPStack(DIMS, 6, seed=1)
        for _ in range(3):
            loss = epoch(stack, X, T, offsets, "huber", n_jobs=n_jobs, batch_size=16)[0]
        ends.append((stack.params.copy(), loss))
    np.testing.assert_array_equal(ends[0][0], ends[1][0])
    np.testing.assert_array_equal(ends[0][1], ends[1][1])
    # and the training lowers the loss
    stack = MLPStack(DIMS, 6, seed=1)
    first = epoch(stack, X, T, offsets, "mse", batch_size=16)[0]
    for _ in range(10):
        last = epoch(stack, X, T, offsets, "mse", batch_size=16)[0]
    assert (last < first).all()


@pytest.mark.parametrize(
    "change,error,says",
    [
        (dict(loss="l1"), ValueError, "loss must be 'cross_entropy', 'mse' or 'huber'"),
        (dict(delta=0.0), ValueError, "huber_delta must be a finite number > 0"),
        (dict(delta=float("nan")), ValueError, "huber_delta must be a finite number > 0"),
        (dict(delta=float("inf")), ValueError, "huber_delta must be a finite number > 0"),
        (dict(T="inf"), ValueError, "y holds NaN or inf"),
        (dict(T="float64"), TypeError, "y"),
        (dict(T="labels"), TypeError, "y"),
        (dict(T="narrow"), ValueError, "y"),
        (dict(T="nan"), ValueError, "y holds NaN or inf"),
    ],
)
def test_bad_settings_and_targets_are_refused(rng, change, error, says):
    X = rng.standard_normal((10, 5)).astype(np.float32)
    T = {
        "labels": np.zeros(10, dtype=np.int64),
        "narrow": np.zeros((10, 2), dtype=np.float32),
        "nan": np.full((10, 3), np.nan, dtype=np.float32),
        "inf": np.full((10, 3), np.inf, dtype=np.float32),
        "float64": np.zeros((10, 3)),
    }.get(change.get("T"), np.zeros((10, 3), dtype=np.float32))
    stack = MLPStack(DIMS, 1, seed=0)
    before = stack.params.copy()
    with pytest.raises(error, match=says):
        epoch(stack, X, T, [0, 10], change.get("loss", "huber"), delta=change.get("delta", 1.0))
    np.testing.assert_array_equal(stack.params, before)  # nothing trained


def test_nan_weights_or_huge_targets_diverge_and_roll_back(rng):
    """A model whose step turns non-finite ends the epoch where it began, flagged diverged, and
    the others train on; empty segments train nothing and report a loss of 0."""
    X = rng.standard_normal((30, 5)).astype(np.float32)
    T = rng.standard_normal((30, 3)).astype(np.float32)
    T[10:20] = 3e38  # the squared residuals of segment 1 overflow float32
    stack = MLPStack(DIMS, 4, seed=0)
    stack.params[0, 3] = np.nan
    before = stack.params.copy()
    loss, diverged = epoch(stack, X, T, [0, 10, 20, 30, 30], "mse")[:2]
    assert diverged.tolist() == [1, 1, 0, 0]
    np.testing.assert_array_equal(stack.params[:2], before[:2])
    assert not np.array_equal(stack.params[2], before[2])
    np.testing.assert_array_equal(stack.params[3], before[3])  # an empty segment
    assert loss[3] == 0.0 and np.isfinite(loss[2])
