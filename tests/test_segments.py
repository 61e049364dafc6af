import numpy as np
import pytest

from segfast.segments import SCHEMES, Segments, segment

PARTITIONS = ("iid", "contiguous", "dirichlet", "by_label")


def labels(n=1000, n_classes=10, seed=1):
    return np.random.default_rng(seed).integers(0, n_classes, size=n)


# ---------------------------------------------------------------- Segments


def test_segments_basics():
    s = Segments([4, 2, 0, 1, 3], [0, 2, 2, 5])
    assert len(s) == 3 and s.n_rows == 5
    assert s.order.dtype == np.int64 and s.offsets.dtype == np.int64
    np.testing.assert_array_equal(s[0], [4, 2])
    assert s[1].size == 0
    np.testing.assert_array_equal(s[-1], [0, 1, 3])
    assert np.shares_memory(s[2], s.order)  # a view
    np.testing.assert_array_equal(s.sizes, [2, 0, 3])
    assert [len(part) for part in s] == [2, 0, 3]
    assert repr(s) == "Segments(n_segments=3, n_rows=5, sizes min/median/max=0/2/3)"
    with pytest.raises(IndexError):
        s[3]


def test_segments_are_read_only_but_caller_arrays_are_not():
    order = np.arange(4)
    s = Segments(order, np.array([0, 4]))
    with pytest.raises(ValueError):
        s.order[0] = 3
    order[0] = 3  # the caller's array stays writable
    assert s.order.flags.c_contiguous


def test_from_indices():
    s = Segments.from_indices([[3, 1], np.array([], dtype=np.int32), np.array([0, 2, 4])])
    np.testing.assert_array_equal(s.order, [3, 1, 0, 2, 4])
    np.testing.assert_array_equal(s.offsets, [0, 2, 2, 5])
    with pytest.raises(ValueError, match="at least one segment"):
        Segments.from_indices([])


def test_segments_constructor_errors():
    with pytest.raises(ValueError, match="offsets\\[0\\] must be 0"):
        Segments([0, 1], [1, 2])
    with pytest.raises(ValueError, match=r"offsets\[-1\] must equal len\(order\) = 2"):
        Segments([0, 1], [0, 3])
    with pytest.raises(ValueError, match=r"nondecreasing: offsets\[1\] = 2 > offsets\[2\] = 1"):
        Segments([0, 1], [0, 2, 1, 2])
    with pytest.raises(ValueError, match="2 entries"):
        Segments([], [0])
    with pytest.raises(ValueError, match="order must be 1-D"):
        Segments([[0, 1]], [0, 2])
    with pytest.raises(TypeError, match="order must hold integers"):
        Segments([0.0, 1.0], [0, 2])
    with pytest.raises(ValueError, match="negative row index -1"):
        Segments([0, -1], [0, 2])


def test_validate_messages():
    s = Segments([0, 1, 2, 9], [0, 2, 2, 4])
    with pytest.raises(ValueError, match="segment 1 is empty"):
        s.validate(10)
    s = Segments([0, 1, 2, 9], [0, 3, 4])
    assert s.validate(10) is s
    with pytest.raises(ValueError, match="segment 1 has 1 rows, fewer than min_size=2"):
        s.validate(10, min_size=2)
    with pytest.raises(ValueError, match=r"segment 1 holds row index 9, outside \[0, 5\)"):
        s.validate(5)
    Segments([0], [0, 0, 1]).validate(1, min_size=0)  # empty segments allowed when asked


# ---------------------------------------------------------------- segment()


@pytest.mark.parametrize("scheme", PARTITIONS)
def test_partition_schemes_cover_every_row_once(scheme):
    y = labels()
    s = segment(y, 7, scheme)
    assert len(s) == 7 and s.n_rows == len(y)
    np.testing.assert_array_equal(np.sort(s.order), np.arange(len(y)))
    assert s.sizes.min() >= 1


@pytest.mark.parametrize("scheme", ["iid", "contiguous"])
@pytest.mark.parametrize("n, k", [(1000, 7), (10, 10), (11, 3), (5, 1)])
def test_equal_sizes(scheme, n, k):
    s = segment(np.zeros(n, dtype=np.int64), k, scheme)
    expected = [len(part) for part in np.array_split(np.arange(n), k)]
    np.testing.assert_array_equal(s.sizes, expected)


def test_contiguous_keeps_the_order():
    s = segment(labels(), 4, "contiguous")
    np.testing.assert_array_equal(s.order, np.arange(1000))


def test_iid_is_shuffled():
    s = segment(labels(), 4, "iid")
    assert not np.array_equal(s.order, np.arange(1000))


def test_replicate():
    s = segment(labels(n=50), 4, "replicate", seed=3)
    assert len(s) == 4 and s.n_rows == 200
    np.testing.assert_array_equal(s.offsets, [0, 50, 100, 150, 200])
    for part in s:
        np.testing.assert_array_equal(np.sort(part), np.arange(50))
    assert not np.array_equal(s[0], s[1])  # each segment in its own order
    assert len(segment(labels(n=3), 5, "replicate")) == 5  # more segments than rows is fine


@pytest.mark.parametrize("scheme", SCHEMES)
def test_deterministic_and_seeded(scheme):
    y = labels()
    a = segment(y, 6, scheme, seed=11)
    b = segment(y, 6, scheme, seed=11)
    np.testing.assert_array_equal(a.order, b.order)
    np.testing.assert_array_equal(a.offsets, b.offsets)
    c = segment(y, 6, scheme, seed=12)
    if scheme in ("contiguous", "by_label"):  # no randomness in these
        np.testing.assert_array_equal(a.order, c.order)
    else:
        assert not np.array_equal(a.order, c.order)


def test_dirichlet_small_alpha_skews_labels():
    y = labels(n=5000)
    s = segment(y, 20, "dirichlet", alpha=0.1, seed=0)
    # Share of each segment taken by its two largest classes: near 0.2 for iid data.
    top2 = [np.sort(np.bincount(y[p], minlength=10))[-2:].sum() / len(p) for p in s]
    assert np.median(top2) > 0.7
    iid = segment(y, 20, "iid")
    assert max(np.sort(np.bincount(y[p], minlength=10))[-2:].sum() / len(p) for p in iid) < 0.4


def test_dirichlet_large_alpha_is_nearly_iid():
    y = labels(n=5000)
    s = segment(y, 5, "dirichlet", alpha=1000.0)
    for p in s:
        share = np.bincount(y[p], minlength=10) / len(p)
        assert np.abs(share - 0.1).max() < 0.05


def test_dirichlet_min_size():
    y = labels(n=2000)
    assert segment(y, 20, "dirichlet", alpha=0.1, min_size=0).sizes.min() == 0  # first draw
    s = segment(y, 20, "dirichlet", alpha=0.1, min_size=10)  # redrawn until it fits
    assert s.sizes.min() >= 10
    with pytest.raises(ValueError, match="cannot give 50 segments of at least min_size=41"):
        segment(y, 50, "dirichlet", min_size=41)
    with pytest.raises(ValueError, match="no draw in 100 tries"):
        segment(y, 100, "dirichlet", alpha=0.01, min_size=20)


def test_dirichlet_segments_are_shuffled_within():
    y = np.repeat(np.arange(10), 100)
    s = segment(y, 3, "dirichlet", alpha=5.0)
    assert any(not np.all(np.diff(y[p]) >= 0) for p in s)


def test_by_label_fewer_segments_than_classes():
    y = labels()
    s = segment(y, 4, "by_label")
    owned = [set(np.unique(y[p]).tolist()) for p in s]
    groups = [set(g.tolist()) for g in np.array_split(np.arange(10), 4)]
    assert owned == groups
    np.testing.assert_array_equal(s.sizes, [np.isin(y, list(g)).sum() for g in groups])


def test_by_label_more_segments_than_classes():
    y = labels(n_classes=3)
    s = segment(y, 7, "by_label")  # segment groups [0, 1, 2], [3, 4], [5, 6]
    owners = [[0, 1, 2], [3, 4], [5, 6]]
    for c, segs in enumerate(owners):
        rows_c = np.flatnonzero(y == c)
        expected = np.array_split(rows_c, len(segs))  # stable: original order within a class
        for i, part in zip(segs, expected):
            np.testing.assert_array_equal(s[i], part)


def test_by_label_skips_absent_labels():
    y = np.array([0, 0, 5, 5, 9, 9])
    s = segment(y, 3, "by_label")
    assert [set(y[p].tolist()) for p in s] == [{0}, {5}, {9}]


def test_by_label_too_few_rows_for_its_segments():
    with pytest.raises(ValueError, match="segment 3 is empty"):
        segment(np.array([0, 0, 0, 0, 1]), 4, "by_label")  # class 1 (1 row) owns segments 2, 3


def test_segment_errors():
    y = labels(n=20)
    with pytest.raises(ValueError, match="n_segments must be an integer >= 1 and <= 2147483647, got 0"):
        segment(y, 0)
    with pytest.raises(ValueError, match="n_segments must be an int"):
        segment(y, 2.0)
    with pytest.raises(ValueError, match="n_segments must be an int"):
        segment(y, True)
    with pytest.raises(ValueError, match=r"n_segments = 21 exceeds the 20 rows"):
        segment(y, 21, "iid")
    with pytest.raises(ValueError, match="unknown scheme 'random'; known: iid, contiguous"):
        segment(y, 2, "random")
    with pytest.raises(ValueError, match="y must be 1-D"):
        segment(y.reshape(4, 5), 2)
    with pytest.raises(TypeError, match="integer labels or float regression targets"):
        segment(y.astype(str), 2)
    with pytest.raises(ValueError, match="NaN or inf"):
        segment(np.array([0.5, np.nan, 1.0]), 2, "by_label")
    with pytest.raises(ValueError, match="labels >= 0, found -1"):
        segment(np.array([0, -1, 2]), 2)
    for alpha in (0, -1.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="alpha must be a finite number"):
            segment(y, 2, "dirichlet", alpha=alpha)
    with pytest.raises(ValueError, match="min_size must be an integer >= 0, got -1"):
        segment(y, 2, min_size=-1)


def test_segment_accepts_numpy_ints_and_uint8_labels():
    y = labels().astype(np.uint8)
    s = segment(y, np.int64(5), "dirichlet")
    assert len(s) == 5
