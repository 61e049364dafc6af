"""Merge quality on Fashion-MNIST: the table of the merging issue, 3 seeds, mean test accuracy.

Segment models: 784-128-10 (and 784-512-512-10), 10 epochs of plain SGD (lr 0.05, batch 32)
on segments of the first 55,000 training images; validation = the last 5,000 training images;
test = the official 10,000 test images. REPAIR calibrates on 5,000 random training rows.

    python bench/quality_merge.py [--seeds 0 1 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import segfast

SETTINGS = [
    # name, dims, N, scheme, init, merges: list of (label, merge kwargs)
    (
        "N=10 IID, shared init",
        [784, 128, 10],
        10,
        "iid",
        "shared",
        [
            ("uniform", {}),
            ("rank", {"method": "rank"}),
            ("greedy", {"method": "greedy"}),
            ("learned", {"method": "learned"}),
        ],
    ),
    (
        "N=10 IID, independent init",
        [784, 128, 10],
        10,
        "iid",
        "independent",
        [
            ("uniform", {}),
            ("align", {"align": True}),
            ("align+repair", {"align": True, "repair": True}),
            ("align+repair+rescale", {"align": True, "repair": True, "rescale": True}),
            ("align+learned+repair", {"method": "learned", "align": True, "repair": True}),
            ("align+learned per unit", {"method": "learned", "coefficients": "unit", "align": True}),
            (
                "align+learned per unit+repair",
                {"method": "learned", "coefficients": "unit", "align": True, "repair": True},
            ),
            ("rank", {"method": "rank"}),
            ("cluster-best", {"method": "cluster-best", "align": True}),
            ("median+align", {"method": "median", "align": True}),
        ],
    ),
    (
        "N=50 IID, independent init",
        [784, 128, 10],
        50,
        "iid",
        "independent",
        [("uniform", {}), ("align+repair", {"align": True, "repair": True})],
    ),
    (
        "N=10 Dirichlet(0.5), shared init",
        [784, 128, 10],
        10,
        "dirichlet",
        "shared",
        [
            ("uniform", {}),
            ("size-weighted", {"method": "weighted", "weights": "sizes"}),
            ("align+size-weighted+repair", {"method": "weighted", "weights": "sizes", "align": True, "repair": True}),
            ("learned", {"method": "learned"}),
            ("learned per unit", {"method": "learned", "coefficients": "unit"}),
        ],
    ),
    (
        "784-512-512-10, N=10 IID, independent init",
        [784, 512, 512, 10],
        10,
        "iid",
        "independent",
        [("uniform", {}), ("align+repair", {"align": True, "repair": True})],
    ),
]


def train_segment_models(split, dims, n, scheme, init, seed):
    """The shared setting: 10 epochs of plain SGD (lr 0.05, batch 32) on each segment."""
    segs = segfast.segment(split.y_train, n, scheme, alpha=0.5, seed=seed)
    stack = segfast.MLPStack(dims, n, init=init, seed=seed)
    segfast.train(stack, split.X_train, split.y_train, segs, epochs=10, lr=0.05, batch_size=32, seed=seed)
    return stack, segs


def run(seeds, only=None):
    data = segfast.datasets.load("fashion-mnist")
    split = segfast.holdout(data, val=5000)
    results = []
    for name, dims, n, scheme, init, merges in SETTINGS:
        if only and not any(o in name for o in only):
            continue
        rows = {label: [] for label, _ in merges}
        rows.update({"best segment model": [], "mean segment model": [], "soft vote": []})
        info = {"silhouette": []}
        start = time.perf_counter()
        for seed in seeds:
            stack, segs = train_segment_models(split, dims, n, scheme, init, seed)
            calib = split.X_train[np.random.default_rng(seed).choice(len(split.X_train), 5000, replace=False)]
            test_acc = segfast.evaluate(stack, *split.test).accuracy
            rows["best segment model"].append(test_acc[np.argmin(segfast.evaluate(stack, *split.val).loss)])
            rows["mean segment model"].append(test_acc.mean())
            probs = segfast.predict_proba(stack, split.X_test).mean(axis=0)
            rows["soft vote"].append(np.mean(probs.argmax(1) == split.y_test))
            for label, kw in merges:
                kw = dict(kw)
                if kw.get("weights") == "sizes":
                    kw["weights"] = segs
                if kw.pop("repair", False):
                    kw["repair"] = calib
                merged, details = segfast.merge(stack, val=split.val, seed=seed, return_details=True, **kw)
                rows[label].append(segfast.evaluate(merged, *split.test).accuracy[0])
                if "silhouette" in details:
                    info["silhouette"].append(details["silhouette"])
        seconds = time.perf_counter() - start
        summary = {label: 100 * float(np.mean(v)) for label, v in rows.items()}
        results.append(
            {
                "setting": name,
                "seeds": list(seeds),
                "test_accuracy_pct": summary,
                "per_seed": {k: [100 * float(x) for x in v] for k, v in rows.items()},
                "silhouette": info["silhouette"],
                "seconds": seconds,
            }
        )
        print(f"\n{name}  ({len(seeds)} seeds, {seconds:.0f} s)")
        for label, value in summary.items():
            spread = 100 * np.std(rows[label])
            print(f"  {label:<28} {value:6.2f}%  (+-{spread:.2f})")
        if info["silhouette"]:
            print(f"  silhouette of the cluster-best clustering: {np.round(info['silhouette'], 3).tolist()}")
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="*", help="run only settings whose name contains one of these")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    results = run(args.seeds, args.only)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
