"""Ensemble quality on Fashion-MNIST: the table of the consensus-prediction issue.

Same setting as bench/quality_merge.py (784-128-10, 10 epochs of plain SGD on segments of the
first 55,000 training images, validation = the last 5,000, test = the official 10,000), 3
seeds, mean test accuracy. Stacking and competence learn from the 5,000 validation rows, which
the segment models never saw: part of their gain is that extra labelled data.

    python bench/quality_ensemble.py [--seeds 0 1 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import segfast
from quality_merge import train_segment_models

SETTINGS = [
    ("N=10 IID, independent init", 10, "iid", "independent"),
    ("N=50 IID, independent init", 50, "iid", "independent"),
    ("N=10 Dirichlet(0.5), shared init", 10, "dirichlet", "shared"),
]

METHODS = [
    ("soft vote", dict(method="soft")),
    ("hard vote (merged tiebreak)", dict(method="hard", tiebreak="merged")),
    ("weighted vote", dict(method="weighted")),
    ("stacking, weights", dict(method="stacking", combiner="weights")),
    ("stacking, logistic", dict(method="stacking", combiner="logistic")),
    ("competence (KNORA-U, k=20)", dict(method="competence", k=20, knora="union")),
    ("competence (KNORA-E, k=20)", dict(method="competence", k=20, knora="eliminate")),
    ("competence (train region, k=20)", dict(method="competence", k=20, region="train")),
]


def run(seeds):
    data = segfast.datasets.load("fashion-mnist")
    split = segfast.holdout(data, val=5000)
    results = []
    for name, n, scheme, init in SETTINGS:
        scores = {label: [] for label, _ in METHODS}
        seconds = {label: 0.0 for label, _ in METHODS}
        contested = []
        for seed in seeds:
            stack, segs = train_segment_models(split, [784, 128, 10], n, scheme, init, seed)
            merged = segfast.merge(stack, align=init == "independent", val=split.val)
            for label, kw in METHODS:
                kw = dict(kw)
                if kw.get("tiebreak") == "merged":
                    kw["tiebreak"] = merged
                start = time.perf_counter()
                ens = segfast.Ensemble(stack, **kw)
                if kw.get("region") == "train":
                    ens.fit(*split.val, X_train=split.X_train, y_train=split.y_train, segments=segs)
                else:
                    ens.fit(*split.val)
                scores[label].append(ens.score(*split.test))
                seconds[label] += time.perf_counter() - start
                if label == "soft vote":
                    contested.append(float(np.mean(ens.agreement(split.X_test) < 0.5)))
        summary = {label: 100 * float(np.mean(v)) for label, v in scores.items()}
        results.append(
            {
                "setting": name,
                "test_accuracy_pct": summary,
                "per_seed": {k: [100 * x for x in v] for k, v in scores.items()},
                "seconds": seconds,
                "share_contested": contested,
            }
        )
        print(f"\n{name} ({len(seeds)} seeds)")
        for label, value in summary.items():
            print(
                f"  {label:<34} {value:6.2f}%  (+-{100 * np.std(scores[label]):.2f})  "
                f"{seconds[label] / len(seeds):6.2f} s fit+predict"
            )
        print(f"  test rows where under half the models agree with the soft vote: {100 * np.mean(contested):.1f}%")
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    results = run(args.seeds)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
