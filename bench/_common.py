"""Helpers shared by the bench scripts: optional imports, timing, the machine's GEMM peak, the
data set, and aligned printing.

What it is for: keeping bench_train.py and bench_gemm.py about *what* they measure. What it is
not: a benchmark framework. PyTorch, JAX and threadpoolctl are optional (pip extra `.[bench]`);
nothing here imports them at module load, so a process that only runs segfast (the memory probe)
never pays for them.
"""

from __future__ import annotations

import importlib
import os
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field

import numpy as np

TORCH_MISSING = "PyTorch not installed: pip install '.[bench]' for the anchors"
JAX_MISSING = "JAX not installed: pip install jax for the JAX anchor"


def optional_import(name: str):
    """The module, or None when it is not installed (any import failure counts as absent)."""
    try:
        return importlib.import_module(name)
    except Exception:  # a broken install is as unusable as a missing one
        return None


# -- timing -----------------------------------------------------------------------------------


class ForeignLoad:
    """Share of the machine's CPU time that *other* processes (or the hypervisor, as steal) used
    between start() and stop(): machine-wide busy time from /proc/stat minus this process's
    own CPU time. On a shared machine a timing taken while someone else compiles is not a
    measurement of the code; this says when that happened. None where /proc/stat is absent or
    the interval is too short for its clock-tick (10 ms) resolution."""

    MIN_WALL_S = 0.25

    _HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    @staticmethod
    def _busy_seconds():
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        # user nice system idle iowait irq softirq steal ...: everything but idle and iowait
        return (sum(fields[:8]) - fields[3] - fields[4]) / ForeignLoad._HZ

    def start(self) -> ForeignLoad:
        t = os.times()
        self._t0 = (time.perf_counter(), t.user + t.system, self._busy_seconds())
        return self

    def stop(self):
        wall0, own0, busy0 = self._t0
        busy1 = self._busy_seconds()
        if busy0 is None or busy1 is None:
            return None
        t = os.times()
        wall = time.perf_counter() - wall0
        if wall < self.MIN_WALL_S:
            return None
        foreign = (busy1 - busy0) - (t.user + t.system - own0)
        return max(0.0, foreign / (wall * (os.cpu_count() or 1)))


@dataclass
class Timing:
    """Wall seconds of each timed repeat (warm-up excluded)."""

    seconds: list = field(default_factory=list)
    note: str = ""  # e.g. "retimed: machine busy"
    scale: float = 1.0  # factor already applied to every entry of `seconds`
    foreign_load: float | None = None  # see ForeignLoad, over all timed repeats

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def min(self) -> float:
        return min(self.seconds)

    @property
    def max(self) -> float:
        return max(self.seconds)


BUSY_RETRY = 0.05  # retime once when other processes took more than this share of the CPU
RETRY_MAX_S = 10.0  # ... unless the disturbed attempt already took this long (keeps runs bounded)
_quiet_wait_left = [60.0]  # seconds a whole run may spend waiting for the machine to calm down


def wait_for_quiet(max_s: float = 20.0) -> None:
    """Wait, in 1 s looks, until other processes use <= BUSY_RETRY of the CPU; at most max_s
    here and 60 s over the whole run, so a machine that never calms down costs little."""
    deadline = time.perf_counter() + min(max_s, _quiet_wait_left[0])
    start = time.perf_counter()
    while time.perf_counter() < deadline:
        load = ForeignLoad().start()
        time.sleep(1.0)
        other = load.stop()
        if other is None or other <= BUSY_RETRY:
            break
    _quiet_wait_left[0] -= time.perf_counter() - start


def time_repeats(run, repeats: int, reset=None, warmup: int = 1, scale: float = 1.0, budget_s: float = 15.0) -> Timing:
    """Time `run()` `repeats` times after `warmup` untimed calls (JIT compiles, page faults,
    thread-pool start-up). `reset()` runs untimed before every call, so each repeat starts
    from the same state. `run` must block until its work is done (sync lazy frameworks).
    When other processes were busy during the repeats, they are retimed once after a short
    pause and the less disturbed set kept (`note` says so). Repeats stop early once they have
    taken `budget_s` (a contended machine can slow an OpenMP-heavy contender a hundredfold)."""
    for _ in range(warmup):
        if reset is not None:
            reset()
        run()
    best = None
    for attempt in range(2):
        if attempt:
            wait_for_quiet()  # someone else's build or test run may be between steps
        out = Timing(scale=scale)
        load = ForeignLoad().start()
        spent = 0.0
        for _ in range(repeats):
            if reset is not None:
                reset()
            start = time.perf_counter()
            run()
            elapsed = time.perf_counter() - start
            out.seconds.append(elapsed * scale)
            spent += elapsed
            if spent > budget_s:
                break
        out.foreign_load = load.stop()
        if best is None or (out.foreign_load or 0.0) < (best.foreign_load or 0.0):
            best = out
        if best.foreign_load is None or best.foreign_load <= BUSY_RETRY or spent > RETRY_MAX_S:
            break
    notes = []
    if len(best.seconds) < repeats:
        notes.append(f"{len(best.seconds)} of {repeats} repeats (time budget)")
    if attempt:
        notes.append("retimed: machine busy")
    best.note = "; ".join(notes)
    return best


def best_seconds(fn, calls: int, rounds: int = 3) -> float:
    """Best over `rounds` of the mean seconds per call of `calls` back-to-back calls of fn()."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def max_rss_bytes() -> int:
    """ru_maxrss of this process in bytes (the field is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def peak_rss_bytes() -> int:
    """Peak resident set size of this process's own address space: VmHWM on Linux, else
    ru_maxrss. Linux keeps ru_maxrss across exec, so a child started from a large parent
    reports the parent's high-water mark (2.9 GB instead of 0.4 GB for bench_train's W3 probe);
    VmHWM starts afresh with the new program."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # reported in kB
    except OSError:
        pass
    return max_rss_bytes()


# -- the machine --------------------------------------------------------------------------------


def blas_description() -> str:
    """Which BLAS numpy calls and which kernel it picked, via threadpoolctl when importable.
    OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE change OpenBLAS's kernel choice and can slow it, so
    they are reported (never changed) here."""
    parts = []
    tpc = optional_import("threadpoolctl")
    if tpc is None:
        parts.append("threadpoolctl not installed, BLAS kernel unknown")
    else:
        for info in tpc.threadpool_info():
            if info.get("user_api") != "blas":
                continue
            # Other packages (scipy, ...) may load a BLAS of their own; say which one is numpy's.
            owner = "numpy's" if "numpy" in info.get("filepath", "") else "also loaded:"
            parts.append(
                f"{owner} {info.get('internal_api')} {info.get('version')} kernel "
                f"{info.get('architecture', '?')} {info.get('num_threads')} threads"
            )
    parts.sort(key=lambda p: not p.startswith("numpy's"))
    env = [
        f"{k}={os.environ[k]}"
        for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
        if k in os.environ
    ]
    parts.append("env " + " ".join(env) if env else "no OPENBLAS_*/OMP_NUM_THREADS set")
    return "; ".join(parts)


@dataclass
class Peak:
    """Best float32 GEMM throughput of the machine, GFLOP/s, all cores."""

    numpy: float
    torch: float | None = None
    blas: str = ""
    foreign_load: float | None = None  # other processes' CPU share while measuring

    @property
    def best(self) -> float:
        return max(self.numpy, self.torch or 0.0)


def measure_peak(torch=None, n: int = 2048, calls: int = 3, rounds: int = 4) -> Peak:
    """Best of several n x n float32 products through numpy (and torch when given). A product
    this size runs at the BLAS's sustained rate, so it stands for "the machine's GEMM peak"."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    flop = 2.0 * n**3
    load = ForeignLoad().start()
    np.matmul(a, b, out=c)  # warm the thread pool
    peak = Peak(numpy=flop / best_seconds(lambda: np.matmul(a, b, out=c), calls, rounds) / 1e9, blas=blas_description())
    if torch is not None:
        ta, tb, tc = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(c)
        torch.mm(ta, tb, out=tc)
        peak.torch = flop / best_seconds(lambda: torch.mm(ta, tb, out=tc), calls, rounds) / 1e9
    peak.foreign_load = load.stop()
    return peak


def warm_up_cpu(seconds: float = 1.0) -> None:
    """Keep the cores busy with float32 products for `seconds` before anything is measured: on
    this VM the first products after an idle spell ran up to 1.5x slower (clock ramp-up), which
    made whichever row was timed first look worse."""
    a = np.ones((512, 512), dtype=np.float32)
    c = np.empty_like(a)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        np.matmul(a, a, out=c)


def segfast_build() -> str:
    """segfast's version and when its compiled core was installed: the package may be rebuilt
    between runs, and timings only compare within one build."""
    import segfast

    stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(os.path.getmtime(segfast._core.__file__)))
    return f"segfast {segfast.__version__} (core installed {stamp}), kernel {segfast._core.gemm_kernel()}"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


# -- data ----------------------------------------------------------------------------------------


def load_fashion_mnist():
    """Fashion-MNIST through segfast's loader (X float32 in [0, 1], y int64)."""
    import segfast

    return segfast.datasets.load("fashion-mnist")


# -- printing ------------------------------------------------------------------------------------


class Table:
    """Rows printed as they arrive, each column padded to a fixed width so they line up."""

    def __init__(self, columns):
        # columns: (header, width, align) with align "<" or ">"
        self.columns = columns

    def _format(self, cells) -> str:
        return "  ".join(f"{str(cell):{align}{width}}" for cell, (_, width, align) in zip(cells, self.columns))

    def header(self) -> None:
        print(self._format([name for name, _, _ in self.columns]).rstrip(), flush=True)

    def row(self, *cells) -> None:
        print(self._format(cells).rstrip(), flush=True)


def fmt(value, spec: str, missing: str = "-") -> str:
    """`value` formatted with `spec`, or `missing` for None/NaN."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return missing
    return format(value, spec)
