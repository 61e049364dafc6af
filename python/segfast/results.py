"""A run directory: everything a run of rounds() writes, each file replaced atomically.

    config.json      what reproduces the run (and the segfast version that wrote it)
    rounds.jsonl     one JSON line per finished round
    summary.csv      the same, as a table
    checkpoint.npz   the global model and server state after the last finished round
    best.npz         the global model of the round with the best evaluation accuracy
    final.npz        the final global model        local_models.npz  the last round's segment models

Files are written beside their target and renamed into place, and the checkpoint is written
last, so a run killed at any moment leaves every file whole and resumes from the checkpoint.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import time
from pathlib import Path

import numpy as np

from .stack import MLPStack

_VOLATILE = ("segfast_version", "created")  # not part of what makes two runs the same


def fingerprint(*arrays) -> str:
    """A short hash of arrays' shapes, dtypes and bytes: tells whether a resumed run sees the
    same data."""
    h = hashlib.blake2b(digest_size=12)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


class RunDirectory:
    def __init__(self, path, config: dict, resume: bool):
        from . import __version__

        self.path = Path(path)
        self.config = json.loads(json.dumps(config))  # plain JSON types, as a reload would see them
        config_path = self.path / "config.json"
        if config_path.exists():
            stored = json.loads(config_path.read_text())
            if not resume:
                raise ValueError(f"{self.path} already holds a run; pass resume=True to continue it, or choose "
                                 "another out directory (nothing was changed)")
            ours = {k: v for k, v in self.config.items() if k not in _VOLATILE}
            theirs = {k: v for k, v in stored.items() if k not in _VOLATILE}
            if ours != theirs:
                differ = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
                raise ValueError(f"{self.path} holds a different run's config (it differs in {', '.join(differ)}); "
                                 "nothing was changed. Use another out directory.")
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            full = dict(self.config, segfast_version=__version__,
                        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
            write_atomic(config_path, json.dumps(full, indent=2).encode())
        self.resumed = resume and (self.path / "checkpoint.npz").exists()

    @property
    def best_path(self) -> Path:
        return self.path / "best.npz"

    def best_exists(self) -> bool:
        return self.best_path.exists()

    def load_checkpoint(self) -> dict:
        with np.load(self.path / "checkpoint.npz", allow_pickle=False) as f:
            return {k: f[k] for k in f.files}

    def history(self) -> list:
        """The recorded rounds up to the checkpoint (a round recorded after it is redone)."""
        done = int(self.load_checkpoint()["round"]) + 1
        lines = (self.path / "rounds.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines[:done]]

    def write_round(self, history: list, state: dict, best_params) -> None:
        write_atomic(self.path / "rounds.jsonl", "".join(json.dumps(h) + "\n" for h in history).encode())
        columns = list(dict.fromkeys(k for h in history for k in h))
        table = io.StringIO()
        writer = csv.DictWriter(table, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)
        write_atomic(self.path / "summary.csv", table.getvalue().encode())
        dims = self.config["dims"]
        if best_params is not None:
            MLPStack.from_params(dims, best_params[None]).save(self.best_path)
        write_atomic(self.path / "checkpoint.npz", _npz_bytes(round=np.int64(state["round"]),
                                                              **{k: v for k, v in state.items() if k != "round"}))

    def finish(self, final: MLPStack, local) -> None:
        final.save(self.path / "final.npz")
        if local is not None:
            local.save(self.path / "local_models.npz")
