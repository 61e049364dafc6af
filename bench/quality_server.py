"""Server optimisers on Fashion-MNIST: FedAvg, FedAvgM, FedAdam, FedYogi, FedAdagrad in one table.

100 Dirichlet(0.3) segments of the first 55,000 training images, 10 taking part a round
(fraction 0.1), one local epoch of plain SGD (lr 0.05, batch 32), 784-128-10, 50 rounds, 3 seeds.
Each optimiser's server_lr is chosen from a small grid by mean validation accuracy at round 50
(the last 5,000 training images); its rounds to 80% validation accuracy and its test accuracy
(the 10,000 test images) at round 50 are reported for that choice.

    python bench/quality_server.py [--seeds 0 1 2] [--rounds 50] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import segfast

# name: (rounds() options, server_lr grid)
OPTIMIZERS = {
    "FedAvg": ({"server_optimizer": "sgd"}, [1.0]),
    "FedAvgM (momentum 0.9)": ({"server_optimizer": "sgd", "server_momentum": 0.9}, [0.1, 0.3, 1.0]),
    "FedAdam": ({"server_optimizer": "adam"}, [0.003, 0.01, 0.03, 0.1, 0.3]),
    "FedYogi": ({"server_optimizer": "yogi"}, [0.003, 0.01, 0.03, 0.1, 0.3]),
    "FedAdagrad": ({"server_optimizer": "adagrad"}, [0.003, 0.01, 0.03, 0.1, 0.3]),
}


def run(seeds, n_rounds: int):
    data = segfast.datasets.load("fashion-mnist")
    split = segfast.holdout(data, val=5000)
    table = {}
    for name, (options, grid) in OPTIMIZERS.items():
        runs = {}
        for server_lr in grid:
            curves, tests = [], []
            for seed in seeds:
                segs = segfast.segment(split.y_train, 100, "dirichlet", alpha=0.3, seed=seed)
                result = segfast.rounds(
                    [784, 128, 10],
                    split.X_train,
                    split.y_train,
                    segs,
                    rounds=n_rounds,
                    fraction=0.1,
                    val=split.val,
                    val_segments=False,
                    seed=seed,
                    progress=False,
                    lr=0.05,
                    batch_size=32,
                    server_lr=server_lr,
                    **options,
                )
                curves.append([h["global_accuracy"] for h in result.history])
                tests.append(segfast.evaluate(result.global_model, *split.test).accuracy[0])
            runs[server_lr] = (np.array(curves), np.array(tests))
        best = max(runs, key=lambda lr: runs[lr][0][:, -1].mean())
        curves, tests = runs[best]
        reached = [int(np.argmax(c >= 0.8)) + 1 if (c >= 0.8).any() else None for c in curves]
        table[name] = {
            "server_lr": best,
            "val_accuracy_last": float(curves[:, -1].mean()),
            "test_accuracy_last": float(tests.mean()),
            "test_std": float(tests.std()),
            "rounds_to_80": reached,
            "grid_val_last": {lr: float(runs[lr][0][:, -1].mean()) for lr in runs},
        }
    return table


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--json")
    args = parser.parse_args()
    t = time.perf_counter()
    table = run(args.seeds, args.rounds)
    print(f"N=100 Dirichlet(0.3), fraction 0.1, 784-128-10, {args.rounds} rounds, seeds {args.seeds}")
    print("| server | server_lr (chosen on val) | rounds to 80% val (per seed) | val acc | test acc | grid: val acc |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, row in table.items():
        grid = ", ".join(f"{lr:g}: {100 * v:.2f}" for lr, v in row["grid_val_last"].items())
        reached = ", ".join("-" if r is None else str(r) for r in row["rounds_to_80"])
        print(
            f"| {name} | {row['server_lr']:g} | {reached} | {100 * row['val_accuracy_last']:.2f} | "
            f"{100 * row['test_accuracy_last']:.2f} +- {100 * row['test_std']:.2f} | {grid} |"
        )
    print(f"total {time.perf_counter() - t:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"table": table, "seeds": args.seeds, "rounds": args.rounds}, f, indent=2, default=str)


if __name__ == "__main__":
    main()
