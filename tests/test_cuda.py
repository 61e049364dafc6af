"""The CUDA path: a clear error where it cannot run, and on a GPU the same results as the CPU
on the same minibatches (float32 tolerance: the GPU sums in another order)."""

import numpy as np
import pytest

import segfast
from conftest import blobs
from segfast import MLPStack, Segments

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
        with pytest.raises(ValueError, match="device must be 'cpu', 'cuda' or 'auto'"):
            call()


def test_device_auto_is_the_gpu_where_one_is_usable(problem):
    X, y, seg = problem
    want = "cuda" if segfast.cuda_available() else "cpu"
    from segfast._device import check_device

    assert check_device("auto") == want
    start = MLPStack([36, 8, 5], 5, seed=1)
    auto, there = start.copy(), start.copy()
    segfast.train(auto, X, y, seg, epochs=1, device="auto")
    segfast.train(there, X, y, seg, epochs=1, device=want)
    assert np.array_equal(auto.params, there.params)
    assert np.array_equal(segfast.predict_proba(auto, X, device="auto"), segfast.predict_proba(auto, X, device=want))
    ens = segfast.Ensemble(auto, "soft", device="auto")
    assert np.array_equal(ens.predict_proba(X), segfast.Ensemble(auto, "soft", device=want).predict_proba(X))


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
    np.testing.assert_allclose(
        segfast.predict_proba(stack, X, device="cuda"), segfast.predict_proba(stack, X), atol=1e-5
    )
    few = X[:5]  # few rows: the small-rows kernel
    np.testing.assert_allclose(
        segfast.predict_proba(stack, few, device="cuda"), segfast.predict_proba(stack, few), atol=1e-5
    )
    gpu_eval, cpu_eval = segfast.evaluate(stack, X, y, device="cuda"), segfast.evaluate(stack, X, y)
    np.testing.assert_allclose(gpu_eval.loss, cpu_eval.loss, rtol=1e-5)
    np.testing.assert_allclose(gpu_eval.accuracy, cpu_eval.accuracy, atol=1.5 / len(X))


@gpu
@pytest.mark.parametrize("dims", [[36, 300, 40], [36, 129, 33, 7]])  # > 32 classes; > 128 units (two tiles)
@pytest.mark.parametrize("rows", [1, 127, 1000])
def test_prediction_kernels_on_odd_shapes(rng, dims, rows):
    X = rng.standard_normal((rows, 36)).astype(np.float32)
    stack = MLPStack(dims, 3, init="independent", seed=2)
    for log in (False, True):
        got = segfast._core.cuda_predict_proba(list(dims), stack.params, X, log=log)
        want = segfast._core.predict_proba(list(dims), stack.params, X, 1)
        np.testing.assert_allclose(np.exp(got) if log else got, want, atol=1e-5)


@gpu
@pytest.mark.parametrize("hidden", [1, 10, 33, 257])  # one CTA; one; clusters of 4; of 16 (non-portable)
@pytest.mark.parametrize(
    "options",
    [
        dict(),
        dict(momentum=0.9, weight_decay=1e-3, batch_size=8),
        dict(proximal_mu=0.1, batch_size=16, epochs=[2, 1, 0, 2, 1]),
        # one-row steps: 300 of them for the last model, where float32 rounding grows fastest
        dict(batch_size=1, momentum=0.5, epochs=1, lr=0.01),
    ],
)
def test_the_resident_epoch_matches_the_layered_path_and_the_cpu(rng, monkeypatch, hidden, options):
    """resident_epoch.cu (one launch an epoch, weights on chip) against the per-layer path and the
    CPU: 37 features (not a multiple of 4), 7 classes, a one-row segment and segments shorter
    than a minibatch."""
    X, y = blobs(rng, n=500, d=37, classes=7)
    sizes = [1, 5, 33, 100, 300]
    order = rng.permutation(len(X))
    bounds = np.cumsum([0] + sizes)
    seg = Segments.from_indices([order[a:b] for a, b in zip(bounds[:-1], bounds[1:])])
    options = {"epochs": 2, "lr": 0.05, "seed": 4, **options}
    start = MLPStack([37, hidden, 7], 5, init="independent", seed=1)
    cpu = start.copy()
    cpu_hist = segfast.train(cpu, X, y, seg, **options)
    for kernels in ("resident", "layered"):
        monkeypatch.setenv("SEGFAST_CUDA_KERNELS", kernels)
        stack = start.copy()
        hist = segfast.train(stack, X, y, seg, device="cuda", **options)
        np.testing.assert_allclose(stack.params, cpu.params, atol=ATOL, rtol=RTOL, err_msg=kernels)
        np.testing.assert_allclose(hist.loss, cpu_hist.loss, rtol=1e-3, err_msg=kernels)


@gpu
def test_a_gpu_out_of_memory_is_a_memory_error_that_says_so(problem):
    X, y, _ = problem
    trainer = segfast._core.CudaTrainer([36, 24, 5], X, y)
    with pytest.raises(MemoryError, match="out of memory: .* MiB more were needed"):
        trainer.resize_models(10**9)  # 1.4 TB
    stack = MLPStack([36, 24, 5], 5, seed=1)
    trainer.set_models(stack.params)  # still usable
    out = np.empty_like(stack.params)
    trainer.get_models(out)
    assert np.array_equal(out, stack.params)


@gpu
def test_the_benchmark_shapes_take_the_resident_epoch():
    plan = segfast._core._testing.cuda_resident_plan
    for dims, n, rows, one_step in [
        ([784, 128, 10], 10, 32, False),
        ([784, 128, 10], 100, 32, False),
        ([784, 32, 10], 1000, 32, False),
        ([784, 16, 10], 1_000_000, 6, True),
    ]:
        for momentum in (False, True):
            assert plan(dims, n, rows, momentum, one_step)["ok"], (dims, n, rows, momentum)
    assert not plan([784, 128, 10], 100, 33, False)["ok"]  # minibatches over 32 rows
    assert not plan([36, 40, 12, 5], 5, 32, False)["ok"]  # two hidden layers
    # One step an epoch and a model too big for one CTA: the per-layer path, measured faster.
    assert not plan([784, 256, 10], 10_000, 6, False, True)["ok"]
    assert plan([784, 256, 10], 10_000, 6, False, False)["ok"]


@gpu
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_the_resident_epoch_at_full_size(rng, monkeypatch, momentum):
    """784-128-10 with minibatches of 32: the benchmark's shape, the largest shared-memory
    blocks (momentum needs them for the velocity too); 100 models, so the parameters (40 MB)
    also cross the staged copies, which must be exact."""
    X = rng.standard_normal((2000, 784)).astype(np.float32)
    y = rng.integers(0, 10, 2000)
    seg = segfast.segment(y, 100, seed=0)
    start = MLPStack([784, 128, 10], 100, init="independent", seed=1)
    cpu = start.copy()
    segfast.train(cpu, X, y, seg, epochs=1, lr=0.01, momentum=momentum, seed=3)
    monkeypatch.setenv("SEGFAST_CUDA_KERNELS", "resident")
    stack = start.copy()
    segfast.train(stack, X, y, seg, epochs=1, lr=0.01, momentum=momentum, seed=3, device="cuda")
    np.testing.assert_allclose(stack.params, cpu.params, atol=ATOL, rtol=RTOL)
    monkeypatch.setenv("SEGFAST_CUDA_PINNED", "0")
    plain = start.copy()
    segfast.train(plain, X, y, seg, epochs=1, lr=0.01, momentum=momentum, seed=3, device="cuda")
    assert np.array_equal(plain.params, stack.params)
    assert np.array_equal(
        segfast.predict_proba(plain, X, device="cuda"), segfast.predict_proba(stack, X, device="cuda")
    )


@gpu
@pytest.mark.parametrize(
    "options",
    [
        dict(),
        dict(momentum=0.9, weight_decay=1e-3),
        dict(proximal_mu=0.1, momentum=0.5),
        dict(batch_size=16, augment=None, epochs=[3, 1, 0, 2, 3]),
        dict(batch_size=8, momentum=0.9),  # minibatches of <= 8 rows: the small-rows forward kernel
        dict(batch_size=64, weight_decay=1e-3),  # 64 rows: the tiled kernel for the forward and most updates
    ],
)
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
        segfast.train(stack, X, y, seg, epochs=2, momentum=0.9, weight_decay=1e-3, batch_size=batch_size, device="cuda")
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
    kw = dict(rounds=3, local_epochs=2, val=(X, y), progress=False, seed=2, momentum=0.5)
    cpu = segfast.rounds([36, 24, 5], X, y, seg, **kw)
    on_gpu = segfast.rounds([36, 24, 5], X, y, seg, device="cuda", **kw)
    np.testing.assert_allclose(on_gpu.global_model.params, cpu.global_model.params, atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(on_gpu.local_models.params, cpu.local_models.params, atol=ATOL, rtol=RTOL)
    for a, b in zip(on_gpu.history, cpu.history):
        assert abs(a["global_accuracy"] - b["global_accuracy"]) <= 2 / len(X)
    # Not fused (rank needs every model), and FedProx: the same on both devices too.
    kw.update(merge="rank", proximal_mu=0.05, val_segments=False)
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
