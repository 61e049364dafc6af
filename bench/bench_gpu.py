"""segfast's CUDA path against torch.func.vmap on the same GPU, both in float32 (TF32 off).

  W1  784-128-10, 10 models        W4  predict_proba of 100 784-128-10 models on the 10,000 test rows
  W2  784-128-10, 100 models       W5  784-256-10, 10,000 models (6 rows each)
  W3  784-32-10, 1,000 models

Training workloads: one epoch of minibatch SGD (batch 32, lr 0.05) of every model on its own
IID segment of the 60,000 Fashion-MNIST training images. segfast: the median of the per-epoch
wall times train() records (data and parameters stay on the GPU between epochs; the call
around them, with the uploads and the final download, is shown too). torch.func: the idiom the
field uses for many small models (stack_module_state + vmap of grad, in-place SGD), data and
parameters on the GPU, each epoch timed with a synchronize; its minibatch order is fixed once.
W4: probabilities back in host memory on both sides (segfast's predict_proba returns numpy).
GFLOP/s count 6 FLOPs per weight (biases excluded) per training row (2 for prediction) and are
shown as a share of the GPU's float32 peak, measured here by a large torch.mm without TF32.

    python bench/bench_gpu.py [--workloads W1,W5] [--repeats 5] [--dry-run]

--dry-run: tiny sizes on the CPU (segfast's CPU path, torch on the CPU), to check the script
where no GPU is present.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import segfast  # noqa: E402
from _common import Table, fmt, load_fashion_mnist, optional_import  # noqa: E402

from bench_train import BATCH, LR, SEED, WORKLOADS as CPU_WORKLOADS, Workload  # noqa: E402

WORKLOADS = {**CPU_WORKLOADS, "W5": Workload("W5", "train", (784, 256, 10), 10_000)}


def median_time(run, repeats: int, sync) -> float:
    run()  # warm-up: kernel loading, allocator, caches
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def gpu_peak(torch, device: str) -> float:
    """float32 GEMM FLOP/s of this device (TF32 off): the best of a few 8192^3 products."""
    n = 8192 if device == "cuda" else 1024
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    best = min(median_time(lambda: torch.mm(a, b), 3, sync) for _ in range(2))
    return 2.0 * n ** 3 / best


def torch_stack(torch, wl: Workload, device: str):
    """The models as torch.func holds them: stacked parameters (N, ...) on the device, and the
    architecture as a module without storage."""
    torch.manual_seed(SEED)
    layers = []
    for a, b in zip(wl.dims[:-1], wl.dims[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    base = torch.nn.Sequential(*layers[:-1])
    params = {k: v.detach().to(device).repeat(wl.n_models, *([1] * v.dim())).contiguous()
              for k, v in base.named_parameters()}
    return params, copy.deepcopy(base).to("meta")


def segfast_train(wl: Workload, X, y, seg, device: str, repeats: int):
    stack = segfast.MLPStack(list(wl.dims), wl.n_models, init="independent", seed=SEED)
    start = time.perf_counter()
    hist = segfast.train(stack, X, y, seg, epochs=repeats + 1, batch_size=BATCH, lr=LR, device=device)
    call = time.perf_counter() - start
    loss = np.nanmean(hist.loss, axis=1)
    if not loss[-1] < loss[0]:
        raise RuntimeError(f"{wl.name}: segfast's training loss did not fall ({loss})")
    return statistics.median(hist.seconds[1:]), call / (repeats + 1)


def torch_train(torch, wl: Workload, X, y, seg, device: str, repeats: int) -> float:
    from torch.func import functional_call, grad_and_value, vmap
    F = torch.nn.functional
    params, meta = torch_stack(torch, wl, device)
    Xt, yt = torch.from_numpy(X).to(device), torch.from_numpy(y).to(device)
    size = int(seg.sizes[0])
    order = np.random.default_rng(SEED).permuted(seg.order.reshape(wl.n_models, size), axis=1)
    idx = torch.from_numpy(order).to(device)
    steps = [idx[:, s:s + BATCH] for s in range(0, size, BATCH)]

    def loss_fn(p, xb, yb):
        return F.cross_entropy(functional_call(meta, p, (xb,)), yb)
    step_grad = vmap(grad_and_value(loss_fn))

    def epoch():
        for b in steps:
            g, _ = step_grad(params, Xt[b], yt[b])
            with torch.no_grad():
                for k, v in params.items():
                    v.sub_(g[k], alpha=LR)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    return median_time(epoch, repeats, sync)


def segfast_predict(wl: Workload, X, device: str, repeats: int) -> float:
    stack = segfast.MLPStack(list(wl.dims), wl.n_models, init="independent", seed=SEED)
    return median_time(lambda: segfast.predict_proba(stack, X, device=device), repeats, lambda: None)


def torch_predict(torch, wl: Workload, X, device: str, repeats: int) -> float:
    from torch.func import functional_call, vmap
    F = torch.nn.functional
    params, meta = torch_stack(torch, wl, device)
    Xt = torch.from_numpy(X).to(device)
    proba = vmap(lambda p, x: F.softmax(functional_call(meta, p, (x,)), dim=-1), in_dims=(0, None))

    def run():
        with torch.no_grad():
            return proba(params, Xt).cpu().numpy()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    return median_time(run, repeats, sync)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default="W1,W2,W3,W4,W5")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU, to check the script")
    args = parser.parse_args()
    torch = optional_import("torch")
    if torch is None:
        print("PyTorch is not installed: the torch.func anchor cannot run", file=sys.stderr)
        return 1
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = "cpu" if args.dry_run else "cuda"
    if device == "cuda" and not segfast.cuda_available():
        from segfast._device import check_device
        check_device("cuda")  # raises, saying what is missing

    if args.dry_run:
        data = segfast.datasets.load_default()
        X, y, X_test = data.X_train[:6000], data.y_train[:6000], data.X_test[:1000]
        scale = {"W1": 2, "W2": 10, "W3": 100, "W4": 10, "W5": 1000}
    else:
        data = load_fashion_mnist()
        X, y, X_test = data.X_train, data.y_train, data.X_test
        scale = {}
    peak = gpu_peak(torch, device)
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU (dry run)"
    print(f"device: {name}; float32 GEMM peak (torch.mm, TF32 off): {peak / 1e12:.1f} TFLOP/s")
    print(f"segfast {segfast.__version__}, torch {torch.__version__}; medians of {args.repeats} epochs/calls\n")

    table = Table([("workload", 34, "<"), ("segfast s", 10, ">"), ("(call)", 8, ">"), ("torch.func s", 12, ">"),
                   ("speed-up", 8, ">"), ("segfast TFLOP/s", 15, ">"), ("of peak", 7, ">")])
    table.header()
    for key in args.workloads.split(","):
        wl = WORKLOADS[key.strip()]
        if key in scale:
            wl = Workload(wl.name, wl.kind, wl.dims, scale[key])
        label = f"{wl.name} {'-'.join(map(str, wl.dims))} x {wl.n_models}" + (" predict" if wl.kind == "predict" else "")
        if wl.kind == "predict":
            ours = segfast_predict(wl, X_test, device, args.repeats)
            call = ours
            theirs = torch_predict(torch, wl, X_test, device, args.repeats)
            flops = 2.0 * wl.n_weights * len(X_test) * wl.n_models
        else:
            seg = segfast.segment(y, wl.n_models, "iid", seed=SEED)
            ours, call = segfast_train(wl, X, y, seg, device, args.repeats)
            theirs = torch_train(torch, wl, X, y, seg, device, args.repeats)
            flops = 6.0 * wl.n_weights * len(X)
        rate = flops / ours
        table.row(label, fmt(ours, ".4f"), fmt(call, ".3f"), fmt(theirs, ".4f"), f"{theirs / ours:.2f}x",
                  f"{rate / 1e12:.2f}", f"{100 * rate / peak:.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
