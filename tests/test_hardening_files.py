"""Files from disk are input too: forged or damaged shard manifests, IDX files and saved stacks are
ValueErrors naming the file, found before anything is allocated from the sizes they declare."""

import gzip
import json
import os
import shutil
import struct
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

import segfast
from segfast import MLPStack, datasets
from segfast.datasets import load_shards, read_idx, save_shards

MiB = 2**20


def peak_bytes(fn, *args):
    """Run fn(*args), expecting a ValueError; its message and the peak of memory traced meanwhile
    (numpy reports its arrays to tracemalloc too)."""
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as err:
            fn(*args)
        return str(err.value), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# ---------------------------------------------------------------- shard manifests


@pytest.fixture
def shards(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    save_shards(X, y, segfast.segment(y, 8, "iid", seed=0), tmp_path / "shards", shard_size=2)
    return tmp_path / "shards"


def edit_manifest(directory, **fields):
    file = directory / "manifest.json"
    m = json.loads(file.read_text())
    m.update(fields)
    for key, value in fields.items():
        if value is None:
            del m[key]
    file.write_text(json.dumps(m))
    return file


@pytest.mark.parametrize("where", ["dotdot", "absolute", "symlink"])
def test_load_shards_refuses_shard_files_outside_their_directory(shards, where):
    outside = shards.parent / "outside.npz"
    shutil.copy(shards / "shard-00000.npz", outside)  # same bytes: the fingerprint would match
    files = json.loads((shards / "manifest.json").read_text())["files"]
    if where == "symlink":
        (shards / "shard-00000.npz").unlink()
        (shards / "shard-00000.npz").symlink_to(outside)
        manifest = shards / "manifest.json"
    else:
        files[0][0] = "../outside.npz" if where == "dotdot" else str(outside)
        manifest = edit_manifest(shards, files=files)
    with pytest.raises(ValueError, match="outside") as err:
        load_shards(shards).load(0)
    assert str(manifest) in str(err.value) and "files" in str(err.value)


def test_shards_load_checks_the_file_again(shards):
    loaded = load_shards(shards)
    outside = shards.parent / "outside.npz"
    shutil.copy(shards / "shard-00001.npz", outside)
    (shards / "shard-00001.npz").unlink()
    (shards / "shard-00001.npz").symlink_to(outside)  # swapped after the manifest was read
    with pytest.raises(ValueError, match="outside"):
        loaded.load(1)
    loaded.load(0)


@pytest.mark.parametrize(
    "fields,match",
    [
        (dict(bounds=[0, 4, 2, 6, 8]), r"bounds must rise strictly, but bounds\[2\] = 2 follows 4"),
        (dict(bounds=[0, 2, 2, 6, 8]), r"bounds must rise"),
        (dict(bounds=[0, 2, 4, 6, 9]), r"bounds must run from 0 to 8"),
        (dict(bounds=[-2, 2, 4, 6, 8]), r"bounds must hold integers >= 0, but bounds\[0\] = -2"),
        (dict(sizes=[5, 5, 5, -5, 5, 5, 5, 5]), r"sizes must hold integers >= 1, but sizes\[3\] = -5"),
        (dict(sizes=[5, 5, 5, 5.5, 5, 5, 5, 5]), r"sizes\[3\] = 5.5"),
        (dict(n_features=-5), r"n_features must be an integer >= 1, got -5"),
        (dict(n_features="3"), r"n_features must be an integer"),
        (dict(n_labels=0), r"n_labels must be an integer >= 1"),
        (dict(sizes=None), r"field 'sizes' is missing"),
        (dict(files=[["shard-00000.npz", "x"]]), r"files must be 4 \[name, fingerprint\] pairs"),
        (dict(fingerprints={"X": "a"}), r"fingerprints must map"),
    ],
)
def test_load_shards_refuses_bad_manifest_fields(shards, fields, match):
    manifest = edit_manifest(shards, **fields)
    with pytest.raises(ValueError, match=match) as err:
        load_shards(shards)
    assert str(manifest) in str(err.value)


def test_load_shards_refuses_a_manifest_that_is_not_json(shards):
    (shards / "manifest.json").write_bytes(b"\xff{not json")
    with pytest.raises(ValueError, match="not a readable shard manifest") as err:
        load_shards(shards)
    assert str(shards / "manifest.json") in str(err.value)


def test_shard_with_descending_offsets_is_refused(shards):
    from segfast.results import fingerprint

    with np.load(shards / "shard-00000.npz") as f:
        arrays = {k: f[k] for k in ("X", "y", "order", "offsets")}
    arrays["offsets"] = arrays["offsets"][::-1].copy()  # forged together with its fingerprint
    np.savez(shards / "shard-00000.npz", **arrays)
    files = json.loads((shards / "manifest.json").read_text())["files"]
    files[0][1] = fingerprint(*arrays.values())
    edit_manifest(shards, files=files)
    with pytest.raises(ValueError, match="offsets must be int64 rising from 0") as err:
        load_shards(shards).load(0)
    assert str(shards / "shard-00000.npz") in str(err.value)


def test_damaged_shard_file_is_a_value_error_naming_it(shards):
    file = shards / "shard-00002.npz"
    file.write_bytes(file.read_bytes()[:200])
    with pytest.raises(ValueError) as err:
        load_shards(shards).load(2)
    assert str(file) in str(err.value)


# ---------------------------------------------------------------- IDX headers


def idx_header(code, shape):
    return struct.pack(">BBBB", 0, 0, code, len(shape)) + struct.pack(f">{len(shape)}I", *shape)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_header_whose_size_wraps_names_the_file(tmp_path, gz):
    # 2**31 * 2**31 * 4 bytes wraps an int64 count to 0, which the file "holds" exactly
    data = idx_header(0x08, (2**31, 2**31, 4))
    path = tmp_path / "wrap.idx"
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(ValueError, match="truncated") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_read_idx_inflates_no_more_than_the_header_promises(tmp_path):
    path = tmp_path / "bomb.gz"
    pack = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip stream
    with open(path, "wb") as f:
        f.write(pack.compress(idx_header(0x08, (10,)) + bytes(range(10))))
        for _ in range(64):  # 64 MiB of zeros after the 10 bytes promised: ~64 KiB on disk
            f.write(pack.compress(bytes(MiB)))
        f.write(pack.flush())
    assert path.stat().st_size < MiB
    message, peak = peak_bytes(read_idx, path)
    assert "trailing bytes" in message and str(path) in message
    assert peak < 8 * MiB


def test_read_idx_huge_declared_shape_in_a_small_gzip(tmp_path):
    path = tmp_path / "liar.gz"
    path.write_bytes(gzip.compress(idx_header(0x0D, (2**20, 2**10)) + bytes(100)))
    message, peak = peak_bytes(read_idx, path)
    assert "truncated" in message and str(path) in message and "4294967308 bytes" in message
    assert peak < 8 * MiB


def test_read_idx_fashion_mnist_unchanged():
    file = Path("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")
    if not file.is_file():
        pytest.skip("dataset-fashion-mnist is not installed")
    raw = gzip.decompress(file.read_bytes())
    np.testing.assert_array_equal(read_idx(file), np.frombuffer(raw, np.uint8, offset=8))


# ---------------------------------------------------------------- MLPStack.load: forged sizes


def npy_member(zf, name, shape, dtype, fill=None):
    """Write an .npy member of `shape` streamed in 1 MiB pieces (nothing that size in memory);
    `fill` gives the bytes, zeros by default."""
    dtype = np.dtype(dtype)
    with zf.open(name + ".npy", "w", force_zip64=True) as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
        )
        if fill is not None:
            f.write(fill)
            return
        left = int(np.prod(shape, dtype=object)) * dtype.itemsize
        while left:
            n = min(left, MiB)
            f.write(bytes(n))
            left -= n


def forged_stack(
    path,
    dims=(4, 3, 2),
    params_shape=(1, 23),
    diverged_shape=(1,),
    format_shape=(),
    params_dtype="<f4",
    diverged_dtype="|b1",
):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        if format_shape == ():
            npy_member(zf, "format", (), "<U18", "segfast.MLPStack/1".encode("utf-32-le"))
        else:
            npy_member(zf, "format", format_shape, "<U18")
        dims = np.asarray(dims, dtype=np.int64)
        npy_member(zf, "dims", dims.shape, dims.dtype, dims.tobytes() if dims.size < 10**6 else None)
        npy_member(zf, "params", params_shape, params_dtype)
        npy_member(zf, "diverged", diverged_shape, diverged_dtype)
    return path


def test_forged_stack_file_helper_makes_loadable_files(tmp_path):
    back = MLPStack.load(forged_stack(tmp_path / "ok.npz"))
    assert back.dims == (4, 3, 2) and back.params.shape == (1, 23) and not back.diverged.any()


@pytest.mark.parametrize(
    "forged",
    [
        dict(params_shape=(1, 25 * 10**6)),  # 100 MB of params for dims needing 23 per model
        dict(format_shape=(2 * 10**6,)),  # a 144 MB "format" string array
        dict(dims=np.zeros(12 * 10**6, dtype=np.int64)),  # 96 MB of widths
        dict(diverged_shape=(100 * 10**6,)),  # 100 MB of flags for 1 model
    ],
)
def test_load_checks_declared_sizes_before_allocating(tmp_path, forged):
    path = forged_stack(tmp_path / "forged.npz", **forged)
    assert path.stat().st_size < 2 * MiB
    message, peak = peak_bytes(MLPStack.load, path)
    assert str(path) in message
    assert peak < 16 * MiB


@pytest.mark.parametrize(
    "dims,params_shape,match",
    [
        ([2**20, 2**20, 2**20, 2], (1, 8), r"dims .* parameters per model, more than 2\*\*40"),
        ([4, 0, 2], (1, 8), r"every width in dims must be an integer >= 1"),
        ([4, 2**31, 2], (1, 8), r"every width in dims must be <= 2147483647"),
    ],
)
def test_load_refuses_huge_or_empty_layers(tmp_path, dims, params_shape, match):
    path = forged_stack(tmp_path / "wide.npz", dims=dims, params_shape=params_shape)
    with pytest.raises(ValueError, match=match) as err:
        MLPStack.load(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    "dims",
    [
        [2**21, 2**20, 2],  # 2**41 parameters: more than 2**40
        [2**31 - 1] * 6 + [2],  # a count past int64 (wrapped a size_t in C++ once)
        [2**31, 2],  # wider than the C++ int that holds a width
    ],
)
def test_from_params_and_init_refuse_overflowing_widths(dims):
    with pytest.raises(ValueError, match="dims"):
        MLPStack.from_params(dims, np.zeros((1, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="dims"):
        MLPStack(dims)


# ---------------------------------------------------------------- damaged .npz files


def damaged(kind, path):
    stack = MLPStack([6, 5, 3], 2, seed=0)
    if kind == "truncated":
        path.write_bytes(stack.save(path).read_bytes()[:300])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "not a zip":
        path.write_bytes(b"\x80\x04garbage that is not an archive")
    elif kind == "npy":
        with open(path, "wb") as f:
            np.save(f, stack.params)
    elif kind == "flipped byte":
        np.savez_compressed(
            path,
            format=np.array("segfast.MLPStack/1"),
            dims=np.array(stack.dims),
            params=stack.params,
            diverged=stack.diverged,
        )
        raw = bytearray(path.read_bytes())
        start = raw.index(b"params.npy") + 200  # inside the deflated params
        raw[start : start + 16] = bytes(16)
        path.write_bytes(bytes(raw))
    elif kind == "missing member":
        np.savez(path, format=np.array("segfast.MLPStack/1"), dims=np.array(stack.dims))
    elif kind == "object params":
        np.savez(
            path,
            format=np.array("segfast.MLPStack/1"),
            dims=np.array(stack.dims),
            params=np.array([[object()]], dtype=object),
            diverged=stack.diverged,
        )
    return path


@pytest.mark.parametrize(
    "kind", ["truncated", "empty", "not a zip", "npy", "flipped byte", "missing member", "object params"]
)
def test_load_damaged_file_is_a_value_error_naming_it(tmp_path, kind):
    path = damaged(kind, tmp_path / "models.npz")
    with pytest.raises(ValueError) as err:
        MLPStack.load(path)
    assert str(path) in str(err.value)


def test_load_missing_file_is_still_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        MLPStack.load(tmp_path / "nope.npz")


# ---------------------------------------------------------------- params and diverged


@pytest.mark.parametrize(
    "params",
    [
        np.zeros((1, 23), dtype=np.complex64),
        np.full((1, 23), "1.5"),
        np.zeros((1, 23), dtype=bool),
        np.zeros((1, 23), dtype=object),
    ],
    ids=["complex", "str", "bool", "object"],
)
def test_from_params_refuses_non_real_params(params):
    with pytest.raises(TypeError, match="params must be a real floating or integer array"):
        MLPStack.from_params([4, 3, 2], params)


def test_from_params_accepts_real_params():
    for dtype in (np.float64, np.float16, np.int32, np.uint8):
        stack = MLPStack.from_params([4, 3, 2], np.ones((2, 23), dtype=dtype))
        assert stack.params.dtype == np.float32 and (stack.params == 1).all()


@pytest.mark.parametrize(
    "diverged,error,match",
    [
        (np.array([True]), ValueError, r"diverged must have shape \(3,\)"),
        (np.array([True, False, True, False]), ValueError, r"diverged must have shape \(3,\)"),
        (np.ones((3, 1), dtype=bool), ValueError, r"diverged must have shape \(3,\)"),
        (np.array([0, 1, 0]), TypeError, "diverged must be a bool array"),
        (np.array([0.0, 1.0, 0.0]), TypeError, "diverged must be a bool array"),
    ],
)
def test_from_params_refuses_bad_diverged(diverged, error, match):
    with pytest.raises(error, match=match):
        MLPStack.from_params([4, 3, 2], np.zeros((3, 23)), diverged)


def test_from_params_copies_diverged():
    flags = np.array([True, False])
    stack = MLPStack.from_params([4, 3, 2], np.zeros((2, 23)), flags)
    flags[0] = False
    assert stack.diverged.tolist() == [True, False]


@pytest.mark.parametrize(
    "forged,match",
    [
        (dict(params_dtype="<c8"), "params must be a real"),
        (dict(params_dtype="<U4"), "params must be a real"),
        (dict(params_dtype="|b1"), "params must be a real"),
        (dict(diverged_shape=(0,)), r"diverged must be \(1,\) bool"),
        (dict(params_shape=(3, 23)), r"diverged must be \(3,\) bool"),
        (dict(diverged_dtype="<i8"), r"diverged must be \(1,\) bool"),
    ],
)
def test_load_refuses_bad_params_and_diverged(tmp_path, forged, match):
    path = forged_stack(tmp_path / "bad.npz", **forged)
    with pytest.raises(ValueError, match=match) as err:
        MLPStack.load(path)
    assert str(path) in str(err.value)


# ---------------------------------------------------------------- state_dict


def test_state_dict_refuses_a_bool_model_index():
    stack = MLPStack([4, 3, 2], 3, seed=0)
    with pytest.raises(TypeError, match="model must be an int, got True"):
        stack.state_dict(True)
    with pytest.raises(TypeError, match="model must be an int"):
        stack.state_dict(1.0)
    for k, v in stack.state_dict(np.int64(2)).items():
        np.testing.assert_array_equal(v, stack.state_dict(2)[k])
        assert v.ndim in (1, 2)


# ---------------------------------------------------------------- save


def test_save_refuses_a_directory(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(ValueError, match="not a regular file") as err:
        MLPStack([4, 3, 2]).save(tmp_path / "out")
    assert str(tmp_path / "out") in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_save_refuses_a_pipe(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ValueError, match="not a regular file") as err:
        MLPStack([4, 3, 2]).save(tmp_path / "pipe")
    assert str(tmp_path / "pipe") in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_save_refuses_dev_null():
    existed = os.path.exists("/dev/null.npz")
    with pytest.raises(ValueError, match="/dev/null"):
        MLPStack([4, 3, 2]).save("/dev/null")
    assert os.path.exists("/dev/null.npz") == existed


def test_save_refuses_a_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="does not exist") as err:
        MLPStack([4, 3, 2]).save(tmp_path / "no" / "models.npz")
    assert str(tmp_path / "no" / "models.npz") in str(err.value)
    assert not (tmp_path / "no").exists()


def test_save_is_atomic_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    old = MLPStack([4, 3, 2], seed=1)
    path = old.save(tmp_path / "models.npz")
    before = path.read_bytes()
    real_savez = np.savez

    def killed(f, **arrays):
        real_savez(f, **arrays)
        f.truncate(100)  # half-written ...
        raise KeyboardInterrupt  # ... when the process is stopped

    monkeypatch.setattr(np, "savez", killed)
    with pytest.raises(KeyboardInterrupt):
        MLPStack([4, 3, 2], seed=2).save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["models.npz"]
    new = MLPStack([4, 3, 2], seed=2)
    np.testing.assert_array_equal(MLPStack.load(new.save(path)).params, new.params)
    assert [p.name for p in tmp_path.iterdir()] == ["models.npz"]


def test_save_keeps_the_usual_file_mode(tmp_path):
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    path = MLPStack([4, 3, 2]).save(tmp_path / "models")
    assert path.name == "models.npz"
    assert path.stat().st_mode == plain.stat().st_mode


def test_default_data_still_loads():
    data = datasets.load_default()
    assert data.X_train.shape == (10000, 784) and data.y_test.shape == (2000,)
