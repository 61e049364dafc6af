"""segfast's CUDA path against torch.func.vmap and JAX on the same GPU, all in float32 (TF32 off,
JAX at its highest matmul precision).

  W1  784-128-10, 10 models        W4  predict_proba of 100 784-128-10 models on the 10,000 test rows
  W2  784-128-10, 100 models       W5  784-256-10, 10,000 models (6 rows each)
  W3  784-32-10, 1,000 models

Training workloads: one epoch of minibatch SGD (batch 32, lr 0.05) of every model on its own
IID segment of the 60,000 Fashion-MNIST training images. segfast: the median of the per-epoch
wall times train() records (data and parameters stay on the GPU between epochs; the call
around them, with the uploads and the final download, is shown too). torch.func: the idiom the
field uses for many small models (stack_module_state + vmap of grad, in-place SGD), data and
parameters on the GPU, each epoch timed with a synchronize; its minibatch order is fixed once.
JAX: the idiom a JAX user writes, one jax.jit of lax.scan over the epoch's full minibatches of
vmap(grad(loss)) with the SGD step inside (one more jitted step for a short last minibatch),
parameters donated; data and parameters on the GPU. W4: probabilities back in host memory on
every side (segfast's predict_proba returns numpy; torch .cpu(), JAX np.asarray).
GFLOP/s count 6 FLOPs per weight (biases excluded) per training row (2 for prediction) and are
shown as a share of the GPU's float32 peak, measured here by a large torch.mm without TF32.

    python bench/bench_gpu.py [--workloads W1,W5] [--repeats 5] [--scale 10000,100000] [--dry-run]

--scale N1,N2,...: 784-16-10 models of 6 rows each (rows drawn with repetition from the training
set), one epoch each; prints the cost per model and the device memory held during training.

--dry-run: tiny sizes on the CPU (segfast's CPU path, torch on the CPU), to check the script
where no GPU is present.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

import segfast
from _common import Table, fmt, load_fashion_mnist, optional_import
from anchors import JaxMLPs, TorchFuncMLPs, jax_layers, jax_proba, minibatches, stacked_copies
from bench_train import BATCH, LR, SEED, Workload
from bench_train import WORKLOADS as CPU_WORKLOADS

WORKLOADS = {**CPU_WORKLOADS, "W5": Workload("W5", "train", (784, 256, 10), 10_000)}


def speedup(anchor_s: float, ours_s: float) -> str:
    return "-" if anchor_s != anchor_s else f"{anchor_s / ours_s:.2f}x"  # NaN: no anchor ran


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
    return 2.0 * n**3 / best


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
    """anchors.TorchFuncMLPs from n_models copies of one torch-initialised model."""
    anchor = TorchFuncMLPs(torch, wl.dims)
    params = stacked_copies(torch, wl.dims, wl.n_models, SEED, device)
    Xt, yt = torch.from_numpy(X).to(device), torch.from_numpy(y).to(device)
    size = int(seg.sizes[0])
    order = np.random.default_rng(SEED).permuted(seg.order.reshape(wl.n_models, size), axis=1)
    steps = minibatches(torch, order, BATCH, device)

    def epoch():
        anchor.epoch(params, Xt, yt, steps, LR)

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    return median_time(epoch, repeats, sync)


def segfast_predict(wl: Workload, X, device: str, repeats: int) -> float:
    stack = segfast.MLPStack(list(wl.dims), wl.n_models, init="independent", seed=SEED)
    return median_time(lambda: segfast.predict_proba(stack, X, device=device), repeats, lambda: None)


def torch_predict(torch, wl: Workload, X, device: str, repeats: int) -> float:
    anchor = TorchFuncMLPs(torch, wl.dims)
    params = stacked_copies(torch, wl.dims, wl.n_models, SEED, device)
    Xt = torch.from_numpy(X).to(device)

    def run():
        return anchor.proba(params, Xt).cpu().numpy()

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    return median_time(run, repeats, sync)


def jax_setup(jax):
    jax.config.update("jax_default_matmul_precision", "highest")  # float32 products, no TF32


def jax_train(jax, wl: Workload, X, y, seg, repeats: int) -> float:
    """anchors.JaxMLPs, one jitted lax.scan an epoch, from segfast's own initial parameters."""
    stack = segfast.MLPStack(list(wl.dims), wl.n_models, init="independent", seed=SEED)
    anchor = JaxMLPs(jax, jax.numpy.asarray(X), jax.numpy.asarray(y), LR)
    size = int(seg.sizes[0])
    order = np.random.default_rng(SEED).permuted(seg.order.reshape(wl.n_models, size), axis=1)
    full, tail = anchor.minibatches(order, BATCH)
    state = {"p": jax_layers(jax, wl.dims, stack.params)}

    def epoch():
        state["p"] = jax.block_until_ready(anchor.epoch(state["p"], full, tail))

    return median_time(epoch, repeats, lambda: None)


def jax_predict(jax, wl: Workload, X, repeats: int) -> float:
    stack = segfast.MLPStack(list(wl.dims), wl.n_models, init="independent", seed=SEED)
    params, Xd = jax_layers(jax, wl.dims, stack.params), jax.numpy.asarray(X)
    proba = jax_proba(jax)
    return median_time(lambda: np.asarray(proba(params, Xd)), repeats, lambda: None)


def small_models_call(X, y, device: str) -> None:
    """10 models of 784-128-10, 3 epochs, the whole train() call (uploads included): the GPU
    against the CPU path on all of this machine's cores."""
    seg = segfast.segment(y, 10, "iid", seed=SEED)
    times = {}
    for where in ("cpu", device):
        runs = []
        for _ in range(3):
            stack = segfast.MLPStack([784, 128, 10], 10, init="independent", seed=SEED)
            start = time.perf_counter()
            segfast.train(stack, X, y, seg, epochs=3, batch_size=BATCH, lr=LR, device=where)
            runs.append(time.perf_counter() - start)
        times[where] = statistics.median(runs)
    print(
        f"\n10 x 784-128-10, 3 epochs, whole call: {device} {times[device]:.3f} s, CPU ({os.cpu_count()} cores) "
        f"{times['cpu']:.3f} s: {times['cpu'] / times[device]:.2f}x",
        flush=True,
    )


def scale_run(n_models: int, X, y, device: str) -> None:
    """784-16-10, n_models of 6 rows each (drawn with repetition): the per-model cost of an epoch,
    and the device memory in use while the models are there (the trainer's own, on the GPU)."""
    rng = np.random.default_rng(SEED)
    seg = segfast.Segments(rng.integers(0, len(X), 6 * n_models), np.arange(0, 6 * n_models + 1, 6))
    stack = segfast.MLPStack([784, 16, 10], n_models, init="shared", seed=SEED)
    if device != "cuda":
        hist = segfast.train(stack, X, y, seg, epochs=2, batch_size=BATCH, lr=LR)
        epoch, mem = float(hist.seconds[1]), "-"
    else:
        core = segfast._core
        base = core.cuda_memory_in_use()
        trainer = core.CudaTrainer([784, 16, 10], X, y)
        trainer.set_models(stack.params)
        active = np.ones(n_models, dtype=np.uint8)
        times = []
        for e in range(2):
            start = time.perf_counter()
            trainer.epoch(
                seg.order,
                seg.offsets,
                active,
                np.full(n_models, e, dtype=np.int64),
                SEED,
                BATCH,
                LR,
                0.0,
                0.0,
                0.0,
                0,
                0,
                -1,
            )
            times.append(time.perf_counter() - start)
        held = core.cuda_memory_in_use() - base
        del trainer
        epoch, mem = times[1], f"{held / 2**30:.1f} GiB held on the device"
    print(
        f"scale {n_models:>9,} x 784-16-10: epoch {epoch:.4f} s = {1e6 * epoch / n_models:.3f} us a model; "
        f"{stack.params.nbytes / 2**30:.2f} GiB of weights; {mem}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default="W1,W2,W3,W4,W5")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scale", default="", help="comma-separated model counts for the 784-16-10 scale runs")
    parser.add_argument("--no-jax", action="store_true", help="skip the JAX anchor")
    parser.add_argument(
        "--segfast-only", action="store_true", help="skip both anchors (a comparison of segfast's paths)"
    )
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU, to check the script")
    args = parser.parse_args()
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # JAX shares the GPU with torch and segfast
    jax = None if args.no_jax or args.segfast_only else optional_import("jax")
    if jax is not None:
        jax_setup(jax)
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
    print(
        f"segfast {segfast.__version__}, torch {torch.__version__}, "
        f"jax {getattr(jax, '__version__', '(not installed)')}; medians of {args.repeats} epochs/calls\n"
    )

    table = Table(
        [
            ("workload", 34, "<"),
            ("segfast s", 10, ">"),
            ("(call)", 8, ">"),
            ("torch.func s", 12, ">"),
            ("JAX s", 8, ">"),
            ("vs torch", 8, ">"),
            ("vs best", 7, ">"),
            ("TFLOP/s", 7, ">"),
            ("of peak", 7, ">"),
        ]
    )
    table.header()
    plans = []
    for key in args.workloads.split(","):
        wl = WORKLOADS[key.strip()]
        if key in scale:
            wl = Workload(wl.name, wl.kind, wl.dims, scale[key])
        label = f"{wl.name} {'-'.join(map(str, wl.dims))} x {wl.n_models}" + (
            " predict" if wl.kind == "predict" else ""
        )
        if wl.kind == "predict":
            ours = segfast_predict(wl, X_test, device, args.repeats)
            call = ours
            theirs = torch_predict(torch, wl, X_test, device, args.repeats) if not args.segfast_only else float("nan")
            jaxs = jax_predict(jax, wl, X_test, args.repeats) if jax is not None else None
            flops = 2.0 * wl.n_weights * len(X_test) * wl.n_models
        else:
            seg = segfast.segment(y, wl.n_models, "iid", seed=SEED)
            if device == "cuda":
                longest = int(seg.sizes.max())
                plan = segfast._core._testing.cuda_resident_plan(
                    list(wl.dims), wl.n_models, min(BATCH, longest), False, longest <= BATCH
                )
                plans.append(f"{wl.name}: {plan}")
            ours, call = segfast_train(wl, X, y, seg, device, args.repeats)
            theirs = torch_train(torch, wl, X, y, seg, device, args.repeats) if not args.segfast_only else float("nan")
            jaxs = jax_train(jax, wl, X, y, seg, args.repeats) if jax is not None else None
            flops = 6.0 * wl.n_weights * len(X)
        rate = flops / ours
        best = min(theirs, jaxs) if jaxs is not None else theirs
        table.row(
            label,
            fmt(ours, ".4f"),
            fmt(call, ".3f"),
            fmt(theirs, ".4f") if theirs == theirs else "-",
            fmt(jaxs, ".4f") if jaxs is not None else "-",
            speedup(theirs, ours),
            speedup(best, ours),
            f"{rate / 1e12:.2f}",
            f"{100 * rate / peak:.1f}%",
        )
    if plans:
        print("\nresident epoch plans (cluster: CTAs a model; units: hidden units a CTA; ok False: per-layer path):")
        print("\n".join("  " + p for p in plans))
    if "W1" in args.workloads and not args.segfast_only:
        small_models_call(X, y, device)
    if args.scale:
        data = load_fashion_mnist() if not args.dry_run else segfast.datasets.load_default()
        for n in args.scale.split(","):
            scale_run(int(n), data.X_train, data.y_train, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
