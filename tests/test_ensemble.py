"""Ensemble against numpy references: votes, tie-breaks, stacking, KNORA-U/E (brute force)."""

import numpy as np
import pytest

import segfast
from conftest import blobs
from segfast import Ensemble, MLPStack


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    X, y = blobs(rng, n=1600, d=12, classes=4, spread=1.2)
    segs = segfast.segment(y[:1000], 6, "dirichlet", alpha=0.3, seed=0)
    stack = MLPStack([12, 10, 4], n_models=6, seed=0)
    segfast.train(stack, X[:1000], y[:1000], segs, epochs=3, lr=0.05)
    return stack, segs, (X[:1000], y[:1000]), (X[1000:1300], y[1000:1300]), (X[1300:], y[1300:])


def test_soft_and_weighted_votes(setup):
    stack, _, _, val, test = setup
    P = segfast.predict_proba(stack, test[0]).astype(np.float64)
    soft = Ensemble(stack, "soft")
    np.testing.assert_allclose(soft.predict_proba(test[0]), P.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(soft.predict(test[0]), P.mean(0).argmax(1))
    weighted = Ensemble(stack, "weighted").fit(*val)
    acc = (segfast.predict(stack, val[0]) == val[1]).mean(1)
    np.testing.assert_allclose(weighted.weights_, acc / acc.sum())
    np.testing.assert_allclose(
        weighted.predict_proba(test[0]), np.einsum("m,mrc->rc", acc / acc.sum(), P), rtol=1e-5, atol=1e-6
    )
    given = Ensemble(stack, "weighted", weights=[1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(given.predict(test[0]), P[0].argmax(1))
    assert soft.score(*test) == pytest.approx(np.mean(soft.predict(test[0]) == test[1]))


def test_hard_vote_and_its_tiebreaks(setup):
    stack, _, _, _, test = setup
    X = test[0]
    P = segfast.predict_proba(stack, X)
    votes = np.eye(4)[P.argmax(2)].sum(0)
    top = votes.max(1)
    tied = (votes == top[:, None]).sum(1) > 1
    assert tied.any(), "the fixture should produce tied votes"
    summed = P.sum(0)
    want = np.where(votes == top[:, None], summed, -np.inf).argmax(1)
    hard = Ensemble(stack, "hard")
    np.testing.assert_array_equal(hard.predict(X), want)
    np.testing.assert_allclose(hard.predict_proba(X), votes / 6)
    judge = stack[3]
    pj = segfast.predict_proba(judge, X)[0]
    want_tb = np.where(votes == top[:, None], pj, -np.inf).argmax(1)
    np.testing.assert_array_equal(Ensemble(stack, "hard", tiebreak=judge).predict(X), want_tb)
    agreement = hard.agreement(X)
    np.testing.assert_allclose(agreement, votes[np.arange(len(X)), want] / 6)


def test_constructed_tie_goes_to_the_tiebreak_model():
    # two models, opposite one-hot opinions on a 2-class problem: every row is a 1-1 tie
    a = MLPStack.from_params([1, 2], np.array([[5.0, -5.0, 0.0, 0.0]]))  # logits (5x, -5x)
    b = MLPStack.from_params([1, 2], np.array([[-5.0, 5.0, 0.0, 0.0]]))
    stack = MLPStack.from_params([1, 2], np.concatenate([a.params, b.params]))
    X = np.array([[1.0], [2.0]], dtype=np.float32)
    for judge, cls in ((a, 0), (b, 1)):
        np.testing.assert_array_equal(Ensemble(stack, "hard", tiebreak=judge).predict(X), [cls, cls])
    # without a tiebreak: the larger summed probability wins; here they are equal -> class 0
    np.testing.assert_array_equal(Ensemble(stack, "hard").predict(X), [0, 0])


def numpy_softmax(z):
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def test_stacking_weights_is_the_optimum_of_its_objective(setup):
    stack, _, _, val, test = setup
    ens = Ensemble(stack, "stacking", combiner="weights", l2=1e-3).fit(*val)
    L = np.log(segfast.predict_proba(stack, val[0]).astype(np.float64))

    def objective(w):
        p = numpy_softmax(np.einsum("m,mrc->rc", w, L))
        return -np.log(p[np.arange(len(val[1])), val[1]]).mean() + 1e-3 * w @ w

    base = objective(ens.weights_)
    for i in range(6):
        for step in (1e-3, -1e-3):
            w = ens.weights_.copy()
            w[i] += step
            assert objective(w) >= base - 1e-9
    Lt = np.log(segfast.predict_proba(stack, test[0]).astype(np.float64))
    np.testing.assert_allclose(
        ens.predict_proba(test[0]), numpy_softmax(np.einsum("m,mrc->rc", ens.weights_, Lt)), rtol=1e-4, atol=1e-6
    )


def test_stacking_logistic_fits_its_objective(setup):
    stack, _, _, val, test = setup
    ens = Ensemble(stack, "stacking", combiner="logistic", l2=1e-2).fit(*val)
    assert ens.coef_.shape == (6 * 4, 4) and ens.intercept_.shape == (4,)

    def features(X):  # all models' log-probabilities side by side
        p = segfast.predict_proba(stack, X).astype(np.float64)
        return np.log(np.maximum(p, 1e-6)).transpose(1, 0, 2).reshape(len(X), -1)

    F = features(val[0])
    p = numpy_softmax(F @ ens.coef_ + ens.intercept_)
    g = p.copy()
    g[np.arange(len(val[1])), val[1]] -= 1
    grad_W = F.T @ g / len(val[1]) + 2e-2 * ens.coef_
    assert np.abs(grad_W).max() < 1e-4 and np.abs(g.mean(0)).max() < 1e-4  # stationary point
    Ft = features(test[0])
    np.testing.assert_allclose(
        ens.predict_proba(test[0]), numpy_softmax(Ft @ ens.coef_ + ens.intercept_), rtol=1e-4, atol=1e-6
    )
    assert ens.score(*val) >= Ensemble(stack, "soft").score(*val)


def brute_force_knora(correct, neighbours, probs, rule):
    """DESlib's KNORA-U / KNORA-E, one row at a time."""
    n_models = correct.shape[0]
    pred = []
    for r, nb in enumerate(neighbours):
        hits = correct[:, nb]  # (N, k)
        if rule == "union":
            w = hits.sum(1).astype(float)
        else:
            w = np.zeros(n_models)
            for j in range(nb.size, 0, -1):
                sel = hits[:, :j].all(1)
                if sel.any():
                    w = sel.astype(float)
                    break
        if w.sum() == 0:
            w = np.ones(n_models)
        votes = np.zeros(probs.shape[2])
        for m in range(n_models):
            votes[probs[m, r].argmax()] += w[m]
        top = votes.max()
        summed = np.einsum("m,mc->c", w, probs[:, r].astype(np.float64))
        pred.append(np.where(np.isclose(votes, top), summed, -np.inf).argmax())
    return np.array(pred)


@pytest.mark.parametrize("rule", ["union", "eliminate"])
def test_knora_matches_brute_force(setup, rule):
    stack, _, _, val, test = setup
    k = 7
    ens = Ensemble(stack, "competence", k=k, knora=rule).fit(*val)
    correct = segfast.predict(stack, val[0]) == val[1]
    dist = ((test[0][:, None, :].astype(np.float64) - val[0][None]) ** 2).sum(-1)
    neighbours = np.argsort(dist, axis=1, kind="stable")[:, :k]
    probs = segfast.predict_proba(stack, test[0])
    np.testing.assert_array_equal(ens.predict(test[0]), brute_force_knora(correct, neighbours, probs, rule))


@pytest.mark.parametrize("n_refs, k", [(70, 5), (300, 260), (600, 20)])
def test_knn_exact_with_ties_and_ragged_blocks(n_refs, k):
    # Small integers: every dot product and norm is exact in float32, so distances tie often
    # and the order must be (distance, index). 300 queries make one full and one ragged query
    # block; 70 and 300 references end in a partial 64-column strip, k = 260 spans two 256 blocks.
    from segfast import _core

    rng = np.random.default_rng(n_refs)
    refs = rng.integers(0, 3, (n_refs, 5)).astype(np.float32)
    queries = rng.integers(0, 3, (300, 5)).astype(np.float32)
    dist = ((queries[:, None, :].astype(np.float64) - refs[None]) ** 2).sum(-1)
    want = np.argsort(dist, axis=1, kind="stable")[:, :k]
    for threads in (1, 2):
        idx, d = _core.knn(queries, refs, k, threads)
        np.testing.assert_array_equal(idx, want)
        np.testing.assert_array_equal(d, np.sqrt(np.take_along_axis(dist, want, 1)).astype(np.float32))


def test_combine_over_several_spans_and_strips(rng):
    # 20 models x 1,100 classes: the logit budget holds 256 rows, so 600 rows run in three
    # spans; widths 70 and 1,100 end in partial 64-column weight strips.
    from segfast import _core
    from segfast._device import combine_scores

    stack = MLPStack([3, 70, 1100], 20, seed=2)
    X = rng.standard_normal((600, 3)).astype(np.float32)
    probs = segfast.predict_proba(stack, X)
    model_w = rng.random(20)
    model_w[4] = 0.0
    row_w = (rng.random((600, 20)) > 0.6).astype(np.float32) * rng.random((600, 20)).astype(np.float32)
    for mw, rw in [(None, None), (model_w, row_w)]:
        got, votes = _core.combine(list(stack.dims), stack.params, X, "proba", mw, rw, 2, with_votes=True)
        want, want_votes = combine_scores(probs, "proba", mw, rw, with_votes=True)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(votes, want_votes, rtol=1e-6)
        one = _core.combine(list(stack.dims), stack.params, X, "proba", mw, rw, 1)
        np.testing.assert_array_equal(got, one)  # the sums do not depend on the thread count


def test_evaluate_with_vote_is_evaluate_and_combine_in_one_pass(rng):
    """The rounds' segment scoring: every model's loss and accuracy and their summed probabilities,
    bit for bit those of evaluate() and combine(), over several spans (the first case) and ragged
    256-row blocks, on 1 and 2 threads; a label out of range is refused."""
    from segfast import _core

    for dims, n_models, n_rows in (([3, 70, 1100], 20, 600), ([12, 10, 4], 7, 1000), ([5, 3, 2], 1, 1)):
        stack = MLPStack(dims, n_models, seed=2)
        stack.params[:] = 0.5 * rng.standard_normal(stack.params.shape).astype(np.float32)
        X = rng.standard_normal((n_rows, dims[0])).astype(np.float32)
        y = rng.integers(0, dims[-1], n_rows)
        loss, accuracy = _core.evaluate(dims, stack.params, X, y, 2)
        summed = _core.combine(dims, stack.params, X, "proba", None, None, 2)
        for threads in (1, 2):
            got = _core.evaluate(dims, stack.params, X, y, threads, with_vote=True)
            for a, b in zip(got, (loss, accuracy, summed)):
                np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="label"):
        _core.evaluate(dims, stack.params, X, np.array([dims[-1]]), 1, with_vote=True)
    with pytest.raises(TypeError, match="X"):  # float64 rows are refused, not converted
        _core.evaluate(dims, stack.params, X.astype(np.float64), y, 1, with_vote=True)
    with pytest.raises(ValueError, match="y"):
        _core.evaluate(dims, stack.params, X, y[:0], 1, with_vote=True)
    # No rows: nothing to score, zeros rather than a crash; NaN weights give NaN scores, no crash.
    loss, accuracy, summed = _core.evaluate(dims, stack.params, X[:0], y[:0], 1, with_vote=True)
    assert summed.shape == (0, dims[-1]) and (loss == 0).all() and (accuracy == 0).all()
    stack.params[0, -1] = np.nan  # an output bias: no ReLU after it to hide the NaN
    loss, accuracy, summed = _core.evaluate(dims, stack.params, X, y, 1, with_vote=True)
    assert np.isnan(loss[0]) and np.isnan(summed).all()


def test_a_vote_summed_part_by_part_is_the_vote_of_one_call(rng):
    """segfast.distributed scores a round's segment models block by block where they trained,
    carrying the vote's float64 sum from block to block: any cut gives one call's bits."""
    from segfast import _core

    dims, n_models, n_rows = [12, 10, 4], 9, 700  # 700 rows: ragged 256-row blocks
    stack = MLPStack(dims, n_models, seed=4)
    stack.params[:] = 0.5 * rng.standard_normal(stack.params.shape).astype(np.float32)
    X = rng.standard_normal((n_rows, dims[0])).astype(np.float32)
    y = rng.integers(0, dims[-1], n_rows)
    loss, accuracy, summed = _core.evaluate(dims, stack.params, X, y, 2, with_vote=True)
    for cuts in ([0, 9], [0, 1, 9], [0, 4, 5, 9]):
        running, parts = np.zeros((n_rows, dims[-1])), []
        for a, b in zip(cuts[:-1], cuts[1:]):
            *scores, last = _core.evaluate(dims, stack.params[a:b], X, y, 1, with_vote=True, vote_sum=running)
            parts.append(scores)
        np.testing.assert_array_equal(last, summed)
        np.testing.assert_array_equal(running.astype(np.float32), summed)
        np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), accuracy)
        np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), loss)
    with pytest.raises(ValueError, match="vote_sum must have shape"):
        _core.evaluate(dims, stack.params, X, y, 1, with_vote=True, vote_sum=np.zeros((n_rows, 3)))
    with pytest.raises(TypeError, match="vote_sum"):
        _core.evaluate(dims, stack.params, X, y, 1, with_vote=True, vote_sum=np.zeros((n_rows, 4), np.float32))
    with pytest.raises(ValueError, match="vote_sum"):
        _core.evaluate(dims, stack.params, X, y, 1, with_vote=True, vote_sum=np.zeros((n_rows, 4))[::1, ::-1])
    with pytest.raises(ValueError, match="with_vote"):
        _core.evaluate(dims, stack.params, X, y, 1, vote_sum=np.zeros((n_rows, 4)))
    frozen = np.zeros((n_rows, 4))
    frozen.setflags(write=False)
    with pytest.raises(ValueError, match="vote_sum"):  # read-only: it is written in place
        _core.evaluate(dims, stack.params, X, y, 1, with_vote=True, vote_sum=frozen)
    running = np.zeros((0, 4))  # no rows: nothing to add, no crash
    *_, summed = _core.evaluate(dims, stack.params, X[:0], y[:0], 1, with_vote=True, vote_sum=running)
    assert summed.shape == (0, 4)


def test_competence_on_the_training_region(setup):
    stack, segs, train, val, test = setup
    k = 5
    ens = Ensemble(stack, "competence", k=k, region="train").fit(
        *val, X_train=train[0], y_train=train[1], segments=segs
    )
    probs = segfast.predict_proba(stack, test[0])
    hits = []
    for i in range(6):
        rows = segs[i]
        right = segfast.predict(stack[i], train[0][rows])[0] == train[1][rows]
        dist = ((test[0][:, None, :].astype(np.float64) - train[0][rows][None]) ** 2).sum(-1)
        hits.append(right[np.argsort(dist, axis=1, kind="stable")[:, :k]])
    hits = np.stack(hits)  # (N, n, k)
    w = hits.sum(2).T.astype(float)
    w[w.sum(1) == 0] = 1
    votes = np.einsum("rm,mrc->rc", w, np.eye(4)[probs.argmax(2)])
    summed = np.einsum("rm,mrc->rc", w, probs.astype(np.float64))
    want = np.where(np.isclose(votes, votes.max(1, keepdims=True)), summed, -np.inf).argmax(1)
    np.testing.assert_array_equal(ens.predict(test[0]), want)
    with pytest.raises(ValueError, match="region='train' needs"):
        Ensemble(stack, "competence", region="train").fit(*val)


def test_stacking_auto_l2_picks_from_the_grid(setup):
    stack, _, _, val, test = setup
    ens = Ensemble(stack, "stacking", combiner="weights", l2="auto").fit(*val)
    assert ens.l2_ in (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
    assert ens.score(*test) > 0.5
    with pytest.raises(ValueError, match="l2 must be 'auto' or a finite number"):
        Ensemble(stack, "stacking", l2=-1.0).fit(*val)


def test_sklearn_conventions(setup):
    stack, _, _, val, _ = setup
    ens = Ensemble(stack, "competence", k=5)
    params = ens.get_params()
    assert params["k"] == 5 and params["method"] == "competence"
    assert ens.set_params(k=9) is ens and ens.k == 9
    assert ens.fit(*val) is ens and hasattr(ens, "correct_")
    with pytest.raises(ValueError, match="invalid parameter"):
        ens.set_params(colour="red")


@pytest.mark.parametrize("method", ["stacking", "competence", "weighted"])
def test_predict_before_fit(setup, method):
    stack, _, _, _, test = setup
    with pytest.raises(segfast.ensemble.NotFittedError, match="call fit"):
        Ensemble(stack, method).predict(test[0])


def test_which_methods_learn_from_validation_rows(setup):
    from segfast.ensemble import METHODS, learns_from_rows

    stack, _, _, _, test = setup
    assert {m: learns_from_rows(m) for m in METHODS} == {
        "hard": False,
        "soft": False,
        "weighted": True,
        "stacking": True,
        "competence": True,
    }
    assert not learns_from_rows("weighted", weights=[1] * 6)  # given weights: nothing to learn
    assert not learns_from_rows("vote") and not learns_from_rows(["soft"])  # the constructor refuses these
    for method in ("hard", "soft"):
        assert Ensemble(stack, method).predict(test[0]).shape == (len(test[0]),)
    assert Ensemble(stack, "weighted", weights=[1] * 6).predict(test[0]).shape == (len(test[0]),)


@pytest.mark.parametrize(
    "kwargs,call,error,match",
    [
        (dict(method="soft"), "predict_wide", ValueError, "X has 13 features, but the stack is expecting 12"),
        (dict(method="stacking"), "fit_empty", ValueError, "X_val has no rows"),
        (dict(method="competence", k=0), "fit", ValueError, "k must be an integer >= 1"),
        (dict(method="competence", k=400), "fit", ValueError, "k=400 is larger than the 300 validation rows"),
        (dict(method="vote"), "init", ValueError, "unknown ensemble method"),  # in the constructor
        (dict(method="stacking", combiner="tree"), "fit", ValueError, "combiner must be"),
        (dict(method="weighted", weights=[1, 1]), "predict", ValueError, "weights must be 6 finite"),
        (dict(method="hard", tiebreak="merged"), "predict", TypeError, "tiebreak must be a one-model"),
        (dict(method="soft"), "fit_badlabels", ValueError, "y_val holds labels"),
    ],
)
def test_ensemble_bad_input(setup, kwargs, call, error, match):
    stack, _, _, val, test = setup
    with pytest.raises(error, match=match):
        ens = Ensemble(stack, **kwargs)
        if call == "init":
            return
        if call == "predict_wide":
            ens.predict(np.zeros((3, 13)))
        elif call == "fit_empty":
            ens.fit(np.zeros((0, 12)), np.zeros(0, int))
        elif call == "fit_badlabels":
            ens.fit(val[0], val[1] + 4)
        elif call == "fit":
            ens.fit(*val)
        else:
            ens.predict(test[0])


def test_ensemble_is_a_scikit_learn_classifier_and_refuses_a_misspelt_method(rng):
    pytest.importorskip("sklearn")
    from sklearn.base import clone, is_classifier
    from sklearn.model_selection import cross_val_score

    X, y = blobs(rng, n=300, d=10, classes=3)
    stack = MLPStack([10, 8, 3], 4, init="independent", seed=0)
    segfast.train(stack, X, y, segfast.segment(y, 4, seed=0), epochs=2)
    with pytest.raises(ValueError, match="unknown ensemble method 'sof'"):
        segfast.Ensemble(stack, "sof")
    ens = segfast.Ensemble(stack, "stacking", combiner="weights")
    assert is_classifier(ens) and clone(ens).get_params()["method"] == "stacking"
    scores = cross_val_score(ens, X, y, cv=3)
    assert scores.shape == (3,) and (scores > 0.5).all()
