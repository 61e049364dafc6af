"""Speed of consensus prediction: 100 segment models of 784-128-10 over the 10,000 test images.

In one run, after checking that both sides agree:
  * soft vote: segfast.Ensemble(method="soft") against the same computation with torch.func
    (stack_module_state + vmap of the forward, softmax, mean over models), same threads;
  * competence (KNORA-E, k=20, 5,000 validation rows): segfast against DESlib's KNORAE over
    the same models (wrapped as scikit-learn classifiers), when DESlib is installed.
Targets: soft vote >= 3x torch.func.vmap; competence >= 10x DESlib.

    python bench/bench_ensemble.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import segfast
from anchors import TorchFuncMLPs, stacked_from_segfast
from segfast import _core


def median_seconds(fn, repeats, warmup=1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), float(min(times)), float(max(times))


def torch_soft_vote(stack, X):
    """anchors.TorchFuncMLPs' vmapped probabilities of the stack's models, averaged."""
    import torch

    torch.set_num_threads(os.cpu_count())
    anchor = TorchFuncMLPs(torch, stack.dims)
    params = stacked_from_segfast(torch, stack.dims, stack.params)
    x = torch.from_numpy(X)

    def run():
        return anchor.proba(params, x).mean(dim=0)

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    data = segfast.datasets.load("fashion-mnist")
    split = segfast.holdout(data, val=5000)
    segs = segfast.segment(split.y_train, 100, "iid", seed=0)
    stack = segfast.MLPStack([784, 128, 10], 100, init="shared", seed=0)
    segfast.train(stack, split.X_train, split.y_train, segs, epochs=2)
    X = split.X_test
    print(
        f"segfast {segfast.__version__}, gemm kernel {_core.gemm_kernel()}, {_core.available_threads()} threads; "
        f"100 models of 784-128-10, {len(X)} test rows"
    )
    targets = []

    soft = segfast.Ensemble(stack, "soft")
    ours = median_seconds(lambda: soft.predict_proba(X), args.repeats)
    try:
        import torch  # noqa: F401

        run = torch_soft_vote(stack, X)
        gap = float(np.abs(run().numpy() - soft.predict_proba(X)).max())
        anchor = median_seconds(run, args.repeats)
        print(f"soft vote: max |segfast - torch| = {gap:.1e}")
        print(f"  segfast  {ours[0] * 1e3:8.1f} ms (min {ours[1] * 1e3:.1f}, max {ours[2] * 1e3:.1f})")
        print(f"  torch.func vmap {anchor[0] * 1e3:8.1f} ms (min {anchor[1] * 1e3:.1f}, max {anchor[2] * 1e3:.1f})")
        targets.append(("soft vote vs torch.func.vmap", anchor[0] / ours[0], 3.0))
    except ImportError:
        print("PyTorch not installed: pip install '.[bench]' for the torch anchor")
        print(f"  segfast soft vote {ours[0] * 1e3:8.1f} ms")

    knora = segfast.Ensemble(stack, "competence", k=20, knora="eliminate").fit(*split.val)
    ours = median_seconds(lambda: knora.predict(X), args.repeats)
    try:
        from deslib.des import KNORAE
        from sklearn.base import BaseEstimator, ClassifierMixin

        class OneModel(ClassifierMixin, BaseEstimator):
            """One segfast model as a fitted scikit-learn classifier, for DESlib's pool."""

            def __init__(self, model=None):
                self.model = model

            def fit(self, X, y):
                return self

            def predict_proba(self, X):
                return segfast.predict_proba(self.model, X)[0]

            def predict(self, X):
                return self.predict_proba(X).argmax(axis=1)

        pool = [OneModel(stack[i]) for i in range(stack.n_models)]
        for m in pool:
            m.classes_ = np.arange(10)
            m.n_features_in_ = 784
        des = KNORAE(pool, k=20).fit(*split.val)
        agree = float(np.mean(des.predict(X) == knora.predict(X)))
        anchor = median_seconds(lambda: des.predict(X), max(1, args.repeats // 2))
        print(f"competence (KNORA-E, k=20): predictions identical to DESlib on {100 * agree:.2f}% of rows")
        print(f"  segfast  {ours[0] * 1e3:8.1f} ms")
        print(f"  DESlib KNORAE {anchor[0] * 1e3:8.1f} ms")
        targets.append(("competence vs DESlib KNORA-E", anchor[0] / ours[0], 10.0))
    except ImportError:
        print("DESlib not installed (pip install deslib): segfast competence alone")
        print(f"  segfast competence {ours[0] * 1e3:8.1f} ms")
    except AttributeError as error:  # DESlib 0.3.7 calls scikit-learn APIs removed in 1.6+
        import sklearn

        print(f"DESlib does not run with scikit-learn {sklearn.__version__} ({error}): segfast competence alone")
        print(f"  segfast competence (KNORA-E, k=20) {ours[0] * 1e3:8.1f} ms")

    print("\ntargets:")
    for name, ratio, target in targets:
        print(f"  {name:<32} {ratio:6.2f}x  (target >= {target:.0f}x)  {'PASS' if ratio >= target else 'FAIL'}")


if __name__ == "__main__":
    main()
