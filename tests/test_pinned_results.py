"""Pinned results: the bits that train, rounds, align, merge, cluster and ensemble produce on fixed
seeds, hashed. A refactor that claims "no behaviour change" must leave every hash as it is; a
change that means to alter results updates the table and says why in its commit.

The hashes depend on the gemm kernel set (sums run in a different order), so there is one
table per kernel set; CI runs the suite on both. They were taken before the refactor of issue 16
and stayed unchanged through it.
"""

import hashlib

import numpy as np

import segfast
from conftest import blobs
from segfast import MLPStack

PINNED = {
    "avx512": {
        "train": "572a251958508bbb",
        "train_hflip": "c6d44d01a1e92a30",
        "merge_uniform": "b89f0ff6bb3efa30",
        "merge_weighted": "b87f7f1bf28377e1",
        "merge_loss": "ea3e9ba686b4bc71",
        "merge_rank": "aec441a78fb8ed46",
        "merge_greedy": "c44232ecb7600f5a",
        "merge_median": "29bae1beb6711dac",
        "merge_trimmed": "66d6098011dba208",
        "merge_cluster-best": "a232e81fa2945785",
        "merge_align_repair_rescale": "0c44236d88e96ea7",
        "merge_cluster-merge": "4fa78fe678906cc3",
        "align": "d8eae718d210e330",
        "cluster": "197162eb744e3e43",
        "ensemble_hard": "0b78ffe9eadb79fd",
        "ensemble_soft": "1509cdce940b5656",
        "ensemble_weighted": "e069a769da29f1e9",
        "ensemble_stacking": "0db9668754f629a9",
        "ensemble_competence": "1d8fd195c303964b",
        "rounds_fused": "e3a46bb6edff675e",
        "rounds_rank_fedavgm": "06d069531b76a790",
    },
    "reference": {
        "train": "7dfd19d87413239f",
        "train_hflip": "a9b2139c6e9df79c",
        "merge_uniform": "a7715983fca2f3b5",
        "merge_weighted": "29ed355a78cd7648",
        "merge_loss": "1c77049857965b64",
        "merge_rank": "38298f1f7750de71",
        "merge_greedy": "b86789bed9033dce",
        "merge_median": "ca35eabc984365aa",
        "merge_trimmed": "a334b6564d36a748",
        "merge_cluster-best": "c8d3e5f7cd318e56",
        "merge_align_repair_rescale": "e4154466d20242b1",
        "merge_cluster-merge": "e15bc2f9c9f73334",
        "align": "30ed398925fad025",
        "cluster": "e911dc296886ccb1",
        "ensemble_hard": "0b78ffe9eadb79fd",
        "ensemble_soft": "166b60c4dc57ce58",
        "ensemble_weighted": "b4d3b7b8cb8315b8",
        "ensemble_stacking": "4e751cb025761f25",
        "ensemble_competence": "9279a13a13db804d",
        "rounds_fused": "dfc663eda5806d20",
        "rounds_rank_fedavgm": "aee6b7f70ce95ab8",
    },
}


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def results() -> dict:
    rng = np.random.default_rng(2024)
    X, y = blobs(rng, n=1200, d=16, classes=4)
    Xv, yv = blobs(np.random.default_rng(7), n=300, d=16, classes=4)
    seg = segfast.segment(y, 8, "dirichlet", alpha=0.5, seed=3)
    out = {}

    stack = MLPStack([16, 12, 4], 8, seed=1)
    hist = segfast.train(
        stack,
        X,
        y,
        seg,
        epochs=np.arange(1, 9) % 3 + 1,
        batch_size=16,
        lr=0.05,
        momentum=0.9,
        weight_decay=1e-4,
        proximal_mu=0.01,
        seed=5,
        n_jobs=2,
    )
    out["train"] = _digest(stack.params, hist.loss)
    flipped = MLPStack([16, 8, 4], 8, seed=2)
    segfast.train(flipped, X, y, seg, epochs=2, augment="hflip", seed=1, n_jobs=2)
    out["train_hflip"] = _digest(flipped.params)

    for method in ("uniform", "weighted", "loss", "rank", "greedy", "median", "trimmed", "cluster-best"):
        kw = {"weights": seg} if method == "weighted" else {"trim": 0.25} if method == "trimmed" else {}
        merged = segfast.merge(stack, method, val=(Xv, yv), seed=0, n_jobs=2, **kw)
        out[f"merge_{method}"] = _digest(merged.params)
    out["merge_align_repair_rescale"] = _digest(
        segfast.merge(stack, "uniform", val=(Xv, yv), align=True, repair=X[:200], rescale=True, n_jobs=2).params
    )
    out["merge_cluster-merge"] = _digest(segfast.merge(stack, "cluster-merge", k=2, seed=0, n_jobs=2).params)
    out["align"] = _digest(segfast.align(stack, 2, n_jobs=2).params)
    clustering = segfast.cluster(stack, k=None, seed=0, n_jobs=2)
    out["cluster"] = _digest(clustering.labels, clustering.centroids.params)

    for method in ("hard", "soft", "weighted", "stacking", "competence"):
        ens = segfast.Ensemble(stack, method, tiebreak=segfast.merge(stack), n_jobs=2)
        ens.fit(Xv, yv, X_train=X, y_train=y, segments=seg)
        out[f"ensemble_{method}"] = _digest(ens.predict_proba(X[:300]))

    res = segfast.rounds(
        [16, 12, 4],
        X,
        y,
        seg,
        rounds=3,
        local_epochs=[1, 2],
        lr=0.05,
        momentum=0.5,
        seed=4,
        val=(Xv, yv),
        n_jobs=2,
        progress=False,
    )
    out["rounds_fused"] = _digest(
        res.global_model.params,
        res.local_models.params,
        res.best_model.params,
        np.array([h["global_accuracy"] for h in res.history]),
    )
    res = segfast.rounds(
        [16, 12, 4],
        X,
        y,
        seg,
        rounds=3,
        merge={"method": "rank", "align": True},
        fraction=0.5,
        server_lr=0.8,
        server_momentum=0.5,
        proximal_mu=0.01,
        lr_decay=0.9,
        seed=6,
        val=(Xv, yv),
        val_segments=False,
        n_jobs=2,
        progress=False,
    )
    out["rounds_rank_fedavgm"] = _digest(res.global_model.params, res.local_models.params)
    return out


def test_results_are_the_pinned_bits():
    kernel = segfast._core.gemm_kernel()
    assert kernel in PINNED, f"no pinned results for the {kernel!r} gemm kernels: pin them from a trusted build"
    got = results()
    changed = {k: (PINNED[kernel].get(k), v) for k, v in got.items() if PINNED[kernel].get(k) != v}
    assert not changed, f"results changed ({kernel} kernels): {changed}"


if __name__ == "__main__":  # prints the table for the kernels in use (SEGFAST_GEMM=reference for the other)
    print(segfast._core.gemm_kernel(), results())
