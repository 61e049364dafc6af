"""Models that travel: to_torch (same predictions to 1e-6) and safetensors files of whole stacks
(exact round trip; forged files refused, naming the file)."""

import numpy as np
import pytest

import segfast
from conftest import blobs
from segfast import MLPStack

st = pytest.importorskip("safetensors.numpy")


@pytest.fixture
def stack(rng):
    X, y = blobs(rng, n=200, d=10, classes=4)
    s = MLPStack([10, 7, 5, 4], 6, init="independent", seed=3)
    segfast.train(s, X, y, segfast.segment(y, 6, seed=0), epochs=1)
    s.diverged[2] = True
    return s


def test_safetensors_round_trip_is_exact(stack, tmp_path):
    path = stack.save_safetensors(tmp_path / "stack.safetensors")
    back = MLPStack.load_safetensors(path)
    assert back.dims == stack.dims
    assert np.array_equal(back.params, stack.params) and np.array_equal(back.diverged, stack.diverged)
    tensors = st.load_file(str(path))  # model i's state dict is the i-th slice of every tensor
    for i in (0, 5):
        want = stack.state_dict(i)
        assert all(np.array_equal(tensors[k][i], v) for k, v in want.items())
    assert not list(tmp_path.glob(".*tmp"))


@pytest.mark.parametrize(
    "forge, says",
    [
        (lambda t, m: m.update(format="other"), "format"),
        (lambda t, m: m.update(dims="10,x,4"), "dims"),
        (lambda t, m: t.pop("2.bias"), "do not match"),
        (lambda t, m: t.update({"0.weight": t["0.weight"].astype(np.float64)}), "0.weight"),
        (lambda t, m: t.update({"0.weight": t["0.weight"][:, :3]}), "0.weight"),
        (lambda t, m: t.update(diverged=np.full(6, 7, dtype=np.uint8)), "diverged"),
    ],
)
def test_forged_safetensors_files_are_refused(stack, tmp_path, forge, says):
    good = stack.save_safetensors(tmp_path / "good.safetensors")
    tensors = st.load_file(str(good))
    from safetensors import safe_open

    with safe_open(str(good), framework="numpy") as f:
        meta = dict(f.metadata())
    forge(tensors, meta)
    bad = tmp_path / "bad.safetensors"
    st.save_file(tensors, str(bad), metadata=meta)
    with pytest.raises(ValueError, match=says) as error:
        MLPStack.load_safetensors(bad)
    assert str(bad) in str(error.value)


def test_damaged_safetensors_file_names_the_file(stack, tmp_path):
    path = stack.save_safetensors(tmp_path / "s.safetensors")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="s.safetensors"):
        MLPStack.load_safetensors(path)


def test_to_torch_predicts_what_the_stack_predicts(stack, rng):
    torch = pytest.importorskip("torch")
    X = rng.standard_normal((50, 10)).astype(np.float32)
    net = stack.to_torch(4)
    with torch.no_grad():
        got = torch.softmax(net(torch.from_numpy(X)), dim=1).numpy()
    np.testing.assert_allclose(got, segfast.predict_proba(stack, X)[4], atol=1e-6)
    # and back: the state dict PyTorch holds is the stack's model 4
    back = MLPStack.from_state_dict(net.state_dict())
    assert np.array_equal(back.params[0], stack.params[4])
