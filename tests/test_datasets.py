import gzip
import struct

import numpy as np
import pytest

from segfast import datasets
from segfast.datasets import Dataset, load, load_default, read_idx

_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


def idx_bytes(a: np.ndarray) -> bytes:
    """The IDX encoding of `a`, written independently of read_idx: header by struct, data BE."""
    a = np.asarray(a)
    header = struct.pack(">BBBB", 0, 0, _CODES[a.dtype.type], a.ndim)
    header += struct.pack(f">{a.ndim}I", *a.shape)
    return header + a.astype(a.dtype.newbyteorder(">")).tobytes()


def write_idx(path, a, gz=False):
    data = idx_bytes(a)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_mnist_dir(directory, n_train=12, n_test=5, gz=True, seed=0):
    """Four small IDX files with the standard names; returns the arrays written."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        suffix = ".gz" if gz else ""
        write_idx(directory / f"{prefix}-images-idx3-ubyte{suffix}", images, gz)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte{suffix}", labels, gz)
        arrays[prefix] = (images, labels)
    return arrays


@pytest.fixture
def no_system_data(monkeypatch, tmp_path):
    """Hide $SEGFAST_DATA_DIR and /usr/share/datasets so only the test's files are seen."""
    monkeypatch.delenv("SEGFAST_DATA_DIR", raising=False)
    monkeypatch.setattr(datasets, "_SYSTEM_DIR", tmp_path / "no-system-datasets")


# ---------------------------------------------------------------- read_idx


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    "a",
    [
        np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
        np.array([-5, 0, 7, 2**31 - 1, -(2**31)], dtype=np.int32),
        np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4),
        np.array([[-3, 300], [1, -32768]], dtype=np.int16),
        np.array([1e-300, -2.5], dtype=np.float64),
        np.array([-128, 127], dtype=np.int8),
    ],
    ids=["uint8-3d", "int32", "float32", "int16", "float64", "int8"],
)
def test_read_idx_round_trip(tmp_path, a, gz):
    path = write_idx(tmp_path / "x.idx", a, gz)
    b = read_idx(path)
    assert b.shape == a.shape
    assert b.dtype == a.dtype and b.dtype.isnative
    np.testing.assert_array_equal(b, a)


def test_read_idx_detects_gzip_by_content_not_name(tmp_path):
    a = np.arange(10, dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "plain.gz", a, gz=False)), a)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "packed", a, gz=True)), a)


def test_read_idx_empty_dimension(tmp_path):
    a = np.zeros((0, 28, 28), dtype=np.uint8)
    assert read_idx(write_idx(tmp_path / "e", a)).shape == (0, 28, 28)


@pytest.mark.parametrize("head", [b"\x01\x00\x08\x01", b"\x00\x00\x07\x01", b"\x00\x00\x08\x00", b"\x1f"])
def test_read_idx_wrong_magic(tmp_path, head):
    path = tmp_path / "bad.idx"
    path.write_bytes(head + b"\x00" * 8)
    with pytest.raises(ValueError, match="not an IDX file") as err:
        read_idx(path)
    assert str(path) in str(err.value)
    assert head[:4].hex(" ") in str(err.value)


def test_read_idx_truncated(tmp_path):
    path = tmp_path / "short.idx"
    path.write_bytes(idx_bytes(np.arange(100, dtype=np.uint8))[:-7])
    with pytest.raises(ValueError, match=r"truncated.*needs 108 bytes, found 101") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_read_idx_truncated_header(tmp_path):
    path = tmp_path / "short.idx"
    path.write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 5)
    with pytest.raises(ValueError, match="truncated header"):
        read_idx(path)


def test_read_idx_truncated_gzip(tmp_path):
    path = tmp_path / "short.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.arange(1000, dtype=np.int32)))[:-20])
    with pytest.raises(ValueError, match="gzip") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_read_idx_trailing_bytes(tmp_path):
    path = tmp_path / "long.idx"
    path.write_bytes(idx_bytes(np.arange(4, dtype=np.float32)) + b"\x00\x01")
    with pytest.raises(ValueError, match=r"trailing.*needs 24 bytes, found 26"):
        read_idx(path)


def test_read_idx_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        read_idx(tmp_path / "nope")


# ---------------------------------------------------------------- load from IDX directories


@pytest.mark.parametrize("gz", [False, True])
def test_load_from_data_dir(tmp_path, no_system_data, gz):
    arrays = write_mnist_dir(tmp_path / "d", gz=gz)
    ds = load("mnist", data_dir=tmp_path / "d")
    assert isinstance(ds, Dataset)
    assert ds.name == "mnist" and ds.classes == tuple("0123456789")
    assert ds.n_classes == 10 and ds.n_features == 784
    images, labels = arrays["train"]
    assert ds.X_train.shape == (12, 784) and ds.X_train.dtype == np.float32
    assert ds.X_train.flags.c_contiguous
    np.testing.assert_array_equal(ds.X_train * 255, images.reshape(12, 784))
    assert ds.y_train.dtype == np.int64
    np.testing.assert_array_equal(ds.y_train, labels)
    assert ds.X_test.shape == (5, 784) and ds.y_test.shape == (5,)


def test_load_search_order(tmp_path, monkeypatch, no_system_data):
    write_mnist_dir(tmp_path / "env" / "kmnist", n_train=3)
    write_mnist_dir(tmp_path / "arg", n_train=4)
    monkeypatch.setenv("SEGFAST_DATA_DIR", str(tmp_path / "env"))
    assert len(load("kmnist").X_train) == 3  # $SEGFAST_DATA_DIR/<name>
    assert len(load("kmnist", data_dir=tmp_path / "arg").X_train) == 4  # the argument first
    assert len(load("kmnist", data_dir=tmp_path / "empty").X_train) == 3  # falls through
    monkeypatch.setattr(datasets, "_SYSTEM_DIR", tmp_path / "env")
    monkeypatch.delenv("SEGFAST_DATA_DIR")
    assert len(load("kmnist").X_train) == 3  # the system directory last


def test_load_without_test_split(tmp_path, no_system_data):
    write_mnist_dir(tmp_path, gz=False)
    for f in tmp_path.glob("t10k-*"):
        f.unlink()
    ds = load("mnist", data_dir=tmp_path)
    assert ds.X_test is None and ds.y_test is None


def test_load_missing_files_message(tmp_path, monkeypatch, no_system_data):
    monkeypatch.setenv("SEGFAST_DATA_DIR", str(tmp_path / "env"))
    with pytest.raises(FileNotFoundError) as err:
        load("fashion-mnist", data_dir=tmp_path / "arg")
    msg = str(err.value)
    for place in ("arg", "env", "env/fashion-mnist", "no-system-datasets/fashion-mnist"):
        assert str(tmp_path / place) in msg
    assert "apt-get install dataset-fashion-mnist" in msg
    assert "data_dir=" in msg and "SEGFAST_DATA_DIR" in msg


def test_load_unknown_name():
    with pytest.raises(ValueError, match="known: fashion-mnist, mnist, kmnist, default"):
        load("cifar10")


def test_load_count_mismatch(tmp_path, no_system_data):
    write_mnist_dir(tmp_path, gz=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(11, dtype=np.uint8))
    with pytest.raises(ValueError, match="12 images but 11 labels"):
        load("mnist", data_dir=tmp_path)


def test_load_label_out_of_range(tmp_path, no_system_data):
    write_mnist_dir(tmp_path, gz=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([0, 1, 2, 3, 10], dtype=np.uint8))
    with pytest.raises(ValueError, match=r"labels span \[0, 10\], expected \[0, 9\]"):
        load("mnist", data_dir=tmp_path)


def test_load_wrong_image_shape(tmp_path, no_system_data):
    write_mnist_dir(tmp_path, gz=False)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((12, 32, 32), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"\(12, 32, 32\), expected \(n, 28, 28\)"):
        load("mnist", data_dir=tmp_path)


# ---------------------------------------------------------------- the real files and the default


@pytest.fixture(scope="module")
def fashion():
    try:
        return load("fashion-mnist")
    except FileNotFoundError:
        pytest.skip("Fashion-MNIST IDX files not found: apt-get install dataset-fashion-mnist")


def test_load_fashion_mnist(fashion):
    assert fashion.X_train.shape == (60000, 784) and fashion.X_test.shape == (10000, 784)
    for X in (fashion.X_train, fashion.X_test):
        assert X.dtype == np.float32 and X.flags.c_contiguous
        assert X.min() == 0.0 and X.max() == 1.0
    assert fashion.y_train.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(fashion.y_train), np.full(10, 6000))
    np.testing.assert_array_equal(np.bincount(fashion.y_test), np.full(10, 1000))
    assert fashion.classes[0] == "T-shirt/top" and fashion.classes[9] == "Ankle boot"


def test_load_default():
    ds = load_default()
    assert ds.name == "fashion-mnist-small" and ds.n_classes == 10 and ds.n_features == 784
    assert ds.X_train.shape == (10000, 784) and ds.X_test.shape == (2000, 784)
    for X in (ds.X_train, ds.X_test):
        assert X.dtype == np.float32 and X.flags.c_contiguous
        assert X.min() == 0.0 and X.max() == 1.0
    np.testing.assert_array_equal(np.bincount(ds.y_train), np.full(10, 1000))
    np.testing.assert_array_equal(np.bincount(ds.y_test), np.full(10, 200))
    # Shuffled, not sorted by class: the first 100 labels cover many classes.
    assert len(np.unique(ds.y_train[:100])) >= 8
    assert load("default").X_train.shape == (10000, 784)


def test_default_is_a_subset_of_fashion(fashion):
    # Each embedded image is one of the official images of the same split and label.
    ds = load_default()
    for small_X, small_y, X, y in (
        (ds.X_train, ds.y_train, fashion.X_train, fashion.y_train),
        (ds.X_test, ds.y_test, fashion.X_test, fashion.y_test),
    ):
        full = {row.tobytes(): label for row, label in zip(X[:, 200:400], y)}
        hits = [full.get(row.tobytes()) for row in small_X[:50, 200:400]]
        assert hits == list(small_y[:50])


def test_dataset_is_frozen():
    ds = load_default()
    with pytest.raises(AttributeError):
        ds.name = "other"


def test_shard_names_stay_reachable_from_datasets():
    # the shard files moved to segfast.shards; code written against segfast.datasets still runs
    from segfast import shards
    from segfast.datasets import Shards, load_shards, save_shards, segment_rows

    assert (Shards, load_shards, save_shards, segment_rows) == (
        shards.Shards,
        shards.load_shards,
        shards.save_shards,
        shards.segment_rows,
    )
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = datasets.nothing


def test_datasets_loads_alone_outside_the_package():
    # tools/make_default_data.py reads IDX files with this file before the extension is built
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("segfast_datasets_alone", datasets.__file__)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        assert module.read_idx.__module__ == "segfast_datasets_alone"
    finally:
        del sys.modules[spec.name]
