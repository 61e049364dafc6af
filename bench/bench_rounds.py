"""Speed of rounds (FedAvg simulated on one machine): segfast against the same simulation
written with torch.func (stack_module_state + vmap), in one run.

20 rounds, one local epoch per round, plain SGD (lr 0.05, batch 32), uniform averaging, the
global model evaluated on the 10,000 test images after every round; IID segments of the
60,000 Fashion-MNIST training images: 100 segments of 784-128-10 and 1,000 of 784-32-10.
Targets: >= 2.5x torch.func with 100 segments, >= 3x with 1,000; segfast's merge, broadcast
and evaluation <= 10% of its local training time per round. Then the same rounds with rounds()'
default evaluation (val_segments="auto": the segment models and their vote scored on a val
subsample each round, on every val row in the last): evaluation <= 20% of a round.

    python bench/bench_rounds.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import segfast
from anchors import TorchFuncMLPs
from segfast import _core

LR, BATCH = 0.05, 32


def torch_fedavg(dims, X, y, segs, X_test, y_test, rounds, start_state, seed=0):
    """The simulation a PyTorch user writes: all models step together through vmap
    (anchors.TorchFuncMLPs), the global model broadcast before and averaged after each round."""
    import torch

    torch.set_num_threads(os.cpu_count())
    anchor = TorchFuncMLPs(torch, dims)
    g = {k: torch.from_numpy(v).clone() for k, v in start_state.items()}
    Xt, yt, Xe, ye = map(torch.from_numpy, (X, y, X_test, y_test))
    seg = torch.from_numpy(np.stack([segs[i] for i in range(len(segs))]))  # (N, L): equal sizes
    n_models, length = seg.shape
    gen = torch.Generator().manual_seed(seed)
    accuracy, times = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        params = {k: v.expand(n_models, *v.shape).clone() for k, v in g.items()}  # broadcast
        order = torch.gather(seg, 1, torch.argsort(torch.rand(n_models, length, generator=gen), dim=1))
        anchor.epoch(params, Xt, yt, [order[:, s : s + BATCH] for s in range(0, length, BATCH)], LR)
        g = {k: v.mean(dim=0) for k, v in params.items()}  # uniform merge
        accuracy.append(float((anchor.logits(g, Xe).argmax(1) == ye).float().mean()))
        times.append(time.perf_counter() - start)
    return times, accuracy


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    data = segfast.datasets.load("fashion-mnist")
    X, y, X_test, y_test = data.X_train, data.y_train, data.X_test, data.y_test
    print(
        f"segfast {segfast.__version__}, gemm kernel {_core.gemm_kernel()}, {_core.available_threads()} threads, "
        f"{args.rounds} rounds of FedAvg (E=1, uniform), global model evaluated each round"
    )
    try:
        import torch  # noqa: F401

        have_torch = True
    except ImportError:
        have_torch = False
        print("PyTorch not installed: pip install '.[bench]' for the anchor")
    targets = []
    for dims, n, goal in (([784, 128, 10], 100, 2.5), ([784, 32, 10], 1000, 3.0)):
        segs = segfast.segment(y, n, "iid", seed=0)
        start = segfast.MLPStack(dims, 1, seed=0)
        t = time.perf_counter()
        result = segfast.rounds(
            start,
            X,
            y,
            segs,
            rounds=args.rounds,
            val=(X_test, y_test),
            val_segments=False,
            progress=False,
            lr=LR,
            batch_size=BATCH,
        )
        total = time.perf_counter() - t
        h = result.history
        per_round = np.median([r["seconds_train"] + r["seconds_merge"] + r["seconds_eval"] for r in h])
        overhead = np.median([(r["seconds_merge"] + r["seconds_eval"]) / r["seconds_train"] for r in h])
        name = f"{n} segments of {'-'.join(map(str, dims))}"
        print(
            f"\n{name}: segfast {per_round:.3f} s/round (median; {total:.1f} s for {args.rounds} rounds), "
            f"final accuracy {100 * h[-1]['global_accuracy']:.2f}%; merge + broadcast + evaluation = "
            f"{100 * overhead:.1f}% of local training"
        )
        targets.append((f"{name}: overhead <= 10% of training", 100 * overhead, "%", overhead <= 0.10))
        epoch = []  # the training a round contains, alone: one train() epoch of the same N models
        for _ in range(5):
            stack = segfast.MLPStack.from_params(dims, np.repeat(start.params, n, axis=0))
            t = time.perf_counter()
            segfast.train(stack, X, y, segs, epochs=1, lr=LR, batch_size=BATCH)
            epoch.append(time.perf_counter() - t)
        ratio = per_round / float(np.median(epoch))
        print(
            f"  a round (global model evaluated) = {ratio:.2f}x one train() epoch of the same models "
            f"({np.median(epoch):.3f} s)"
        )
        targets.append((f"{name}: a round <= 1.2x its training epoch", ratio, "x", ratio <= 1.2))
        defaults = segfast.rounds(
            start, X, y, segs, rounds=args.rounds, val=(X_test, y_test), progress=False, lr=LR, batch_size=BATCH
        ).history
        defaults = defaults[:-1] or defaults  # the last round scores the segment models on every val row
        share = np.median(
            [r["seconds_eval"] / (r["seconds_train"] + r["seconds_merge"] + r["seconds_eval"]) for r in defaults]
        )
        print(
            f"  with the default evaluation (segment models and their vote on {defaults[0]['segments_val_rows']} "
            f"val rows a round): evaluation {100 * share:.1f}% of a round (median)"
        )
        targets.append((f"{name}: default evaluation <= 20% of a round", 100 * share, "%", share <= 0.20))
        if have_torch:
            times, acc = torch_fedavg(dims, X, y, segs, X_test, y_test, args.rounds, start.state_dict(0))
            anchor = float(np.median(times))
            print(
                f"  torch.func vmap {anchor:.3f} s/round (median), final accuracy {100 * acc[-1]:.2f}%  "
                f"-> segfast {anchor / per_round:.2f}x"
            )
            targets.append((f"{name}: >= {goal}x torch.func", anchor / per_round, "x", anchor / per_round >= goal))
    print("\ntargets:")
    for label, value, unit, ok in targets:
        print(f"  {label:<58} {value:7.2f}{unit}  {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
