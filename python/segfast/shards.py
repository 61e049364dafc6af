"""Shard files: a data set cut into one .npz file per block of segments, plus a manifest.

What it is for: the workers of a cluster (segfast.distributed) each load only the shards of the
segments they train, from a directory copied to every machine, and check them against the
manifest before the training kernels trust their indices. What it is not: a data set loader
(segfast.datasets) or a general file format; shard files hold plain arrays, never pickles.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import _core
from ._validate import as_features, as_labels, integer, npz_array, npz_open, positive_int
from .results import fingerprint, write_atomic
from .segments import as_segments

__all__ = ["Shards", "save_shards", "load_shards", "segment_rows"]

_SHARD_FORMAT = "segfast.shards/1"
_MANIFEST = "manifest.json"
_WHOLE = ("X", "y", "segments")  # what the manifest's fingerprints are of: the whole data, as rounds records it


def segment_rows(X, y, segments, first: int, stop: int):
    """The rows that segments [first, stop) use, and those segments re-indexed into them.

    Returns (X_part, y_part, order, offsets): copies of the rows (each once, in index order) and a
    segmentation of them that trains exactly as segments[first:stop] does on (X, y)."""
    lo, hi = segments.offsets[first], segments.offsets[stop]
    rows, order = np.unique(segments.order[lo:hi], return_inverse=True)
    return X[rows], y[rows], order.astype(np.int64), segments.offsets[first : stop + 1] - lo


@dataclass(frozen=True, eq=False)
class Shards:
    """Shard files written by `save_shards`: what the manifest says, nothing loaded yet.

    Shard k holds the rows of segments ``bounds[k]`` to ``bounds[k + 1]``; `load(k)` reads that one
    file and checks it against the manifest. The fingerprints of the whole X, y and segments are
    those segfast.rounds records in a run directory, so a run over the shards and one over the
    arrays are the same run."""

    path: Path
    bounds: np.ndarray  # (n_shards + 1,) segment index where each shard begins, then n_segments
    sizes: np.ndarray  # (n_segments,) rows per segment
    n_features: int
    n_labels: int  # 1 + the largest label
    fingerprints: dict  # {"X", "y", "segments"}: of the whole data, as segfast.rounds records them
    files: tuple  # ((file name, fingerprint of its arrays), ...) one per shard

    @property
    def n_shards(self) -> int:
        return len(self.files)

    @property
    def n_segments(self) -> int:
        return len(self.sizes)

    @property
    def manifest(self) -> Path:
        return self.path / _MANIFEST

    def missing(self) -> list:
        """The shard files that are not in `path` (as this machine sees it)."""
        return [name for name, _ in self.files if not (self.path / name).is_file()]

    def load(self, k: int):
        """Shard k as (X, y, order, offsets); raises FileNotFoundError or ValueError naming the file."""
        name, expected = self.files[k]
        file = _shard_file(self.path, name, self.manifest)  # again here: a symlink may have changed
        if not file.is_file():
            raise FileNotFoundError(
                f"shard file {file} is missing (the manifest in {self.path} lists "
                f"{self.n_shards} shards); was the directory copied whole to this machine?"
            )
        with npz_open(file) as f:
            arrays = tuple(npz_array(f, a, file) for a in ("X", "y", "order", "offsets"))
        if fingerprint(*arrays) != expected:
            raise ValueError(
                f"shard file {file} does not match the manifest in {self.path} (written by another "
                "save_shards call?); write the shards again"
            )
        self._check(k, file, *arrays)
        return arrays

    def _check(self, k: int, file: Path, X, y, order, offsets) -> None:
        """Shard k's arrays against the manifest: a manifest and shards forged together match
        their fingerprints, and the training kernels trust these indices."""
        first, stop = int(self.bounds[k]), int(self.bounds[k + 1])
        if X.dtype != np.float32 or X.ndim != 2 or X.shape[1] != self.n_features:
            problem = f"X is {X.dtype} of shape {X.shape}, expected float32 (rows, {self.n_features})"
        elif y.dtype != np.int64 or y.shape != (len(X),):
            problem = f"y is {y.dtype} of shape {y.shape}, expected int64 ({len(X)},)"
        elif len(y) and (y.min() < 0 or y.max() >= self.n_labels):
            problem = f"y holds labels in [{y.min()}, {y.max()}], outside [0, {self.n_labels - 1}]"
        elif (
            offsets.dtype != np.int64
            or offsets.shape != (stop - first + 1,)
            or offsets[0] != 0
            or not np.array_equal(np.diff(offsets), self.sizes[first:stop])
        ):
            problem = (
                f"offsets must be int64 rising from 0 by the sizes of segments {first} to {stop - 1} "
                f"in the manifest, got {offsets.dtype} of shape {offsets.shape}"
            )
        elif order.dtype != np.int64 or order.shape != (offsets[-1],):
            problem = f"order is {order.dtype} of shape {order.shape}, expected int64 ({offsets[-1]},)"
        elif len(order) and (order.min() < 0 or order.max() >= len(X)):
            problem = f"order holds rows in [{order.min()}, {order.max()}], outside the shard's {len(X)} rows"
        else:
            return
        raise ValueError(f"shard file {file}: {problem}")


def _shard_file(directory: Path, name: str, manifest: Path) -> Path:
    """Shard file ``name`` of the manifest in ``directory``, refused unless it resolves inside that
    directory, symlinks followed: a manifest must not make a worker read any file on its disk."""
    root = directory.resolve()
    file = (directory / name).resolve()
    if file == root or not file.is_relative_to(root):
        raise ValueError(f"{manifest}: files: shard file {name!r} resolves to {file}, outside {root}")
    return directory / name


def save_shards(X, y, segments, directory, shard_size=None) -> Shards:
    """Write (X, y) cut by `segments` into shard files in `directory`, one per block of segments.

    Shard k holds segments [k * shard_size, (k + 1) * shard_size): the rows they use (each once)
    and their order re-indexed into those rows, as a .npz file (no pickle), plus a manifest.json
    with sizes and fingerprints. The default shard_size is the block size of the merge that
    segfast.rounds fuses into training, ceil(n_segments / _core.MERGE_BLOCK) segments (the merge
    adds its models in at most 64 blocks), so that a cluster given whole shards trains full rounds
    at full speed. Returns what `load_shards` would read back."""
    X = as_features(X, "X")
    y = as_labels(y, len(X), None)
    segments = as_segments(segments, len(X))
    n = len(segments)
    size = -(-n // _core.MERGE_BLOCK) if shard_size is None else positive_int(shard_size, "shard_size")
    bounds = np.append(np.arange(0, n, size), n)
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    if (path / _MANIFEST).exists():
        raise ValueError(f"{path} already holds shards (its {_MANIFEST}); choose an empty directory")
    files = []
    for k in range(len(bounds) - 1):
        arrays = segment_rows(X, y, segments, bounds[k], bounds[k + 1])
        name = f"shard-{k:05d}.npz"
        buf = io.BytesIO()
        np.savez(buf, **dict(zip(("X", "y", "order", "offsets"), arrays)))
        write_atomic(path / name, buf.getvalue())
        files.append((name, fingerprint(*arrays)))
    whole = dict(zip(_WHOLE, (fingerprint(X), fingerprint(y), fingerprint(segments.order, segments.offsets))))
    shards = Shards(path, bounds, segments.sizes.copy(), X.shape[1], int(y.max()) + 1, whole, tuple(files))
    manifest = {
        "format": _SHARD_FORMAT,
        "bounds": bounds.tolist(),
        "sizes": shards.sizes.tolist(),
        "n_features": shards.n_features,
        "n_labels": shards.n_labels,
        "fingerprints": shards.fingerprints,
        "files": [list(f) for f in files],
    }
    write_atomic(path / _MANIFEST, json.dumps(manifest).encode())  # last: a manifest means every shard is whole
    return shards


def load_shards(directory) -> Shards:
    """Read the manifest of shard files written by `save_shards` (the shards themselves are read
    by whoever trains on them, with `Shards.load`)."""
    path = Path(directory)
    file = path / _MANIFEST
    if not file.is_file():
        raise FileNotFoundError(
            f"{path} holds no shards: {_MANIFEST} is missing (write them with segfast.shards.save_shards)"
        )
    try:
        m = json.loads(file.read_bytes())
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"{file} is not a readable shard manifest: {e}") from None
    if not isinstance(m, dict) or m.get("format") != _SHARD_FORMAT:
        found = m.get("format") if isinstance(m, dict) else type(m).__name__
        raise ValueError(f"{file} is not a segfast shard manifest (format {found!r}, expected {_SHARD_FORMAT!r})")
    sizes = _manifest_ints(m, "sizes", file, 1)  # segments are never empty
    bounds = _manifest_ints(m, "bounds", file, 0)
    if len(bounds) < 2 or bounds[0] != 0 or bounds[-1] != len(sizes):
        raise ValueError(
            f"{file}: bounds must run from 0 to {len(sizes)} (the number of segments in "
            f"sizes), got {len(bounds)} values from {bounds[:1].tolist()} to {bounds[-1:].tolist()}"
        )
    down = np.flatnonzero(np.diff(bounds) <= 0)
    if len(down):
        i = int(down[0]) + 1
        raise ValueError(f"{file}: bounds must rise strictly, but bounds[{i}] = {bounds[i]} follows {bounds[i - 1]}")
    n_features, n_labels = _manifest_int(m, "n_features", file, 1), _manifest_int(m, "n_labels", file, 1)
    fingerprints = _manifest_field(m, "fingerprints", file)
    if not isinstance(fingerprints, dict) or not all(isinstance(fingerprints.get(k), str) for k in _WHOLE):
        raise ValueError(f"{file}: fingerprints must map 'X', 'y' and 'segments' to strings, got {fingerprints!r}")
    files = _manifest_field(m, "files", file)
    if (
        not isinstance(files, list)
        or len(files) != len(bounds) - 1
        or not all(isinstance(f, list) and len(f) == 2 and all(isinstance(v, str) for v in f) for f in files)
    ):
        raise ValueError(
            f"{file}: files must be {len(bounds) - 1} [name, fingerprint] pairs of strings, one per shard in bounds"
        )
    for name, _ in files:
        _shard_file(path, name, file)
    return Shards(
        path, bounds, sizes, n_features, n_labels, dict(fingerprints), tuple((name, fp) for name, fp in files)
    )


def _manifest_field(m: dict, key: str, file: Path):
    if key not in m:
        raise ValueError(f"{file}: field {key!r} is missing")
    return m[key]


def _manifest_ints(m: dict, key: str, file: Path, minimum: int) -> np.ndarray:
    """Field ``key``: a list of integers >= minimum, as int64."""
    value = _manifest_field(m, key, file)
    if not isinstance(value, list):
        raise ValueError(f"{file}: {key} must be a list of integers >= {minimum}, got {type(value).__name__}")
    for i, v in enumerate(value):
        if not _is_int(v, minimum):
            raise ValueError(f"{file}: {key} must hold integers >= {minimum}, but {key}[{i}] = {v!r}")
    return np.asarray(value, dtype=np.int64)


def _manifest_int(m: dict, key: str, file: Path, minimum: int) -> int:
    value = _manifest_field(m, key, file)
    if not _is_int(value, minimum):
        raise ValueError(f"{file}: {key} must be an integer >= {minimum}, got {value!r}")
    return value


def _is_int(v, minimum: int) -> bool:
    """An integer in [minimum, 2**63): the manifest's numbers become int64."""
    try:
        integer(v, "", minimum, 2**63 - 1)
    except ValueError:
        return False
    return True
