"""Rounds (federated averaging) quality on Fashion-MNIST: the table of the rounds issue.

784-128-10, shared start, size-weighted averaging, plain SGD (lr 0.05, batch 32), segments of
the first 55,000 training images, 20 rounds, 3 seeds; accuracy on the 10,000 test images after
every round (evaluation only: no decision of the run looks at it).

    python bench/quality_rounds.py [--seeds 0 1 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import segfast

PROGRESSIVE = segfast.schedule.progressive(start=1, factor=2, every=2, max=8)  # 1,1,2,2,4,4,8,8,...

SETTINGS = [
    ("N=10 IID, E=1", 10, "iid", 1, {}),
    ("N=10 IID, progressive", 10, "iid", PROGRESSIVE, {}),
    ("N=100 IID, progressive", 100, "iid", PROGRESSIVE, {}),
    ("N=100 IID, progressive, server momentum 0.5", 100, "iid", PROGRESSIVE, {"server_momentum": 0.5}),
    ("N=10 Dirichlet(0.5), progressive", 10, "dirichlet", PROGRESSIVE, {}),
]


def run(seeds, only=None):
    data = segfast.datasets.load("fashion-mnist")
    split = segfast.holdout(data, val=5000)
    out = []
    for name, n, scheme, local, extra in SETTINGS:
        if only and not any(o in name for o in only):
            continue
        curves, seconds = [], []
        for seed in seeds:
            segs = segfast.segment(split.y_train, n, scheme, alpha=0.5, seed=seed)
            start = segfast.MLPStack([784, 128, 10], 1, seed=seed)
            t = time.perf_counter()
            result = segfast.rounds(
                start,
                split.X_train,
                split.y_train,
                segs,
                rounds=20,
                local_epochs=local,
                merge="weighted",
                eval=split.test,
                seed=seed,
                progress=False,
                lr=0.05,
                batch_size=32,
                **extra,
            )
            seconds.append(time.perf_counter() - t)
            curves.append([100 * h["global_accuracy"] for h in result.history])
        curves = np.array(curves)
        mean = curves.mean(axis=0)
        reach = [int(np.argmax(c >= 85.0)) + 1 if (c >= 85.0).any() else None for c in curves]
        out.append(
            {
                "setting": name,
                "final_mean": float(mean[-1]),
                "final_per_seed": curves[:, -1].tolist(),
                "curve_mean": mean.tolist(),
                "rounds_to_85": reach,
                "seconds": seconds,
            }
        )
        print(
            f"{name:<46} round 20: {mean[-1]:6.2f}%  (seeds {np.round(curves[:, -1], 2).tolist()})  "
            f"rounds to 85%: {reach}  best {mean.max():.2f}%  {np.mean(seconds):.0f} s/run"
        )
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--json")
    args = parser.parse_args()
    results = run(args.seeds, args.only)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
