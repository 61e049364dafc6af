"""Segmentations of a data set's rows: which rows each segment model trains on.

What it is for: a segmentation costs two int64 arrays, `order` (row indices) and `offsets`
(n_segments + 1 entries); segment i is ``order[offsets[i]:offsets[i+1]]``. The C++ trainer reads
them as they are, so data is never copied per segment. What it is not: a data loader; rows stay
in the caller's X, y.
"""

from __future__ import annotations

import operator

import numpy as np

from . import _validate
from ._validate import finite_float, integer, positive_int

__all__ = ["Segments", "segment", "SCHEMES"]

SCHEMES = ("iid", "contiguous", "dirichlet", "by_label", "replicate")
_DIRICHLET_TRIES = 100


def _int64_vector(a, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if a.size and a.dtype.kind not in "iu":  # an empty list arrives as float64: allow it
        raise TypeError(f"{name} must hold integers, got dtype {a.dtype}")
    out = np.ascontiguousarray(a, dtype=np.int64).view()
    out.flags.writeable = False  # a read-only view: guards the checked invariants, not the caller
    return out


class Segments:
    """Rows of each segment: segment i is ``order[offsets[i]:offsets[i+1]]``.

    `order` holds row indices (int64); rows may repeat across segments (see "replicate").
    `offsets` holds n_segments + 1 nondecreasing int64 entries from 0 to len(order). Both are
    stored read-only.
    """

    def __init__(self, order, offsets):
        order = _int64_vector(order, "order")
        offsets = _int64_vector(offsets, "offsets")
        if len(offsets) < 2:
            raise ValueError(f"offsets needs n_segments + 1 >= 2 entries, got {len(offsets)}")
        if offsets[0] != 0:
            raise ValueError(f"offsets[0] must be 0, got {offsets[0]}")
        if offsets[-1] != len(order):
            raise ValueError(f"offsets[-1] must equal len(order) = {len(order)}, got {offsets[-1]}")
        drops = np.flatnonzero(np.diff(offsets) < 0)
        if len(drops):
            i = int(drops[0])
            raise ValueError(
                f"offsets must be nondecreasing: offsets[{i}] = {offsets[i]} > offsets[{i + 1}] = {offsets[i + 1]}"
            )
        if len(order) and order.min() < 0:
            raise ValueError(f"order holds a negative row index {order.min()}")
        self.order = order  # (n_rows_total,) int64
        self.offsets = offsets  # (n_segments + 1,) int64

    @classmethod
    def from_indices(cls, segments) -> Segments:
        """Build from a sequence of 1-D integer index arrays, one per segment."""
        parts = [_int64_vector(s, f"segment {i}") for i, s in enumerate(segments)]
        if not parts:
            raise ValueError("from_indices needs at least one segment")
        offsets = np.zeros(len(parts) + 1, dtype=np.int64)
        np.cumsum([len(p) for p in parts], out=offsets[1:])
        return cls(np.concatenate(parts), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i) -> np.ndarray:
        n = len(self)
        i = operator.index(i)
        if not -n <= i < n:
            raise IndexError(f"segment {i} out of range for {n} segments")
        i %= n
        return self.order[self.offsets[i] : self.offsets[i + 1]]

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    @property
    def sizes(self) -> np.ndarray:
        """(n_segments,) int64: rows per segment."""
        return np.diff(self.offsets)

    @property
    def n_rows(self) -> int:
        """Total rows over all segments (len(order)); more than the data's rows when replicated."""
        return len(self.order)

    def __repr__(self) -> str:
        s = self.sizes
        return (
            f"Segments(n_segments={len(self)}, n_rows={self.n_rows}, sizes min/median/max="
            f"{s.min()}/{np.median(s):g}/{s.max()})"
        )

    def validate(self, n_rows: int, min_size: int = 1) -> Segments:
        """Check every index is in [0, n_rows) and every segment has >= min_size rows.

        Returns self, so that ``segs = Segments(...).validate(len(X))`` reads naturally.
        """
        n_rows = integer(n_rows, "n_rows", minimum=0)
        min_size = integer(min_size, "min_size")
        sizes = self.sizes
        small = np.flatnonzero(sizes < min_size)
        if len(small):
            i = int(small[0])
            if sizes[i] == 0:
                raise ValueError(f"segment {i} is empty (min_size={min_size})")
            raise ValueError(f"segment {i} has {sizes[i]} rows, fewer than min_size={min_size}")
        bad = np.flatnonzero((self.order < 0) | (self.order >= n_rows))
        if len(bad):
            pos = int(bad[0])
            i = int(np.searchsorted(self.offsets, pos, side="right")) - 1
            raise ValueError(f"segment {i} holds row index {self.order[pos]}, outside [0, {n_rows})")
        return self


def _equal_offsets(n: int, k: int) -> np.ndarray:
    """Offsets cutting n rows into k parts whose sizes differ by at most 1 (as np.array_split)."""
    sizes = np.full(k, n // k, dtype=np.int64)
    sizes[: n % k] += 1
    offsets = np.zeros(k + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    return offsets


def _dirichlet(y, k, alpha, min_size, rng) -> Segments:
    n = len(y)
    if n < k * min_size:
        raise ValueError(f"dirichlet: {n} rows cannot give {k} segments of at least min_size={min_size} rows")
    classes = np.unique(y)
    for _ in range(_DIRICHLET_TRIES):
        parts: list[list[np.ndarray]] = [[] for _ in range(k)]
        for c in classes:
            rows = rng.permutation(np.flatnonzero(y == c))
            p = rng.dirichlet(np.full(k, alpha))
            if not np.all(np.isfinite(p)):  # tiny alpha can underflow every share to 0
                break
            cuts = (np.cumsum(p)[:-1] * len(rows)).astype(np.int64)
            for j, piece in enumerate(np.split(rows, cuts)):
                parts[j].append(piece)
        else:
            sizes = [sum(len(piece) for piece in part) for part in parts]
            if min(sizes) >= min_size:
                # Shuffle within each segment so that no segment's rows come sorted by class.
                shuffled = [rng.permutation(np.concatenate(part)) for part in parts]
                return Segments.from_indices(shuffled)
    raise ValueError(
        f"dirichlet: no draw in {_DIRICHLET_TRIES} tries gave every one of the {k} segments "
        f"at least min_size={min_size} rows (alpha={alpha}, {n} rows); "
        f"raise alpha or lower n_segments or min_size"
    )


def _by_label(y, k) -> Segments:
    order = np.argsort(y, kind="stable")  # rows grouped by label, original order within a label
    classes, counts = np.unique(y, return_counts=True)
    class_start = np.zeros(len(classes) + 1, dtype=np.int64)
    np.cumsum(counts, out=class_start[1:])
    if k <= len(classes):
        # Segment i owns a contiguous group of classes; groups as np.array_split(classes, k).
        return Segments(order, class_start[_equal_offsets(len(classes), k)])
    # More segments than classes: class c owns a contiguous group of segment ids (as
    # np.array_split(range(k), n_classes)) and its rows are cut nearly evenly among them.
    offsets = [np.zeros(1, dtype=np.int64)]
    group = np.diff(_equal_offsets(k, len(classes)))
    for c in range(len(classes)):
        offsets.append(class_start[c] + _equal_offsets(int(counts[c]), int(group[c]))[1:])
    return Segments(order, np.concatenate(offsets))


def as_segments(segments, n_rows: int, n_models: int | None = None, min_size: int = 1) -> Segments:
    """``segments`` (a Segments or a list of index arrays) as a Segments checked against X's
    ``n_rows`` rows and, when given, the stack's ``n_models`` models."""
    if isinstance(segments, (list, tuple)):
        segments = Segments.from_indices(segments)
    if not isinstance(segments, Segments):
        raise TypeError(
            "segments must be a segfast.Segments (see segfast.segment) or a list of index arrays, "
            f"got {type(segments).__name__}"
        )
    if n_models is not None and len(segments) != n_models:
        raise ValueError(f"segments has {len(segments)} segments but the stack has {n_models} models")
    return segments.validate(n_rows, min_size=min_size)


# A regression target is cut into this many quantile bins that Dirichlet skew treats as classes.
_TARGET_BINS = 10


def _target_bins(y: np.ndarray, bins) -> np.ndarray:
    """Float regression targets as the index of their quantile bin (equal counts; equal values
    in row order), so that label-based schemes cut a regression data set by target range."""
    if y.ndim == 2:
        y = y[:, 0]  # several targets: cut by the first
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D (or (n, k) regression targets), got shape {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError("y holds NaN or inf: regression targets must be finite")
    bins = positive_int(bins, "n_segments")
    if len(y) == 0:
        return np.zeros(0, dtype=np.int64)
    rank = np.argsort(np.argsort(y, kind="stable"), kind="stable")  # 0..n-1
    edges = _equal_offsets(len(y), min(bins, len(y)))[1:-1]
    return np.searchsorted(edges, rank, side="right").astype(np.int64)


def segment(y, n_segments, scheme="iid", *, alpha=0.5, seed=0, min_size=1) -> Segments:
    """Segment the rows of a data set with labels `y` (1-D, integers >= 0) into `n_segments`.

    Float `y` are regression targets ((n, k): the first target): "by_label" then gives each
    segment one quantile range of the target (segment 0 the lowest values), and "dirichlet"
    skews the segments over 10 quantile bins of the target as it does over classes.

    Schemes (the same seed always gives the same result):

    - "iid": a random permutation cut into nearly equal parts (sizes differ by at most 1).
    - "contiguous": rows in the given order, cut into nearly equal parts.
    - "dirichlet": label skew, the standard federated-learning benchmark partition: for each
      class, proportions p ~ Dirichlet(alpha * ones(n_segments)) share its shuffled rows among
      the segments. Small alpha (0.1) gives segments dominated by a few classes, large alpha
      (100) nearly iid ones. Redrawn (up to 100 times) until every segment has min_size rows.
    - "by_label": segments own whole labels. Rows are sorted by label (stable). With
      n_segments <= n_classes, segment i gets the i-th group of np.array_split(classes,
      n_segments), i.e. a contiguous run of labels. With n_segments > n_classes, class j gets
      the j-th group of np.array_split(range(n_segments), n_classes) and its rows are cut into
      nearly equal parts among those segments. Labels that do not occur are skipped.
    - "replicate": every segment holds all rows, each in its own random order.

    Within a segment, "iid", "dirichlet" and "replicate" rows are shuffled; "contiguous" and
    "by_label" keep the given row order. Every segment must end with >= min_size rows.
    """
    y = np.asarray(y)
    targets = y.dtype.kind == "f"
    if targets:
        y = _target_bins(y, n_segments if scheme == "by_label" else _TARGET_BINS)
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D, got shape {y.shape}")
    if y.dtype.kind not in "iu":  # bools, strings: labels must be class indices (or float targets)
        raise TypeError(f"y must hold integer labels or float regression targets, got dtype {y.dtype}")
    if len(y) and y.min() < 0:
        raise ValueError(f"y must hold labels >= 0, found {y.min()}")
    k = positive_int(n_segments, "n_segments")
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; known: {', '.join(SCHEMES)}")
    min_size = integer(min_size, "min_size", minimum=0)
    n = len(y)
    if scheme != "replicate" and k > n:
        raise ValueError(f"n_segments = {k} exceeds the {n} rows of y (scheme {scheme!r})")
    rng = np.random.default_rng(_validate.seed(seed))

    if scheme == "iid":
        segs = Segments(rng.permutation(n), _equal_offsets(n, k))
    elif scheme == "contiguous":
        segs = Segments(np.arange(n), _equal_offsets(n, k))
    elif scheme == "dirichlet":
        alpha = finite_float(alpha, "alpha")
        if alpha <= 0:
            raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
        segs = _dirichlet(y, k, alpha, min_size, rng)
    elif scheme == "by_label":
        segs = _by_label(y, k)
    else:  # replicate
        order = rng.permuted(np.broadcast_to(np.arange(n), (k, n)), axis=1).ravel()
        segs = Segments(order, np.arange(k + 1, dtype=np.int64) * n)
    return segs.validate(n, min_size)
