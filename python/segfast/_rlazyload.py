"""Reading one object of an R package's lazy-load database (data/Rdata.rdx + Rdata.rdb), as files
that may be forged: every size is checked before it is allocated and any damage is a ValueError
naming the file.

What it is for: the diamonds table of ggplot2 (segfast.tabular.load_diamonds, which re-exports
`read_r_lazyload`). What it is not: an R parser (the rdata library parses a serialisation and
converts it to pandas; it is imported only when a file is read) nor a writer.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from . import _validate

__all__ = ["read_r_lazyload"]

# Rdata.rdx is a gzipped R serialisation of an index: variable name -> (offset, length) into
# Rdata.rdb. Each .rdb entry is a 4-byte big-endian inflated size, then the zlib-compressed R
# serialisation of the object (when the index says compressed=TRUE, R's default). The rdata
# library parses a serialisation; the files and their inflation are checked here, as forged.
_RDX_MAX_BYTES = 2**20  # an index: ggplot2's is 322 bytes
_RDX_MAX_INFLATED = 2**24
_RDB_MAX_OBJECT = 2**28  # one object, inflated: diamonds is 3.4 MB
_XDR_MAGIC = b"X\n"  # the serialisation R writes; rdata would inflate a gzip one itself, unbounded


def _import_rdata() -> Any:
    try:
        import rdata
    except ImportError:
        raise ImportError("reading R's data files needs the rdata library: pip install rdata") from None
    return rdata


def _inflate(data: bytes, limit: int, what: str) -> bytes:
    """A zlib or gzip stream inflated, refused past `limit` bytes before they are allocated."""
    stream = zlib.decompressobj(wbits=47)  # 32 + 15: zlib or gzip, told by the header
    try:
        out = stream.decompress(data, limit + 1)
    except zlib.error as e:
        raise ValueError(f"{what}: damaged compressed data ({e})") from None
    if len(out) > limit:
        raise ValueError(f"{what}: inflates to more than {limit} bytes")
    if not stream.eof:
        raise ValueError(f"{what}: truncated compressed data")
    return out


def _r_object(data: bytes, what: str) -> Any:
    """An R serialisation converted to Python (a data frame to pandas), any failure a ValueError."""
    if not data.startswith(_XDR_MAGIC):
        raise ValueError(f"{what}: not an R serialisation in XDR format (starts {data[:4]!r})")
    rdata = _import_rdata()
    classes = {**rdata.conversion.DEFAULT_CLASS_MAP, "tbl_df": rdata.conversion.dataframe_constructor}
    try:
        # expand_altrep=False: a compact sequence declares its length, and expanding a forged one
        # allocates it; the data frames of R packages hold none.
        parsed = rdata.parser.parse_data(data, expand_altrep=False, extension=".rds")
        return rdata.conversion.convert(parsed, classes)
    except Exception as e:  # a forged file fails in the third-party parser in many ways
        raise ValueError(f"{what}: not a readable R object ({type(e).__name__}: {e})") from None


def _index_entry(index: Any, name: str, what: str) -> tuple[int, int]:
    """(offset, length) of `name` in a lazy-load index."""
    if not isinstance(index, dict) or not isinstance(index.get("variables"), dict):
        raise ValueError(f"{what}: not a lazy-load index (no 'variables' list)")
    compressed = np.asarray(index.get("compressed", True)).ravel()
    if compressed.dtype.kind not in "biu" or compressed.size != 1 or int(compressed[0]) != 1:
        raise ValueError(f"{what}: compressed={index.get('compressed')!r}; only zlib (R's default) is read here")
    variables = index["variables"]
    if name not in variables:
        raise ValueError(f"{what}: no object {name!r}; it holds {', '.join(sorted(map(str, variables)))}")
    entry = np.asarray(variables[name]).ravel()
    if entry.dtype.kind not in "iu" or entry.size != 2 or entry.min() < 0:
        raise ValueError(f"{what}: entry {name!r} is {variables[name]!r}, not an (offset, length) pair")
    return int(entry[0]), int(entry[1])


def _read_at_most(path: Path, limit: int) -> bytes:
    with open(path, "rb") as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path}: more than {limit} bytes, too large for what it should hold")
    return data


def read_r_lazyload(directory: str | os.PathLike[str], name: str) -> Any:
    """Object `name` of an R lazy-load database: `directory` holds Rdata.rdx and Rdata.rdb, as an
    installed R package's data/ folder does. Converted by the rdata library (pip install rdata):
    a data frame becomes a pandas DataFrame, a factor a pandas Categorical.

    The files may be forged: sizes are checked before anything is allocated, an object inflates to
    at most 256 MiB, and any damage is a ValueError naming the file."""
    directory = Path(directory)
    rdx, rdb = directory / "Rdata.rdx", directory / "Rdata.rdb"
    index = _r_object(_inflate(_read_at_most(rdx, _RDX_MAX_BYTES), _RDX_MAX_INFLATED, str(rdx)), str(rdx))
    offset, length = _index_entry(index, name, str(rdx))
    what = f"{rdb}: object {name!r}"
    with open(rdb, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if length < 4 or offset + length > size:
            raise ValueError(f"{what}: the index puts it at bytes [{offset}, {offset + length}) of {size}")
        if length > _RDB_MAX_OBJECT:
            raise ValueError(f"{what}: {length} compressed bytes, more than {_RDB_MAX_OBJECT}")
        file.seek(offset)
        entry = file.read(length)
    if len(entry) != length:
        raise ValueError(f"{what}: the file ends inside it")
    (declared,) = struct.unpack(">I", entry[:4])
    if declared > min(_RDB_MAX_OBJECT, _validate.inflated_size_bound(length - 4)):
        raise ValueError(f"{what}: declares {declared} bytes, more than its {length - 4} compressed bytes can hold")
    data = _inflate(entry[4:], declared, what)
    if len(data) != declared:
        raise ValueError(f"{what}: inflates to {len(data)} bytes, but declares {declared}")
    return _r_object(data, what)
