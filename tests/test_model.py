"""Forward pass, loss, gradients and SGD steps of the C++ core against tests/reference.py."""

import numpy as np
import pytest

import reference as ref
import segfast
from segfast import Segments

ARCHS = [[6, 5, 3], [20, 16, 4], [12, 9, 7, 5], [30, 17, 33, 8, 4]]


def one_batch(stack, X, y, **kw):
    """Train on exactly one full batch per epoch (the segment is every row)."""
    seg = Segments(np.arange(len(X)), np.array([0, len(X)]))
    return segfast.train(stack, X, y, seg, batch_size=len(X), **kw)


@pytest.mark.parametrize("dims", ARCHS)
def test_forward_and_loss_match_numpy(rng, dims):
    stack = segfast.MLPStack(dims, n_models=3, seed=2)
    X = rng.standard_normal((50, dims[0])).astype(np.float32)
    y = rng.integers(0, dims[-1], 50)
    probs = segfast.predict_proba(stack, X)
    loss, acc = segfast.evaluate(stack, X, y)
    for i in range(3):
        z, _ = ref.forward(dims, stack.params[i], X)
        np.testing.assert_allclose(probs[i], ref.softmax(z), rtol=1e-5, atol=1e-6)
        assert loss[i] == pytest.approx(ref.loss(dims, stack.params[i], X, y), rel=1e-5)
        assert acc[i] == pytest.approx(np.mean(z.argmax(1) == y))
    np.testing.assert_array_equal(segfast.predict(stack, X), probs.argmax(2))


@pytest.mark.parametrize("dims", ARCHS)
def test_reference_gradient_matches_finite_differences(rng, dims):
    X = rng.standard_normal((8, dims[0]))
    y = rng.integers(0, dims[-1], 8)
    row = segfast.MLPStack(dims, seed=1).params[0].astype(np.float64)
    _, grad = ref.loss_and_grad(dims, row, X, y)
    eps = 1e-6
    for j in rng.choice(len(row), 25, replace=False):
        up, down = row.copy(), row.copy()
        up[j] += eps
        down[j] -= eps
        fd = (ref.loss(dims, up, X, y) - ref.loss(dims, down, X, y)) / (2 * eps)
        assert grad[j] == pytest.approx(fd, rel=1e-4, abs=1e-7)


@pytest.mark.parametrize("dims", ARCHS)
def test_kernel_gradient_matches_reference_and_finite_differences(rng, dims):
    # With lr = 1 one step moves the parameters by exactly minus the gradient.
    X = rng.standard_normal((16, dims[0])).astype(np.float32)
    y = rng.integers(0, dims[-1], 16)
    stack = segfast.MLPStack(dims, seed=3)
    before = stack.params[0].copy()
    one_batch(stack, X, y, lr=1.0)
    grad = before.astype(np.float64) - stack.params[0]
    _, want = ref.loss_and_grad(dims, before, X, y)
    np.testing.assert_allclose(grad, want, atol=2e-6 + 1e-4 * np.abs(want).max())
    # Finite differences of the C++ loss itself (float32, so a larger step, largest gradients only).
    eps = 1e-2
    probe = segfast.MLPStack.from_params(dims, np.repeat(before[None], 2, axis=0))
    for j in np.argsort(-np.abs(want))[:8]:
        probe.params[0], probe.params[1] = before, before
        probe.params[0, j] += eps
        probe.params[1, j] -= eps
        up, down = segfast.evaluate(probe, X, y).loss
        assert grad[j] == pytest.approx((up - down) / (2 * eps), rel=0.05, abs=1e-4)


@pytest.mark.parametrize("momentum,weight_decay", [(0.0, 0.0), (0.9, 0.0), (0.0, 0.01), (0.9, 0.05)])
def test_sgd_steps_with_momentum_and_weight_decay(rng, momentum, weight_decay):
    dims = [20, 16, 4]
    X = rng.standard_normal((24, 20)).astype(np.float32)
    y = rng.integers(0, 4, 24)
    stack = segfast.MLPStack(dims, seed=5)
    row = stack.params[0].astype(np.float64)
    velocity = np.zeros_like(row)
    for _ in range(3):  # three epochs of one full batch: the velocity carries over
        row, velocity = ref.sgd_step(dims, row, velocity, X, y, 0.1, momentum, weight_decay)
    one_batch(stack, X, y, epochs=3, lr=0.1, momentum=momentum, weight_decay=weight_decay)
    np.testing.assert_allclose(stack.params[0], row, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_proximal_term_matches_numpy(rng, momentum):
    dims = [20, 16, 4]
    X = rng.standard_normal((24, 20)).astype(np.float32)
    y = rng.integers(0, 4, 24)
    stack = segfast.MLPStack(dims, seed=6)
    start = stack.params[0].astype(np.float64)
    row, velocity, mu, lr = start.copy(), np.zeros_like(start), 0.5, 0.1
    for _ in range(3):
        _, g = ref.loss_and_grad(dims, row, X, y)
        step = g + mu * (row - start)
        if momentum:
            velocity = momentum * velocity + step
            step = velocity
        row = row - lr * step
    one_batch(stack, X, y, epochs=3, lr=lr, momentum=momentum, proximal_mu=mu)
    np.testing.assert_allclose(stack.params[0], row, rtol=1e-4, atol=1e-5)


def test_minibatches_cover_the_segment_once_per_epoch(rng):
    # Sum of per-row losses is order-independent at lr = 0: the epoch's mean loss must equal
    # the mean loss over the segment, whatever the shuffle and the batch size (incl. a partial one).
    dims = [10, 8, 3]
    X = rng.standard_normal((70, 10)).astype(np.float32)
    y = rng.integers(0, 3, 70)
    stack = segfast.MLPStack(dims, n_models=2, seed=0)
    seg = Segments.from_indices([np.arange(0, 45), np.arange(45, 70)])
    hist = segfast.train(stack, X, y, seg, batch_size=16, lr=0.0)
    for i, rows in enumerate([np.arange(0, 45), np.arange(45, 70)]):
        assert hist.loss[0, i] == pytest.approx(ref.loss(dims, stack.params[i], X[rows], y[rows]), rel=1e-5)
