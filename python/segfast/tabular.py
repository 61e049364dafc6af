"""Tabular regression data: a CSV reader, the diamonds table, and the small table segfast ships.

What it is for: turning a table of numbers and categories into float32 feature rows and float
targets (`TabularDataset`) for the regression MLPs. Categories are one-hot encoded. Features and
targets are standardised with statistics of the training rows only, and those statistics are
kept so that predictions can go back to the target's units. What it is not: a data-frame library
(no dates, no imputation: a missing value is an error), nor a downloader.
"""

from __future__ import annotations

import csv
import gzip
import math
import os
import stat
import zlib
from array import array
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple, Union

import numpy as np

from . import _validate
from ._rlazyload import read_r_lazyload  # published here; the reader is its own module
from .datasets import DATA_DIR_VAR, GZIP_MAGIC

__all__ = ["TabularDataset", "load_csv", "load_diamonds", "load_default_regression", "read_r_lazyload"]


@dataclass(frozen=True, eq=False)  # eq=False: comparing arrays with == has no single truth value
class TabularDataset:
    """A regression data set: standardised float32 features and targets, and the statistics that
    standardised them (fitted on the training rows only).

    y is (n,) for one target and (n, k) for several. `X_test`/`y_test` are None when the data set
    was loaded with test_fraction=0.
    """

    name: str
    X_train: np.ndarray  # (n_train, n_features) float32, C-contiguous, standardised
    y_train: np.ndarray  # (n_train,) or (n_train, n_targets) float32, standardised
    X_test: np.ndarray | None  # (n_test, n_features) float32, or None
    y_test: np.ndarray | None  # (n_test,) or (n_test, n_targets) float32, or None
    feature_names: tuple[str, ...]  # (n_features,) after one-hot expansion: "cut=Ideal"
    target_names: tuple[str, ...]  # (n_targets,)
    x_mean: np.ndarray  # (n_features,) float64: raw = X * x_scale + x_mean
    x_scale: np.ndarray  # (n_features,) float64, 1 for a column constant in training
    y_mean: np.ndarray  # (n_targets,) float64
    y_scale: np.ndarray  # (n_targets,) float64

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def n_targets(self) -> int:
        return len(self.target_names)

    def transform_X(self, X) -> np.ndarray:
        """Raw feature rows (n, n_features), one-hot columns included, as the models see them:
        standardised float32."""
        _validate.as_features(X, "X", self.n_features, who="this data set")
        # standardised in float64, then cast: float32 first would round large raw values (a timestamp)
        return np.ascontiguousarray((np.asarray(X, dtype=np.float64) - self.x_mean) / self.x_scale, dtype=np.float32)

    def transform_y(self, y) -> np.ndarray:
        """Targets in their own units to the standardised float32 ones (any shape that
        `inverse_transform_y` takes)."""
        mean, scale = self._y_stats(np.shape(y))
        y = np.asarray(y)
        # the target checks (real numbers, finite) on its rows, whatever its leading axes
        _validate.as_targets(y.reshape(-1, self.n_targets), y.size // self.n_targets, self.n_targets)
        return np.ascontiguousarray((y.astype(np.float64) - mean) / scale, dtype=np.float32)

    def inverse_transform_y(self, y) -> np.ndarray:
        """Standardised targets or predictions back to the target's units, as float64.

        One target: any shape, e.g. (n,), (n, 1) or a stack's (n_models, n). Several: the last
        axis is the target's, e.g. (n, k) or (n_models, n, k)."""
        mean, scale = self._y_stats(np.shape(y))
        return np.asarray(y, dtype=np.float64) * scale + mean

    def _y_stats(self, shape: tuple[int, ...]) -> tuple[Any, Any]:
        if self.n_targets == 1:
            return self.y_mean[0], self.y_scale[0]
        if not shape or shape[-1] != self.n_targets:
            raise ValueError(f"y must have {self.n_targets} targets on its last axis, got shape {shape}")
        return self.y_mean, self.y_scale

    def __repr__(self) -> str:
        test = "none" if self.X_test is None else len(self.X_test)
        return (
            f"TabularDataset({self.name!r}, train={len(self.X_train)}, test={test}, "
            f"n_features={self.n_features}, n_targets={self.n_targets})"
        )


# -- from columns to a data set: split, one-hot, standardise (shared by every source) -------------
class _Categories(NamedTuple):
    codes: np.ndarray  # (n,) int: an index into labels for each row
    labels: list[str]  # the distinct values, in no particular order


_Column = Union[np.ndarray, _Categories]  # a numeric column is (n,) float64

_MAX_X_BYTES = 8 * 2**30  # the float64 feature matrix; more comes from a mistake (an ID as a category)


def _split(n: int, test_fraction: float, seed: int, where: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(training rows, test rows or None), a seeded shuffle: round(test_fraction * n) test rows,
    at least one when test_fraction > 0."""
    if n == 0:
        raise ValueError(f"{where}: no data rows")
    n_test = max(1, round(test_fraction * n)) if test_fraction > 0 else 0
    if n - n_test < 2:
        raise ValueError(
            f"{where}: {n} rows leave {n - n_test} training rows with test_fraction={test_fraction}; "
            f"at least 2 are needed"
        )
    order = np.random.default_rng(seed).permutation(n)
    return order[n_test:], (order[:n_test] if n_test else None)


def _training_categories(values: _Categories, train: np.ndarray) -> np.ndarray:
    """The codes of the categories seen in training rows, sorted by their labels: the one-hot
    columns. A category seen only in test rows gets no column, so its rows are all zeros."""
    seen = sorted(np.unique(values.codes[train]).tolist(), key=values.labels.__getitem__)
    return np.array(seen, dtype=values.codes.dtype)


def _standardiser(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each column; scale 1 for a constant column (exactly
    constant: its float std may come out as 1e-17 rather than 0)."""
    scale = values.std(axis=0)
    scale[np.ptp(values, axis=0) == 0] = 1.0
    return values.mean(axis=0), scale


def _check_finite(values: np.ndarray, names: Sequence[str], where: str, what: str) -> None:
    bad = ~np.isfinite(values).reshape(len(values), -1).all(axis=0)
    if bad.any():
        raise ValueError(f"{where}: column {names[int(np.argmax(bad))]!r} is out of float range once {what}")


def _assemble(
    name: str,
    columns: dict[str, _Column],
    targets: Sequence[str],
    features: Sequence[str],
    test_fraction: float,
    seed: int,
    where: str,
) -> TabularDataset:
    """The data set of checked columns: numeric targets, numeric or categorical features."""
    n = len(columns[targets[0]])
    train, test = _split(n, test_fraction, seed, where)
    one_hot = {c: _training_categories(v, train) for c, v in columns.items() if isinstance(v, _Categories)}
    names: list[str] = []
    for column in features:
        values = columns[column]
        if isinstance(values, _Categories):
            names += [f"{column}={values.labels[k]}" for k in one_hot[column]]
        else:
            names.append(column)
    if n * len(names) * 8 > _MAX_X_BYTES:  # checked before the matrix is built
        raise ValueError(f"{where}: {n} rows of {len(names)} features (one-hot expanded) is more than 8 GiB")
    blocks = []
    for column in features:
        values = columns[column]
        blocks.append(values.codes[:, None] == one_hot[column] if isinstance(values, _Categories) else values[:, None])
    X = np.hstack(blocks).astype(np.float64, copy=False)  # (n, d); float64 already unless all one-hot
    Y = np.stack([np.asarray(columns[t]) for t in targets], axis=1)  # (n, k); the callers keep categories out
    x_mean, x_scale = _standardiser(X[train])
    y_mean, y_scale = _standardiser(Y[train])
    _check_finite(np.stack([x_mean, x_scale]), names, where, "averaged")
    _check_finite(np.stack([y_mean, y_scale]), targets, where, "averaged")
    X = np.ascontiguousarray((X - x_mean) / x_scale, dtype=np.float32)
    Y = np.ascontiguousarray((Y - y_mean) / y_scale, dtype=np.float32)
    _check_finite(X, names, where, "standardised")
    _check_finite(Y, targets, where, "standardised")
    if len(targets) == 1:
        Y = Y[:, 0]
    return TabularDataset(
        name,
        X[train],
        Y[train],
        None if test is None else X[test],
        None if test is None else Y[test],
        tuple(names),
        tuple(targets),
        x_mean,
        x_scale,
        y_mean,
        y_scale,
    )


def _column_names(value, argument: str) -> tuple[str, ...]:
    names = (value,) if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(c, str) for c in names):
        raise ValueError(f"{argument} must be a column name or a non-empty list of them, got {value!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"{argument} names a column twice: {value!r}")
    return tuple(names)


def _select(header: Sequence[str], target, features, where: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The target and feature columns, checked against the table's columns."""
    targets = _column_names(target, "target")
    chosen = None if features is None else _column_names(features, "features")
    listed = ", ".join(header[:20]) + (f" and {len(header) - 20} more" if len(header) > 20 else "")
    for argument, names in (("target", targets), ("features", chosen or ())):
        for column in names:
            if column not in header:
                raise ValueError(f"{where}: {argument} column {column!r} is not in the table (columns: {listed})")
    if chosen is None:
        chosen = tuple(c for c in header if c not in targets)
    both = [c for c in chosen if c in targets]
    if both:
        raise ValueError(f"{where}: column {both[0]!r} is both a target and a feature")
    if not chosen:
        raise ValueError(f"{where}: no feature columns left besides the target(s) {', '.join(targets)}")
    return targets, chosen


def _split_arguments(test_fraction, seed) -> tuple[float, int]:
    test_fraction = _validate.finite_float(test_fraction, "test_fraction", 0.0)
    if test_fraction >= 1:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction!r}")
    return test_fraction, _validate.seed(seed)


# -- CSV files ----------------------------------------------------------------------------------
# A file is refused past 2 GiB of text (after gzip), checked before it is read and again while it
# inflates, so a gzip bomb costs no more than a plain file. The columns are read in two passes
# (first which are numbers, then the values), so memory is 8 bytes a number, not a Python string
# a cell. One physical line is at most 16 MiB; one field at most csv's own limit (128 KiB unless
# the process has changed it: the limit is process-wide, so this module leaves it alone).
_MAX_CSV_BYTES = 2 * 2**30
_MAX_LINE_BYTES = 16 * 2**20
_MAX_CATEGORIES = 1000  # distinct values of one categorical column; more is an ID or free text
_MISSING = frozenset({"", "na", "nan", "null"})  # compared stripped and lowercased


def _show(cell: str) -> str:
    return repr(cell if len(cell) <= 40 else cell[:40] + "...")


def _lines(stream, path: Path, gz: bool) -> Iterator[str]:
    """The decoded lines of a CSV file, each and all of them within the byte limits."""
    left = _MAX_CSV_BYTES
    encoding = "utf-8-sig"  # a byte-order mark before the header is not part of its first name
    number = 0
    while True:
        try:
            line = stream.readline(_MAX_LINE_BYTES + 1)
        except (EOFError, OSError, zlib.error) as e:  # a truncated or corrupt gzip stream
            if not gz:
                raise
            raise ValueError(f"{path}: cannot decompress gzip data ({e})") from None
        if not line:
            return
        number += 1
        left -= len(line)
        if left < 0:
            raise ValueError(f"{path}: more than {_MAX_CSV_BYTES} bytes of text; files this large are refused")
        if len(line) > _MAX_LINE_BYTES:
            raise ValueError(f"{path}, line {number}: longer than {_MAX_LINE_BYTES} bytes")
        try:
            yield line.decode(encoding)
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}, line {number}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        encoding = "utf-8"


def _next_row(reader, path: Path) -> list[str] | None:
    """The next non-blank row, or None at the end."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return None
        except csv.Error as e:
            raise ValueError(f"{path}, line {reader.line_num}: not valid CSV ({e})") from None
        if row:
            return row


def _data_rows(reader, width: int, path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, row) for each data row, each of the header's width."""
    while (row := _next_row(reader, path)) is not None:
        if len(row) != width:
            raise ValueError(f"{path}, line {reader.line_num}: {len(row)} fields, but the header has {width}")
        yield reader.line_num, row


@contextmanager
def _csv_table(path: Path) -> Iterator[tuple[tuple[str, ...], Iterator[tuple[int, list[str]]]]]:
    """(column names, data rows) of a CSV file, plain or gzipped (told by its first bytes)."""
    with open(path, "rb") as file:  # FileNotFoundError carries the path already
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path}: not a regular file")
        if info.st_size > _MAX_CSV_BYTES:
            raise ValueError(f"{path}: {info.st_size} bytes, more than {_MAX_CSV_BYTES}; files this large are refused")
        gz = file.read(2) == GZIP_MAGIC
        file.seek(0)
        stream = gzip.GzipFile(fileobj=file, mode="rb") if gz else file
        reader = csv.reader(_lines(stream, path, gz), strict=True)
        header = _next_row(reader, path)
        if header is None:
            raise ValueError(f"{path}: empty file, expected a header row of column names")
        names = tuple(c.strip() for c in header)
        for i, column in enumerate(names):
            if not column:
                raise ValueError(f"{path}, line 1: column {i + 1} has no name")
            if column in names[:i]:
                raise ValueError(f"{path}, line 1: column name {column!r} appears twice in the header")
        yield names, _data_rows(reader, len(names), path)


def _text_cells(
    rows: Iterator[tuple[int, list[str]]], header: Sequence[str], used: Sequence[int], path: Path
) -> tuple[int, dict[int, tuple[str, int]]]:
    """First pass: the number of rows, and the first cell that is no number in each used column
    (where it is: (cell, line)), checking for missing values and infinite numbers."""
    text: dict[int, tuple[str, int]] = {}
    infinite: dict[int, int] = {}
    n = 0
    for line, row in rows:
        n += 1
        for j in used:
            cell = row[j]
            if cell.strip().lower() in _MISSING:
                raise ValueError(f"{path}, line {line}: missing value {cell!r} in column {header[j]!r}")
            if j in text:
                continue
            try:
                value = float(cell)
            except ValueError:
                text[j] = (cell, line)
                continue
            if not math.isfinite(value) and j not in infinite:
                infinite[j] = line
    for j, line in infinite.items():
        if j not in text:  # in a column of text, "inf" is one more category
            raise ValueError(f"{path}, line {line}: infinite value in column {header[j]!r}")
    return n, text


def _read_columns(
    rows: Iterator[tuple[int, list[str]]],
    header: Sequence[str],
    numeric: Sequence[int],
    text: Sequence[int],
    n: int,
    path: Path,
) -> dict[str, _Column]:
    """Second pass: the values of the used columns, numbers as float64 and text as categories.
    The first pass checked every cell; a check failing here means the file changed between them."""
    changed = f"{path}: the file changed while it was being read"
    numbers = {j: array("d") for j in numeric}
    codes = {j: array("i") for j in text}
    labels: dict[int, dict[str, int]] = {j: {} for j in text}
    count = 0
    for line, row in rows:
        count += 1
        for j in numeric:
            try:
                numbers[j].append(float(row[j]))
            except ValueError:
                raise ValueError(changed) from None
        for j in text:
            cell = row[j].strip()
            if cell.lower() in _MISSING:
                raise ValueError(changed)
            code = labels[j].setdefault(cell, len(labels[j]))
            if code >= _MAX_CATEGORIES:
                raise ValueError(
                    f"{path}, line {line}: column {header[j]!r} has more than {_MAX_CATEGORIES} distinct values, "
                    f"too many to one-hot encode; leave it out with features="
                )
            codes[j].append(code)
    columns: dict[str, _Column] = {}
    for j, floats in numbers.items():
        columns[header[j]] = np.frombuffer(floats, dtype=np.float64)
    for j, ints in codes.items():
        columns[header[j]] = _Categories(np.frombuffer(ints, dtype=np.intc), list(labels[j]))
    if count != n or any(not np.isfinite(v).all() for v in columns.values() if not isinstance(v, _Categories)):
        raise ValueError(changed)
    return columns


def load_csv(
    path: str | os.PathLike[str],
    target: str | Sequence[str],
    *,
    features: Sequence[str] | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    categorical: str = "onehot",
    name: str | None = None,
) -> TabularDataset:
    """A regression data set from a CSV file (comma-separated, a header row of column names,
    UTF-8; gzipped is fine, told by its first bytes, not its name).

    `target` is a column name, or a list of names for several targets. `features` are the input
    columns (None: all the others). A column of numbers is a feature as it is; a column holding
    any cell that is no number is categorical: one-hot encoded (categorical="onehot": one column
    per category seen in the training rows, named "column=value", sorted; a category seen only in
    test rows gets all zeros) or refused (categorical="error"). A target must be numeric.

    The rows are shuffled with numpy's default_rng(seed); round(test_fraction * n) of them (at
    least one) are the test rows, none when test_fraction is 0 (then X_test and y_test are None).
    Features and targets are standardised with the mean and standard deviation of the training
    rows (a constant column gets scale 1).

    Every problem is a ValueError naming the file, the column, and for a cell its line: a missing
    value (an empty cell, NA, NaN, null), an infinite number, a row of the wrong width, an unknown
    or duplicate column name, an empty or header-only file, fewer than 2 training rows. Limits, so
    a hostile file costs bounded memory: 2 GiB of text (after gzip), 16 MiB a line, csv's field
    limit, 1000 categories a column, 8 GiB of float64 features; nothing in the file is evaluated.
    """
    path = Path(path)
    test_fraction, seed = _split_arguments(test_fraction, seed)
    if categorical not in ("onehot", "error"):
        raise ValueError(f"categorical must be 'onehot' or 'error', got {categorical!r}")
    with _csv_table(path) as (header, rows):
        targets, features = _select(header, target, features, str(path))
        used = [header.index(c) for c in (*targets, *features)]
        n, text = _text_cells(rows, header, used, path)
    if n == 0:
        raise ValueError(f"{path}: a header but no data rows")
    for column in targets:
        if header.index(column) in text:
            cell, line = text[header.index(column)]
            raise ValueError(
                f"{path}, line {line}: target column {column!r} holds {_show(cell)}, not a number; "
                f"regression needs numeric targets"
            )
    if categorical == "error" and text:
        j = min(text, key=lambda j: text[j][1])
        cell, line = text[j]
        raise ValueError(
            f"{path}, line {line}: column {header[j]!r} holds {_show(cell)}, not a number "
            f"(categorical='onehot' would one-hot encode it)"
        )
    with _csv_table(path) as (again, rows):
        if again != header:
            raise ValueError(f"{path}: the file changed while it was being read")
        numeric = [j for j in used if j not in text]
        columns = _read_columns(rows, header, numeric, sorted(text), n, path)
    if name is None:
        name = path.name.removesuffix(".gz").removesuffix(".csv")
    return _assemble(name, columns, targets, features, test_fraction, seed, str(path))


# -- the diamonds table, from R's ggplot2 package ------------------------------------------------
_DIAMONDS_FEATURES = ("carat", "cut", "color", "clarity", "depth", "table", "x", "y", "z")
_DEB_DATA = Path("/tmp/ggplot2-deb/usr/lib/R/site-library/ggplot2/data")
_R_LIBRARIES = ("/usr/lib/R/site-library", "/usr/local/lib/R/site-library", "/usr/lib/R/library")
_HOW_TO_GET_GGPLOT2 = (
    "To get them without installing R (Debian/Ubuntu):\n"
    "  cd /tmp && apt-get download r-cran-ggplot2\n"
    "  dpkg-deb -x r-cran-ggplot2_*.deb ggplot2-deb\n"
    f"which puts them in {_DEB_DATA}, a folder searched by default. Or install R's ggplot2 package, "
    f"or copy the files to ${DATA_DIR_VAR}/ggplot2."
)


def _ggplot2_dirs(path) -> list[Path]:
    if path is not None:
        return [Path(path), Path(path) / "data"]
    dirs = []
    env = os.environ.get(DATA_DIR_VAR)
    if env:
        dirs += [Path(env) / "ggplot2", Path(env) / "ggplot2" / "data"]
    return dirs + [Path(lib) / "ggplot2" / "data" for lib in _R_LIBRARIES] + [_DEB_DATA]


def _frame_columns(frame: Any, names: Sequence[str], where: str) -> dict[str, _Column]:
    """Columns of a pandas DataFrame (as rdata makes them): numbers as float64, anything else
    (a factor, strings) as categories. Duck-typed: pandas comes with rdata, not with segfast."""
    if type(frame).__name__ != "DataFrame" or not hasattr(frame, "columns"):
        raise ValueError(f"{where}: a {type(frame).__name__}, not a data frame")
    columns: dict[str, _Column] = {}
    for column in names:
        if column not in frame.columns:
            raise ValueError(f"{where}: no column {column!r}")
        series = frame[column]
        if series.isna().any():
            raise ValueError(f"{where}: column {column!r} has missing values")
        if series.dtype.kind in "biuf":  # numpy's and pandas' nullable numbers; a factor is "O"
            columns[column] = series.to_numpy(dtype=np.float64)
        else:
            labels, codes = np.unique(series.astype(str).to_numpy(dtype=str), return_inverse=True)
            columns[column] = _Categories(codes.ravel(), labels.tolist())
    return columns


def load_diamonds(
    path: str | os.PathLike[str] | None = None, *, test_fraction: float = 0.2, seed: int = 0
) -> TabularDataset:
    """The diamonds table of R's ggplot2 package: 53,940 diamonds, target price (US dollars),
    features carat, cut, color, clarity, depth, table, x, y, z (cut, color and clarity one-hot:
    26 features). Split and standardised as `load_csv` does.

    Read from ggplot2's data folder (Rdata.rdx, Rdata.rdb) with the rdata library (pip install
    rdata): `path` (the folder, or the package folder above it), else the first that holds them
    of $SEGFAST_DATA_DIR/ggplot2, the R libraries /usr/lib/R/site-library,
    /usr/local/lib/R/site-library and /usr/lib/R/library, and /tmp/ggplot2-deb/... where the
    commands in the FileNotFoundError put them without installing R."""
    test_fraction, seed = _split_arguments(test_fraction, seed)
    dirs = _ggplot2_dirs(path)
    found = next((d for d in dirs if (d / "Rdata.rdx").is_file() and (d / "Rdata.rdb").is_file()), None)
    if found is None:
        searched = "\n".join(f"  {d}" for d in dirs)
        raise FileNotFoundError(
            f"diamonds: ggplot2's data files Rdata.rdx and Rdata.rdb not found in:\n{searched}\n{_HOW_TO_GET_GGPLOT2}"
        )
    where = f"{found}: diamonds"
    columns = _frame_columns(read_r_lazyload(found, "diamonds"), ("price", *_DIAMONDS_FEATURES), where)
    return _assemble("diamonds", columns, ("price",), _DIAMONDS_FEATURES, test_fraction, seed, where)


# -- the table segfast ships ----------------------------------------------------------------------
_DEFAULT_RESOURCE = ("data", "txhousing.csv.gz")


def load_default_regression(*, test_fraction: float = 0.2, seed: int = 0) -> TabularDataset:
    """The regression table shipped with segfast (no files or network needed): ggplot2's txhousing,
    monthly house sales of 46 Texas cities, 2000-2015, the 7,126 months with no missing value.
    Target: the median sale price (US dollars); features: city (one-hot), year, month, sales,
    volume, listings, inventory (52 features). See data/LICENSE-txhousing.txt for its source."""
    ref = resources.files(__package__)
    for part in _DEFAULT_RESOURCE:
        ref = ref / part
    with resources.as_file(ref) as path:  # a real file, even where the package is a zip
        return load_csv(path, "median", test_fraction=test_fraction, seed=seed, name="txhousing")
