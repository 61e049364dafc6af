"""Speed of merging: segfast's aligned merge and k-means against numpy + scipy and scikit-learn.

In one run:
  * aligned "merge many" of 100 trained models of 784-512-10 and of 784-512-512-10: segfast
    against the same algorithm written in numpy + scipy.optimize.linear_sum_assignment
    (weight matching to the reference, then rounds of matching each model to the mean of the
    others, in turn, until no assignment changes);
  * k-means (k = 10, k-means++ start, one init) of 1,000 flattened 784-32-10 models against
    scikit-learn's KMeans.
Each pair is checked to agree before it is timed. Targets: aligned merges >= 5x the numpy +
scipy version; k-means at least as fast as scikit-learn.

    python bench/bench_merge.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from functools import partial
from pathlib import Path

import numpy as np

import segfast
from segfast import _core


def _tests_reference():
    """tests/reference.py, loaded from its file: the tests' numpy oracles are not a package."""
    path = Path(__file__).resolve().parent.parent / "tests" / "reference.py"
    spec = importlib.util.spec_from_file_location("segfast_tests_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The same merge-many alignment in numpy + scipy: the tests' oracle, its products in float32 here
# (as a numpy user would write it; the tests compute them in float64).
align_many = _tests_reference().align_many

HAVE_SCIPY = importlib.util.find_spec("scipy") is not None


def numpy_merge_many(dims, params, reference):
    aligned, perms = align_many(dims, params, reference, rounds=10, dtype=np.float32)
    return aligned.mean(axis=0), perms


# ---- the benchmark --------------------------------------------------------------------------


def trained_stack(dims, n_models, epochs, seed=0):
    data = segfast.datasets.load("fashion-mnist")
    segs = segfast.segment(data.y_train, n_models, "iid", seed=seed)
    stack = segfast.MLPStack(dims, n_models, init="independent", seed=seed)
    segfast.train(stack, data.X_train, data.y_train, segs, epochs=epochs, seed=seed)
    return stack


def timed(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), out


def line(name, ours, anchor, anchor_name):
    print(f"  {name:<34} segfast {ours:8.3f} s   {anchor_name} {anchor:8.3f} s   speed-up {anchor / ours:6.2f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", type=int, default=100)
    args = parser.parse_args()
    print(f"segfast {segfast.__version__}, gemm kernel {_core.gemm_kernel()}, {_core.available_threads()} threads")
    results = {}

    if not HAVE_SCIPY:
        print("scipy not installed: skipping the aligned-merge comparison")
    else:
        for dims in ([784, 512, 10], [784, 512, 512, 10]):
            name = "-".join(map(str, dims))
            stack = trained_stack(dims, args.models, epochs=2)
            ref = 0
            ours, (merged, details) = timed(
                partial(segfast.merge, stack, align=True, return_details=True), args.repeats
            )
            aligned = segfast.align(stack, ref)
            anchor, (np_mean, np_perms) = timed(partial(numpy_merge_many, dims, stack.params, ref), args.repeats)
            same = float(np.mean(np.all(np_perms == aligned.permutations, axis=1)))
            gap = float(np.abs(np_mean - merged.params[0]).max())
            print(
                f"\naligned merge of {args.models} models of {name} ({details['align_iterations']} alignment passes): "
                f"{100 * same:.0f}% of permutations identical to numpy+scipy, max |diff| of merged weights {gap:.2e}"
            )
            line(f"align + uniform merge, {name}", ours, anchor, "numpy+scipy")
            results[name] = anchor / ours

    try:
        from sklearn.cluster import KMeans
    except ImportError:
        KMeans = None
        print("\nscikit-learn not installed: skipping the k-means comparison")
    if KMeans is not None:
        stack = trained_stack([784, 32, 10], 1000, epochs=1)
        X = stack.params
        ours, out = timed(lambda: segfast.cluster(stack, k=10, align=False), args.repeats)
        ours_km, km = timed(lambda: _core.kmeans(X, 10, 0, 300, -1), args.repeats)
        anchor, sk = timed(
            lambda: KMeans(10, init="k-means++", n_init=1, random_state=0, algorithm="lloyd").fit(X), args.repeats
        )
        print(
            f"\nk-means, k=10, of 1000 models of 784-32-10 ({X.shape[1]} parameters each): inertia segfast "
            f"{km[2]:.1f} ({km[3]} iterations), scikit-learn {sk.inertia_:.1f} ({sk.n_iter_} iterations)"
        )
        line("k-means (kernel only)", ours_km, anchor, "scikit-learn")
        line("segfast.cluster(k=10) incl. silhouette", ours, anchor, "scikit-learn")
        results["kmeans"] = anchor / ours_km

    print("\ntargets:")
    for key, value in results.items():
        target = 1.0 if key == "kmeans" else 5.0
        print(f"  {key:<20} {value:6.2f}x  (target >= {target:.0f}x)  {'PASS' if value >= target else 'FAIL'}")


if __name__ == "__main__":
    main()
