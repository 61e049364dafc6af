"""merge(), align(), REPAIR and the assignment solver against numpy references."""

import itertools

import numpy as np
import pytest

import reference
import segfast
from conftest import blobs
from segfast import MLPStack, _core
from segfast.merge import rank_weights


@pytest.fixture(scope="module")
def trained():
    """Five independently initialised 20-16-4 models trained on IID segments of blobs."""
    rng = np.random.default_rng(0)
    X, y = blobs(rng, n=1500, d=20, classes=4, spread=1.5)
    stack = MLPStack([20, 16, 4], n_models=5, init="independent", seed=0)
    segfast.train(stack, X[:1000], y[:1000], segfast.segment(y[:1000], 5, seed=0), epochs=5)
    return stack, (X[1000:], y[1000:])


def test_assignment_matches_brute_force(rng):
    for n in range(1, 7):
        for _ in range(5):
            score = rng.standard_normal((n, n)).astype(np.float32)
            perm, total = _core._testing.max_assignment(score)
            best = max(sum(score[i, p[i]] for i in range(n)) for p in itertools.permutations(range(n)))
            assert sorted(perm) == list(range(n))
            assert total == pytest.approx(best, rel=1e-6)
            assert score[np.arange(n), perm].sum() == pytest.approx(best, rel=1e-6)


@pytest.mark.parametrize("kind", ["normal", "ties", "diagonal"])
def test_assignment_matches_the_hungarian_reference_on_larger_problems(rng, kind):
    for n in (13, 17, 45, 64, 200):  # ragged ends of both vector blocks
        if kind == "normal":
            score = rng.standard_normal((n, n))
        elif kind == "ties":  # many equal entries: the float ties that can make JV cycle
            score = rng.integers(0, 3, (n, n))
        else:
            score = 3 * np.eye(n) + rng.standard_normal((n, n))
        score = score.astype(np.float32)
        perm, total = _core._testing.max_assignment(score)
        _, want = _core._testing.max_assignment(score, reference=True)
        assert sorted(perm) == list(range(n))
        assert total == pytest.approx(want, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("kind", ["normal", "ties", "diagonal"])
def test_assignment_from_a_similar_problem_stays_optimal(rng, kind):
    """The warm starts (a similar problem's column prices or row duals) change only the path
    to the answer: each gives the optimum of the new problem, whatever the old duals were."""
    n = 125
    base = {
        "normal": rng.standard_normal((n, n)),
        "ties": rng.integers(0, 3, (n, n)),
        "diagonal": 3 * np.eye(n) + rng.standard_normal((n, n)),
    }[kind]
    old = base.astype(np.float32)
    prices, row_duals = np.zeros(n), np.zeros(n)
    perm, _ = _core._testing.max_assignment(old, prices=prices, row_duals=row_duals)
    # they are the optimum's duals: no reduced cost below zero, zero on the assignment
    reduced = -old.astype(np.float64) - row_duals[:, None] - prices[None, :]
    assert reduced.min() > -1e-9
    np.testing.assert_allclose(reduced[np.arange(n), perm], 0, atol=1e-9)
    for change in (0.01, 0.3, 3.0):
        new = (base + change * rng.standard_normal((n, n))).astype(np.float32)
        _, want = _core._testing.max_assignment(new, reference=True)
        for start, kwargs in [
            ("prices", {"prices": prices.copy()}),
            ("row_duals", {"row_duals": row_duals.copy()}),
            ("prices", {"prices": rng.standard_normal(n) * 10}),
        ]:
            perm, total = _core._testing.max_assignment(new, start=start, **kwargs)
            assert sorted(perm) == list(range(n))
            assert total == pytest.approx(want, rel=1e-6, abs=1e-6)
    with pytest.raises(ValueError, match="needs prices"):
        _core._testing.max_assignment(old, start="prices")


@pytest.mark.parametrize("kept", [0, 1, 5, 20, 35, 39])
def test_assignment_from_prices_that_keep_some_rows(rng, kept):
    """Where most rows are kept a warm start raises the free columns' prices as far as the kept
    rows allow (20 of 40 and up); with few or none kept they stay as they were."""
    n = 40
    score = rng.standard_normal((n, n)).astype(np.float32)
    np.fill_diagonal(score, -10)  # no row's own column is its best...
    score[np.arange(kept), np.arange(kept)] = 10  # ...but for the first `kept`
    _, want = _core._testing.max_assignment(score, reference=True)
    perm, total = _core._testing.max_assignment(score, start="prices", prices=np.zeros(n))
    assert sorted(perm) == list(range(n))
    assert total == pytest.approx(want, rel=1e-6, abs=1e-6)


def test_assignment_rejects_non_square():
    with pytest.raises(ValueError, match="square"):
        _core._testing.max_assignment(np.zeros((3, 4), np.float32))


def test_assignment_rejects_bad_input():
    with pytest.raises(ValueError, match="finite"):
        _core._testing.max_assignment(np.array([[0.0, np.nan], [1.0, 2.0]], np.float32))
    with pytest.raises(ValueError, match="start"):
        _core._testing.max_assignment(np.zeros((2, 2), np.float32), start="warm")
    with pytest.raises(ValueError, match="row duals"):
        _core._testing.max_assignment(np.zeros((2, 2), np.float32), start="row_duals")
    with pytest.raises(ValueError, match="prices"):
        _core._testing.max_assignment(np.zeros((2, 2), np.float32), start="prices", prices=np.zeros(3))
    np.testing.assert_array_equal(_core._testing.max_assignment(np.zeros((0, 0), np.float32))[0], [])


def test_reductions_match_numpy(trained):
    stack, val = trained
    P = stack.params.astype(np.float64)
    w = np.array([0.1, 0.2, 0.3, 0.15, 0.25])
    cases = {
        "uniform": (segfast.merge(stack), P.mean(0)),
        "weighted": (segfast.merge(stack, "weighted", weights=w * 7), w @ P),
        "median": (segfast.merge(stack, "median"), np.median(P, axis=0)),
        "trimmed": (segfast.merge(stack, "trimmed", trim=0.2), np.sort(P, axis=0)[1:-1].mean(0)),
    }
    for name, (merged, want) in cases.items():
        assert merged.n_models == 1, name
        np.testing.assert_allclose(merged.params[0], want, rtol=1e-5, atol=1e-6, err_msg=name)
    segs = segfast.segment(np.zeros(103, int), 5, "contiguous")
    np.testing.assert_allclose(
        segfast.merge(stack, "weighted", weights=segs).params[0], (segs.sizes / 103) @ P, rtol=1e-5, atol=1e-6
    )


def test_rank_weights_follow_the_notes_exactly():
    np.testing.assert_array_equal(rank_weights(np.array([3.0, 1.0, 2.0, 4.0])), [1 / 8, 1 / 2, 1 / 4, 1 / 8])
    np.testing.assert_array_equal(rank_weights(np.array([0.5])), [1.0])
    assert rank_weights(np.arange(10.0)).sum() == 1.0


def test_validation_driven_weights(trained):
    stack, val = trained
    loss = segfast.evaluate(stack, *val).loss
    P = stack.params.astype(np.float64)
    _, d = segfast.merge(stack, "rank", val=val, return_details=True)
    np.testing.assert_allclose(d["weights"], rank_weights(loss))
    merged, d = segfast.merge(stack, "loss", val=val, temperature=0.5, return_details=True)
    want = np.exp(-(loss - loss.min()) / 0.5)
    np.testing.assert_allclose(d["weights"], want / want.sum(), rtol=1e-9)
    np.testing.assert_allclose(merged.params[0], d["weights"] @ P, rtol=1e-5, atol=1e-6)


def test_greedy_soup_never_loses_to_its_best_model(trained):
    stack, val = trained
    acc = segfast.evaluate(stack, *val).accuracy
    merged, d = segfast.merge(stack, "greedy", val=val, return_details=True)
    assert segfast.evaluate(merged, *val).accuracy[0] >= acc.max()
    assert d["weights"][np.argmax(acc)] > 0
    kept = d["weights"] > 0
    np.testing.assert_allclose(merged.params[0], stack.params[kept].mean(0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dims", [[12, 9, 4], [12, 9, 7, 4], [12, 9, 7, 6, 4]])
def test_alignment_keeps_every_function(rng, dims):
    stack = MLPStack(dims, n_models=4, seed=1)
    before = stack.params.copy()
    X = rng.standard_normal((40, dims[0])).astype(np.float32)
    aligned = segfast.align(stack, 2)
    assert np.array_equal(stack.params, before)  # input untouched
    np.testing.assert_allclose(segfast.predict_proba(aligned, X), segfast.predict_proba(stack, X), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(aligned.params[2], stack.params[2])  # the anchor stays
    assert aligned.permutations.shape == (4, sum(dims[1:-1]))
    for row in aligned.permutations:
        offset = 0
        for width in dims[1:-1]:
            assert sorted(row[offset : offset + width]) == list(range(width))
            offset += width


@pytest.mark.parametrize("dims", [[10, 8, 3], [10, 8, 6, 3]])
def test_alignment_undoes_a_permutation(rng, dims):
    model = MLPStack(dims, seed=4)
    shuffled = model.copy()
    for layer in range(len(dims) - 2):
        p = rng.permutation(dims[layer + 1])
        shuffled.weights(layer)[0] = shuffled.weights(layer)[0][:, p]
        shuffled.biases(layer)[0] = shuffled.biases(layer)[0][p]
        shuffled.weights(layer + 1)[0] = shuffled.weights(layer + 1)[0][p, :]
    assert not np.array_equal(shuffled.params, model.params)
    np.testing.assert_array_equal(segfast.align(shuffled, model).params, model.params)


@pytest.mark.parametrize("dims", [[20, 70, 10], [20, 70, 40, 5], [17, 33, 130, 20, 3]])
def test_merge_many_alignment_matches_numpy_and_scipy(dims):
    """Every permutation of align() against the numpy + scipy reference, on widths that span
    several 64-unit strips with ragged ends, and on 2-3 hidden layers, where a move corrects
    the neighbouring layers' scores in place instead of recomputing them."""
    stack = MLPStack(dims, n_models=6, init="independent", seed=3)
    want_params, want_perms = reference.align_many(dims, stack.params, 1, rounds=10)
    aligned = segfast.align(stack, 1, max_iter=10)
    np.testing.assert_array_equal(aligned.permutations, want_perms)
    np.testing.assert_array_equal(aligned.params, want_params)


@pytest.mark.parametrize("dims", [[20, 70, 40, 5], [17, 33, 130, 20, 3]])
def test_merge_many_alignment_with_few_moves_matches_numpy_and_scipy(dims):
    """Noisy copies of one model, each with a few units swapped: after the first alignment a
    match moves a few units, so the next model's mean of the others is patched where they
    moved (their own rows, their columns in the layers on either side), not rebuilt."""
    rng = np.random.default_rng(7)
    base = MLPStack(dims, n_models=1, init="independent", seed=5)
    stack = MLPStack(dims, n_models=8, seed=5)
    noise = rng.standard_normal(stack.params.shape).astype(np.float32)
    stack.params[:] = base.params + 1.5 * base.params.std() * noise
    for m in range(8):
        for layer in range(len(dims) - 2):
            p = np.arange(dims[layer + 1])
            swap = rng.choice(dims[layer + 1], size=6, replace=False)
            p[swap[:3]], p[swap[3:]] = swap[3:], swap[:3]
            stack.weights(layer)[m] = stack.weights(layer)[m][:, p]
            stack.biases(layer)[m] = stack.biases(layer)[m][p]
            stack.weights(layer + 1)[m] = stack.weights(layer + 1)[m][p, :]
    want_params, want_perms = reference.align_many(dims, stack.params, 1, rounds=10)
    aligned = segfast.align(stack, 1, max_iter=10)
    np.testing.assert_array_equal(aligned.permutations, want_perms)
    np.testing.assert_array_equal(aligned.params, want_params)


@pytest.mark.parametrize("reference", [0, 5])
def test_merge_many_alignment_with_tied_units_is_the_same_on_any_thread_count(reference):
    """All-zero units make optima that are not unique: the result must still not depend on the
    number of threads (the matches to the reference run in parallel, the next target is built
    beside each assignment)."""
    dims = [17, 33, 130, 20, 3]
    stack = MLPStack(dims, n_models=6, init="independent", seed=1)
    for m in range(6):
        for layer in range(len(dims) - 2):
            stack.weights(layer)[m][:, :4] = 0
            stack.biases(layer)[m][:4] = 0
            stack.weights(layer + 1)[m][:4, :] = 0
    one = segfast.align(stack, reference, max_iter=10, n_jobs=1)
    two = segfast.align(stack, reference, max_iter=10, n_jobs=2)
    np.testing.assert_array_equal(one.permutations, two.permutations)
    np.testing.assert_array_equal(one.params, two.params)


def test_aligned_merge_beats_plain_average_of_independent_models(trained):
    stack, val = trained
    plain = segfast.evaluate(segfast.merge(stack), *val).accuracy[0]
    aligned = segfast.evaluate(segfast.merge(stack, align=True, val=val), *val).accuracy[0]
    assert aligned > plain


def test_repair_restores_the_average_statistics(trained):
    stack, val = trained
    X = val[0]
    merged, d = segfast.merge(stack, align=True, repair=X, return_details=True)
    aligned = segfast.align(stack, 0)
    mean, std = _core.preactivation_stats(list(stack.dims), aligned.params, X, 1)
    got_mean, got_std = _core.preactivation_stats(list(stack.dims), merged.params, X, 1)
    np.testing.assert_allclose(got_mean[0], mean.mean(0), atol=1e-4)
    np.testing.assert_allclose(got_std[0], std.mean(0), rtol=1e-3, atol=1e-5)


def test_preactivation_stats_match_numpy(trained):
    stack, val = trained
    X = val[0]
    mean, std = _core.preactivation_stats(list(stack.dims), stack.params, X, 2)
    for i in range(stack.n_models):
        z = X.astype(np.float64) @ stack.weights(0)[i] + stack.biases(0)[i]
        np.testing.assert_allclose(mean[i], z.mean(0), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(std[i], z.std(0), rtol=1e-4, atol=1e-5)


def test_rescale_restores_mean_layer_norms(trained):
    stack, _ = trained
    merged = segfast.merge(stack, rescale=True)
    for layer in range(stack.n_layers):
        want = np.mean([np.linalg.norm(w) for w in stack.weights(layer)])
        assert np.linalg.norm(merged.weights(layer)) == pytest.approx(want, rel=1e-5)


def test_diverged_models_are_left_out(trained):
    stack, _ = trained
    bad = stack.copy()
    bad.diverged[1] = True
    bad.params[1] = 1e30
    with pytest.warns(RuntimeWarning, match="leaving out diverged model"):
        merged = segfast.merge(bad)
    np.testing.assert_allclose(merged.params[0], stack.params[[0, 2, 3, 4]].mean(0), rtol=1e-5, atol=1e-6)
    bad.diverged[:] = True
    with pytest.raises(ValueError, match="every model of the stack diverged"):
        segfast.merge(bad)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(method="average"), ValueError, "unknown merge method"),
        (dict(method="weighted"), ValueError, "needs weights="),
        (dict(method="weighted", weights=[1, 2]), ValueError, "one weight per model"),
        (dict(method="weighted", weights=[1, -1, 1, 1, 1]), ValueError, "weights must be >= 0"),
        (dict(method="weighted", weights=[1, np.nan, 1, 1, 1]), ValueError, "finite"),
        (dict(method="weighted", weights=[0, 0, 0, 0, 0]), ValueError, "sum to a positive"),
        (dict(method="rank"), ValueError, "needs val="),
        (dict(method="greedy"), ValueError, "needs val="),
        (dict(method="loss", val=(np.zeros((3, 20)), np.zeros(3, int)), temperature=0), ValueError, "temperature"),
        (dict(val=(np.zeros((3, 19)), np.zeros(3, int))), ValueError, "val X has 19 features"),
        (dict(val=np.zeros((3, 20))), TypeError, "val must be an"),
        (dict(repair=np.zeros((1, 20))), ValueError, "at least 2 calibration rows"),
        (dict(method="trimmed", trim=0.5), ValueError, "trim must be"),
        (dict(method="cluster-merge", k=6), ValueError, "k=6 is larger than the number of models"),
        (dict(weights=[1, 1, 1, 1, 1]), ValueError, "only used by method='weighted'"),
    ],
)
def test_merge_bad_input(trained, kwargs, error, match):
    stack, _ = trained
    with pytest.raises(error, match=match):
        segfast.merge(stack, **kwargs)


def test_align_bad_input(trained):
    stack, _ = trained
    with pytest.raises(ValueError, match="reference has dims"):
        segfast.align(stack, MLPStack([20, 8, 4]))
    with pytest.raises(ValueError, match="one-model stack"):
        segfast.align(stack, stack.select([0, 1]))
    with pytest.raises(ValueError, match="not a model index"):
        segfast.align(stack, 5)
    with pytest.raises(TypeError, match="MLPStack"):
        segfast.align(stack.params)
