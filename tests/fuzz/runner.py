"""Runs fuzz cases in worker processes, a batch a process, so that a crash (a signal) or a hang
is caught and pinned on its case: a batch that dies or times out is rerun case by case."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_WORKER = """
import json, sys
sys.path.insert(0, {root!r})
from tests.fuzz.cases import run_case
for seed in {seeds!r}:
    print(json.dumps([seed, *run_case(seed)]), flush=True)
"""


@dataclass
class Report:
    outcomes: dict = field(default_factory=lambda: {"ok": 0, "rejected": 0, "unexpected": 0})
    crashes: list = field(default_factory=list)  # (seed, entry, arg, signal or exit code)
    hangs: list = field(default_factory=list)  # (seed, entry, arg)
    unexpected: list = field(default_factory=list)  # (seed, entry, arg, value, message)
    unnamed: list = field(default_factory=list)  # rejections whose message does not name the argument

    @property
    def named_share(self) -> float:
        rejected = self.outcomes["rejected"]
        return 1.0 if rejected == 0 else 1.0 - len(self.unnamed) / rejected

    def summary(self) -> str:
        o = self.outcomes
        return (
            f"{sum(o.values()) + len(self.crashes) + len(self.hangs)} cases: {o['ok']} ran, {o['rejected']} "
            f"rejected ({100 * self.named_share:.1f}% naming the argument), {len(self.unexpected)} unexpected "
            f"exceptions, {len(self.crashes)} crashes, {len(self.hangs)} hangs"
        )


# Rejections name the argument by its own name or by how the API spells it in messages.
_ALIASES = {
    "X": ("X", "features", "rows"),
    "y": ("y", "label"),
    "segments": ("segment", "order", "offsets"),
    "dims": ("dims", "width", "layer", "parameters"),
    "stack": ("stack", "MLPStack", "features", "dims", "classes", "param", "models"),
    "method_e": ("method",),
    "epochs": ("epoch",),
    "lr": ("lr", "server_lr"),
    "momentum": ("momentum",),
    "n_models": ("n_models", "allocate"),
}


def _names(arg: str, message: str) -> bool:
    return any(a in message for a in _ALIASES.get(arg, (arg,)))


def _run(seeds, timeout: float):
    """Lines of results, and what ended the process: None, "timeout" or an exit code/signal."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONFAULTHANDLER="1")
    code = _WORKER.format(root=str(ROOT), seeds=list(seeds))
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        return [json.loads(line) for line in out.splitlines() if line.startswith("[")], "timeout"
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("[")]
    return lines, (None if proc.returncode == 0 else proc.returncode)


def run(seeds, batch: int = 50, batch_timeout: float = 120.0, case_timeout: float = 30.0) -> Report:
    from .cases import make_case

    report = Report()
    seeds = list(seeds)
    for start in range(0, len(seeds), batch):
        part = seeds[start : start + batch]
        lines, end = _run(part, batch_timeout)
        done = {line[0] for line in lines}
        if end is not None:  # rerun what the batch did not finish, one case a process
            for seed in part:
                if seed in done:
                    continue
                one, one_end = _run([seed], case_timeout)
                name, arg, _ = make_case(seed)
                if one_end == "timeout":
                    report.hangs.append((seed, name, arg))
                elif one_end is not None:
                    report.crashes.append((seed, name, arg, one_end))
                else:
                    lines += one
        for seed, name, arg, value, outcome, message in lines:
            report.outcomes[outcome] += 1
            if outcome == "unexpected":
                report.unexpected.append((seed, name, arg, value, message))
            elif outcome == "rejected" and not _names(arg, message):
                report.unnamed.append((seed, name, arg, value, message))
    return report
