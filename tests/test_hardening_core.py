"""Reproducers of the hardening probe's findings in the kernels' boundary: non-finite or huge
parameters in the assignment solver and k-means, parameter counts that wrap, thread counts
without bound, weights whose sum overflows, and arguments that slipped past their checks."""

import ast
import re
from pathlib import Path

import numpy as np
import pytest

import segfast
from conftest import blobs
from segfast import MLPStack, Segments, _core
from segfast.align import permute_units


@pytest.fixture
def trained(rng):
    X, y = blobs(rng, n=300, d=12, classes=3)
    stack = MLPStack([12, 9, 7, 3], 4, init="independent", seed=2)
    segfast.train(stack, X, y, segfast.segment(y, 4, seed=0), epochs=2)
    return stack, X, y


def test_permute_units_is_what_align_does(trained):
    stack, _, _ = trained
    aligned = segfast.align(stack, 0)
    assert np.array_equal(permute_units(stack.dims, stack.params, aligned.permutations), aligned.params)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_parameters_are_refused_not_a_crash(trained, bad):
    stack, X, y = trained
    forged = stack.copy()
    forged.params[1, 5] = bad
    for call in (
        lambda: segfast.align(forged, 0),
        lambda: segfast.merge(forged, align=True),
        lambda: segfast.cluster(forged, k=2),
    ):
        with pytest.raises(ValueError, match="finite"):
            call()
    with pytest.raises(ValueError, match="finite"):
        _core.align_stack(list(forged.dims), forged.params.copy(), 0, 2, 1)
    with pytest.raises(ValueError, match="finite"):
        _core.kmeans(forged.params, 2, 0, 10, 1)


@pytest.mark.parametrize("power", [70, 100])  # 1.2e21 and 1.3e30: the similarities overflowed float32
def test_huge_finite_parameters_align_and_cluster_like_the_unscaled_ones(trained, power):
    stack, _, _ = trained
    big = MLPStack.from_params(stack.dims, stack.params * np.float32(2.0**power))
    want, got = segfast.align(stack, 0), segfast.align(big, 0)
    assert np.array_equal(got.permutations, want.permutations)
    assert np.array_equal(got.params, permute_units(big.dims, big.params, want.permutations))
    merged = segfast.merge(big, align=True)
    assert np.isfinite(merged.params).all()
    a, b = segfast.cluster(stack, k=2), segfast.cluster(big, k=2)
    assert np.array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(b.centroids.params, a.centroids.params * np.float32(2.0**power))


def test_assignment_solver_refuses_non_finite_scores():
    score = np.random.default_rng(0).random((9, 9)).astype(np.float32)
    score[3, 4] = np.nan
    for start in ("cold", "prices"):
        with pytest.raises(ValueError, match="finite"):
            _core._testing.max_assignment(score, start=start)


def test_parameter_counts_that_wrap_are_refused():
    with pytest.raises(ValueError, match="2\\^48"):
        _core.n_params([2**31 - 1] * 6)  # 5 * 2^62 parameters: wrapped size_t before
    with pytest.raises(ValueError, match="2\\^48"):
        _core.n_params([2**24, 2**24, 2**24])


def test_thread_counts_are_capped_at_the_machine(trained):
    stack, X, _ = trained
    cores = _core.available_threads()
    assert _core.resolve_threads(200_000_000) == cores
    from segfast._threads import resolve_n_jobs

    assert resolve_n_jobs(2**31) == cores and resolve_n_jobs(2**200) == cores
    want = segfast.predict_proba(stack, X[:48])
    assert np.array_equal(
        segfast.Ensemble(stack, "soft", n_jobs=2 * 10**8).predict_proba(X[:48]),
        segfast.Ensemble(stack, "soft").predict_proba(X[:48]),
    )
    assert np.array_equal(segfast.predict_proba(stack, X[:48], n_jobs=2**31), want)


def test_weights_near_the_float_limit_are_normalised_not_overflowed(trained):
    stack, X, _ = trained
    huge = np.full(stack.n_models, 1e308)
    np.testing.assert_allclose(
        segfast.merge(stack, "weighted", weights=huge).params, segfast.merge(stack).params, rtol=1e-6, atol=1e-7
    )
    weighted = segfast.Ensemble(stack, "weighted", weights=huge).predict_proba(X)
    np.testing.assert_allclose(weighted, segfast.Ensemble(stack, "soft").predict_proba(X), rtol=1e-5, atol=1e-6)
    assert weighted.sum(axis=1).min() > 0.99


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda s: segfast.merge(s, "uniform", temperature=True), "temperature"),
        (lambda s: segfast.merge(s, "uniform", margin=True), "margin"),
        (lambda s: segfast.merge(s, "uniform", margin=-0.5), "margin"),
        (lambda s: segfast.merge(s, "uniform", margin=float("nan")), "margin"),
        (lambda s: segfast.cluster(s, k=2, max_iter=True), "max_iter"),
        (lambda s: segfast.cluster(s, k_max=1), "k_max"),
        (lambda s: segfast.cluster(s, k=2, seed=2**200), "seed"),
    ],
)
def test_arguments_that_slipped_past_their_checks(trained, call, name):
    stack, _, _ = trained
    with pytest.raises(ValueError, match=name):
        call(stack)


def test_train_refuses_seeds_and_epochs_beyond_their_integers(trained):
    stack, X, y = trained
    seg = segfast.segment(y, 4, seed=0)
    before = stack.params.copy()
    with pytest.raises(ValueError, match="start_epoch"):
        segfast.train(stack, X, y, seg, start_epoch=2**63)
    with pytest.raises(ValueError, match="seed"):
        segfast.train(stack, X, y, seg, seed=2**200)
    assert np.array_equal(stack.params, before)


def test_segments_validate_needs_a_row_count():
    seg = Segments(np.array([0, 5, 9]), np.array([0, 1, 3]))
    for n_rows in (float("nan"), 3.5, True, None):
        with pytest.raises(ValueError, match="n_rows"):
            seg.validate(n_rows)
    with pytest.raises(ValueError, match="outside"):
        seg.validate(6)


def test_numbers_beyond_their_fields_name_the_argument(trained):
    stack, X, y = trained
    seg = segfast.segment(y, 4, seed=0)
    for kw, name in [
        ({"proximal_mu": 2**1100}, "proximal_mu"),
        ({"weight_decay": 2**1100}, "weight_decay"),
        ({"lr": -(2**1100)}, "lr"),
        ({"batch_size": 2**200}, "batch_size"),
    ]:
        with pytest.raises(ValueError, match=name):
            segfast.train(stack, X, y, seg, **kw)
    for n_models in (2**63, 2**40):
        with pytest.raises(ValueError, match="n_models"):
            MLPStack([12, 9, 3], n_models)
    with pytest.raises(ValueError, match="seed"):
        MLPStack([12, 9, 3], 2, seed=2**64)
    for seed in (-0.0, 0.5, 2**70 * 1.0, "1"):
        with pytest.raises(ValueError, match="seed"):
            segfast.segment(y, 3, seed=seed)


def test_counts_past_their_integers_are_refused_naming_them(trained):
    stack, X, y = trained
    seg = segfast.segment(y, 4, seed=0)
    before = stack.params.copy()
    for kw, name in [
        ({"epochs": 2**63}, "epochs"),
        ({"epochs": [2**62] * 4}, "epochs"),
        ({"batch_size": 2**31}, "batch_size"),
    ]:
        with pytest.raises(ValueError, match=name):
            segfast.train(stack, X, y, seg, **kw)
    assert np.array_equal(stack.params, before)  # epochs=2**63 once wrapped to no training at all
    for kw, name in [({"batch_size": 2**200}, "batch_size"), ({"local_epochs": 2**63}, "local_epochs")]:
        with pytest.raises(ValueError, match=name):
            segfast.rounds([12, 9, 3], X, y, seg, rounds=1, progress=False, **kw)


def test_a_batch_size_above_every_segment_allocates_no_more_than_the_segments(trained):
    stack, X, y = trained
    seg = segfast.segment(y, 4, seed=0)
    a, b = stack.copy(), stack.copy()
    segfast.train(a, X, y, seg, batch_size=2**31 - 1)  # std::bad_alloc before: workspaces of that many rows
    segfast.train(b, X, y, seg, batch_size=int(seg.sizes.max()))
    assert np.array_equal(a.params, b.params)


def test_final_loss_is_each_models_last_trained_epoch():
    from segfast.train import History

    loss = np.array([[1.0, np.nan, 3.0, np.nan], [2.0, np.nan, np.nan, 5.0], [np.nan, np.nan, np.nan, 6.0]])
    hist = History(loss=loss, diverged=np.zeros(4, bool), epochs=np.zeros(4, np.int64))
    np.testing.assert_array_equal(hist.final_loss, [2.0, np.nan, 3.0, 6.0])
    empty = History(loss=np.empty((0, 3)), diverged=np.zeros(3, bool), epochs=np.zeros(3, np.int64))
    assert np.isnan(empty.final_loss).all() and empty.final_loss.shape == (3,)


def test_rounds_resume_needs_a_run_directory(trained):
    _, X, y = trained
    with pytest.raises(ValueError, match="resume=True needs out="):
        segfast.rounds([12, 9, 3], X, y, segfast.segment(y, 4, seed=0), rounds=1, resume=True, progress=False)


def stub_signatures(tree_body):
    """{name: [parameter names]} of the functions (first overload) and classes' __init__ in a stub body."""
    out = {}
    for node in tree_body:
        if isinstance(node, ast.FunctionDef) and node.name not in out:
            args = node.args
            out[node.name] = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs if a.arg != "self"]
        elif isinstance(node, ast.ClassDef):
            out[node.name] = None
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out[node.target.id] = None
    return out


def bound_parameters(fn):
    """Parameter names from pybind11's signature line, e.g. 'f(a: int, b: object = None) -> int'."""
    inside = fn.__doc__.splitlines()[0].split("(", 1)[1].rsplit(") ->", 1)[0]
    return [p for p in re.findall(r"(?:^|, )\*?(\w+):", inside) if p != "self"]


def test_the_typing_stub_names_what_the_extension_has():
    tree = ast.parse((Path(_core.__file__).parent / "_core.pyi").read_text())
    aliases = {"_F32", "_F64", "_I32", "_I64", "_U8", "_Bool", "_TestingModule"}
    stub = {k: v for k, v in stub_signatures(tree.body).items() if k not in aliases}
    testing = next(n for n in tree.body if getattr(n, "name", "") == "_TestingModule")
    cuda_only = {
        "cuda_device_name",
        "cuda_memory_in_use",
        "cuda_predict_proba",
        "cuda_evaluate",
        "CudaMemoryError",
        "CudaTrainer",
        "cuda_resident_plan",
    }
    for module, names in ((_core, stub), (_core._testing, stub_signatures(testing.body))):
        public = {n for n in dir(module) if not n.startswith("__")}
        expected = set(names) if _core.has_cuda else set(names) - cuda_only
        assert public == expected, module.__name__
        for name in expected:
            obj = getattr(module, name)
            if names[name] is not None and callable(obj) and not isinstance(obj, type):
                assert bound_parameters(obj) == names[name], name
