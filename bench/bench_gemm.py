"""segfast's GEMM kernel against OpenBLAS (numpy) and PyTorch on the exact products training runs,
one thread each.

Per minibatch of 32, one model of 784-h-10 runs these products (h = 128 or 32):
  forward      X (32, 784) @ W0 (784, h)     and  H (32, h) @ W1 (h, 10)
  weight grad  X.T @ dH (32, h) -> (784, h)  and  H.T @ dLogits (32, 10) -> (h, 10)
segfast fuses what follows each product into it (bias + ReLU after the forward, the SGD step
W -= lr * grad after the weight gradient); the fused rows compare that with the same result
written the way numpy and torch users would (separate element-wise ops after the product).

Every call is repeated many times in a tight loop so the Python call costs little next to the
work, and a 1x1 product measures that cost per library (the "per-call overhead" line and the
"net" column), since the small output layer's products take about as long as the call itself.
Results are checked against numpy in float64 before anything is timed.

    python bench/bench_gemm.py [--calls 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

from _common import (
    TORCH_MISSING,
    ForeignLoad,
    Table,
    best_seconds,
    blas_description,
    cpu_name,
    fmt,
    optional_import,
    segfast_build,
    wait_for_quiet,
    warm_up_cpu,
)
from segfast import _core

BATCH = 32
LR = 1e-3  # small, so thousands of repeated SGD epilogues keep the weights finite


@dataclass(frozen=True)
class Case:
    name: str
    m: int  # output rows
    n: int  # output columns
    k: int  # inner dimension
    trans_a: bool  # A is stored (k, m) and used transposed: the weight gradient
    epilogue: str  # "store", "bias_relu" or "sgd"

    @property
    def flop(self) -> float:
        return 2.0 * self.m * self.n * self.k


def cases() -> list:
    out = []
    for h in (128, 32):
        out += [
            Case(f"fwd      32x784 @ 784x{h}", BATCH, h, 784, False, "store"),
            Case(f"fwd+relu 32x784 @ 784x{h}", BATCH, h, 784, False, "bias_relu"),
            Case(f"wgrad    (32x784)^T @ 32x{h}", 784, h, BATCH, True, "store"),
            Case(f"wgrad+sgd (32x784)^T @ 32x{h}", 784, h, BATCH, True, "sgd"),
        ]
    for h in (128, 32):
        out += [
            Case(f"fwd      32x{h} @ {h}x10", BATCH, 10, h, False, "store"),
            Case(f"wgrad    (32x{h})^T @ 32x10", h, 10, BATCH, True, "store"),
            Case(f"wgrad+sgd (32x{h})^T @ 32x10", h, 10, BATCH, True, "sgd"),
        ]
    return out


def operands(case: Case, rng):
    """a stored (m, k), or (k, m) when used transposed; b (k, n); bias (n,); c0 (m, n).
    Values like training's: pixels in [0, 1), small weights and gradients."""
    a_shape = (case.k, case.m) if case.trans_a else (case.m, case.k)
    a = rng.random(a_shape, dtype=np.float32)
    b = (rng.standard_normal((case.k, case.n)) * 0.05).astype(np.float32)
    bias = (rng.standard_normal(case.n) * 0.05).astype(np.float32)
    c0 = (rng.standard_normal((case.m, case.n)) * 0.05).astype(np.float32)
    return a, b, bias, c0


def expected(case: Case, a, b, bias, c0) -> np.ndarray:
    """The float64 result of one call, starting from c0 (used by the sgd epilogue)."""
    a64 = a.astype(np.float64)
    prod = (a64.T if case.trans_a else a64) @ b.astype(np.float64)
    if case.epilogue == "bias_relu":
        return np.maximum(prod + bias, 0.0)
    if case.epilogue == "sgd":
        return c0 - LR * prod
    return prod


# -- one callable per library: each computes the case's result into c, in place --------------------


def segfast_call(case: Case, a, b, bias, c):
    kw = {"trans_a": case.trans_a, "epilogue": case.epilogue}
    if case.epilogue == "bias_relu":
        kw["bias"] = bias
    elif case.epilogue == "sgd":
        kw["lr"] = LR
    return lambda: _core._testing.gemm(a, b, c, **kw)


def numpy_call(case: Case, a, b, bias, c):
    at = a.T if case.trans_a else a  # a view: OpenBLAS takes the transpose flag, no copy
    if case.epilogue == "store":
        return lambda: np.matmul(at, b, out=c)
    if case.epilogue == "bias_relu":

        def run():
            np.matmul(at, b, out=c)
            np.add(c, bias, out=c)
            np.maximum(c, 0.0, out=c)

        return run
    tmp = np.empty_like(c)  # numpy has no fused update: the gradient needs its own buffer

    def sgd():
        np.matmul(at, b, out=tmp)
        np.multiply(tmp, LR, out=tmp)
        np.subtract(c, tmp, out=c)

    return sgd


def torch_call(torch, case: Case, a, b, bias, c):
    ta, tb, tbias, tc = (torch.from_numpy(x) for x in (a, b, bias, c))  # share numpy's memory
    at = ta.t() if case.trans_a else ta
    if case.epilogue == "store":
        return lambda: torch.mm(at, tb, out=tc)
    if case.epilogue == "bias_relu":

        def run():
            torch.addmm(tbias, at, tb, out=tc)  # bias fused by BLAS's beta; ReLU separate
            tc.relu_()

        return run
    return lambda: tc.addmm_(at, tb, alpha=-LR)  # c -= lr * a.T @ b, one call


def check_result(lib: str, case: Case, call, c, a, b, bias, c0) -> float:
    """Error of one `call` (which writes into c) against float64, relative to the result's
    magnitude; raises above 1e-5 (float32 sums of <= 784 terms land near 1e-6)."""
    c[...] = c0
    call()
    want = expected(case, a, b, bias, c0)
    err = float(np.abs(c - want).max() / max(1.0, np.abs(want).max()))
    if err > 1e-5:
        raise AssertionError(f"{lib} {case.name}: relative error {err:.1e} against float64")
    return err


def one_core_peak(torch, rng) -> dict:
    """GFLOP/s of a 2048^3 float32 product on one thread, per library: what one core sustains once
    every overhead is hidden."""
    big = rng.random((2048, 2048), dtype=np.float32)
    out = np.empty_like(big)
    flop = 2.0 * 2048**3
    np.matmul(big, big, out=out)
    peaks = {"numpy": flop / best_seconds(lambda: np.matmul(big, big, out=out), 2, 3) / 1e9}
    if torch is not None:
        tbig, tout = torch.from_numpy(big), torch.from_numpy(out)
        torch.mm(tbig, tbig, out=tout)
        peaks["torch"] = flop / best_seconds(lambda: torch.mm(tbig, tbig, out=tout), 2, 3) / 1e9
    return peaks


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=2000, help="calls per timed round (inner loop)")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds per product; the best is kept")
    args = ap.parse_args(argv)
    started = time.perf_counter()

    # One thread everywhere: the products are per-model work, and segfast parallelises over models.
    tpc = optional_import("threadpoolctl")
    limits = tpc.threadpool_limits(1) if tpc is not None else None
    torch = optional_import("torch")
    if torch is not None:
        torch.set_num_threads(1)

    print(f"{segfast_build()}; {cpu_name()}; one thread each")
    print(f"numpy {np.__version__}: {blas_description()}")
    if tpc is None:
        print("threadpoolctl not installed: numpy's BLAS may use several threads (pip install '.[bench]')")
    if torch is None:
        print(TORCH_MISSING)
    else:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} thread")

    rng = np.random.default_rng(0)
    libs = [("segfast", segfast_call), ("numpy", numpy_call)]
    if torch is not None:
        libs.append(("torch", lambda *x: torch_call(torch, *x)))

    wait_for_quiet()
    warm_up_cpu()
    peaks = [one_core_peak(torch, rng)]

    # Python's share of every call: a 1x1 product does no work worth timing.
    overhead = {}
    one = Case("1x1", 1, 1, 1, False, "store")
    for lib, make in libs:
        a1, b1, bias1, c1 = operands(one, rng)
        overhead[lib] = best_seconds(make(one, a1, b1, bias1, c1), args.calls * 5, args.rounds)
    print("per-call overhead (1x1 product): " + ", ".join(f"{lib} {s * 1e6:.2f} us" for lib, s in overhead.items()))

    # Check everything before timing anything.
    prepared = []
    worst = 0.0
    for case in cases():
        a, b, bias, c0 = operands(case, rng)
        calls = []
        for lib, make in libs:
            c = c0.copy()
            call = make(case, a, b, bias, c)
            worst = max(worst, check_result(lib, case, call, c, a, b, bias, c0))
            calls.append((lib, call))
        prepared.append((case, calls))
    print(f"check ok   every product equals numpy float64 (worst relative error {worst:.1e})")
    # Rounds interleave the libraries, so a slow spell of the machine hits all of them alike.
    timings = []  # (case, {lib: best seconds per call}, other processes' CPU share)
    everything = ForeignLoad().start()
    for case, calls in prepared:
        best = {lib: float("inf") for lib, _ in calls}
        load = ForeignLoad().start()
        for _ in range(args.rounds):
            for lib, call in calls:
                best[lib] = min(best[lib], best_seconds(call, args.calls, 1))
        timings.append((case, best, load.stop()))
    overall = everything.stop()

    # The peak again after the timings: a busy neighbour core lowers this core's turbo clock, so
    # one measurement can come out low and flatter every 'of core'. The higher one is used.
    peaks.append(one_core_peak(torch, rng))
    peak = max(max(p.values()) for p in peaks)
    print(
        "one-core float32 GEMM peak (2048^3) before / after: "
        + "; ".join(f"{lib} " + " / ".join(f"{p[lib]:.1f}" for p in peaks) for lib in peaks[0])
        + f" GFLOP/s; peak = {peak:.1f}"
    )
    print(
        f"best of {args.rounds} rounds of {args.calls} calls; 'GFLOP/s' counts the whole call, 'net' "
        "subtracts the library's 1x1 call time ('-' where that is most of the call), 'of core' = GFLOP/s / "
        "peak;\n'segfast x' = library time / segfast time; 'other' = share of the machine's CPU "
        "used by other processes while the product's rows were timed\n"
    )

    table = Table(
        [
            ("product", 30, "<"),
            ("library", 7, "<"),
            ("us/call", 8, ">"),
            ("GFLOP/s", 8, ">"),
            ("net", 6, ">"),
            ("of core", 7, ">"),
            ("segfast x", 9, ">"),
            ("other", 5, ">"),
        ]
    )
    table.header()
    for case, best, other in timings:
        for lib, s in best.items():
            work = s - overhead[lib]
            # 'net' means nothing once the call overhead is most of the time.
            net = f"{case.flop / work / 1e9:.1f}" if work > 0.25 * s else "-"
            gf = case.flop / s / 1e9
            table.row(
                case.name if lib == "segfast" else "",
                lib,
                f"{s * 1e6:.2f}",
                f"{gf:.1f}",
                net,
                f"{gf / peak:.0%}",
                f"{s / best['segfast']:.2f}x",
                fmt(other, ".0%") if lib == "segfast" else "",
            )

    # One thread runs here, so other processes only compete once they need more than the other cores.
    cores = os.cpu_count() or 1
    limit = max(0.05, 1.0 - 1.0 / cores)
    print(
        f"\nother processes used {fmt(overall, '.0%')} of the machine's CPU over all timings "
        f"(this script: 1 of {cores} cores; rows too short to tell show '-')"
    )
    busy = [case.name for case, _, other in timings if other is not None and other > limit]
    if busy:
        print(
            f"\nWARNING: other processes used > {limit:.0%} of the machine while timing: {', '.join(busy)}; "
            "rerun on a quiet machine for clean numbers"
        )
    if limits is not None:
        limits.restore_original_limits()
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
