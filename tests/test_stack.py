"""MLPStack: layout, views, sub-stacks, files and PyTorch-style state dicts."""

import numpy as np
import pytest

import segfast
from segfast import MLPStack


def test_layout_and_views():
    stack = MLPStack([784, 128, 10], n_models=4, seed=0)
    assert stack.params.shape == (4, 784 * 128 + 128 + 128 * 10 + 10)
    assert stack.params.dtype == np.float32 and stack.params.flags.c_contiguous
    W0, b0, W1, b1 = stack.weights(0), stack.biases(0), stack.weights(1), stack.biases(1)
    assert W0.shape == (4, 784, 128) and b0.shape == (4, 128) and W1.shape == (4, 128, 10) and b1.shape == (4, 10)
    for view in (W0, b0, W1, b1, stack.weights(-1)):
        assert np.shares_memory(view, stack.params)
    np.testing.assert_array_equal(stack.params[2, : 784 * 128].reshape(784, 128), W0[2])
    np.testing.assert_array_equal(stack.params[2, -10:], b1[2])
    with pytest.raises(IndexError):
        stack.weights(2)


def test_init_follows_torch_linear_default_and_seeds():
    ind = MLPStack([100, 50, 10], n_models=3, init="independent", seed=1)
    assert np.abs(ind.weights(0)).max() <= 0.1 and np.abs(ind.weights(1)).max() <= 1 / np.sqrt(50)
    assert not np.array_equal(ind.params[0], ind.params[1])
    shared = MLPStack([100, 50, 10], n_models=3, init="shared", seed=1)
    assert all(np.array_equal(shared.params[0], shared.params[i]) for i in range(3))
    # model i's draw depends only on (seed, i)
    np.testing.assert_array_equal(MLPStack([100, 50, 10], 5, seed=1).params[:3], ind.params)
    assert not np.array_equal(MLPStack([100, 50, 10], 3, seed=2).params, ind.params)


def test_select_and_indexing_copy():
    stack = MLPStack([5, 4, 3], n_models=6, seed=0)
    sub = stack.select([4, 1])
    np.testing.assert_array_equal(sub.params, stack.params[[4, 1]])
    assert not np.shares_memory(sub.params, stack.params)
    np.testing.assert_array_equal(stack[-1].params, stack.params[5:])
    assert len(stack[1:4]) == 3 and len(stack) == 6
    with pytest.raises(IndexError):
        stack[6]
    with pytest.raises(ValueError, match="at least one"):
        stack.select([])


def test_save_and_load_round_trip(tmp_path):
    stack = MLPStack([7, 6, 5, 3], n_models=4, seed=3)
    stack.diverged[2] = True
    path = stack.save(tmp_path / "models")
    assert path.name == "models.npz"
    back = MLPStack.load(path)
    assert back.dims == stack.dims
    np.testing.assert_array_equal(back.params, stack.params)
    np.testing.assert_array_equal(back.diverged, stack.diverged)
    np.save(tmp_path / "other.npy", np.zeros(3))
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="not a segfast MLPStack file"):
        MLPStack.load(tmp_path / "other.npz")
    np.savez(tmp_path / "evil.npz", format=np.array([object()], dtype=object))
    with pytest.raises(ValueError):
        MLPStack.load(tmp_path / "evil.npz")


def test_state_dict_round_trip_and_layout():
    stack = MLPStack([6, 5, 4, 3], n_models=2, seed=0)
    state = stack.state_dict(1)
    assert list(state) == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
    assert state["0.weight"].shape == (5, 6) and state["4.bias"].shape == (3,)
    back = MLPStack.from_state_dict(state)
    np.testing.assert_array_equal(back.params[0], stack.params[1])
    with pytest.raises(ValueError, match="holds 2 models: pass the one you want"):
        stack.state_dict()  # not silently model 0
    assert list(stack[1].state_dict()) == list(state)  # one model: the index may be left out
    with pytest.raises(ValueError, match="do not chain"):
        MLPStack.from_state_dict({**state, "2.weight": np.zeros((4, 4))})
    with pytest.raises(ValueError, match="0, 2, 4"):
        MLPStack.from_state_dict({"1.weight": np.zeros((2, 2)), "1.bias": np.zeros(2)})


def test_state_dict_loads_into_torch_and_predicts_the_same(rng):
    torch = pytest.importorskip("torch")
    stack = MLPStack([12, 9, 4], n_models=1, seed=0)
    net = torch.nn.Sequential(torch.nn.Linear(12, 9), torch.nn.ReLU(), torch.nn.Linear(9, 4))
    net.load_state_dict({k: torch.from_numpy(v) for k, v in stack.state_dict().items()})
    X = rng.standard_normal((30, 12)).astype(np.float32)
    with torch.no_grad():
        want = torch.softmax(net(torch.from_numpy(X)), dim=1).numpy()
    np.testing.assert_allclose(segfast.predict_proba(stack, X)[0], want, rtol=1e-5, atol=1e-6)
    back = MLPStack.from_state_dict(net.state_dict())
    np.testing.assert_array_equal(back.params, stack.params)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(dims=[784]), "at least an input and an output"),
        (dict(dims=[784, 0, 10]), "integer >= 1"),
        (dict(dims=[784, 10, 1]), "output width"),
        (dict(dims=[784, 10], n_models=0), "n_models"),
        (dict(dims=[784, 10], init="zeros"), "init must be"),
        (dict(dims=[784, 10], seed=-1), "seed"),
    ],
)
def test_bad_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MLPStack(**kwargs)


def test_from_params_checks_shape():
    with pytest.raises(ValueError, match=r"params must have shape \(n_models, 23\)"):
        MLPStack.from_params([4, 3, 2], np.zeros((2, 22)))


def test_wrap_shares_the_buffer_and_checks_it():
    buffer = MLPStack([4, 3, 2], n_models=5, seed=0).params
    before = buffer.copy()
    stack = MLPStack._wrap([4, 3, 2], buffer[1:4])  # rows of a larger buffer, as distributed's workers hold
    assert stack.dims == (4, 3, 2) and stack.n_models == 3 and not stack.diverged.any()
    assert np.shares_memory(stack.params, buffer)
    X = np.random.default_rng(0).random((6, 4), dtype=np.float32)
    segfast.train(stack, X, np.array([0, 1] * 3), [np.arange(6)] * 3, epochs=1)
    assert not np.array_equal(buffer[1:4], before[1:4])  # trained in place ...
    np.testing.assert_array_equal(buffer[[0, 4]], before[[0, 4]])  # ... in its own rows only
    with pytest.raises(ValueError, match=r"float32 of shape \(n_models, 23\)"):
        MLPStack._wrap([4, 3, 2], np.zeros((2, 23)))  # float64: wrapping would need a copy
    with pytest.raises(ValueError, match=r"got float32 of shape \(2, 22\)"):
        MLPStack._wrap([4, 3, 2], np.zeros((2, 22), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        MLPStack._wrap([4, 3, 2], np.zeros((23, 2), np.float32).T)
    with pytest.raises(TypeError, match="numpy array"):
        MLPStack._wrap([4, 3, 2], [[0.0] * 23])
    with pytest.raises(ValueError, match="every width in dims"):
        MLPStack._wrap([4, 0, 2], buffer)


def test_indices_are_checked_as_python_indexes_them():
    stack = MLPStack([4, 3, 2], n_models=2)
    with pytest.raises(TypeError, match="layer must be an int, got True"):
        stack.weights(True)
    with pytest.raises(IndexError, match="layer -3 out of range for 2 layers"):
        stack.biases(-3)
    with pytest.raises(IndexError, match="model 2 out of range for a stack of 2"):
        stack[2]
    np.testing.assert_array_equal(stack.state_dict(-1)["2.bias"], stack.biases(1)[1])
    np.testing.assert_array_equal(stack[np.int64(-2)].params, stack.params[:1])


def test_predict_bad_input(rng):
    stack = MLPStack([5, 4, 3], 2)
    with pytest.raises(ValueError, match="X has 4 features, but the stack is expecting 5 features"):
        segfast.predict_proba(stack, np.zeros((3, 4)))
    with pytest.raises(ValueError, match="X has no rows"):
        segfast.predict_proba(stack, np.zeros((0, 5)))
    with pytest.raises(ValueError, match="NaN"):
        segfast.evaluate(stack, np.full((3, 5), np.nan), np.zeros(3, int))
    with pytest.raises(ValueError, match="y holds labels"):
        segfast.evaluate(stack, np.zeros((3, 5)), np.array([0, 1, 3]))
    with pytest.raises(TypeError, match="stack must be"):
        segfast.predict(np.zeros((3, 5)), np.zeros((3, 5)))


def test_prediction_is_tiled_and_thread_independent(rng):
    stack = MLPStack([30, 20, 5], n_models=7, seed=0)
    X = rng.standard_normal((1000, 30)).astype(np.float32)  # several 256-row blocks, a partial one
    y = rng.integers(0, 5, 1000)
    p1, p2 = segfast.predict_proba(stack, X, n_jobs=1), segfast.predict_proba(stack, X, n_jobs=2)
    assert p1.shape == (7, 1000, 5)
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_allclose(p1.sum(axis=2), 1, rtol=1e-5)
    e1, e2 = segfast.evaluate(stack, X, y, n_jobs=1), segfast.evaluate(stack, X, y, n_jobs=2)
    np.testing.assert_array_equal(e1.loss, e2.loss)
    np.testing.assert_array_equal(e1.accuracy, e2.accuracy)
