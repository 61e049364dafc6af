"""The server's optimisers (FedAvgM, FedAdam, FedYogi, FedAdagrad) against their published update
equations, inside rounds, through resume, and their bad input."""

import numpy as np
import pytest

import segfast
from conftest import blobs
from segfast._server import ServerOptimizer

DIMS = [10, 8, 3]


def _reddi(name, deltas, lr, b1, b2, tau, start):
    """Reddi et al. 2021, Algorithm 2, written out in numpy for a sequence of pseudo-gradients."""
    x, m, v = start.astype(np.float64), np.zeros_like(start, dtype=np.float64), np.full(start.shape, tau**2)
    for d in deltas:
        m = b1 * m + (1 - b1) * d
        if name == "adagrad":
            v = v + d * d
        elif name == "adam":
            v = b2 * v + (1 - b2) * d * d
        else:
            v = v - (1 - b2) * d * d * np.sign(v - d * d)
        x = x + lr * m / (np.sqrt(v) + tau)
    return x


@pytest.mark.parametrize("name", ["adam", "yogi", "adagrad"])
def test_adaptive_steps_follow_the_published_equations(name):
    rng = np.random.default_rng(0)
    opt = ServerOptimizer.checked(name, 0.05, 0.0, (0.9, 0.99), 1e-3)
    current = rng.normal(size=50).astype(np.float32)
    state = opt.initial_state((1, 50))
    deltas = []
    x = current
    for _ in range(6):
        merged = (x + rng.normal(scale=0.01, size=50)).astype(np.float32)
        deltas.append(merged.astype(np.float64) - x)
        x = opt.step(x, merged, state, 0)
    # the reference steps from the same float32 rows the loop saw, so compare in float32
    want = _reddi(name, deltas, 0.05, 0.9, 0.99, 1e-3, current)
    np.testing.assert_allclose(x, want, rtol=1e-5, atol=1e-6)


def test_sgd_with_momentum_is_fedavgm_and_its_default_a_replacement():
    opt = ServerOptimizer.checked("sgd", None, 0.5, (0.9, 0.99), 1e-3)
    state = opt.initial_state((1, 3))
    g = np.zeros(3, np.float32)
    g = opt.step(g, np.ones(3, np.float32), state, 0)  # m = 1, g = 1
    g = opt.step(g, np.full(3, 1.0, np.float32), state, 0)  # m = 0.5 * 1 + 0, g = 1.5
    np.testing.assert_array_equal(g, np.full(3, 1.5, np.float32))
    plain = ServerOptimizer.checked("sgd", None, 0.0, (0.9, 0.99), 1e-3)
    merged = np.array([0.1, 1e-8, -3.3], np.float32)
    assert np.array_equal(plain.step(np.ones(3, np.float32), merged, plain.initial_state((1, 3)), 0), merged)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    X, y = blobs(rng, n=900, d=10, classes=3, spread=1.5)
    return X[:700], y[:700], (X[700:], y[700:]), segfast.segment(y[:700], 7, "dirichlet", alpha=0.5, seed=0)


def test_fedadam_round_applies_the_step_to_the_round_merge(data):
    X, y, val, segs = data
    start = segfast.MLPStack(DIMS, 1, seed=2)
    common = dict(rounds=1, merge="uniform", seed=3, progress=False, lr=0.1)
    plain = segfast.rounds(start, X, y, segs, **common)
    adam = segfast.rounds(start, X, y, segs, server_optimizer="adam", server_lr=0.02, tau=1e-2, **common)
    delta = plain.global_model.params[0].astype(np.float64) - start.params[0]  # the merge, as FedAvg took it
    want = _reddi("adam", [delta], 0.02, 0.9, 0.99, 1e-2, start.params[0])
    np.testing.assert_allclose(adam.global_model.params[0], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["adam", "yogi", "adagrad"])
def test_adaptive_runs_resume_bit_identical(data, name, tmp_path):
    X, y, val, segs = data
    common = dict(server_optimizer=name, fraction=0.5, val=val, seed=4, progress=False, lr=0.1)
    whole = segfast.rounds(DIMS, X, y, segs, rounds=4, **common)
    segfast.rounds(DIMS, X, y, segs, rounds=2, out=tmp_path, **common)
    state = np.load(tmp_path / "checkpoint.npz")
    assert set(state.files) == {"round", "global", "server_buffer", "server_second_moment"}
    resumed = segfast.rounds(DIMS, X, y, segs, rounds=4, out=tmp_path, resume=True, **common)
    np.testing.assert_array_equal(resumed.global_model.params, whole.global_model.params)


def test_a_forged_second_moment_is_refused(data, tmp_path):
    from segfast import results

    X, y, val, segs = data
    common = dict(server_optimizer="yogi", progress=False)
    segfast.rounds(DIMS, X, y, segs, rounds=1, out=tmp_path, **common)
    state = dict(np.load(tmp_path / "checkpoint.npz"))
    state["server_second_moment"][0] = -1.0
    results.write_atomic(tmp_path / "checkpoint.npz", results._npz_bytes(**state))
    with pytest.raises(ValueError, match=r"server_second_moment must be > 0"):
        segfast.rounds(DIMS, X, y, segs, rounds=2, out=tmp_path, resume=True, **common)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"server_optimizer": "rmsprop"}, r"server_optimizer must be one of 'sgd', 'adam', 'yogi', 'adagrad'"),
        ({"server_optimizer": "adam", "betas": (0.9, 1.0)}, r"betas must be two numbers in \[0, 1\)"),
        ({"server_optimizer": "adam", "betas": 0.9}, r"betas must be two numbers"),
        ({"server_optimizer": "yogi", "tau": 0}, r"tau must be > 0"),
        ({"server_optimizer": "adam", "server_momentum": 0.9}, r"server_momentum is FedAvgM's"),
        ({"server_optimizer": "adam", "server_lr": -1}, r"server_lr must be"),
        ({"server_optimizer": "adam", "betas": (float("nan"), 0.9)}, r"betas must be a finite number"),
        ({"server_optimizer": "adam", "betas": np.array([0.9, 0.99, 0.5])}, r"betas must be two numbers"),
        ({"server_optimizer": "yogi", "tau": float("inf")}, r"tau must be a finite number"),
    ],
)
def test_bad_server_options_are_refused_naming_the_argument(data, options, match, tmp_path):
    X, y, val, segs = data
    with pytest.raises(ValueError, match=match):
        segfast.rounds(DIMS, X, y, segs, rounds=1, progress=False, out=tmp_path / "run", **options)
    assert not (tmp_path / "run").exists()


# -- personalisation (rounds' other per-segment report) -----------------------------------------------
def _own_rows(segs, n_val):
    return [np.arange(i, n_val, len(segs)) for i in range(len(segs))]  # each segment a share of the val rows


def test_personalised_scores_are_the_round_models_after_e_epochs(data):
    X, y, val, segs = data
    own = _own_rows(segs, len(val[1]))
    common = dict(rounds=2, local_epochs=2, val=val, segment_val=own, progress=False, lr=0.1, seed=3)
    full = segfast.rounds(DIMS, X, y, segs, personalize_epochs=2, **common)
    # E = the round's epochs: the personalised models are the round's local models themselves
    want = [
        segfast.evaluate(full.local_models[i], val[0][own[s]], val[1][own[s]]).accuracy[0]
        for i, s in enumerate(full.local_segments)
    ]
    assert full.history[-1]["personalized_accuracy_mean"] == pytest.approx(np.mean(want))
    assert full.history[-1]["personalized_accuracy_std"] == pytest.approx(np.std(want))
    assert full.history[-1]["personalized_segments"] == len(want)  # none diverged
    one = segfast.rounds(DIMS, X, y, segs, personalize_epochs=1, **common)  # from the same training call
    np.testing.assert_array_equal(one.global_model.params, full.global_model.params)
    # after 1 of the last round's 2 epochs: the local models of a run whose last round has 1 epoch
    short = segfast.rounds(DIMS, X, y, segs, **{**common, "local_epochs": [2, 1]})
    want = [
        segfast.evaluate(short.local_models[i], val[0][own[s]], val[1][own[s]]).accuracy[0]
        for i, s in enumerate(short.local_segments)
    ]
    assert one.history[-1]["personalized_accuracy_mean"] == pytest.approx(np.mean(want))


@pytest.mark.parametrize(
    "options, match",
    [
        ({"personalize_epochs": 0}, r"personalize_epochs must be an integer >= 1"),
        ({"personalize_epochs": 3}, r"personalize_epochs=3 must be <= every round's local epochs \(the fewest: 2\)"),
        ({"personalize_epochs": 1, "segment_val": None}, r"pass segment_val="),
        ({"personalize_epochs": 1.5}, r"personalize_epochs must be an integer"),
        ({"personalize_epochs": True}, r"personalize_epochs must be an integer"),
    ],
)
def test_bad_personalisation_is_refused(data, options, match):
    X, y, val, segs = data
    options = {"segment_val": _own_rows(segs, len(val[1])), **options}
    with pytest.raises(ValueError, match=match):
        segfast.rounds(DIMS, X, y, segs, rounds=2, local_epochs=[2, 3], val=val, progress=False, **options)
