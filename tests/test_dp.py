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
        _core.clipped_update_sum(params, current, float("nan"), 1)
    with pytest.raises(ValueError, match="global"):  # a row of the wrong length
        _core.clipped_update_sum(params, current[:-1], clip, 1)
    bad = params.copy()
    bad[2, 7], bad[4, 0] = np.nan, np.inf  # a non-finite update counts as none
    total, got_norms = _core.clipped_update_sum(bad, current, clip, 1)
    keep = [0, 1, 3, 5, 6]
    assert not np.isfinite(got_norms[[2, 4]]).any()
    np.testing.assert_allclose(
        total, (np.minimum(1, clip / norms[keep])[:, None] * updates[keep]).sum(axis=0), rtol=1e-10
    )
    empty, _ = _core.clipped_update_sum(params[:0], current, clip, 1)
    assert (empty == 0).all()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    X, y = blobs(rng, n=1000, d=10, classes=3, spread=1.5)
    return X[:800], y[:800], (X[800:], y[800:]), segfast.segment(y[:800], 20, "iid", seed=0)


def test_a_round_is_the_clipped_noisy_mean_over_the_expected_participants(data):
    from segfast._engine import LocalEngine
    from segfast._epochs import TrainConfig

    X, y, val, segs = data
    start = segfast.MLPStack(DIMS, 1, seed=5)
    dp = dict(clip=0.3, noise_multiplier=0.8, delta=1e-3, seed=99)
    result = segfast.rounds(start, X, y, segs, rounds=1, fraction=0.25, dp=dp, seed=7, progress=False, lr=0.1)
    # the oracle: the same participants trained by the same engine, clipped and summed in numpy
    config = DPConfig(0.3, 0.8, 1e-3, key=99)
    chosen = config.participants(0, 20, 0.25)
    engine = LocalEngine(start, X, y, segs, "cpu")
    trained = engine.round(chosen, 1, TrainConfig.checked(10, seed=7, lr=0.1), 1, 0, start.params[0], None, True)
    g = start.params[0]
    updates = trained.models().params.astype(np.float64) - g
    norms = np.linalg.norm(updates, axis=1)
    total = (np.minimum(1, 0.3 / norms)[:, None] * updates).sum(axis=0)
    noise = config._rng(0, 1).normal(0.0, 0.8 * 0.3, g.shape)
    np.testing.assert_allclose(result.global_model.params[0], g + (total + noise) / (0.25 * 20), rtol=1e-5, atol=1e-6)
    assert result.history[0]["epsilon"] == pytest.approx(config.epsilon(0.25, 1)) and result.history[0]["delta"] == 1e-3


def test_nothing_of_the_local_models_is_released(data, tmp_path):
    X, y, val, segs = data
    common = dict(fraction=0.3, dp=dict(clip=0.5, noise_multiplier=1.0, delta=1e-3), val=val, progress=False)
    result = segfast.rounds(DIMS, X, y, segs, rounds=2, out=tmp_path, **common)
    assert result.local_models is None and result.local_segments is None
    assert not (tmp_path / "local_models.npz").exists()
    private = {"participants", "train_loss", "diverged", "segment_accuracy_mean", "ensemble_accuracy"}
    assert not private & set().union(*result.history)
    config = (tmp_path / "config.json").read_text()
    assert '"noise_multiplier": 1.0' in config and "dp_key" not in config and 'seed": 9' not in config
    assert np.load(tmp_path / "checkpoint.npz")["dp_key"].shape == (4,)
    with pytest.raises(ValueError, match="val_segments scores the local models"):
        segfast.rounds(DIMS, X, y, segs, rounds=1, **{**common, "val_segments": True})


def test_the_noise_is_secret_unless_a_dp_seed_is_given(data):
    X, y, val, segs = data
    common = dict(rounds=1, fraction=0.3, seed=1, progress=False)
    dp = dict(clip=0.5, noise_multiplier=1.0, delta=1e-3)
    first, second = (segfast.rounds(DIMS, X, y, segs, dp=dp, **common) for _ in range(2))
    assert not np.array_equal(first.global_model.params, second.global_model.params)  # the public seed is not enough
    given = [segfast.rounds(DIMS, X, y, segs, dp={**dp, "seed": 12345}, **common) for _ in range(2)]
    np.testing.assert_array_equal(given[0].global_model.params, given[1].global_model.params)


def test_participants_are_a_poisson_sample_of_the_key():
    config = DPConfig(1.0, 1.0, key=3)
    counts = [len(config.participants(r, 50, 0.2)) for r in range(400)]
    assert abs(np.mean(counts) - 10) < 0.5 and len(set(counts)) > 5  # the count varies, around q N
    assert np.array_equal(config.participants(17, 50, 0.2), DPConfig(2.0, 3.0, key=3).participants(17, 50, 0.2))
    assert not np.array_equal(config.participants(17, 50, 0.2), DPConfig(1.0, 1.0, key=4).participants(17, 50, 0.2))


@pytest.mark.parametrize("with_val", [True, False])
def test_a_round_nobody_joins_adds_only_noise(data, with_val):
    X, y, val, segs = data
    few = segfast.Segments.from_indices([segs[i] for i in range(3)])
    dp = dict(clip=1.0, noise_multiplier=1.0, delta=1e-3, seed=2)
    result = segfast.rounds(
        DIMS, X, y, few, rounds=8, fraction=0.1, dp=dp, val=val if with_val else None, seed=2, progress=False
    )
    assert any(DPConfig(1.0, 1.0, key=2).participants(r, 3, 0.1).size == 0 for r in range(8))  # nobody, some round
    assert np.isfinite(result.global_model.params).all() and len(result.history) == 8


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


def test_epsilon_matches_a_value_the_library_documents():
    # dp-accounting's own test: noise 4.530877117 without sampling gives exactly (1, 1e-6)-DP
    assert DPConfig(1.0, 4.530877117, 1e-6).epsilon(1.0, 1) == pytest.approx(1.0, abs=1e-4)


def test_a_forged_dp_key_is_refused(data, tmp_path):
    from segfast import results

    X, y, val, segs = data
    common = dict(fraction=0.3, dp=dict(clip=0.5, noise_multiplier=1.0, delta=1e-3), progress=False)
    segfast.rounds(DIMS, X, y, segs, rounds=1, out=tmp_path, **common)
    state = dict(np.load(tmp_path / "checkpoint.npz"))
    state["dp_key"] = state["dp_key"][:2]
    results.write_atomic(tmp_path / "checkpoint.npz", results._npz_bytes(**state))
    with pytest.raises(ValueError, match=r"dp_key must be \(4,\) uint64"):
        segfast.rounds(DIMS, X, y, segs, rounds=2, out=tmp_path, resume=True, **common)


def test_dp_run_resumes_bit_identical_with_its_secret_key(data, tmp_path):
    X, y, val, segs = data
    dp = dict(clip=0.5, noise_multiplier=1.1, delta=1e-3)
    common = dict(fraction=0.3, val=val, seed=4, progress=False, lr=0.1)
    segfast.rounds(DIMS, X, y, segs, rounds=2, out=tmp_path, dp=dp, **common)  # a key from the OS
    key = DPConfig.key_of(np.load(tmp_path / "checkpoint.npz")["dp_key"])
    resumed = segfast.rounds(DIMS, X, y, segs, rounds=4, out=tmp_path, resume=True, dp=dp, **common)
    whole = segfast.rounds(DIMS, X, y, segs, rounds=4, dp={**dp, "seed": key}, **common)
    np.testing.assert_array_equal(resumed.global_model.params, whole.global_model.params)
    assert [h["epsilon"] for h in resumed.history] == [h["epsilon"] for h in whole.history]
    with pytest.raises(ValueError, match="differs in dp"):  # other privacy settings: another run
        segfast.rounds(
            DIMS, X, y, segs, rounds=5, out=tmp_path, resume=True, dp={**dp, "noise_multiplier": 5}, **common
        )
    with pytest.raises(ValueError, match="dp seed is not the one this run directory was started with"):
        segfast.rounds(DIMS, X, y, segs, rounds=5, out=tmp_path, resume=True, dp={**dp, "seed": key + 1}, **common)


@pytest.mark.parametrize(
    "options, error, match",
    [
        ({"dp": {"clip": -1, "noise_multiplier": 1}}, ValueError, r"dp clip must be > 0"),
        ({"dp": {"clip": 10**400, "noise_multiplier": 1}}, ValueError, r"dp clip must be a finite number"),
        ({"dp": {"clip": float("nan"), "noise_multiplier": 1}}, ValueError, r"dp clip must be a finite number"),
        ({"dp": {"clip": 1, "noise_multiplier": "1"}}, ValueError, r"dp noise_multiplier must be a finite"),
        ({"dp": {"clip": 1, "noise_multiplier": 0}}, ValueError, r"dp noise_multiplier must be > 0 \(0 is no"),
        ({"dp": {"clip": 1, "noise_multiplier": 1, "delta": 0.1}}, ValueError, r"dp delta must be in \(0, 1/segm"),
        ({"dp": {"clip": 1, "noise_multiplier": 1, "seed": -1}}, ValueError, r"dp seed must be an integer >= 0"),
        ({"dp": {"clip": 1}}, ValueError, r"dp takes clip=, noise_multiplier=, delta="),
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
