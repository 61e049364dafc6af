"""Checks shared by every entry point: each names the argument and the problem."""

from __future__ import annotations

import numbers

import numpy as np

from . import _core


def as_features(X, name: str = "X", n_features: int | None = None, who: str = "the stack") -> np.ndarray:
    """Return X as a C-contiguous float32 2-D array (a copy only when needed).

    The messages follow scikit-learn's wording where it has one, so that estimators built on
    segfast pass its estimator checks."""
    if hasattr(X, "toarray") or type(X).__module__.startswith("scipy.sparse"):
        raise TypeError(f"{name} is a sparse matrix: sparse input is not supported; pass {name}.toarray()")
    X = np.asarray(X)
    if np.iscomplexobj(X):
        raise ValueError(f"{name} holds complex numbers: Complex data not supported")
    if X.dtype == object:
        X = X.astype(np.float64)  # numbers stored as objects convert; anything else raises TypeError
    if not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer) or X.dtype == bool):
        raise TypeError(f"{name} must be a numeric array, got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (rows, features), got shape {X.shape}. Reshape your data: "
            f"{name}.reshape(-1, 1) for one feature, {name}.reshape(1, -1) for one row"
        )
    if X.shape[0] == 0:
        raise ValueError(f"{name} has no rows: Found array with 0 sample(s) (shape={X.shape})")
    if X.shape[1] == 0:
        raise ValueError(
            f"{name} has no features: Found array with 0 feature(s) (shape={X.shape}) while a minimum of 1 is required."
        )
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{name} has {X.shape[1]} features, but {who} is expecting {n_features} features as input")
    X = np.ascontiguousarray(X, dtype=np.float32)
    first = _core.first_non_finite(X)
    if first >= 0:
        bad = int(np.count_nonzero(~np.isfinite(X)))
        row, col = divmod(first, X.shape[1])
        raise ValueError(f"{name} holds {bad} NaN or infinite values (the first at row {row}, column {col})")
    return X


def as_labels(y, n_rows: int, n_classes: int | None, name: str = "y") -> np.ndarray:
    """Return y as a C-contiguous int64 1-D array of labels in [0, n_classes) (n_classes None:
    any labels >= 0, where no model fixes the number of classes yet)."""
    y = np.asarray(y)
    if y.dtype == bool or not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {y.shape}")
    if len(y) != n_rows:
        raise ValueError(f"{name} has {len(y)} labels but X has {n_rows} rows")
    y = np.ascontiguousarray(y, dtype=np.int64)
    if n_classes is None:
        if len(y) and y.min() < 0:
            raise ValueError(f"{name} must hold labels >= 0, found {int(y.min())}")
    elif len(y) and (y.min() < 0 or y.max() >= n_classes):
        lo, hi = int(y.min()), int(y.max())
        raise ValueError(
            f"{name} holds labels in [{lo}, {hi}] but the models have {n_classes} classes "
            f"(labels must be in [0, {n_classes - 1}])"
        )
    return y


def as_targets(y, n_rows: int, n_targets: int, name: str = "y") -> np.ndarray:
    """Return regression targets as a C-contiguous float32 (n_rows, n_targets) array: (n,) is
    accepted for one target. Integers are numbers too; bools, strings and objects are not."""
    y = np.asarray(y)
    if y.dtype.kind not in "fiu":  # b, c, O, U, S, V, M, m
        raise TypeError(f"{name} must hold real numbers (regression targets), got dtype {y.dtype}")
    if y.ndim == 1 and n_targets == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[1] != n_targets:
        shape = f"({n_rows},) or ({n_rows}, 1)" if n_targets == 1 else f"({n_rows}, {n_targets})"
        raise ValueError(f"{name} must have shape {shape} for {n_targets} target(s), got {y.shape}")
    if len(y) != n_rows:
        raise ValueError(f"{name} has {len(y)} targets but X has {n_rows} rows")
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(y, dtype=np.float32)
    if not np.isfinite(out).all():
        bad = "NaN or inf" if not np.isfinite(y).all() else "values beyond float32's range"
        raise ValueError(f"{name} holds {bad}: regression targets must be finite float32 numbers")
    return out


def as_outputs(y, n_rows: int, n_outputs: int, task: str, name: str = "y") -> np.ndarray:
    """What models of this task and output width learn from: class labels, or regression targets."""
    if task == "regression":
        return as_targets(y, n_rows, n_outputs, name)
    return as_labels(y, n_rows, n_outputs, name)


def integer(value, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """An int (numpy integers too; never a bool, which is an int subclass but surely a mistake)
    in [minimum, maximum], as a plain Python int."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or (minimum is not None and int(value) < minimum)
        or (maximum is not None and int(value) > maximum)
    ):
        bounds = "".join(
            part
            for part in (
                f" >= {minimum}" if minimum is not None else "",
                " and" if minimum is not None and maximum is not None else "",
                f" <= {maximum}" if maximum is not None else "",
            )
        )
        raise ValueError(f"{name} must be an integer{bounds}, got {value!r}")
    return int(value)


def positive_int(value, name: str, maximum: int = 2**31 - 1) -> int:
    """An integer in [1, maximum]; the default maximum is the C++ int the value becomes."""
    return integer(value, name, 1, maximum)


def as_index(value, name: str, n: int, of: str) -> int:
    """An index into n things, negative from the end, in [0, n): a TypeError where it is no integer
    (a bool too: numpy would read it as a mask and add an axis), an IndexError out of range, as
    Python's own indexing."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    value = int(value)
    if not -n <= value < n:
        raise IndexError(f"{name} {value} out of range for {of}")
    return value % n


def seed(value, name: str = "seed") -> int:
    """A random seed: the C++ streams key on a uint64."""
    return integer(value, name, 0, 2**64 - 1)


def start_epoch(value) -> int:
    """The number of the first epoch (the random streams key on it): int64 in C++, with room left
    for any number of epochs after it."""
    return integer(value, "start_epoch", 0, 2**62 - 1)


MAX_EPOCHS = 10**6  # a call's epochs (and a round's): more is a mistyped count, or one that wraps int64


def epochs_per_model(epochs, n_models: int) -> np.ndarray:
    """``epochs`` (one int, or one per model) as (n_models,) int64 in [0, MAX_EPOCHS]."""
    if isinstance(epochs, numbers.Integral) and not isinstance(epochs, bool):
        epochs = np.full(n_models, integer(epochs, "epochs", 0, MAX_EPOCHS))
    else:
        epochs = np.asarray(epochs)
        if epochs.dtype == bool or not np.issubdtype(epochs.dtype, np.integer) or epochs.shape != (n_models,):
            raise ValueError(f"epochs must be an int or {n_models} ints (one per model), got {epochs!r}")
    if (epochs < 0).any() or (epochs > MAX_EPOCHS).any():
        raise ValueError(f"epochs must be >= 0 and <= {MAX_EPOCHS}, got values from {epochs.min()} to {epochs.max()}")
    return epochs.astype(np.int64)


def check_stack(stack, name: str = "stack") -> None:
    from .stack import MLPStack  # stack.py imports this module

    if not isinstance(stack, MLPStack):
        raise TypeError(f"{name} must be a segfast.MLPStack, got {type(stack).__name__}")


def val_pair(val, n_features: int, n_classes: int, name: str = "val", task: str = "classification"):
    """Validation rows: an (X, y) pair, or a segfast.Split (its validation rows, else its test
    rows), checked against the models' widths and task; None stays None."""
    from .split import Split  # split.py imports this module

    if val is None:
        return None
    if isinstance(val, Split):
        val = val.val if len(val.y_val) else val.test
    try:
        X, y = val
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an (X, y) pair or a Split") from None
    X = as_features(X, f"{name} X", n_features)
    return X, as_outputs(y, len(X), n_classes, task, f"{name} y")


def finite_float(value, name: str, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    try:
        finite = np.isfinite(float(value))
    except OverflowError:  # an int beyond float's range
        finite = False
    if not finite:
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return float(value)


# -- files from disk: a damaged or forged file is a ValueError naming it, found before any size
# -- read from it is allocated ----------------------------------------------------------------------
def inflated_size_bound(n_compressed: int) -> int:
    """The most bytes a deflate stream (gzip file, zip member) of ``n_compressed`` bytes inflates
    to: deflate codes at most 258 bytes in one 2-bit symbol, 1032:1 at best (the slack covers
    headers); a size declared above it is forged or truncated."""
    return 1032 * int(n_compressed) + 1024


def npz_open(file, name=None):
    """An .npz archive (a path or a binary file) opened as np.load would, never unpickling;
    ValueError naming the file where it is not a readable one (FileNotFoundError where it is
    missing). Use it in a ``with``.

    The first bytes are checked first: np.load would read a plain .npy whole, at any size its
    header declares. The file is opened here, not by np.load, which leaves it open when the
    archive is damaged."""
    import zipfile

    name = str(file) if name is None else name
    try:
        fid = file if hasattr(file, "read") else open(file, "rb")  # noqa: SIM115 (returned open, closed by the caller)
    except IsADirectoryError:
        raise ValueError(f"{name} is a directory, not an .npz file") from None
    try:
        head = fid.read(4)
        fid.seek(0)
        if head not in (b"PK\x03\x04", b"PK\x05\x06"):
            raise ValueError(
                f"{name} is not an .npz file (a zip archive of .npy arrays): it begins with "
                f"{head.hex(' ') or 'nothing, it is empty'}"
            )
        try:
            return np.lib.npyio.NpzFile(fid, own_fid=fid is not file, allow_pickle=False)
        except (zipfile.BadZipFile, EOFError, ValueError, OSError, NotImplementedError) as e:
            raise ValueError(f"{name} is a damaged .npz file: {e}") from None
    except BaseException:
        if fid is not file:
            fid.close()
        raise


def _npz_errors():
    import struct
    import zipfile
    import zlib

    # what zipfile, zlib and numpy's .npy reader raise on damaged bytes; RuntimeError: encrypted
    return (
        zipfile.BadZipFile,
        zlib.error,
        struct.error,
        EOFError,
        KeyError,
        ValueError,
        OSError,
        NotImplementedError,
        RuntimeError,
    )


def npz_header(npz, key: str, name) -> tuple:
    """(shape, dtype) of array ``key`` of an open .npz, from its .npy header alone, checked against
    the bytes the archive stores for it: callers compare them with what they expect before any
    data is read. ValueError naming the file and the array for anything wrong."""
    import math
    import zipfile

    if key not in npz.files:
        raise ValueError(f"{name} has no array {key!r} (it holds {sorted(npz.files)})")
    member = key if key in npz.zip.namelist() else key + ".npy"  # as NpzFile.__getitem__ picks it
    try:
        info = npz.zip.getinfo(member)
        with npz.zip.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f".npy format version {version} is not supported")
            start = f.tell()
    except _npz_errors() as e:
        raise ValueError(f"{name}: array {key!r} is damaged: {e}") from None
    if dtype.hasobject:
        raise ValueError(
            f"{name}: array {key!r} holds Python objects, which only pickle could load; segfast never unpickles"
        )
    need = start + math.prod(shape) * dtype.itemsize  # Python ints: a forged shape cannot wrap
    if info.file_size != need:
        raise ValueError(
            f"{name}: array {key!r} declares shape {shape} of {dtype} ({need} bytes with "
            f"its header) but the archive stores {info.file_size} bytes for it"
        )
    # the sizes in a zip's directory are forgeable too: hold them to the bytes really there
    archive = npz.zip.fp.seek(0, 2)  # safe: zipfile seeks to its own position before each read
    if (
        info.header_offset + info.compress_size > archive
        or (info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size)
        or (info.compress_type == zipfile.ZIP_DEFLATED and info.file_size > inflated_size_bound(info.compress_size))
    ):
        raise ValueError(
            f"{name}: array {key!r} declares {info.file_size} bytes, more than the "
            f"{info.compress_size} bytes stored for it (in an archive of {archive}) can hold"
        )
    return shape, dtype


def npz_array(npz, key: str, name) -> np.ndarray:
    """Array ``key`` of an open .npz, read after :func:`npz_header` has checked its size; damage
    is a ValueError naming the file and the array."""
    npz_header(npz, key, name)
    try:
        return npz[key]
    except _npz_errors() as e:
        raise ValueError(f"{name}: array {key!r} is damaged: {e}") from None
