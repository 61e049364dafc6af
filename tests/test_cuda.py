"""The CUDA path: a clear error where it cannot run, and on a GPU the same results as the CPU
on the same minibatches (float32 tolerance: the GPU sums in another order)."""
import numpy as np
import pytest

import segfast
from segfast import MLPStack, Segments

from conftest import blobs

gpu = pytest.mark.skipif(not segfast.cuda_available(), reason="needs a CUDA build and a GPU")

# Weights after a few epochs: float32 sums in another order drift by about 1e-6 a step.
ATOL, RTOL = 2e-4, 1e-3


@pytest.fixture
def problem(rng):
    X, y = blobs(rng, n=700, d=36, classes=5)
    # Unequal segments, none a multiple of the batch size: last minibatches of every size.
    sizes = [61, 200, 7, 150, 282]
    order = rng.permutation(len(X))
    bounds = np.cumsum([0] + sizes)
    seg = Segments.from_indices([order[a:b] for a, b in zip(bounds[:-1], bounds[1:])])
    return X, y, seg


def test_device_must_be_cpu_or_cuda(problem):
    X, y, seg = problem
    stack = MLPStack([36, 8, 5], 5)
    calls = [
        lambda: segfast.train(stack, X, y, seg, device="gpu"),
        lambda: segfast.predict_proba(stack, X, device="gpu"),
        lambda: segfast.evaluate(stack, X, y, device=None),
        lambda: segfast.merge(stack, device="CUDA"),
        lambda: segfast.Ensemble(stack, device="gpu").predict(X),
        lambda: segfast.rounds([36, 8, 5], X, y, seg, rounds=1, progress=False, device="gpu"),
        lambda: segfast.SegmentClassifier(n_segments=2, device="gpu").fit(X, y),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda'"):
            call()


@pytest.mark.skipif(segfast.cuda_available(), reason="a GPU is present")
def test_cuda_without_gpu_or_cuda_build_says_which_is_missing(problem):
    X, y, seg = problem
    stack = MLPStack([36, 8, 5], 5)
    before = stack.params.copy()
    want = "no usable GPU" if segfast.has_cuda else "this build has none"
    calls = [
        lambda: segfast.train(stack, X, y, seg, device="cuda"),
        lambda: segfast.predict_proba(stack, X, device="cuda"),
        lambda: segfast.evaluate(stack, X, y, device="cuda"),
        lambda: segfast.merge(stack, device="cuda"),
        lambda: segfast.Ensemble(stack, device="cuda").predict(X),
        lambda: segfast.rounds([36, 8, 5], X, y, seg, rounds=1, progress=False, device="cuda"),
        lambda: segfast.SegmentClassifier(n_segments=2, device="cuda").fit(X, y),
    ]
    for call in calls:
        with pytest.raises(RuntimeError, match=want):
            call()
    assert np.array_equal(stack.params, before)


@gpu
@pytest.mark.parametrize("dims", [[36, 5], [36, 19, 5], [36, 70, 33, 5], [36, 16, 16, 16, 5]])
def test_predict_and_evaluate_match_the_cpu(rng, dims):
    X, y = blobs(rng, n=1000, d=36, classes=5)
    stack = MLPStack(dims, 7, init="independent", seed=2)
    np.testing.assert_allclose(segfast.predict_proba(stack, X, device="cuda"), segfast.predict_proba(stack, X),
                               atol=1e-5)
    few = X[:5]  # few rows: the small-rows kernel
    np.testing.assert_allclose(segfast.predict_proba(stack, few, device="cuda"), segfast.predict_proba(stack, few),
                               atol=1e-5)
    gpu_eval, cpu_eval = segfast.evaluate(stack, X, y, device="cuda"), segfast.evaluate(stack, X, y)
    np.testing.assert_allclose(gpu_eval.loss, cpu_eval.loss, rtol=1e-5)
    np.testing.assert_allclose(gpu_eval.accuracy, cpu_eval.accuracy, atol=1.5 / len(X))


@gpu
@pytest.mark.parametrize("options", [
    dict(),
    dict(momentum=0.9, weight_decay=1e-3),
    dict(proximal_mu=0.1, momentum=0.5),
    dict(batch_size=16, augment=None, epochs=[3, 1, 0, 2, 3]),
    dict(batch_size=8, momentum=0.9),  # minibatches of <= 8 rows: the small-rows forward kernel
    dict(batch_size=64, weight_decay=1e-3),  # 64 rows: the tiled kernel for the forward and most updates
])
@pytest.mark.parametrize("dims", [[36, 24, 5], [36, 40, 12, 5]])
def test_training_matches_the_cpu_on_the_same_minibatches(problem, dims, options):
    X, y, seg = problem
    options = {"epochs": 3, "lr": 0.05, "seed": 4, **options}
    cpu = MLPStack(dims, 5, init="independent", seed=1)
    gpu_stack = cpu.copy()
    cpu_hist = segfast.train(cpu, X, y, seg, **options)
    gpu_hist = segfast.train(gpu_stack, X, y, seg, device="cuda", **options)
    np.testing.assert_allclose(gpu_stack.params, cpu.params, atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(gpu_hist.loss, cpu_hist.loss, rtol=1e-3)  # NaN where a model sat out
    assert np.array_equal(gpu_hist.epochs, cpu_hist.epochs)


@gpu
@pytest.mark.parametrize("batch_size", [6, 32])
def test_the_tiled_kernel_and_the_special_ones_agree(problem, monkeypatch, batch_size):
    X, y, seg = problem
    start = MLPStack([36, 40, 12, 5], 5, seed=1)
    cpu = start.copy()
    segfast.train(cpu, X, y, seg, epochs=2, momentum=0.9, weight_decay=1e-3, batch_size=batch_size)
    for choice in ("tiled", "auto"):
        monkeypatch.setenv("SEGFAST_CUDA_KERNELS", choice)
        stack = start.copy()
        segfast.train(stack, X, y, seg, epochs=2, momentum=0.9, weight_decay=1e-3, batch_size=batch_size,
                      device="cuda")
        np.testing.assert_allclose(stack.params, cpu.params, atol=ATOL, rtol=RTOL, err_msg=choice)


@gpu
def test_flips_follow_the_cpu_streams(rng):
    X = rng.standard_normal((300, 64)).astype(np.float32)
    y = (X[:, :8].sum(axis=1) > 0).astype(np.int64)
    seg = segfast.segment(y, 3, seed=0)
    cpu = MLPStack([64, 10, 2], 3, seed=3)
    gpu_stack = cpu.copy()
    segfast.train(cpu, X, y, seg, epochs=2, augment="hflip", seed=9)
    segfast.train(gpu_stack, X, y, seg, epochs=2, augment="hflip", seed=9, device="cuda")
    np.testing.assert_allclose(gpu_stack.params, cpu.params, atol=ATOL, rtol=RTOL)


@gpu
def test_gpu_training_is_deterministic(problem):
    X, y, seg = problem
    runs = []
    for _ in range(2):
        stack = MLPStack([36, 24, 5], 5, seed=1)
        segfast.train(stack, X, y, seg, epochs=2, momentum=0.9, device="cuda")
        runs.append(stack.params)
    assert np.array_equal(runs[0], runs[1])


@gpu
def test_divergence_on_the_gpu_rolls_back_like_the_cpu(problem):
    X, y, seg = problem
    X = X * 50  # with lr 50 most models blow up, some in their first epoch, some later
    cpu = MLPStack([36, 24, 5], 5, seed=1)
    gpu_stack = cpu.copy()
    with pytest.warns(RuntimeWarning, match="diverged"):
        cpu_hist = segfast.train(cpu, X, y, seg, epochs=2, lr=50.0, momentum=0.9)
    with pytest.warns(RuntimeWarning, match="diverged"):
        gpu_hist = segfast.train(gpu_stack, X, y, seg, epochs=2, lr=50.0, momentum=0.9, device="cuda")
    assert np.array_equal(gpu_hist.diverged, cpu_hist.diverged)
    assert np.array_equal(gpu_hist.epochs, cpu_hist.epochs)
    assert np.isfinite(gpu_stack.params).all()
    # Those that diverged in their first epoch are back at the start, exactly.
    first = gpu_hist.diverged & (gpu_hist.epochs == 0)
    assert first.any()
    assert np.array_equal(gpu_stack.params[first], MLPStack([36, 24, 5], 5, seed=1).params[first])


@gpu
def test_rounds_on_the_gpu_match_the_cpu(problem):
    X, y, seg = problem
    kw = dict(rounds=3, local_epochs=2, eval=(X, y), progress=False, seed=2, momentum=0.5)
    cpu = segfast.rounds([36, 24, 5], X, y, seg, **kw)
    on_gpu = segfast.rounds([36, 24, 5], X, y, seg, device="cuda", **kw)
    np.testing.assert_allclose(on_gpu.global_model.params, cpu.global_model.params, atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(on_gpu.local_models.params, cpu.local_models.params, atol=ATOL, rtol=RTOL)
    for a, b in zip(on_gpu.history, cpu.history):
        assert abs(a["global_accuracy"] - b["global_accuracy"]) <= 2 / len(X)
    # Not fused (rank needs every model), and FedProx: the same on both devices too.
    kw.update(merge="rank", proximal_mu=0.05, eval_segments=False)
    cpu = segfast.rounds([36, 24, 5], X, y, seg, **kw)
    on_gpu = segfast.rounds([36, 24, 5], X, y, seg, device="cuda", **kw)
    np.testing.assert_allclose(on_gpu.global_model.params, cpu.global_model.params, atol=ATOL, rtol=RTOL)


@gpu
def test_merge_and_ensemble_on_the_gpu_match_the_cpu(problem):
    X, y, seg = problem
    stack = MLPStack([36, 24, 5], 5, init="shared", seed=1)
    segfast.train(stack, X, y, seg, epochs=2)
    for method in ("uniform", "rank", "loss"):
        a = segfast.merge(stack, method, val=(X, y), device="cuda")
        b = segfast.merge(stack, method, val=(X, y))
        np.testing.assert_allclose(a.params, b.params, atol=1e-6)
    for method, kw in [("soft", {}), ("hard", {}), ("weighted", {}), ("stacking", {"combiner": "weights"})]:
        a = segfast.Ensemble(stack, method, device="cuda", **kw).fit(X, y)
        b = segfast.Ensemble(stack, method, **kw).fit(X, y)
        if method != "hard":  # vote shares jump at near-ties; the predictions are compared below
            np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), atol=1e-4)
        assert np.mean(a.predict(X) == b.predict(X)) > 0.99


def test_the_gpu_paths_host_side_combination_equals_the_cores(rng):
    """On the GPU the ensemble sums the models' outputs on the host; that sum must be the one
    _core.combine fuses into its CPU forward pass (checked here on CPU scores)."""
    from segfast import _core
    from segfast._device import combine_scores

    X, _ = blobs(rng, n=300, d=12, classes=4)
    stack = MLPStack([12, 9, 4], 6, init="independent", seed=5)
    dims, params = list(stack.dims), stack.params
    probs = segfast.predict_proba(stack, X)
    log_probs = np.log(probs.astype(np.float64))
    model_w = rng.random(6)
    row_w = (rng.random((300, 6)) > 0.3).astype(np.float32)
    for mode, scores in [("proba", probs), ("votes", probs), ("log_proba", log_probs)]:
        for mw, rw in [(None, None), (model_w, None), (None, row_w), (model_w, row_w)]:
            want = _core.combine(dims, params, X, mode, mw, rw, 1)
            np.testing.assert_allclose(combine_scores(scores, mode, mw, rw), want, rtol=1e-5, atol=1e-5)
    got, votes = combine_scores(probs, "proba", None, row_w, with_votes=True)
    want, want_votes = _core.combine(dims, params, X, "proba", None, row_w, 1, with_votes=True)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(votes, want_votes)
