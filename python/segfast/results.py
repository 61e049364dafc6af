"""A run directory: everything a run of rounds() writes, each file replaced atomically.

    config.json      what reproduces the run (and the segfast version that wrote it)
    rounds.jsonl     one JSON line per finished round
    summary.csv      the same, as a table
    checkpoint.npz   the global model and server state after the last finished round
    best.npz         the global model of the round with the best val accuracy (regression: lowest MSE)
    final.npz        the final global model        local_models.npz  the last round's segment models

Files are written beside their target and renamed into place, and the checkpoint is written
last (in the last round after final.npz and local_models.npz too), so a run killed at any moment
leaves every file whole and resumes from the checkpoint, and a checkpoint of the last round has
every other file beside it. What a resume reads back is checked against the config and the other
files: a damaged or forged file is a ValueError naming it and the field, never a different model.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from ._validate import npz_array, npz_header, npz_open
from .stack import MLPStack

_VOLATILE = ("segfast_version", "created")  # not part of what makes two runs the same
_FILES = ("config.json", "rounds.jsonl", "summary.csv", "checkpoint.npz", "best.npz", "final.npz", "local_models.npz")


def fingerprint(*arrays) -> str:
    """A short hash of arrays' shapes, dtypes and bytes: tells whether a resumed run sees the
    same data."""
    h = hashlib.blake2b(digest_size=12)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(a.data.cast("B"))
    return h.hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """fsync a folder, so that a rename in it survives a power cut too (a kill needs no fsync)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows cannot open a folder; its renames are not made durable this way
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder
        pass
    finally:
        os.close(fd)


def _plain(value):
    """json.dumps' default: numpy scalars (np.int64(2), np.float32(0.1)) as the Python numbers
    they hold."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _json(value, **kwargs) -> str:
    return json.dumps(value, default=_plain, **kwargs)


def _npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


class RunDirectory:
    def __init__(self, path, config: dict, resume: bool):
        from . import __version__

        self.path = Path(path)
        self.config = json.loads(_json(config))  # plain JSON types, as a reload would see them
        config_path = self.path / "config.json"
        if config_path.exists():
            if not resume:
                raise ValueError(
                    f"{self.path} already holds a run; pass resume=True to continue it, or choose "
                    "another out directory (nothing was changed)"
                )
            try:
                stored = json.loads(config_path.read_bytes())
            except (OSError, ValueError) as e:  # ValueError: not JSON, or not UTF-8
                raise ValueError(f"{config_path} is not a readable JSON file: {e}") from None
            if not isinstance(stored, dict):
                raise ValueError(f"{config_path} must hold a JSON object (a run's config), got {type(stored).__name__}")
            ours = {k: v for k, v in self.config.items() if k not in _VOLATILE}
            theirs = {k: v for k, v in stored.items() if k not in _VOLATILE}
            differ = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
            # More rounds extend the run: every choice is keyed by (seed, round), so rounds past the
            # old end are those a run asked for the new count from the start would have made.
            extend = (
                differ == ["rounds"]
                and isinstance(theirs.get("rounds"), int)
                and isinstance(ours.get("rounds"), int)
                and ours["rounds"] > theirs["rounds"]
            )
            if differ and not extend:
                hint = " (rounds can grow, not shrink)" if differ == ["rounds"] else ""
                raise ValueError(
                    f"{self.path} holds a different run's config (it differs in {', '.join(differ)})"
                    f"{hint}; nothing was changed. Use another out directory."
                )
            self._remove_temporaries()
            if extend:
                write_atomic(config_path, _json(dict(stored, rounds=ours["rounds"]), indent=2).encode())
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            full = dict(self.config, segfast_version=__version__, created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
            write_atomic(config_path, _json(full, indent=2).encode())
        self.resumed = resume and (self.path / "checkpoint.npz").exists()

    def _remove_temporaries(self) -> None:
        """A kill mid-write leaves the writer's temporary file beside its target (``name.tmp``
        here, ``.name.<random>.tmp`` from MLPStack.save); nothing else would ever remove it."""
        for p in self.path.iterdir():
            n = p.name
            if n.endswith(".tmp") and any(n == f + ".tmp" or n.startswith(f".{f}.") for f in _FILES) and p.is_file():
                p.unlink(missing_ok=True)

    @property
    def best_path(self) -> Path:
        return self.path / "best.npz"

    def load_checkpoint(
        self, n_params: int, clusters: int = 1, n_segments: int = 0, server=("server_buffer",), dp_key: bool = False
    ) -> dict:
        """checkpoint.npz, each field checked against the config: round (the last finished one, in
        [0, rounds)), global (n_params,) float32 and the server state ``server`` (n_params,)
        float64 each, finite (a second moment > 0); with clusters=k > 1 those are (k, n_params),
        and clusters (n_segments,) int64 in [-1, k)."""
        path, rounds = self.path / "checkpoint.npz", self.config["rounds"]
        with npz_open(path) as f:
            shape, dtype = npz_header(f, "round", path)
            if shape != () or dtype.kind not in "iu":
                raise ValueError(f"{path}: round must be an integer scalar, got shape {shape} of {dtype}")
            state: dict = {"round": int(npz_array(f, "round", path))}
            if not 0 <= state["round"] < rounds:
                raise ValueError(
                    f"{path}: round is {state['round']}, outside this run of {rounds} round(s) "
                    f"(the last finished round, 0 to {rounds - 1})"
                )
            rows = (n_params,) if clusters == 1 else (clusters, n_params)
            fields = [("global", np.dtype(np.float32))] + [(name, np.dtype(np.float64)) for name in server]
            for key, want in fields:
                shape, dtype = npz_header(f, key, path)
                if shape != rows or dtype != want:
                    raise ValueError(
                        f"{path}: {key} must be {rows} {want} for dims {self.config['dims']}"
                        f"{f' and {clusters} clusters' if clusters > 1 else ''}, got shape {shape} of {dtype}"
                    )
                state[key] = npz_array(f, key, path)
                if not np.isfinite(state[key]).all():
                    raise ValueError(f"{path}: {key} holds NaN or infinite values")
                if key == "server_second_moment" and not (state[key] > 0).all():
                    raise ValueError(f"{path}: {key} must be > 0 everywhere (it starts at tau^2 and stays positive)")
            if dp_key:  # dp's secret key: four uint64 words
                shape, dtype = npz_header(f, "dp_key", path)
                if shape != (4,) or dtype != np.uint64:
                    raise ValueError(f"{path}: dp_key must be (4,) uint64, got shape {shape} of {dtype}")
                state["dp_key"] = npz_array(f, "dp_key", path)
            if clusters > 1:
                shape, dtype = npz_header(f, "clusters", path)
                if shape != (n_segments,) or dtype != np.int64:
                    raise ValueError(f"{path}: clusters must be ({n_segments},) int64, got shape {shape} of {dtype}")
                state["clusters"] = npz_array(f, "clusters", path)
                if ((state["clusters"] < -1) | (state["clusters"] >= clusters)).any():
                    raise ValueError(f"{path}: clusters must hold cluster ids in [-1, {clusters})")
        return state

    @property
    def task(self) -> str:
        """The run's models' task; config.json names it for regression only (older runs classify)."""
        return self.config.get("task", "classification")

    def history(self, done: int, evaluated: bool) -> list:
        """The ``done`` rounds of rounds.jsonl up to the checkpoint (a round recorded after it is
        redone), each a JSON object with its round number, and global_accuracy in [0, 1] (a
        regression run: global_loss >= 0) where the run evaluates."""
        path = self.path / "rounds.jsonl"
        try:
            lines = path.read_bytes().decode().splitlines()
        except FileNotFoundError:
            raise ValueError(f"{path} is missing, but checkpoint.npz records {done} finished round(s)") from None
        except UnicodeDecodeError as e:
            raise ValueError(f"{path} is not UTF-8 text: {e}") from None
        if not done <= len(lines) <= done + 1:
            raise ValueError(
                f"{path} holds {len(lines)} round(s), but checkpoint.npz records {done} finished "
                f"({done + 1} at most: one recorded before a kill)"
            )
        history = []
        for i, line in enumerate(lines[:done]):
            try:
                record = json.loads(line)
            except ValueError as e:
                raise ValueError(f"{path}, line {i + 1} is not JSON: {e}") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}, line {i + 1} must be a JSON object, got {type(record).__name__}")
            if type(record.get("round")) is not int or record["round"] != i + 1:  # type: a bool is no round
                raise ValueError(f"{path}, line {i + 1}: round must be {i + 1}, got {record.get('round')!r}")
            key, low, high = ("global_loss", 0, math.inf) if self.task == "regression" else ("global_accuracy", 0, 1)
            value = record.get(key)
            in_range = isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high
            if (evaluated or value is not None) and not in_range:
                raise ValueError(f"{path}, line {i + 1}: {key} must be a number in [{low}, {high}], got {value!r}")
            history.append(record)
        return history

    def load_best(self, evaluated: bool, n_models: int = 1):
        """best.npz's models as (n_models, n_params) rows, or None; it exists exactly when the run
        evaluates (the first round's checkpoint is written after it)."""
        if not evaluated:
            if self.best_path.exists():
                raise ValueError(f"{self.best_path} exists, but this run has no eval to choose a best model by")
            return None
        if not self.best_path.exists():
            raise ValueError(
                f"{self.best_path} is missing, but this run evaluates every round and "
                "checkpoint.npz records finished rounds"
            )
        params = self._load_stack(self.best_path, n_models).params
        if not np.isfinite(params).all():
            raise ValueError(f"{self.best_path}: params holds NaN or infinite values")
        return params

    def load_local(self, n_models: int) -> MLPStack:
        """local_models.npz of a finished run (written before its last checkpoint)."""
        path = self.path / "local_models.npz"
        if not path.exists():
            raise ValueError(
                f"{path} is missing, but checkpoint.npz says all {self.config['rounds']} round(s) "
                "finished; the last round's segment models cannot be rebuilt (a run killed after its "
                "last checkpoint by an older segfast): run it again into a new out directory"
            )
        return self._load_stack(path, n_models)

    def _load_stack(self, path: Path, n_models: int) -> MLPStack:
        stack = MLPStack.load(path)  # ValueError naming the file when damaged
        if list(stack.dims) != self.config["dims"] or stack.n_models != n_models or stack.task != self.task:
            raise ValueError(
                f"{path} holds {stack.n_models} model(s) of dims {list(stack.dims)} for {stack.task}; this run "
                f"needs {n_models} of dims {self.config['dims']} for {self.task}"
            )
        return stack

    def write_round(self, history: list, state: dict, best_params) -> None:
        write_atomic(self.path / "rounds.jsonl", "".join(_json(h) + "\n" for h in history).encode())
        # the table's columns: the numbers (a clustered run's lists are in rounds.jsonl only)
        columns = list(dict.fromkeys(k for h in history for k, v in h.items() if not isinstance(v, list)))
        table = io.StringIO()
        writer = csv.DictWriter(table, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
        write_atomic(self.path / "summary.csv", table.getvalue().encode())
        dims = self.config["dims"]
        if best_params is not None:
            MLPStack.from_params(dims, best_params, task=self.task).save(self.best_path)
        write_atomic(
            self.path / "checkpoint.npz",
            _npz_bytes(round=np.int64(state["round"]), **{k: v for k, v in state.items() if k != "round"}),
        )

    def finish(self, final: MLPStack, local) -> None:
        """The end-of-run files; rounds() writes them before the last round's checkpoint."""
        final.save(self.path / "final.npz")
        if local is not None:
            local.save(self.path / "local_models.npz")
