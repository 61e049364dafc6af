"""Where a GPU epoch of segfast goes, kernel by kernel (CUPTI through torch.profiler).

    python bench/profile_gpu.py [--workloads W3,W5]

Trains one warm-up epoch, then profiles one epoch of each workload of bench_gpu.py and prints
the device time of each kernel, against the epoch's wall time.
"""

from __future__ import annotations

import argparse
import sys
import time

import segfast
from _common import load_fashion_mnist
from bench_gpu import BATCH, LR, SEED, WORKLOADS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default="W3,W5")
    parser.add_argument(
        "--plain", action="store_true", help="no torch profiler: two epochs of each, for an outside profiler (ncu)"
    )
    args = parser.parse_args()
    if args.plain:
        data = load_fashion_mnist()
        for key in args.workloads.split(","):
            wl = WORKLOADS[key]
            seg = segfast.segment(data.y_train, wl.n_models, "iid", seed=SEED)
            stack = segfast.MLPStack(list(wl.dims), wl.n_models, init="independent", seed=SEED)
            segfast.train(stack, data.X_train, data.y_train, seg, epochs=2, batch_size=BATCH, lr=LR, device="cuda")
        return 0
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.init()
    data = load_fashion_mnist()
    for key in args.workloads.split(","):
        wl = WORKLOADS[key]
        stack = segfast.MLPStack(list(wl.dims), wl.n_models, init="independent", seed=SEED)
        if wl.kind == "predict":
            segfast.predict_proba(stack, data.X_test, device="cuda")
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                start = time.perf_counter()
                segfast.predict_proba(stack, data.X_test, device="cuda")
                call = time.perf_counter() - start
            print(f"\n{wl.name} {'-'.join(map(str, wl.dims))} x {wl.n_models} predict: a {1e3 * call:.1f} ms call")
            print_kernels(torch, prof)
            continue
        seg = segfast.segment(data.y_train, wl.n_models, "iid", seed=SEED)
        segfast.train(stack, data.X_train, data.y_train, seg, epochs=1, batch_size=BATCH, lr=LR, device="cuda")
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            start = time.perf_counter()
            hist = segfast.train(
                stack, data.X_train, data.y_train, seg, epochs=1, batch_size=BATCH, lr=LR, device="cuda"
            )
            call = time.perf_counter() - start
        print(
            f"\n{wl.name} {'-'.join(map(str, wl.dims))} x {wl.n_models}: epoch {1e3 * hist.seconds[0]:.1f} ms "
            f"of a {1e3 * call:.1f} ms call (the rest: uploads and the final download)"
        )
        print_kernels(torch, prof)
    return 0


def print_kernels(torch, prof) -> None:
    rows = {}
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            name = event.name.split("<")[0].split("(")[0][:60]
            total, count = rows.get(name, (0.0, 0))
            rows[name] = (total + event.device_time_total, count + 1)
    for name, (total, count) in sorted(rows.items(), key=lambda kv: -kv[1][0])[:12]:
        print(f"  {total / 1e3:9.2f} ms  {count:6d} x  {name}")


if __name__ == "__main__":
    sys.exit(main())
