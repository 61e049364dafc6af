"""User-level differential privacy in rounds (DP-FedAvg): the clipped sum against numpy, a round's
noisy merge against its formula, Poisson sampling, the accountant, resume, bad input."""

import numpy as np
import pytest

import segfast
from conftest import blobs
from segfast import _core
from segfast._dp import DPConfig

pytest.importorskip("dp_accounting")
DIMS = [10, 8, 3]


def test_clipped_update_sum_matches_numpy():
    rng = np.random.default_rng(0)
    params = rng.normal(size=(7, 5003)).astype(np.float32)
    current = rng.normal(size=5003).astype(np.float32)
    updates = params.astype(np.float64) - current
    norms = np.linalg.norm(updates, axis=1)
    clip = float(np.median(norms))  # half the updates clipped
    total, got_norms = _core.clipped_update_sum(params, current, clip, 2)
    np.testing.assert_allclose(got_norms, norms, rtol=1e-12)
    np.testing.assert_allclose(total, (np.minimum(1, clip / norms)[:, None] * updates).sum(axis=0), rtol=1e-10)
    for threads in (1, 3):  # the same bits whatever the threads
        assert np.array_equal(_core.clipped_update_sum(params, current, clip, threads)[0], total)
    with pytest.raises(ValueError, match="clip must be a finite number > 0"):
        _core.clipped_update_sum(params, current, 0.0, 1)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    X, y = blobs(rng, n=1000, d=10, classes=3, spread=1.5)
    return X[:800], y[:800], (X[800:], y[800:]), segfast.segment(y[:800], 20, "iid", seed=0)


def test_a_round_is_the_clipped_noisy_mean_over_the_expected_participants(data):
    X, y, val, segs = data
    start = segfast.MLPStack(DIMS, 1, seed=5)
    dp = dict(clip=0.3, noise_multiplier=0.8)
    result = segfast.rounds(start, X, y, segs, rounds=1, fraction=0.25, dp=dp, seed=7, progress=False, lr=0.1)
    g = start.params[0]
    updates = result.local_models.params.astype(np.float64) - g
    norms = np.linalg.norm(updates, axis=1)
    total = (np.minimum(1, 0.3 / norms)[:, None] * updates).sum(axis=0)
    noise = np.random.default_rng([7, 0, 0xD9, 1]).normal(0.0, 0.8 * 0.3, g.shape)
    want = g + (total + noise) / (0.25 * 20)
    np.testing.assert_allclose(result.global_model.params[0], want, rtol=1e-5, atol=1e-6)
    record = result.history[0]
    assert record["participants"] == result.local_models.n_models == len(result.local_segments)
    assert record["dp_clipped_share"] == pytest.approx(np.mean(norms > 0.3))
    assert record["epsilon"] == pytest.approx(DPConfig(0.3, 0.8).epsilon(0.25, 1)) and record["delta"] == 1e-5


def test_participants_are_a_seeded_poisson_sample(data):
    config = DPConfig(1.0, 1.0)
    counts = [len(config.participants(3, r, 50, 0.2)) for r in range(400)]
    assert abs(np.mean(counts) - 10) < 0.5 and len(set(counts)) > 5  # the count varies, around q N
    again = config.participants(3, 17, 50, 0.2)
    assert np.array_equal(again, config.participants(3, 17, 50, 0.2))


def test_a_round_nobody_joins_adds_only_noise(data):
    X, y, val, segs = data
    few = segfast.Segments.from_indices([segs[i] for i in range(3)])
    result = segfast.rounds(
        DIMS,
        X,
        y,
        few,
        rounds=8,
        fraction=0.1,
        dp=dict(clip=1.0, noise_multiplier=1.0),
        val=val,
        seed=2,
        progress=False,
    )
    empty = [h for h in result.history if h["participants"] == 0]
    assert empty and all(h["train_loss"] is None and 0 <= h["global_accuracy"] <= 1 for h in empty)
    assert np.isfinite(result.global_model.params).all()


def test_epsilon_matches_the_closed_form_without_sampling():
    # q = 1: the Gaussian mechanism's RDP is T * a / (2 z^2) at every order a, turned into (eps, delta)
    # by eps = rdp - (log delta + log a) / (a - 1) + log((a - 1) / a), minimised over the orders
    from dp_accounting import rdp

    config = DPConfig(1.0, 1.3, 1e-5)
    orders = np.array(rdp.RdpAccountant()._orders, dtype=float)
    orders = orders[orders > 1]
    closed = 20 * orders / (2 * 1.3**2) - (np.log(1e-5) + np.log(orders)) / (orders - 1) + np.log((orders - 1) / orders)
    assert config.epsilon(1.0, 20) == pytest.approx(closed.min(), rel=1e-9)
    # sampling amplifies: q < 1 spends less; more noise spends less; more rounds spend more
    assert config.epsilon(0.1, 20) < config.epsilon(1.0, 20)
    assert DPConfig(1.0, 2.0).epsilon(0.1, 20) < config.epsilon(0.1, 20) < config.epsilon(0.1, 40)


def test_dp_run_resumes_bit_identical(data, tmp_path):
    X, y, val, segs = data
    common = dict(fraction=0.3, dp=dict(clip=0.5, noise_multiplier=1.1), val=val, seed=4, progress=False, lr=0.1)
    whole = segfast.rounds(DIMS, X, y, segs, rounds=4, **common)
    segfast.rounds(DIMS, X, y, segs, rounds=2, out=tmp_path, **common)
    resumed = segfast.rounds(DIMS, X, y, segs, rounds=4, out=tmp_path, resume=True, **common)
    np.testing.assert_array_equal(resumed.global_model.params, whole.global_model.params)
    assert [h["epsilon"] for h in resumed.history] == [h["epsilon"] for h in whole.history]


@pytest.mark.parametrize(
    "options, error, match",
    [
        ({"dp": {"clip": -1, "noise_multiplier": 1}}, ValueError, r"dp clip must be a finite number > 0"),
        (
            {"dp": {"clip": 1, "noise_multiplier": -0.5}},
            ValueError,
            r"dp noise_multiplier must be a finite number >= 0",
        ),
        ({"dp": {"clip": 1, "noise_multiplier": 1, "delta": 1}}, ValueError, r"dp delta must be in \(0, 1\)"),
        ({"dp": {"clip": 1}}, ValueError, r"dp takes clip=, noise_multiplier= and delta="),
        ({"dp": {"clip": 1, "noise_multiplier": 1}, "fraction": 1.0}, ValueError, r"dp needs fraction < 1"),
        ({"dp": {"clip": 1, "noise_multiplier": 1}, "merge": "rank"}, ValueError, r"pass merge='uniform'"),
        ({"dp": {"clip": 1, "noise_multiplier": 1}, "clusters": 2}, ValueError, r"dp with clusters > 1"),
        ({"dp": 0.5}, TypeError, r"dp must be a dict"),
    ],
)
def test_bad_dp_options_are_refused_naming_the_argument(data, options, error, match, tmp_path):
    X, y, val, segs = data
    options = {"fraction": 0.5, "val": val, **options}
    with pytest.raises(error, match=match):
        segfast.rounds(DIMS, X, y, segs, rounds=1, progress=False, out=tmp_path / "run", **options)
    assert not (tmp_path / "run").exists()
