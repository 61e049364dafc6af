"""User-level differential privacy (DP-FedAvg) on Fashion-MNIST: accuracy against epsilon.

1,000 IID segments of the first 55,000 training images (55 rows each), each taking part with
probability 0.1 a round (Poisson sampling), one local epoch of plain SGD (lr 0.05, batch 32),
784-128-10, 50 rounds, update clip 0.5 (about the median update norm here), delta 1e-5, noise
multipliers 0.5, 1.0 and 1.5, 3 seeds; beside them the same rounds without privacy (FedAvg on a
fixed-size sample of 0.1). Accuracy: the 10,000 test images. Speed: the median seconds of a
round's training and merge, DP over the non-private run, measured in the same process.

    python bench/quality_dp.py [--seeds 0 1 2] [--rounds 50] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import segfast

NOISE = (0.5, 1.0, 1.5)
CLIP, DELTA, FRACTION = 0.5, 1e-5, 0.1
CHECKPOINTS = (10, 25, 50)


def run(seeds, n_rounds: int):
    data = segfast.datasets.load("fashion-mnist")
    split = segfast.holdout(data, val=5000)
    common = dict(
        rounds=n_rounds, fraction=FRACTION, val=split.test, val_segments=False, progress=False, lr=0.05, batch_size=32
    )
    curves: dict = {z: [] for z in (None, *NOISE)}
    epsilons: dict = {}
    seconds: dict = {z: [] for z in curves}
    for seed in seeds:
        segs = segfast.segment(split.y_train, 1000, "iid", seed=seed)
        for z in curves:
            # a fixed dp seed, so the table reproduces; a real run keeps its key secret (the default)
            dp = None if z is None else dict(clip=CLIP, noise_multiplier=z, delta=DELTA, seed=1000 + seed)
            result = segfast.rounds([784, 128, 10], split.X_train, split.y_train, segs, seed=seed, dp=dp, **common)
            curves[z].append([h["global_accuracy"] for h in result.history])
            seconds[z].append(np.median([h["seconds_train"] + h["seconds_merge"] for h in result.history]))
            if z is not None:
                epsilons[z] = [h["epsilon"] for h in result.history]  # the same for every seed
    return {z: np.array(c) for z, c in curves.items()}, epsilons, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--json")
    args = parser.parse_args()
    t = time.perf_counter()
    curves, epsilons, seconds = run(args.seeds, args.rounds)
    marks = [r for r in CHECKPOINTS if r <= args.rounds]
    print(f"N=1,000 IID, Poisson q={FRACTION}, clip {CLIP}, delta {DELTA}, 784-128-10, seeds {args.seeds}")
    print("test accuracy (mean over seeds) and epsilon after each number of rounds")
    header = " | ".join(f"round {r}: acc / eps" for r in marks)
    print(f"| noise multiplier | {header} | acc at the last round with eps <= 8 | s/round (vs no DP) |")
    print("| --- |" + " --- |" * (len(marks) + 2))
    plain = np.median(seconds[None])
    for z, c in curves.items():
        mean = c.mean(axis=0)
        if z is None:
            cells = " | ".join(f"{100 * mean[r - 1]:.2f} / -" for r in marks)
            print(f"| no DP (FedAvg, q = {FRACTION}) | {cells} | - | {plain:.3f} |")
            continue
        eps = np.array(epsilons[z])
        cells = " | ".join(f"{100 * mean[r - 1]:.2f} / {eps[r - 1]:.2f}" for r in marks)
        within = np.flatnonzero(eps <= 8)  # the last round still within the budget (no choice on test)
        best = f"{100 * mean[within[-1]]:.2f} (round {within[-1] + 1})" if len(within) else "-"
        ratio = np.median(seconds[z]) / plain
        print(f"| {z} | {cells} | {best} | {np.median(seconds[z]):.3f} ({ratio:.2f}x) |")
    print(f"total {time.perf_counter() - t:.0f} s")
    if args.json:
        out = {
            str(z): {"accuracy": c.tolist(), "epsilon": epsilons.get(z), "seconds": seconds[z]}
            for z, c in curves.items()
        }
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
