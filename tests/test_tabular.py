from __future__ import annotations

import csv
import gzip
import math
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from segfast import tabular
from segfast.tabular import TabularDataset, load_csv, load_default_regression, load_diamonds, read_r_lazyload


def write_csv(path: Path, header, rows, gz: bool = False, newline: str = "\n") -> Path:
    """A CSV written by the csv module (the reference writer), optionally gzipped."""
    lines = []
    writer = csv.writer(_Collect(lines), lineterminator=newline)
    writer.writerow(header)
    writer.writerows(rows)
    data = "".join(lines).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


class _Collect:
    def __init__(self, lines):
        self.write = lines.append


def split_rows(n: int, test_fraction: float, seed: int):
    """The documented split: default_rng(seed).permutation(n), the first round(f * n) rows test."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(1, round(test_fraction * n)) if test_fraction > 0 else 0
    return order[n_test:], order[:n_test]


def table(n: int = 40, seed: int = 7):
    """Columns a (float), b (int), colour (text), target y and a second target z."""
    rng = np.random.default_rng(seed)
    a = rng.normal(3.0, 2.0, n).round(4)
    b = rng.integers(-5, 50, n)
    colour = rng.choice(["red", "green", "blue"], n)
    y = (2 * a - b + (colour == "red") * 10 + rng.normal(0, 0.1, n)).round(4)
    z = (a * b).round(4)
    return {"a": a, "b": b, "colour": colour, "y": y, "z": z}


def write_table(path: Path, columns: dict, gz: bool = False) -> Path:
    names = list(columns)
    return write_csv(path, names, zip(*(columns[c] for c in names)), gz=gz)


def standardised(values: np.ndarray, train: np.ndarray) -> np.ndarray:
    mean, std = values[train].mean(axis=0), values[train].std(axis=0)
    return (values - mean) / np.where(std == 0, 1.0, std)


# ---------------------------------------------------------------- parsing against a reference


def test_parses_numbers_and_one_hot_against_numpy(tmp_path):
    cols = table()
    path = write_table(tmp_path / "t.csv", cols)
    data = load_csv(path, "y", test_fraction=0.25, seed=3)
    train, test = split_rows(40, 0.25, 3)
    colours = sorted(set(cols["colour"][train]))
    raw = np.column_stack([cols["a"], cols["b"], *[(cols["colour"] == c).astype(float) for c in colours], cols["z"]])
    expected_X = standardised(raw, train)
    expected_y = standardised(cols["y"].astype(float)[:, None], train)[:, 0]
    assert data.feature_names == ("a", "b", *[f"colour={c}" for c in colours], "z")
    assert data.target_names == ("y",)
    np.testing.assert_allclose(data.X_train, expected_X[train], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(data.X_test, expected_X[test], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(data.y_train, expected_y[train], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(data.y_test, expected_y[test], rtol=1e-5, atol=1e-6)
    for a in (data.X_train, data.y_train, data.X_test, data.y_test):
        assert a.dtype == np.float32 and a.flags.c_contiguous
    for a in (data.x_mean, data.x_scale, data.y_mean, data.y_scale):
        assert a.dtype == np.float64
    np.testing.assert_allclose(data.x_mean, raw[train].mean(axis=0))
    np.testing.assert_allclose(data.y_scale, [cols["y"][train].std()])
    assert repr(data) == "TabularDataset('t', train=30, test=10, n_features=6, n_targets=1)"


def test_features_subset_and_several_targets(tmp_path):
    cols = table()
    path = write_table(tmp_path / "t.csv", cols)
    data = load_csv(path, ["y", "z"], features=["b", "a"], test_fraction=0, seed=1)
    train, _ = split_rows(40, 0, 1)
    assert data.X_test is None and data.y_test is None
    assert data.feature_names == ("b", "a") and data.target_names == ("y", "z")
    assert data.y_train.shape == (40, 2) and data.X_train.shape == (40, 2)
    expected = standardised(np.column_stack([cols["b"], cols["a"]]).astype(float), train)
    np.testing.assert_allclose(data.X_train, expected[train], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(data.inverse_transform_y(data.y_train)[:, 1], cols["z"][train], rtol=1e-5, atol=1e-4)


def test_gzip_bom_crlf_quotes_and_spaces_read_the_same(tmp_path):
    header = ["x", "label", "y"]
    rows = [[1.5, "a, quoted", 2], [2.5, "b", 3], [4.0, "a, quoted", 5], [7.0, "b", 1]]
    plain = load_csv(write_csv(tmp_path / "p.csv", header, rows), "y", test_fraction=0)
    gz = load_csv(write_csv(tmp_path / "g.csv.gz", header, rows, gz=True), "y", test_fraction=0)
    text = "\ufeff x , label ,y\r\n" + "".join(f' {r[0]} ,"{r[1]}", {r[2]}\r\n' for r in rows)
    (tmp_path / "odd.csv").write_bytes(text.encode())
    odd = load_csv(tmp_path / "odd.csv", "y", test_fraction=0)
    assert plain.feature_names == ("x", "label=a, quoted", "label=b")
    for other in (gz, odd):
        assert other.feature_names == plain.feature_names
        np.testing.assert_array_equal(other.X_train, plain.X_train)
        np.testing.assert_array_equal(other.y_train, plain.y_train)
    assert gz.name == "g" and plain.name == "p"


def test_one_hot_categories_come_from_training_rows_only(tmp_path):
    n, seed = 30, 5
    train, test = split_rows(n, 0.2, seed)
    colour = np.array(["red", "blue"] * (n // 2), dtype=object)
    colour[test[0]] = "violet"  # seen only in a test row
    y = np.arange(n, dtype=float)
    path = write_csv(tmp_path / "c.csv", ["colour", "y"], zip(colour, y))
    data = load_csv(path, "y", test_fraction=0.2, seed=seed)
    assert data.feature_names == ("colour=blue", "colour=red")
    raw_test = data.X_test * data.x_scale + data.x_mean
    np.testing.assert_allclose(raw_test[0], [0, 0], atol=1e-6)  # the unseen category: all zeros
    others = raw_test[1:]
    np.testing.assert_allclose(others.sum(axis=1), 1, atol=1e-6)
    expected_red = (colour[test[1:]] == "red").astype(float)
    np.testing.assert_allclose(others[:, 1], expected_red, atol=1e-6)


def test_standardisation_is_fitted_on_training_rows_only(tmp_path):
    n = 200
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, n) + np.arange(n) / 10.0  # a trend: train and test rows differ in mean
    const = np.full(n, 4.25)
    y = 3 * a + 100
    path = write_csv(tmp_path / "s.csv", ["a", "const", "y"], zip(a, const, y))
    data = load_csv(path, "y", test_fraction=0.3, seed=2)
    np.testing.assert_allclose(data.X_train[:, 0].mean(), 0, atol=1e-6)
    np.testing.assert_allclose(data.X_train[:, 0].std(), 1, atol=1e-5)
    np.testing.assert_allclose(data.y_train.mean(), 0, atol=1e-6)
    np.testing.assert_allclose(data.y_train.std(), 1, atol=1e-5)
    assert abs(data.X_test[:, 0].mean()) > 1e-3 and abs(data.X_test[:, 0].std() - 1) > 1e-3
    assert abs(data.y_test.mean()) > 1e-3
    train, test = split_rows(n, 0.3, 2)
    assert data.x_mean[0] == pytest.approx(a[train].mean()) and data.x_mean[0] != pytest.approx(a.mean())
    # a constant column: scale 1, so it standardises to exact zeros in training and test rows
    assert data.x_scale[1] == 1.0 and data.x_mean[1] == 4.25
    assert not data.X_train[:, 1].any() and not data.X_test[:, 1].any()


def test_same_seed_same_data_other_seed_other_split(tmp_path):
    path = write_table(tmp_path / "t.csv", table())
    first, again, other = (load_csv(path, "y", seed=s) for s in (4, 4, 5))
    for name in ("X_train", "y_train", "X_test", "y_test", "x_mean", "x_scale", "y_mean", "y_scale"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    assert not np.array_equal(first.y_train, other.y_train)


# ---------------------------------------------------------------- transforms


def fixed_dataset(k: int) -> TabularDataset:
    d = 3
    rng = np.random.default_rng(k)
    X = rng.normal(size=(5, d)).astype(np.float32)
    y = rng.normal(size=(5, k) if k > 1 else 5).astype(np.float32)
    return TabularDataset(
        "fixed",
        X,
        y,
        None,
        None,
        tuple("abc"),
        tuple(f"t{i}" for i in range(k)),
        np.array([1.0, -2.0, 0.5]),
        np.array([2.0, 0.5, 1.0]),
        np.array([100.0, -3.0][:k]),
        np.array([10.0, 0.25][:k]),
    )


@pytest.mark.parametrize(
    "k, shape",
    [(1, (7,)), (1, (4, 7)), (1, (7, 1)), (2, (7, 2)), (2, (4, 7, 2))],
)
def test_inverse_transform_y_round_trips(k, shape):
    data = fixed_dataset(k)
    z = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    original = data.inverse_transform_y(z)
    assert original.shape == shape and original.dtype == np.float64
    expected = z.astype(np.float64) * data.y_scale[: k if k > 1 else 1] + data.y_mean[: k if k > 1 else 1]
    np.testing.assert_allclose(original, expected)
    back = data.transform_y(original)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, z, rtol=1e-6, atol=1e-6)


def test_inverse_transform_y_checks_the_target_axis():
    with pytest.raises(ValueError, match=r"2 targets on its last axis, got shape \(7, 3\)"):
        fixed_dataset(2).inverse_transform_y(np.zeros((7, 3)))


def test_transform_X_matches_the_stored_rows(tmp_path):
    data = load_csv(write_table(tmp_path / "t.csv", table()), "y")
    raw = data.X_test.astype(np.float64) * data.x_scale + data.x_mean
    np.testing.assert_allclose(data.transform_X(raw), data.X_test, atol=1e-5)
    with pytest.raises(ValueError, match=r"X has 3 features, but this data set is expecting 6 features"):
        data.transform_X(raw[:, :3])


@pytest.mark.parametrize(
    "kind, error, match",
    [
        ("nan", ValueError, r"^X holds 1 NaN or infinite values \(the first at row 1, column 2\)"),
        ("inf", ValueError, r"^X holds 1 NaN or infinite values"),
        ("strings", TypeError, r"^X must be a numeric array, got dtype <U"),
        ("1-d", ValueError, r"^X must be 2-D \(rows, features\)"),
        ("empty", ValueError, r"^X has no rows"),
    ],
)
def test_transform_X_refuses_bad_rows(kind, error, match):
    X = np.ones((3, 3))
    bad = {"nan": np.nan, "inf": -np.inf}
    if kind in bad:
        X[1, 2] = bad[kind]
    X = {"strings": X.astype(str), "1-d": X[0], "empty": X[:0]}.get(kind, X)
    with pytest.raises(error, match=match):
        fixed_dataset(1).transform_X(X)


@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize(
    "kind, error, match",
    [
        ("nan", ValueError, r"^y holds NaN or inf"),
        ("inf", ValueError, r"^y holds NaN or inf"),
        ("strings", TypeError, r"^y must hold real numbers \(regression targets\), got dtype <U"),
        ("objects", TypeError, r"^y must hold real numbers \(regression targets\), got dtype object"),
    ],
)
def test_transform_y_refuses_bad_targets(k, kind, error, match):
    y = np.ones((4, 7, k) if k > 1 else (4, 7))  # a stack's (n_models, n) or (n_models, n, k)
    bad = {"nan": np.nan, "inf": np.inf}
    if kind in bad:
        y[2, 3] = bad[kind]
    y = {"strings": y.astype(str), "objects": y.astype(object)}.get(kind, y)
    with pytest.raises(error, match=match):
        fixed_dataset(k).transform_y(y)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("missing", ["", "NA", "NaN", "nan", "null", " NULL "])
def test_missing_value_names_file_line_and_column(tmp_path, missing):
    path = write_csv(tmp_path / "m.csv", ["a", "b", "y"], [[1, 2, 3], [4, missing, 6], [7, 8, 9]])
    with pytest.raises(ValueError, match=re.escape(f"{path}, line 3: missing value") + ".*column 'b'"):
        load_csv(path, "y")


def test_missing_value_in_an_unused_column_is_fine(tmp_path):
    path = write_csv(tmp_path / "m.csv", ["a", "b", "y"], [[1, "", 3], [4, "NA", 6], [7, 8, 9]])
    assert load_csv(path, "y", features=["a"], test_fraction=0).feature_names == ("a",)


def bad_csv(tmp_path, text: str, name: str = "bad.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


@pytest.mark.parametrize(
    "text, kwargs, message",
    [
        ("a,y\n1,2\ninf,3\n4,5\n", {}, r"line 3: infinite value in column 'a'"),
        ("a,y\n1,2\n3,-Infinity\n4,5\n", {}, r"line 3: infinite value in column 'y'"),
        ("a,y\n1,2\n3,4,5\n6,7\n", {}, r"line 3: 3 fields, but the header has 2"),
        ("a,y\n1,2\n3\n", {}, r"line 3: 1 fields, but the header has 2"),
        ("a,y,a\n1,2,3\n4,5,6\n", {}, r"line 1: column name 'a' appears twice"),
        ("a,,y\n1,2,3\n4,5,6\n", {}, r"line 1: column 2 has no name"),
        ("", {}, r"empty file"),
        ("\n\n", {}, r"empty file"),
        ("a,y\n", {}, r"a header but no data rows"),
        ("a,y\n1,2\n", {}, r"1 rows leave 0 training rows"),
        ("a,y\n1,2\n3,4\n", {}, r"2 rows leave 1 training rows"),
        ("a,y\n1,2\n3,4\n5,6\n", {"test_fraction": 0.5}, r"3 rows leave 1 training rows"),
        ("a,y\n1,2\n3,4\n", {"target": "price"}, r"target column 'price' is not in the table \(columns: a, y\)"),
        ("a,y\n1,2\n3,4\n", {"features": ["a", "b"]}, r"features column 'b' is not in the table"),
        ("a,y\n1,2\n3,4\n", {"features": ["a", "y"]}, r"column 'y' is both a target and a feature"),
        ("y\n1\n3\n", {}, r"no feature columns left"),
        ("a,y\n1,2\n3,cheap\n", {}, r"line 3: target column 'y' holds 'cheap', not a number"),
        ("a,y\n1,2\nred,4\n", {"categorical": "error"}, r"line 3: column 'a' holds 'red', not a number"),
        ('a,y\n1,2\n"3"x,4\n', {}, r"line 3: not valid CSV"),
        (b"a,y\n1,2\n\xff\xfe,4\n", {}, r"line 3: not UTF-8 text"),
        (b"\x1f\x8b\x08\x00garbage", {}, r"cannot decompress gzip data"),
    ],
)
def test_bad_csv_is_a_value_error_naming_the_file(tmp_path, text, kwargs, message):
    path = bad_csv(tmp_path, text)
    kwargs = {"target": "y", **kwargs}
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + message):
        load_csv(path, **kwargs)


def test_truncated_gzip_is_a_value_error(tmp_path):
    data = gzip.compress(b"a,y\n" + b"1,2\n" * 1000)
    path = bad_csv(tmp_path, data[: len(data) // 2], "t.csv.gz")
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*gzip"):
        load_csv(path, "y")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"target": []}, r"target must be a column name or a non-empty list"),
        ({"target": ["y", "y"]}, r"target names a column twice"),
        ({"target": 3}, r"target must be a column name"),
        ({"features": "a"}, None),  # one name is fine
        ({"features": [1]}, r"features must be a column name"),
        ({"test_fraction": 1.0}, r"test_fraction must be in \[0, 1\)"),
        ({"test_fraction": -0.1}, r"test_fraction must be >= 0"),
        ({"test_fraction": math.nan}, r"test_fraction must be a finite number"),
        ({"seed": -1}, r"seed must be an integer >= 0"),
        ({"categorical": "drop"}, r"categorical must be 'onehot' or 'error'"),
    ],
)
def test_bad_arguments_name_the_argument(tmp_path, kwargs, message):
    path = write_table(tmp_path / "t.csv", table())
    kwargs = {"target": "y", **kwargs}
    if message is None:
        assert load_csv(path, **kwargs).feature_names == ("a",)
        return
    with pytest.raises(ValueError, match=message):
        load_csv(path, **kwargs)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_csv(tmp_path / "nope.csv", "y")


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_endless_device_is_refused():
    with pytest.raises(ValueError, match="/dev/zero: not a regular file"):
        load_csv("/dev/zero", "y")


def test_too_large_file_and_gzip_bomb_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(tabular, "_MAX_CSV_BYTES", 1000)
    text = b"a,y\n" + b"1,2\n" * 400  # 1604 bytes
    plain = bad_csv(tmp_path, text, "big.csv")
    with pytest.raises(ValueError, match=re.escape(f"{plain}: 1604 bytes, more than 1000")):
        load_csv(plain, "y")
    bomb = bad_csv(tmp_path, gzip.compress(text), "bomb.csv.gz")
    assert bomb.stat().st_size < 1000
    with pytest.raises(ValueError, match=re.escape(f"{bomb}: more than 1000 bytes of text")):
        load_csv(bomb, "y")


def test_overlong_line_and_field_are_refused(tmp_path, monkeypatch):
    field = "9" * (csv.field_size_limit() + 1)
    wide = bad_csv(tmp_path, f"a,y\n1,2\n{field},3\n", "field.csv")
    with pytest.raises(ValueError, match=re.escape(f"{wide}, line 3: not valid CSV") + ".*field larger"):
        load_csv(wide, "y")
    monkeypatch.setattr(tabular, "_MAX_LINE_BYTES", 50)
    long = bad_csv(tmp_path, "a,y\n1,2\n" + "1" * 60 + ",3\n", "line.csv")
    with pytest.raises(ValueError, match=re.escape(f"{long}, line 3: longer than 50 bytes")):
        load_csv(long, "y")


def test_gzip_line_without_end_is_refused_before_it_inflates(tmp_path, monkeypatch):
    """A 64 MiB line in a 64 KiB gzip file: refused after reading 1 MiB of it, not 64."""
    import tracemalloc

    monkeypatch.setattr(tabular, "_MAX_LINE_BYTES", 2**20)
    path = bad_csv(tmp_path, gzip.compress(b"a,y\n1," + b"1" * 2**26), "long.csv.gz")
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=re.escape(f"{path}, line 2: longer than")):
            load_csv(path, "y")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20


def test_too_many_categories_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(tabular, "_MAX_CATEGORIES", 5)
    path = write_csv(tmp_path / "ids.csv", ["id", "y"], [[f"user{i}", i] for i in range(10)])
    with pytest.raises(ValueError, match=re.escape(f"{path}, line 7: column 'id' has more than 5 distinct")):
        load_csv(path, "y")


# ---------------------------------------------------------------- R lazy-load files (forged)


def xdr_ints(*values) -> bytes:
    return struct.pack(f">{len(values)}i", *values)


def r_char(text: str) -> bytes:  # CHARSXP, flagged ASCII
    data = text.encode()
    return xdr_ints(9 | 64 << 12, len(data)) + data


def r_symbol(text: str) -> bytes:
    return xdr_ints(1) + r_char(text)


def r_ints(*values) -> bytes:
    return xdr_ints(13, len(values), *values)


def r_named_list(items: dict) -> bytes:
    """VECSXP with a names attribute (a pairlist: names = STRSXP)."""
    names = xdr_ints(16, len(items)) + b"".join(r_char(k) for k in items)
    body = b"".join(items.values())
    return xdr_ints(19 | 1 << 9, len(items)) + body + xdr_ints(2 | 1 << 10) + r_symbol("names") + names + xdr_ints(254)


def r_serial(body: bytes) -> bytes:
    """R's XDR serialisation, format 2, written by hand from R's serialize.c layout."""
    return b"X\n" + xdr_ints(2, 0x040202, 0x020300) + body


def write_lazyload(directory: Path, objects: dict, rdb_entries: dict | None = None) -> Path:
    """Rdata.rdx/.rdb holding `objects` (name -> serialisation); `rdb_entries` replaces an entry's
    stored bytes (the 4-byte size and the zlib stream) to forge it."""
    directory.mkdir(exist_ok=True)
    rdb, variables = b"", {}
    for name, serial in objects.items():
        entry = (rdb_entries or {}).get(name) or struct.pack(">I", len(serial)) + zlib.compress(serial)
        variables[name] = r_ints(len(rdb), len(entry))
        rdb += entry
    index = r_named_list({"variables": r_named_list(variables), "compressed": xdr_ints(10, 1, 1)})
    (directory / "Rdata.rdx").write_bytes(gzip.compress(r_serial(index)))
    (directory / "Rdata.rdb").write_bytes(rdb)
    return directory


VECTOR = r_serial(r_ints(1, 2, 3))


def test_lazyload_reads_a_hand_written_database(tmp_path):
    pytest.importorskip("rdata")
    directory = write_lazyload(tmp_path / "db", {"first": r_serial(r_ints(7)), "vec": VECTOR})
    np.testing.assert_array_equal(read_r_lazyload(directory, "vec"), [1, 2, 3])
    with pytest.raises(ValueError, match=r"Rdata.rdx: no object 'nope'; it holds first, vec"):
        read_r_lazyload(directory, "nope")


def compressed_entry(data: bytes, declared: int | None = None) -> bytes:
    return struct.pack(">I", len(data) if declared is None else declared) + zlib.compress(data)


@pytest.mark.parametrize(
    "entry, message",
    [
        (struct.pack(">I", 2**32 - 1) + zlib.compress(VECTOR), r"declares 4294967295 bytes"),
        (struct.pack(">I", len(VECTOR)) + b"this is no zlib stream", r"damaged compressed data"),
        (compressed_entry(b"\0" * 2**22, declared=1000), r"inflates to more than 1000 bytes"),
        (compressed_entry(VECTOR, declared=len(VECTOR) + 5), r"inflates to \d+ bytes, but declares"),
        (compressed_entry(VECTOR)[:-6], r"truncated compressed data"),
        (compressed_entry(gzip.compress(b"\0" * 2**20)), r"not an R serialisation in XDR format"),
        (compressed_entry(b"X\n" + b"\xff" * 40), r"not a readable R object"),
        (b"\0\0", r"puts it at bytes \[0, 2\)"),
    ],
    ids=["huge-size", "not-zlib", "bomb", "short", "truncated", "gzip-inside", "garbage-xdr", "no-size"],
)
def test_forged_rdb_entry_is_a_value_error(tmp_path, entry, message):
    pytest.importorskip("rdata")
    directory = write_lazyload(tmp_path / "db", {"vec": VECTOR}, {"vec": entry})
    with pytest.raises(ValueError, match=re.escape(str(directory / "Rdata.rdb")) + ".*" + message):
        read_r_lazyload(directory, "vec")


def test_zlib_bomb_is_refused_before_it_inflates(tmp_path):
    """64 MiB of zeros declared as 1000 bytes: refused after inflating about 1000, not 64 MiB."""
    import tracemalloc

    pytest.importorskip("rdata")
    bomb = compressed_entry(b"\0" * 2**26, declared=1000)
    directory = write_lazyload(tmp_path / "db", {"vec": VECTOR}, {"vec": bomb})
    del bomb
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="inflates to more than 1000 bytes"):
            read_r_lazyload(directory, "vec")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20


def test_forged_index_is_a_value_error(tmp_path):
    pytest.importorskip("rdata")
    directory = write_lazyload(tmp_path / "db", {"vec": VECTOR})
    rdx = directory / "Rdata.rdx"
    rdx.write_bytes(b"garbage, not gzip")
    with pytest.raises(ValueError, match=re.escape(str(rdx)) + ": damaged compressed data"):
        read_r_lazyload(directory, "vec")
    rdx.write_bytes(gzip.compress(b"\0" * 2**25))  # 32 MiB of zeros in 32 KiB
    with pytest.raises(ValueError, match=re.escape(str(rdx)) + ": inflates to more than"):
        read_r_lazyload(directory, "vec")
    rdx.write_bytes(gzip.compress(r_serial(r_ints(1, 2))))
    with pytest.raises(ValueError, match=re.escape(str(rdx)) + ": not a lazy-load index"):
        read_r_lazyload(directory, "vec")
    past_end = r_named_list({"vec": r_ints(0, 10**6)})
    rdx.write_bytes(gzip.compress(r_serial(r_named_list({"variables": past_end}))))
    with pytest.raises(ValueError, match=r"puts it at bytes \[0, 1000000\)"):
        read_r_lazyload(directory, "vec")


def test_forged_compact_sequence_is_not_expanded(tmp_path):
    """An ALTREP compact_intseq declares its length: 2**31 - 1 here, 8 GiB if it were expanded."""
    pytest.importorskip("rdata")
    info = xdr_ints(2) + r_symbol("compact_intseq") + xdr_ints(2) + r_symbol("base") + xdr_ints(2) + r_ints(13)
    state = xdr_ints(14, 3) + struct.pack(">3d", 2**31 - 1, 1, 1)
    altrep = xdr_ints(238) + info + xdr_ints(254) + state + xdr_ints(254)
    directory = write_lazyload(tmp_path / "db", {"seq": r_serial(altrep)})
    with pytest.raises(ValueError, match="not a readable R object"):
        read_r_lazyload(directory, "seq")


# ---------------------------------------------------------------- the real tables


def test_diamonds_not_found_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv("SEGFAST_DATA_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match=r"(?s)apt-get download r-cran-ggplot2.*dpkg-deb -x"):
        load_diamonds(tmp_path / "nowhere")


def test_diamonds_has_the_known_numbers():
    pytest.importorskip("rdata")
    try:
        data = load_diamonds()
    except FileNotFoundError:
        pytest.skip("ggplot2's data files are not installed")
    assert len(data.X_train) + len(data.X_test) == 53940
    assert data.n_features == 26 and data.target_names == ("price",)
    prices = np.concatenate([data.inverse_transform_y(data.y_train), data.inverse_transform_y(data.y_test)])
    assert prices.mean() == pytest.approx(3932.7997, abs=0.01)
    assert prices.min() == pytest.approx(326, abs=0.01) and prices.max() == pytest.approx(18823, abs=0.01)
    assert "cut=Ideal" in data.feature_names and "clarity=IF" in data.feature_names


def test_default_regression_table():
    data = load_default_regression()
    assert data.name == "txhousing" and data.target_names == ("median",)
    assert data.X_train.shape == (5701, 52) and data.X_test.shape == (1425, 52)
    assert data.y_train.shape == (5701,) and data.y_test.shape == (1425,)
    for a in (data.X_train, data.y_train, data.X_test, data.y_test):
        assert a.dtype == np.float32 and np.isfinite(a).all()
    assert sum(name.startswith("city=") for name in data.feature_names) == 46
    prices = data.inverse_transform_y(data.y_test)
    assert prices.min() > 40_000 and prices.max() < 400_000  # median house prices in dollars
    assert load_default_regression(test_fraction=0).X_test is None
