"""Clustered rounds on rotated Fashion-MNIST: the table of the clustered-rounds issue.

40 segments of the first 55,000 training images (IID, equal sizes), 10 each with every image
rotated 0, 90, 180 or 270 degrees. Each segment's own held-out rows: 1,000 of the 10,000 test
images, rotated like the segment (the 10 segments of a rotation share its test set out
disjointly). 784-128-10, one local epoch a round, uniform merge, lr 0.05, batch 32, 20 rounds.

Compared, per seed: one global FedAvg model; clustered rounds with k=4 by loss (IFCA) and by
weights (k-means every round); the oracle (one FedAvg model per rotation, trained on that
rotation's segments only). Reported: the mean over segments of the accuracy on their own rows
after round 20, the adjusted Rand index of the clusters against the rotations after round 5,
and the seconds of training and merging a round (evaluation left out: val_segments=False and
the same val rows for every run), clustered over plain.

    python bench/quality_clusters.py [--seeds 0 1 2] [--rounds 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from sklearn.metrics import adjusted_rand_score

import segfast

N_SEGMENTS, ROTATIONS, K = 40, 4, 4
LABELS = {
    "plain": "FedAvg (one model)",
    "loss": "clusters=4 by loss (IFCA)",
    "weights": "clusters=4 by weights",
    "oracle": "oracle (one model per rotation)",
}


def rotated(X: np.ndarray, quarter_turns: int) -> np.ndarray:
    return np.rot90(X.reshape(-1, 28, 28), quarter_turns, axes=(1, 2)).reshape(len(X), 784).copy()


def rotated_data(split, seed: int):
    """(X, y, segments, val X, val y, segment_val, each segment's rotation)."""
    order = np.random.default_rng(seed).permutation(len(split.y_train))
    segments = np.array_split(order, N_SEGMENTS)
    rotation = np.arange(N_SEGMENTS) // (N_SEGMENTS // ROTATIONS)
    X = split.X_train.copy()
    for rows, quarter in zip(segments, rotation):
        X[rows] = rotated(split.X_train[rows], quarter)
    X_test, y_test = split.test
    val_X = np.concatenate([rotated(X_test, q) for q in range(ROTATIONS)])
    val_y = np.tile(y_test, ROTATIONS)
    per_rotation = N_SEGMENTS // ROTATIONS
    test_parts = np.array_split(np.arange(len(y_test)), per_rotation)
    segment_val = [q * len(y_test) + test_parts[i % per_rotation] for i, q in enumerate(rotation)]
    return X, split.y_train, segments, val_X, val_y, segment_val, rotation


def run(seeds, n_rounds: int):
    data = segfast.datasets.load("fashion-mnist")
    split = segfast.holdout(data, val=5000)
    common = dict(rounds=n_rounds, merge="uniform", lr=0.05, batch_size=32, progress=False, val_segments=False)
    rows: dict = {key: [] for key in LABELS}
    ari, seconds = {"loss": [], "weights": []}, {"plain": [], "loss": [], "weights": []}
    for seed in seeds:
        X, y, segments, val_X, val_y, segment_val, rotation = rotated_data(split, seed)
        val = (val_X, val_y)
        plain = segfast.rounds([784, 128, 10], X, y, segments, val=val, segment_val=segment_val, seed=seed, **common)
        rows["plain"].append(plain.history[-1]["own_accuracy_mean"])
        seconds["plain"].append(_round_seconds(plain))
        for by in ("loss", "weights"):
            result = segfast.rounds(
                [784, 128, 10],
                X,
                y,
                segments,
                val=val,
                segment_val=segment_val,
                seed=seed,
                clusters=K,
                cluster_by=by,
                **common,
            )
            rows[by].append(result.history[-1]["own_accuracy_mean"])
            ari[by].append(adjusted_rand_score(rotation, result.history[min(4, n_rounds - 1)]["clusters"]))
            seconds[by].append(_round_seconds(result))
        own = []
        for q in range(ROTATIONS):
            members = np.flatnonzero(rotation == q)
            result = segfast.rounds(
                [784, 128, 10],
                X,
                y,
                [segments[i] for i in members],
                val=val,
                segment_val=[segment_val[i] for i in members],
                seed=seed,
                **common,
            )
            own.append(result.history[-1]["own_accuracy_mean"])
        rows["oracle"].append(float(np.mean(own)))
    return rows, ari, seconds


def _round_seconds(result) -> float:
    """The median seconds of a round's training and merging (the assignment included)."""
    return float(np.median([h["seconds_train"] + h["seconds_merge"] for h in result.history]))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--json")
    args = parser.parse_args()
    t = time.perf_counter()
    rows, ari, seconds = run(args.seeds, args.rounds)
    fedavg, oracle = np.mean(rows["plain"]), np.mean(rows["oracle"])
    print(f"rotated Fashion-MNIST, {N_SEGMENTS} segments x {ROTATIONS} rotations, 784-128-10, seeds {args.seeds}")
    print(f"mean per-segment test accuracy on own rows after round {args.rounds} (mean +- std over seeds)")
    print("| method | accuracy | vs FedAvg | vs oracle | ARI at round 5 (min) | s/round, train+merge |")
    print("| --- | --- | --- | --- | --- | --- |")
    plain_seconds = np.median(seconds["plain"])
    for key, values in rows.items():
        ari_text = f"{np.mean(ari[key]):.3f} ({np.min(ari[key]):.3f})" if key in ari else "-"
        sec = "-"
        if key in seconds:
            sec = f"{np.median(seconds[key]):.3f} ({np.median(seconds[key]) / plain_seconds:.2f}x plain)"
        print(
            f"| {LABELS[key]} | {100 * np.mean(values):.2f} +- {100 * np.std(values):.2f} | "
            f"{100 * (np.mean(values) - fedavg):+.2f} | {100 * (np.mean(values) - oracle):+.2f} | {ari_text} | {sec} |"
        )
    print(f"total {time.perf_counter() - t:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "ari": ari, "seconds": seconds, "seeds": args.seeds}, f, indent=2)


if __name__ == "__main__":
    main()
