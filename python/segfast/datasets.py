"""Image classification data sets in the MNIST (IDX) format, and the small one segfast ships.

What it is for: turning IDX files (plain or gzipped) into a `Dataset` of float32 rows in [0, 1]
that the rest of segfast trains on. What it is not: a downloader (files come from the caller, from
$SEGFAST_DATA_DIR, or from Debian's dataset packages; the embedded subset needs nothing), nor the
shard files a cluster's workers load on their own (segfast.shards).
"""

from __future__ import annotations

import gzip
import io
import math
import os
import struct
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

__all__ = ["Dataset", "read_idx", "load", "load_default", "KNOWN_DATASETS"]
# The shard files live in segfast.shards; these names stay reachable here, where they were first
# published (segfast.datasets.save_shards in the README and in users' code). Forwarded on first
# use, not imported: tools/make_default_data.py loads this file alone, outside the package.
_SHARD_NAMES = ("Shards", "save_shards", "load_shards", "segment_rows")

# IDX type code -> big-endian numpy dtype (the format stores multi-byte values big-endian).
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

GZIP_MAGIC = b"\x1f\x8b"  # a gzip file's first bytes; segfast.tabular reads them too
_IDX_MAX_BYTES = 2**40  # larger than any data set; a header declaring more is forged
# Deflate inflates at most 1032:1; _validate.inflated_size_bound says the same, repeated here
# because tools/make_default_data.py loads this file alone, before the package is built.
_GZIP_MAX_RATIO = 1032
_CHUNK = 2**20  # read step: GzipFile.readinto goes through a temporary bytes of the step's size


def read_idx(path) -> np.ndarray:
    """Read one IDX file (gzipped or not) into an array of its stored shape.

    Gzip is detected from the first two bytes, not the file name. Multi-byte values are converted
    to native byte order. Raises FileNotFoundError for a missing file and ValueError for a bad
    header, a truncated file or trailing bytes, always naming the file.

    The header's shape is checked against the file's size before the data is read, and a gzip
    stream is inflated only as far as that shape needs (plus one byte, to find trailing data), so
    a forged header or a gzip bomb costs no more memory than the array it declares.
    """
    path = Path(path)
    with open(path, "rb") as file:  # FileNotFoundError carries the path already
        size = os.fstat(file.fileno()).st_size
        gz = file.read(2) == GZIP_MAGIC
        file.seek(0)
        stream = gzip.GzipFile(fileobj=file, mode="rb") if gz else file
        head = bytearray(4)
        got = _read_into(stream, head, path, gz)
        if got < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_DTYPES or head[3] == 0:
            raise ValueError(
                f"{path}: not an IDX file: magic bytes {bytes(head[:got]).hex(' ') or '(empty)'}, expected "
                f"00 00 <type code 08/09/0b/0c/0d/0e> <ndim >= 1>"
            )
        dtype = _IDX_DTYPES[head[2]]
        ndim = head[3]
        header = 4 + 4 * ndim
        dims = bytearray(4 * ndim)
        got = _read_into(stream, dims, path, gz)
        if got < len(dims):
            raise ValueError(f"{path}: truncated header: expected {header} bytes for {ndim} dims, found {4 + got}")
        shape = struct.unpack(f">{ndim}I", dims)
        n_bytes = dtype.itemsize * math.prod(shape)  # Python ints: a forged header cannot wrap
        expected = header + n_bytes
        if not gz and size != expected:
            what = "truncated" if size < expected else "trailing bytes after the data"
            raise ValueError(f"{path}: {what}: shape {shape} of {dtype.name} needs {expected} bytes, found {size}")
        if gz and expected > _GZIP_MAX_RATIO * size + 1024:
            raise ValueError(
                f"{path}: truncated: shape {shape} of {dtype.name} needs {expected} bytes, more than a "
                f"gzip file of {size} bytes can hold"
            )
        if n_bytes > _IDX_MAX_BYTES:
            raise ValueError(f"{path}: shape {shape} of {dtype.name} is {n_bytes} bytes, more than 2**40")
        data = np.empty(n_bytes, dtype=np.uint8)
        got = _read_into(stream, data, path, gz)
        if got < n_bytes:
            raise ValueError(
                f"{path}: truncated: shape {shape} of {dtype.name} needs {expected} bytes, found {header + got}"
            )
        if _read_into(stream, bytearray(1), path, gz):
            raise ValueError(
                f"{path}: trailing bytes after the data: shape {shape} of {dtype.name} needs {expected} "
                f"bytes, found more"
            )
    data = data.view(dtype).reshape(shape)
    if not dtype.isnative:  # swapped in place: no second copy of a large file
        data = data.byteswap(inplace=True).view(dtype.newbyteorder("="))
    return data


def _read_into(stream, buf, path: Path, gz: bool) -> int:
    """Fill ``buf`` from ``stream`` in 1 MiB steps; the number of bytes read (fewer at its end)."""
    view = memoryview(buf).cast("B")
    got = 0
    try:
        while got < len(view):
            n = stream.readinto(view[got : got + _CHUNK])
            if not n:
                break
            got += n
    except (EOFError, OSError, zlib.error) as e:  # a truncated or corrupt gzip stream
        if not gz:
            raise
        raise ValueError(f"{path}: cannot decompress gzip data ({e})") from None
    return got


@dataclass(frozen=True, eq=False)  # eq=False: comparing arrays with == has no single truth value
class Dataset:
    """A classification data set: float32 rows in [0, 1] and int64 labels.

    `X_test`/`y_test` hold the official test split, or None when the data set has none.
    """

    name: str
    X_train: np.ndarray  # (n_train, n_features) float32, C-contiguous
    y_train: np.ndarray  # (n_train,) int64 in [0, n_classes)
    X_test: np.ndarray | None  # (n_test, n_features) float32, or None
    y_test: np.ndarray | None  # (n_test,) int64, or None
    classes: tuple[str, ...]

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]

    def __repr__(self) -> str:
        test = "none" if self.X_test is None else len(self.X_test)
        return (
            f"Dataset({self.name!r}, train={len(self.X_train)}, test={test}, "
            f"n_features={self.n_features}, n_classes={self.n_classes})"
        )


_FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# Kuzushiji-MNIST: cursive Hiragana, romanised here so the names print anywhere.
_KMNIST_CLASSES = ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")
_MNIST_CLASSES = tuple(str(d) for d in range(10))

_IDX_CLASSES = {
    "fashion-mnist": _FASHION_CLASSES,
    "mnist": _MNIST_CLASSES,
    "kmnist": _KMNIST_CLASSES,
}
_DEFAULT_NAMES = ("default", "fashion-mnist-small")
KNOWN_DATASETS = tuple(_IDX_CLASSES) + _DEFAULT_NAMES

_TRAIN_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
_TEST_FILES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_SYSTEM_DIR = Path("/usr/share/datasets")  # where Debian's dataset-* packages put them
DATA_DIR_VAR = "SEGFAST_DATA_DIR"  # where data files are looked for; segfast.tabular looks too
_DEFAULT_RESOURCE = ("data", "fashion_mnist_small.npz")

_HOW_TO_GET = {
    "fashion-mnist": "apt-get install dataset-fashion-mnist, or download the four IDX files "
    "from https://github.com/zalandoresearch/fashion-mnist",
    "mnist": "download the four IDX files of MNIST (e.g. from a mirror of http://yann.lecun.com/exdb/mnist/)",
    "kmnist": "download the four IDX files of Kuzushiji-MNIST from https://github.com/rois-codh/kmnist",
}


def _find_file(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / (stem + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _search_dirs(name: str, data_dir) -> list:
    dirs = []
    if data_dir is not None:
        d = Path(data_dir).expanduser()
        dirs += [d, d / name]
    env = os.environ.get(DATA_DIR_VAR)
    if env:
        d = Path(env).expanduser()
        dirs += [d, d / name]
    dirs.append(_SYSTEM_DIR / name)
    return dirs


def _to_rows(images: np.ndarray, labels: np.ndarray, n_classes: int, what: str):
    """Check one images/labels pair and convert it to (float32 rows in [0, 1], int64 labels)."""
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"{what}: images have shape {images.shape}, expected (n, 28, 28)")
    if images.dtype != np.uint8:
        raise ValueError(f"{what}: images have dtype {images.dtype}, expected uint8")
    if labels.ndim != 1:
        raise ValueError(f"{what}: labels have shape {labels.shape}, expected (n,)")
    if len(images) != len(labels):
        raise ValueError(f"{what}: {len(images)} images but {len(labels)} labels")
    y = labels.astype(np.int64)
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"{what}: labels span [{y.min()}, {y.max()}], expected [0, {n_classes - 1}]")
    X = images.reshape(len(images), -1).astype(np.float32)
    X /= 255.0  # division (not * 1/255) so that 255 maps to exactly 1.0
    return X, y


def _load_idx_dir(name: str, directory: Path) -> Dataset:
    classes = _IDX_CLASSES[name]
    train = [_find_file(directory, stem) for stem in _TRAIN_FILES]
    test = [_find_file(directory, stem) for stem in _TEST_FILES]
    X_train, y_train = _to_rows(
        read_idx(train[0]), read_idx(train[1]), len(classes), f"{name} training set in {directory}"
    )
    X_test = y_test = None
    if any(test):
        if not all(test):
            missing = [s for s, f in zip(_TEST_FILES, test) if f is None]
            raise FileNotFoundError(f"{directory}: test split incomplete, missing {missing}[.gz]")
        X_test, y_test = _to_rows(read_idx(test[0]), read_idx(test[1]), len(classes), f"{name} test set in {directory}")
    return Dataset(name, X_train, y_train, X_test, y_test, classes)


def load(name: str = "fashion-mnist", data_dir=None) -> Dataset:
    """Load a data set by name: "fashion-mnist", "mnist", "kmnist" or "default".

    "default" (alias "fashion-mnist-small") is the subset shipped inside segfast, see
    `load_default`. The others are read from the standard IDX files
    (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
    t10k-labels-idx1-ubyte, each optionally .gz), from the first of these directories that holds
    both training files: `data_dir`, `data_dir/<name>`, $SEGFAST_DATA_DIR,
    $SEGFAST_DATA_DIR/<name>, /usr/share/datasets/<name>. The test split is loaded when its two
    files are there too.
    """
    if name in _DEFAULT_NAMES:
        return load_default()
    if name not in _IDX_CLASSES:
        raise ValueError(f"unknown data set name {name!r}; known: {', '.join(KNOWN_DATASETS)}")
    dirs = _search_dirs(name, data_dir)
    for directory in dirs:
        if all(_find_file(directory, stem) for stem in _TRAIN_FILES):
            return _load_idx_dir(name, directory)
    searched = "\n".join(f"  {d}" for d in dirs)
    raise FileNotFoundError(
        f"{name}: IDX files {', '.join(_TRAIN_FILES + _TEST_FILES)} (optionally .gz) not found "
        f"in:\n{searched}\nTo get them: {_HOW_TO_GET[name]}; then pass data_dir= or set "
        f"{DATA_DIR_VAR} to their directory. load('default') needs no files."
    )


def load_default() -> Dataset:
    """Load the Fashion-MNIST subset shipped with segfast (no files or network needed).

    10,000 training images (1,000 per class) and 2,000 test images (200 per class), drawn with a
    fixed seed from the official splits and shuffled; built by tools/make_default_data.py.
    """
    from ._validate import npz_array, npz_open

    ref = resources.files(__package__)
    for part in _DEFAULT_RESOURCE:
        ref = ref / part
    name = "segfast/" + "/".join(_DEFAULT_RESOURCE)
    # Read it whole: the resource may live in a zip, and np.load reads npz members lazily.
    with npz_open(io.BytesIO(ref.read_bytes()), name) as z:
        arrays = {k: npz_array(z, k, name) for k in ("X_train", "y_train", "X_test", "y_test")}
    n = len(_FASHION_CLASSES)
    what = "embedded fashion-mnist-small"
    X_train, y_train = _to_rows(arrays["X_train"].reshape(-1, 28, 28), arrays["y_train"], n, what + " training set")
    X_test, y_test = _to_rows(arrays["X_test"].reshape(-1, 28, 28), arrays["y_test"], n, what + " test set")
    return Dataset("fashion-mnist-small", X_train, y_train, X_test, y_test, _FASHION_CLASSES)


def __getattr__(name):
    if name in _SHARD_NAMES:
        from . import shards

        return getattr(shards, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
