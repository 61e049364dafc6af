"""Training and prediction throughput of segfast against what a user would otherwise write.

Workloads (Fashion-MNIST, 60,000 training rows, IID segments, float32, batch 32, plain SGD lr 0.05;
one epoch = every model once over its own segment):
  W1  784-128-10, 10 models        W3  784-32-10, 1,000 models
  W2  784-128-10, 100 models       W4  predict_proba of 100 784-128-10 models on the 10,000 test rows
Contenders: segfast; a PyTorch eager loop over models (one nn.Sequential + optimizer each);
torch.func (stack_module_state + vmap of grad, all models stepping together); JAX (jit + vmap).
Every number is measured in this run, against the machine's float32 GEMM peak measured in this run.

What it is not: a convergence study. The checks before timing only make sure every contender does
the same arithmetic (same start, same step) and that segfast's epoch lowers the loss.

    python bench/bench_train.py [--workloads W1,W3] [--repeats 5] [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import segfast
from _common import (
    BUSY_RETRY,
    JAX_MISSING,
    TORCH_MISSING,
    Table,
    Timing,
    cpu_name,
    fmt,
    load_fashion_mnist,
    max_rss_bytes,
    measure_peak,
    optional_import,
    peak_rss_bytes,
    segfast_build,
    time_repeats,
    wait_for_quiet,
    warm_up_cpu,
)
from anchors import JaxMLPs, TorchFuncMLPs, jax_layers, jax_proba, layer_views, minibatches, stacked_from_segfast

BATCH = 32
LR = 0.05
SEED = 0
MB = 1 << 20


@dataclass(frozen=True)
class Workload:
    name: str
    kind: str  # "train" or "predict"
    dims: tuple
    n_models: int

    @property
    def n_weights(self) -> int:
        """Weight entries of one model, biases excluded (the FLOP convention's unit)."""
        return sum(a * b for a, b in zip(self.dims[:-1], self.dims[1:]))

    def describe(self) -> str:
        arch = "-".join(map(str, self.dims))
        if self.kind == "train":
            return f"{self.name}: train {arch}, {self.n_models} models, one epoch over 60,000 rows"
        return f"{self.name}: predict_proba {arch}, {self.n_models} models x 10,000 test rows"


WORKLOADS = {
    "W1": Workload("W1", "train", (784, 128, 10), 10),
    "W2": Workload("W2", "train", (784, 128, 10), 100),
    "W3": Workload("W3", "train", (784, 32, 10), 1000),
    "W4": Workload("W4", "predict", (784, 128, 10), 100),
}

# The torch eager loop runs ~2,000 optimizer steps per epoch whatever the workload; when one epoch
# would take longer than this, only a prefix of the models is timed and the time scaled up.
EAGER_BUDGET_S = 4.0
# Timings during which other processes took more than this share of the CPU are flagged.
BUSY_WARNING = BUSY_RETRY


@dataclass
class Result:
    contender: str
    timing: Timing
    flop: float  # per timed run
    items: float  # samples (train) or rows x models (predict) per timed run
    loss_after: float = float("nan")  # mean loss of the models on their own segments after one epoch
    note: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.timing.note and self.timing.note not in self.note:
            self.note = "; ".join(x for x in (self.note, self.timing.note) if x)

    def to_json(self, peak: float, segfast_s: float | None) -> dict:
        t = self.timing
        return {
            "contender": self.contender,
            "median_s": t.median,
            "min_s": t.min,
            "max_s": t.max,
            "all_s": t.seconds,
            "items_per_s": self.items / t.median,
            "gflops": self.flop / t.median / 1e9,
            "fraction_of_peak": self.flop / t.median / 1e9 / peak,
            "speedup_of_segfast": (t.median / segfast_s) if segfast_s else None,
            "loss_after_epoch": None if math.isnan(self.loss_after) else self.loss_after,
            "other_processes_cpu_share": t.foreign_load,
            "note": self.note,
            **self.extra,
        }


class CheckFailed(RuntimeError):
    pass


def announce(r: Result) -> Result:
    print(f"  timed {r.contender}: median {r.timing.median:.3f} s", flush=True)
    return r


def check(ok: bool, what: str) -> None:
    print(f"  check {'ok  ' if ok else 'FAIL'} {what}", flush=True)
    if not ok:
        raise CheckFailed(what)


# -- data shared by all contenders of a workload ---------------------------------------------------


@dataclass
class Setup:
    wl: Workload
    X: np.ndarray  # (n, 784) training (or test, for W4) rows
    y: np.ndarray  # (n,)
    segments: object  # segfast.Segments (train only)
    init: np.ndarray  # (N, P) the starting parameters every contender copies
    batches: np.ndarray | None  # (N, L) each model's rows in the order every anchor visits them


def make_setup(wl: Workload, ds) -> Setup:
    stack = segfast.MLPStack(list(wl.dims), n_models=wl.n_models, init="independent", seed=SEED)
    if wl.kind == "predict":
        return Setup(wl, ds.X_test, ds.y_test, None, stack.params.copy(), None)
    seg = segfast.segment(ds.y_train, wl.n_models, "iid", seed=SEED)
    sizes = seg.sizes
    if not (sizes == sizes[0]).all():  # vmap anchors step all models together: equal sizes needed
        raise ValueError(f"IID segments of unequal sizes {sizes.min()}..{sizes.max()}")
    # The anchors visit each segment in one fixed shuffled order, drawn once here (outside the
    # timing): shuffling 60,000 indices costs microseconds, and segfast reshuffles per epoch anyway.
    rng = np.random.default_rng(SEED)
    batches = rng.permuted(seg.order.reshape(wl.n_models, sizes[0]), axis=1)
    return Setup(wl, ds.X_train, ds.y_train, seg, stack.params.copy(), batches)


def numpy_proba(dims, params: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Reference forward in float64: (N, n, classes) softmax probabilities."""
    h = np.broadcast_to(X.astype(np.float64), (params.shape[0],) + X.shape)
    layers = layer_views(dims, params)
    for layer, (w, b) in enumerate(layers):
        h = h @ w.astype(np.float64) + b.astype(np.float64)[:, None, :]
        if layer < len(layers) - 1:
            h = np.maximum(h, 0.0)
    h = h - h.max(axis=2, keepdims=True)
    e = np.exp(h)
    return e / e.sum(axis=2, keepdims=True)


def segment_loss(su: Setup, params: np.ndarray) -> float:
    """Mean over models of each model's loss on its own segment: the training loss."""
    loss = 0.0
    for i in range(su.wl.n_models):
        rows = su.segments[i]
        one = segfast.MLPStack.from_params(list(su.wl.dims), params[i])
        loss += float(segfast.evaluate(one, su.X[rows], su.y[rows]).loss[0])
    return loss / su.wl.n_models


def one_step_reference(su: Setup):
    """segfast's single SGD step of every model on batch 0 of the anchors' order: the parameters
    after it and the batch-0 loss of the initial parameters. A one-batch segment makes
    segfast.train take exactly that step (the gradient of a full batch ignores its order)."""
    first = su.batches[:, :BATCH]
    stack = segfast.MLPStack.from_params(list(su.wl.dims), su.init)
    losses = np.array(
        [segfast.evaluate(stack.select([i]), su.X[first[i]], su.y[first[i]]).loss[0] for i in range(su.wl.n_models)]
    )
    segfast.train(stack, su.X, su.y, segfast.Segments.from_indices(list(first)), epochs=1, batch_size=BATCH, lr=LR)
    return stack.params.copy(), losses


# -- segfast ---------------------------------------------------------------------------------------


def run_segfast(su: Setup, repeats: int) -> Result:
    wl = su.wl
    stack = segfast.MLPStack.from_params(list(wl.dims), su.init)
    if wl.kind == "predict":
        sample = min(1000, len(su.X))
        got = segfast.predict_proba(stack, su.X[:sample])
        diff = float(np.abs(got - numpy_proba(wl.dims, su.init, su.X[:sample])).max())
        check(diff < 1e-4, f"segfast predict_proba == numpy float64 forward on {sample} rows (max abs diff {diff:.1e})")
        t = time_repeats(lambda: segfast.predict_proba(stack, su.X), repeats)
        return Result("segfast", t, 2.0 * wl.n_weights * len(su.X) * wl.n_models, len(su.X) * wl.n_models)

    before = segment_loss(su, su.init)

    def reset():
        stack.params[...] = su.init
        stack.diverged[...] = False

    t = time_repeats(
        lambda: segfast.train(stack, su.X, su.y, su.segments, epochs=1, batch_size=BATCH, lr=LR), repeats, reset=reset
    )
    after = segment_loss(su, stack.params)
    check(after < before, f"one segfast epoch lowers the training loss ({before:.4f} -> {after:.4f})")
    return Result("segfast", t, 6.0 * wl.n_weights * len(su.X), len(su.X), loss_after=after)


# -- PyTorch -----------------------------------------------------------------------------------------


def torch_models(torch, su: Setup, count: int):
    """`count` nn.Sequential models loaded with the first `count` rows of the initial params."""
    nn = torch.nn
    layers = layer_views(su.wl.dims, su.init)
    models = []
    with torch.no_grad():
        for i in range(count):
            mods = []
            for layer, (w, b) in enumerate(layers):
                lin = nn.Linear(w.shape[1], w.shape[2])
                lin.weight.copy_(torch.from_numpy(w[i].T.copy()))  # nn.Linear stores (out, in)
                lin.bias.copy_(torch.from_numpy(b[i].copy()))
                mods.append(lin)
                if layer < len(layers) - 1:
                    mods.append(nn.ReLU())
            models.append(nn.Sequential(*mods))
    return models


def torch_params_to_numpy(su: Setup, tensors, count: int) -> np.ndarray:
    """Stacked torch parameters [(W (n, out, in), b (n, out)), ...] back into segfast's (n, P)."""
    out = np.empty((count, su.init.shape[1]), dtype=np.float32)
    for (w_np, b_np), (w, b) in zip(layer_views(su.wl.dims, out), tensors):
        w_np[...] = w.detach().numpy()[:count].transpose(0, 2, 1)
        b_np[...] = b.detach().numpy()[:count]
    return out


def run_torch_eager(torch, su: Setup, repeats: int, ref) -> Result:
    """The loop a user writes: for each model its own nn.Sequential and SGD, over its minibatches."""
    F = torch.nn.functional
    wl = su.wl
    Xt, yt = torch.from_numpy(su.X), torch.from_numpy(su.y)

    if wl.kind == "predict":
        models = torch_models(torch, su, wl.n_models)

        def predict():
            with torch.inference_mode():
                return torch.stack([F.softmax(m(Xt), dim=1) for m in models])

        out = predict().numpy()
        diff = float(np.abs(out - ref).max())
        check(diff < 1e-4, f"torch eager probabilities == segfast's (max abs diff {diff:.1e})")
        t = time_repeats(predict, repeats)
        return Result("torch eager loop", t, 2.0 * wl.n_weights * len(su.X) * wl.n_models, len(su.X) * wl.n_models)

    idx = torch.from_numpy(su.batches)
    L = su.batches.shape[1]

    def train_models(models, optims, rows):
        for m, opt, r in zip(models, optims, rows):
            for s in range(0, L, BATCH):
                b = r[s : s + BATCH]
                opt.zero_grad()
                loss = F.cross_entropy(m(Xt[b]), yt[b])
                loss.backward()
                opt.step()

    # Sanity: one step from the same start equals segfast's step (first and last model).
    ref_params, ref_loss = ref
    probe = [0, wl.n_models - 1]
    models = torch_models(torch, su, wl.n_models)
    for i in probe:
        m = models[i]
        b = idx[i, :BATCH]
        with torch.no_grad():
            loss0 = float(F.cross_entropy(m(Xt[b]), yt[b]))
        train_models([m], [torch.optim.SGD(m.parameters(), lr=LR)], [idx[i, :BATCH]])
        got = torch_params_to_numpy(
            su, [(m[2 * layer].weight[None], m[2 * layer].bias[None]) for layer in range(len(wl.dims) - 1)], 1
        )[0]
        check(
            abs(loss0 - ref_loss[i]) < 1e-5 and np.abs(got - ref_params[i]).max() < 1e-5,
            f"torch eager model {i}: step-0 loss {loss0:.6f} vs segfast {ref_loss[i]:.6f}, params after "
            f"one step max diff {np.abs(got - ref_params[i]).max():.1e}",
        )

    # Time a prefix of the models when the whole epoch would blow the time budget.
    models = torch_models(torch, su, wl.n_models)
    optims = [torch.optim.SGD(m.parameters(), lr=LR) for m in models]
    initial = [[p.detach().clone() for p in m.parameters()] for m in models]
    probe_n = min(wl.n_models, max(1, wl.n_models // 20))
    estimate = float("inf")
    for _ in range(2):  # the first pass pays autograd's start-up; the faster one is the estimate
        start = time.perf_counter()
        train_models(models[:probe_n], optims[:probe_n], idx[:probe_n])
        estimate = min(estimate, (time.perf_counter() - start) * wl.n_models / probe_n)
    count = wl.n_models if estimate <= EAGER_BUDGET_S else max(probe_n, int(wl.n_models * EAGER_BUDGET_S / estimate))

    def reset():
        with torch.no_grad():
            for m, init in zip(models[:count], initial[:count]):
                for p, p0 in zip(m.parameters(), init):
                    p.copy_(p0)

    t = time_repeats(
        lambda: train_models(models[:count], optims[:count], idx[:count]),
        repeats,
        reset=reset,
        scale=wl.n_models / count,
    )
    note = "" if count == wl.n_models else f"timed {count} of {wl.n_models} models, scaled x{wl.n_models / count:.2f}"
    loss_after = float("nan")
    if count == wl.n_models:
        params = torch_params_to_numpy(
            su,
            [
                (torch.stack([m[2 * layer].weight for m in models]), torch.stack([m[2 * layer].bias for m in models]))
                for layer in range(len(wl.dims) - 1)
            ],
            wl.n_models,
        )
        loss_after = segment_loss(su, params)
    return Result("torch eager loop", t, 6.0 * wl.n_weights * len(su.X), len(su.X), loss_after=loss_after, note=note)


def run_torch_func(torch, su: Setup, repeats: int, ref) -> Result:
    """torch.func (anchors.TorchFuncMLPs): stacked parameters, vmap over models of grad of a
    functional loss; every model steps on minibatch t of its own segment together, SGD written
    with in-place torch ops."""
    wl = su.wl
    Xt, yt = torch.from_numpy(su.X), torch.from_numpy(su.y)
    anchor = TorchFuncMLPs(torch, wl.dims)
    params = stacked_from_segfast(torch, wl.dims, su.init)  # (N, ...) per parameter; the update is ours
    names = [(f"{2 * layer}.weight", f"{2 * layer}.bias") for layer in range(len(wl.dims) - 1)]

    if wl.kind == "predict":

        def predict():
            return anchor.proba(params, Xt)

        out = predict().numpy()
        diff = float(np.abs(out - ref).max())
        check(diff < 1e-4, f"torch.func probabilities == segfast's (max abs diff {diff:.1e})")
        t = time_repeats(predict, repeats)
        return Result("torch.func vmap", t, 2.0 * wl.n_weights * len(su.X) * wl.n_models, len(su.X) * wl.n_models)

    steps = minibatches(torch, su.batches, BATCH)  # (N, <=32) each, views
    initial = {k: v.clone() for k, v in params.items()}

    def reset():
        with torch.no_grad():
            for k, v in params.items():
                v.copy_(initial[k])

    ref_params, ref_loss = ref
    loss0 = anchor.epoch(params, Xt, yt, steps[:1], LR).numpy()
    got = torch_params_to_numpy(su, [(params[w], params[b]) for w, b in names], wl.n_models)
    check(
        np.abs(loss0 - ref_loss).max() < 1e-5 and np.abs(got - ref_params).max() < 1e-5,
        f"torch.func step 0 == segfast's step (loss max diff {np.abs(loss0 - ref_loss).max():.1e}, "
        f"params {np.abs(got - ref_params).max():.1e}, all {wl.n_models} models)",
    )
    t = time_repeats(lambda: anchor.epoch(params, Xt, yt, steps, LR), repeats, reset=reset)
    params_np = torch_params_to_numpy(su, [(params[w], params[b]) for w, b in names], wl.n_models)
    return Result(
        "torch.func vmap", t, 6.0 * wl.n_weights * len(su.X), len(su.X), loss_after=segment_loss(su, params_np)
    )


def run_torch_bmm(torch, su: Setup, repeats: int, ref) -> Result:
    """An extra anchor, not in the targets: the step written by hand with batched matmuls over the
    model axis (baddbmm forward, explicit backward, in-place SGD), no autograd and no vmap. It is
    what a user who outgrows torch.func would write, and it is faster than torch.func here, so
    leaving it out would flatter segfast."""
    wl = su.wl
    Xt, yt = torch.from_numpy(su.X), torch.from_numpy(su.y)
    idx = torch.from_numpy(su.batches)
    steps = [idx[:, s : s + BATCH] for s in range(0, su.batches.shape[1], BATCH)]
    initial = [(torch.from_numpy(w.copy()), torch.from_numpy(b.copy())) for w, b in layer_views(wl.dims, su.init)]
    params = [(w.clone(), b.clone()) for w, b in initial]  # W (N, d_in, d_out), b (N, d_out)

    def step(b, want_loss=False):
        x, yb = Xt[b], yt[b]  # (N, n, 784), (N, n)
        n = x.shape[1]
        acts, pre = [x], []
        for layer, (w, bias) in enumerate(params):
            z = torch.baddbmm(bias[:, None, :], acts[-1], w)
            if layer < len(params) - 1:
                pre.append(z)
                acts.append(torch.relu(z))
        loss = (torch.logsumexp(z, 2) - z.gather(2, yb[..., None])[..., 0]).mean(1) if want_loss else None
        d = torch.softmax(z, 2)  # d(mean cross-entropy)/d(logits) = (p - onehot) / n
        d.scatter_add_(2, yb[..., None], torch.full(yb[..., None].shape, -1.0))
        d.div_(n)
        for layer in range(len(params) - 1, -1, -1):
            w, bias = params[layer]
            d_below = torch.bmm(d, w.transpose(1, 2)).mul_(pre[layer - 1] > 0) if layer > 0 else None
            w.baddbmm_(acts[layer].transpose(1, 2), d, alpha=-LR)  # W -= lr * a^T d, fused
            bias.sub_(d.sum(1), alpha=LR)
            d = d_below
        return loss

    def reset():
        for (w, b), (w0, b0) in zip(params, initial):
            w.copy_(w0)
            b.copy_(b0)

    def flat():
        return torch_params_to_numpy(su, [(w.transpose(1, 2), b) for w, b in params], wl.n_models)

    ref_params, ref_loss = ref
    with torch.no_grad():
        loss0 = step(steps[0], want_loss=True).numpy()
    got = flat()
    check(
        np.abs(loss0 - ref_loss).max() < 1e-5 and np.abs(got - ref_params).max() < 1e-5,
        f"torch hand-written bmm step 0 == segfast's step (loss max diff {np.abs(loss0 - ref_loss).max():.1e}, "
        f"params {np.abs(got - ref_params).max():.1e}, all {wl.n_models} models)",
    )

    def epoch():
        with torch.no_grad():
            for b in steps:
                step(b)

    t = time_repeats(epoch, repeats, reset=reset)
    return Result(
        "torch bmm, hand-written",
        t,
        6.0 * wl.n_weights * len(su.X),
        len(su.X),
        loss_after=segment_loss(su, flat()),
        note="extra anchor",
    )


# -- JAX -----------------------------------------------------------------------------------------------


def run_jax(jax, su: Setup, repeats: int, ref) -> Result:
    """anchors.JaxMLPs: jit + vmap over models of the same step, the parameter update inside the
    jit. Two drivers, the faster one timed: lax.scan over the epoch's full batches (one dispatch
    per epoch) and a Python loop over a jitted step (one dispatch per step)."""
    jnp = jax.numpy
    wl = su.wl
    layers = jax_layers(jax, wl.dims, su.init)  # copies
    X, y = jnp.asarray(su.X), jnp.asarray(su.y)

    if wl.kind == "predict":
        proba = jax_proba(jax)
        out = np.asarray(proba(layers, X))
        diff = float(np.abs(out - ref).max())
        check(diff < 1e-4, f"JAX probabilities == segfast's (max abs diff {diff:.1e})")
        t = time_repeats(lambda: proba(layers, X).block_until_ready(), repeats)
        return Result("JAX jit+vmap", t, 2.0 * wl.n_weights * len(su.X) * wl.n_models, len(su.X) * wl.n_models)

    anchor = JaxMLPs(jax, X, y, LR)
    full, tail = anchor.minibatches(su.batches, BATCH)
    loop_steps = [jnp.asarray(su.batches[:, s : s + BATCH]) for s in range(0, su.batches.shape[1], BATCH)]
    state = {}

    def reset():
        state["p"] = jax.tree_util.tree_map(jnp.copy, layers)

    def epoch_scan():
        state["p"] = jax.block_until_ready(anchor.epoch(state["p"], full, tail))

    def epoch_loop():
        p = state["p"]
        for b in loop_steps:
            p, _ = anchor.step(p, b)
        state["p"] = jax.block_until_ready(p)

    def to_numpy(p):  # [(W (N, d_in, d_out), b (N, d_out)), ...] -> segfast's (N, P) layout
        return np.concatenate(
            [np.concatenate([np.asarray(w).reshape(wl.n_models, -1), np.asarray(b)], axis=1) for w, b in p], axis=1
        )

    ref_params, ref_loss = ref
    reset()
    p1, loss0 = anchor.step(state["p"], loop_steps[0])
    got, loss0 = to_numpy(p1), np.asarray(loss0)
    check(
        np.abs(loss0 - ref_loss).max() < 1e-5 and np.abs(got - ref_params).max() < 1e-5,
        f"JAX step 0 == segfast's step (loss max diff {np.abs(loss0 - ref_loss).max():.1e}, "
        f"params {np.abs(got - ref_params).max():.1e}, all {wl.n_models} models)",
    )

    # Pick the driver: compile both (untimed), time one epoch each, keep the faster. Which wins is
    # measured, not assumed: on the 2-core test machine scan won W2 clearly and tied W1 and W3.
    trial = {}
    for name, fn in (("lax.scan", epoch_scan), ("python loop", epoch_loop)):
        reset()
        fn()  # compile
        trial[name] = float("inf")
        for _ in range(2):  # best of two: one epoch alone is too noisy to choose on
            reset()
            start = time.perf_counter()
            fn()
            trial[name] = min(trial[name], time.perf_counter() - start)
    best = min(trial, key=trial.get)
    other = max(trial, key=trial.get)
    t = time_repeats(epoch_scan if best == "lax.scan" else epoch_loop, repeats, reset=reset, warmup=0)
    return Result(
        f"JAX jit+vmap ({best})",
        t,
        6.0 * wl.n_weights * len(su.X),
        len(su.X),
        loss_after=segment_loss(su, to_numpy(state["p"])),
        note=f"{other}: {trial[other]:.3f} s (best of 2 trial epochs)",
        extra={"driver": best, "trial_epoch_s": trial},
    )


# -- W3's memory, in a fresh process ---------------------------------------------------------------------


def memory_probe() -> None:
    """Run segfast's W3 epoch and print the process's peak RSS as JSON (no torch/JAX imported)."""
    wl = WORKLOADS["W3"]
    ds = load_fashion_mnist()
    seg = segfast.segment(ds.y_train, wl.n_models, "iid", seed=SEED)
    stack = segfast.MLPStack(list(wl.dims), n_models=wl.n_models, init="independent", seed=SEED)
    segfast.train(stack, ds.X_train, ds.y_train, seg, epochs=1, batch_size=BATCH, lr=LR)
    data = sum(a.nbytes for a in (ds.X_train, ds.y_train, ds.X_test, ds.y_test) if a is not None)
    print(
        json.dumps(
            {
                "peak_rss": peak_rss_bytes(),
                "ru_maxrss": max_rss_bytes(),
                "data_bytes": data,
                "param_bytes": stack.params.nbytes,
                "torch_or_jax_loaded": "torch" in sys.modules or "jax" in sys.modules,
            }
        )
    )


def measure_w3_memory() -> dict:
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--_memory-probe"], capture_output=True, text=True, check=True
    )
    m = json.loads(out.stdout.strip().splitlines()[-1])
    m["target"] = m["data_bytes"] + 3 * m["param_bytes"] + 100 * MB
    m["pass"] = m["peak_rss"] <= m["target"]
    return m


# -- main -----------------------------------------------------------------------------------------------


def print_results(wl: Workload, results: list, peak: float) -> None:
    train = wl.kind == "train"
    columns = (
        [
            ("  contender", 30, "<"),
            ("s/epoch" if train else "s/call", 8, ">"),
            ("min", 7, ">"),
            ("max", 7, ">"),
            ("samples/s" if train else "rows*models/s", 13, ">"),
            ("GFLOP/s", 8, ">"),
            ("of peak", 7, ">"),
            ("segfast x", 9, ">"),
        ]
        + ([("loss", 6, ">")] if train else [])
        + [("other", 5, ">")]
    )
    table = Table(columns + [("", 0, "<")])
    table.header()
    seg_s = results[0].timing.median
    for r in results:
        t = r.timing
        gf = r.flop / t.median / 1e9
        cells = [
            "  " + r.contender,
            f"{t.median:.3f}",
            f"{t.min:.3f}",
            f"{t.max:.3f}",
            f"{r.items / t.median:,.0f}",
            f"{gf:.1f}",
            f"{gf / peak:.0%}",
            f"{t.median / seg_s:.2f}x",
        ]
        table.row(*cells, *([fmt(r.loss_after, ".3f")] if train else []), fmt(t.foreign_load, ".0%"), r.note)


def targets(res: dict, peak: float, memory: dict | None) -> list:
    """[(target, measured, pass)] for the workloads that ran; pass is None when an anchor is missing."""
    rows = []

    def by(wl, prefix):
        return next((r for r in res.get(wl, []) if r.contender.startswith(prefix)), None)

    def of_peak(wl, goal):
        r = by(wl, "segfast")
        f = r.flop / r.timing.median / 1e9 / peak
        rows.append((f"{wl} segfast >= {goal:.0%} of peak", f"{f:.0%}", f >= goal))

    def faster(wl, prefixes, goal, label):
        seg = by(wl, "segfast")
        ratios = [r.timing.median / seg.timing.median for r in (by(wl, p) for p in prefixes) if r is not None]
        r = min(ratios) if ratios else None  # against the fastest anchor present
        rows.append(
            (
                f"{wl} segfast >= {goal:g}x {label}",
                "n/a" if r is None else f"{r:.2f}x",
                None if r is None else r >= goal,
            )
        )

    for wl in ("W1", "W2"):
        if wl in res:
            of_peak(wl, 0.60)
            faster(wl, ["torch.func"], 2.5, "torch.func vmap")
    if "W3" in res:  # issue 21's targets
        faster("W3", ["torch.func"], 4.0, "torch.func vmap")
        faster("W3", ["torch.func", "JAX"], 3.0, "faster of torch.func/JAX")
        of_peak("W3", 0.60)
    if memory is not None:
        rows.append(
            (
                "W3 peak RSS <= data + 3 x params + 100 MB",
                f"{memory['peak_rss'] / MB:.0f} MB <= {memory['target'] / MB:.0f} MB",
                memory["pass"],
            )
        )
    if "W4" in res:
        of_peak("W4", 0.85)
        faster("W4", ["torch eager"], 1.3, "torch eager loop")
        faster("W4", ["torch.func"], 2.0, "torch.func vmap")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workloads", default="W1,W2,W3,W4", help="comma-separated subset of W1,W2,W3,W4")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats per contender (median reported)")
    ap.add_argument("--quick", action="store_true", help="2 repeats instead of --repeats")
    ap.add_argument("--json", metavar="PATH", help="also write every number to this JSON file")
    ap.add_argument(
        "--budget",
        type=float,
        default=330.0,
        metavar="SECONDS",
        help="anchors not started by then are skipped (a busy machine can slow torch 100x)",
    )
    ap.add_argument("--_memory-probe", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._memory_probe:
        memory_probe()
        return 0
    names = [w.strip().upper() for w in args.workloads.split(",") if w.strip()]
    unknown = [w for w in names if w not in WORKLOADS]
    if unknown:
        ap.error(f"unknown workload(s) {unknown}; choose from {list(WORKLOADS)}")
    repeats = 2 if args.quick else args.repeats
    started = time.perf_counter()

    torch = optional_import("torch")
    jax = optional_import("jax")
    threads = os.cpu_count()
    print(f"{segfast_build()}, OpenMP {segfast.has_openmp}; {cpu_name()}, {threads} cores")
    if torch is None:
        print(TORCH_MISSING)
    else:
        torch.set_num_threads(threads)
        print(f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    if jax is None:
        print(JAX_MISSING)
    else:
        print(f"jax {jax.__version__} ({jax.devices()[0].platform})")
    print(f"timing: 1 warm-up, then median of {repeats} repeats", flush=True)

    # The peak is measured before and after the workloads and the higher one used: on a shared or
    # throttled machine a single measurement can come out low and flatter every fraction.
    wait_for_quiet()
    warm_up_cpu()
    peaks = [measure_peak(torch)]
    ds = load_fashion_mnist()
    results, checks_ok, memory, skipped = {}, True, None, []
    for name in names:
        wl = WORKLOADS[name]
        print(f"\n{wl.describe()}", flush=True)
        su = make_setup(wl, ds)
        rs = []
        try:
            rs.append(announce(run_segfast(su, repeats)))
            if wl.kind == "predict":
                ref = segfast.predict_proba(segfast.MLPStack.from_params(list(wl.dims), su.init), su.X)
            else:
                ref = one_step_reference(su)
            anchors = []
            if torch is not None:
                anchors += [("torch eager loop", run_torch_eager), ("torch.func vmap", run_torch_func)]
                if wl.kind == "train":
                    anchors.append(("torch bmm, hand-written", run_torch_bmm))
            if jax is not None:
                anchors.append(("JAX jit+vmap", run_jax))
            for label, run_anchor in anchors:
                if time.perf_counter() - started > args.budget:
                    skipped.append(f"{name} {label}")
                    print(f"  skipped {label}: the run is past its {args.budget:.0f} s budget", flush=True)
                    continue
                rs.append(announce(run_anchor(torch if label.startswith("torch") else jax, su, repeats, ref)))
        except CheckFailed:
            checks_ok = False
        results[name] = rs
        if name == "W3":
            memory = measure_w3_memory()
    wait_for_quiet()
    peaks.append(measure_peak(torch))
    peak = max(peaks, key=lambda p: p.best)

    print("\nfloat32 GEMM peak, 2048^3 products, all cores, best of 4 rounds of 3 calls, before / after the workloads:")
    print(f"  numpy {' / '.join(f'{p.numpy:.1f}' for p in peaks)} GFLOP/s  [{peak.blas}]")
    if torch is not None:
        print(f"  torch {' / '.join(f'{p.torch:.1f}' for p in peaks)} GFLOP/s")
    print(
        f"  other processes' CPU share while measuring: {' / '.join(fmt(p.foreign_load, '.0%') for p in peaks)}; "
        f"peak = {peak.best:.1f} GFLOP/s (the higher)"
    )
    print(
        "training FLOP = 6 x weights x 60,000 samples; prediction FLOP = 2 x weights x rows x models; "
        "'segfast x' = contender time / segfast time;\n'loss' = the models' mean loss on their own segments "
        "after the epoch (same start, different shuffles: close, not equal);\n'other' = share of the "
        "machine's CPU that other processes (or hypervisor steal) used while the contender was timed"
    )
    for name, rs in results.items():
        print(f"\n{WORKLOADS[name].describe()}")
        if rs:
            print_results(WORKLOADS[name], rs, peak.best)
        if name == "W3" and memory is not None:
            print(
                f"  W3 segfast peak RSS in a fresh process: {memory['peak_rss'] / MB:.0f} MB (VmHWM); target "
                f"data {memory['data_bytes'] / MB:.0f} MB + 3 x params {memory['param_bytes'] / MB:.0f} MB "
                f"+ 100 MB = {memory['target'] / MB:.0f} MB: {'PASS' if memory['pass'] else 'FAIL'}"
            )

    rows = targets({k: v for k, v in results.items() if v}, peak.best, memory)
    print("\ntargets")
    table = Table([("  target", 44, "<"), ("measured", 22, ">"), ("", 12, "<")])
    for what, measured, ok in rows:
        table.row("  " + what, measured, {True: "PASS", False: "FAIL", None: "not measured"}[ok])
    busy = [
        f"{name} {r.contender} {r.timing.foreign_load:.0%}"
        for name, rs in results.items()
        for r in rs
        if r.timing.foreign_load is not None and r.timing.foreign_load > BUSY_WARNING
    ]
    if busy:
        print(
            f"\nWARNING: other processes used > {BUSY_WARNING:.0%} of the CPU during: {', '.join(busy)}; "
            "those timings are not clean, rerun on a quiet machine"
        )
    if skipped:
        print(f"\nWARNING: skipped to stay within --budget {args.budget:.0f} s: {', '.join(skipped)}")
    elapsed = time.perf_counter() - started
    print(f"\nall checks {'passed' if checks_ok else 'DID NOT pass'}; total {elapsed:.0f} s")

    if args.json:
        out = {
            "machine": {
                "cpu": cpu_name(),
                "cores": threads,
                "segfast": segfast_build(),
                "kernel": segfast._core.gemm_kernel(),
                "torch": getattr(torch, "__version__", None),
                "jax": getattr(jax, "__version__", None),
            },
            "peak_gflops": {
                "best": peak.best,
                "blas": peak.blas,
                "measurements": [
                    {"numpy": p.numpy, "torch": p.torch, "other_processes_cpu_share": p.foreign_load} for p in peaks
                ],
            },
            "repeats": repeats,
            "checks_passed": checks_ok,
            "w3_memory": memory,
            "skipped": skipped,
            "workloads": {
                name: {
                    "description": WORKLOADS[name].describe(),
                    "results": [r.to_json(peak.best, rs[0].timing.median) for r in rs],
                }
                for name, rs in results.items()
                if rs
            },
            "targets": [{"target": w, "measured": m, "pass": ok} for w, m, ok in rows],
            "total_seconds": elapsed,
        }
        Path(args.json).write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")
    return 0 if checks_ok else 1


if __name__ == "__main__":
    sys.exit(main())
