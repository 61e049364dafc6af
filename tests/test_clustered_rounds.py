"""Clustered rounds (rounds(clusters=k)): IFCA's assignment against a numpy reference, both
clusterings recovering planted groups, resume bit for bit, the run directory, bad input."""

import json

import numpy as np
import pytest

import segfast
from reference import forward, softmax
from segfast import MLPStack, results
from segfast._clustered import LOSS_ROWS, relabel, reseeded, scored_rows, segment_losses

GROUPS, PER_GROUP, ROWS, D, C = 4, 4, 300, 12, 4
DIMS = [D, 16, C]


@pytest.fixture(scope="module")
def planted():
    """16 segments in 4 groups; a group's labels come from its own random linear map, so one
    model cannot fit two groups. Each segment has 60 held-out val rows of its group."""
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(GROUPS, D, C))
    n_seg = GROUPS * PER_GROUP
    group = np.arange(n_seg) // PER_GROUP

    def rows(per_segment):
        X = rng.normal(size=(n_seg * per_segment, D)).astype(np.float32)
        owner = np.repeat(group, per_segment)
        return X, np.einsum("nd,ndc->nc", X, maps[owner]).argmax(axis=1)

    X, y = rows(ROWS)
    X_val, y_val = rows(60)
    segments = [np.arange(i * ROWS, (i + 1) * ROWS) for i in range(n_seg)]
    segment_val = [np.arange(i * 60, (i + 1) * 60) for i in range(n_seg)]
    return X, y, segments, (X_val, y_val), segment_val, group


def _run(planted, **options):
    X, y, segments, val, segment_val, _ = planted
    options = {"rounds": 10, "lr": 0.1, "progress": False, "seed": 1, **options}
    return segfast.rounds(DIMS, X, y, segments, val=val, segment_val=segment_val, **options)


def _same_partition(a, b) -> bool:
    """Whether labels a and b cut the items alike, whatever the ids."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


# -- IFCA's choice ----------------------------------------------------------------------------------
def test_scored_rows_are_evenly_spaced_and_all_of_a_short_segment():
    segs = segfast.Segments.from_indices([np.arange(100) * 3, np.arange(1000) + 5000, np.array([7])])
    rows, counts = scored_rows(segs, np.array([0, 1, 2]))
    assert counts.tolist() == [100, LOSS_ROWS, 1]
    np.testing.assert_array_equal(rows[:100], np.arange(100) * 3)
    picked = rows[100 : 100 + LOSS_ROWS]
    np.testing.assert_array_equal(picked, 5000 + np.arange(LOSS_ROWS) * 1000 // LOSS_ROWS)
    assert rows[-1] == 7
    rows, counts = scored_rows(segs, np.array([2, 0]))  # any subset, in the order asked
    assert counts.tolist() == [1, 100] and rows[0] == 7


def test_segment_losses_match_numpy_and_choose_the_lowest(planted):
    X, y, segments, *_ = planted
    stack = MLPStack(DIMS, 3, seed=4)
    segs = segfast.Segments.from_indices(segments)
    ids = np.array([0, 5, 6, 15])
    got = segment_losses(stack.dims, "classification", stack.params, X, y, segs, ids, threads=2)
    want = np.zeros((len(ids), 3))
    for a, i in enumerate(ids):
        rows = segments[i][np.arange(LOSS_ROWS) * ROWS // LOSS_ROWS]
        for m in range(3):
            p = softmax(forward(DIMS, stack.params[m], X[rows])[0])
            want[a, m] = -np.log(p[np.arange(len(rows)), y[rows]]).mean()
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # chunked the same: one segment per core call gives the same numbers
    one_by_one = np.concatenate(
        [segment_losses(stack.dims, "classification", stack.params, X, y, segs, [i], threads=1) for i in ids]
    )
    np.testing.assert_allclose(got, one_by_one, rtol=1e-6)


def test_segment_losses_for_regression_are_mean_squared_errors():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(50, 3)).astype(np.float32)
    y = rng.normal(size=(50, 2)).astype(np.float32)
    stack = MLPStack([3, 5, 2], 2, seed=0, task="regression")
    segs = segfast.Segments.from_indices([np.arange(20), np.arange(20, 50)])
    got = segment_losses(stack.dims, "regression", stack.params, X, y, segs, np.array([0, 1]), threads=1)
    for s, rows in enumerate((np.arange(20), np.arange(20, 50))):
        for m in range(2):
            z = forward([3, 5, 2], stack.params[m], X[rows])[0]
            assert got[s, m] == pytest.approx(((z - y[rows]) ** 2).mean(), rel=1e-5)


def test_the_loss_rule_assigns_each_participant_its_lowest_loss_model(planted):
    X, y, segments, *_ = planted
    result = _run(planted, rounds=1, clusters=3, val_segments=False)
    start = MLPStack(DIMS, 3, seed=1)  # rounds' own k seeded starts
    segs = segfast.Segments.from_indices(segments)
    losses = segment_losses(start.dims, "classification", start.params, X, y, segs, np.arange(len(segments)), 1)
    chosen = losses.argmin(axis=1)
    # a cluster nobody chose is seeded from a participant of another, which then moves to it
    moved = result.clusters != chosen
    assert moved.sum() == (np.bincount(chosen, minlength=3) == 0).sum()
    assert result.history[0]["cluster_sizes"] == np.bincount(result.clusters, minlength=3).tolist()


# -- helpers ----------------------------------------------------------------------------------------
def test_relabel_keeps_ids_by_overlap():
    old = np.array([0, 0, 0, 1, 1, 2, 2, -1])
    new = np.array([2, 2, 2, 0, 0, 1, 1, 1])  # the same cut, other ids, and a newcomer
    np.testing.assert_array_equal(relabel(new, old, 3), [0, 0, 0, 1, 1, 2, 2, 2])
    # a split: the larger part keeps the id, the new part takes the free one
    np.testing.assert_array_equal(relabel(np.array([1, 1, 0, 2]), np.array([0, 0, 0, 1]), 3), [0, 0, 2, 1])
    np.testing.assert_array_equal(
        relabel(np.array([1, 0]), np.array([-1, -1]), 2), [1, 0]
    )  # nobody known: as k-means said


def test_reseeding_takes_the_member_farthest_from_a_mixed_cluster():
    stack = MLPStack([2, 1, 2], 4, seed=0)
    stack.params[:] = 0
    stack.params[:, 0] = [0.0, 0.1, 5.0, 7.0]
    assignment = np.array([0, 0, 1, 0, -1])
    chosen = np.array([0, 2, 3, 1])  # round positions of segments 0, 2, 3, 1: clusters 0, 1, 0, 0
    labels = assignment[chosen]
    merged = {c: stack.params[labels == c].mean(axis=0) for c in (0, 1)}  # cluster 0's mean: 4.0
    assert reseeded(assignment, chosen, stack, merged, 3) == {2: 0}  # position 0 lies farthest (4.0)
    # a second empty cluster: cluster 0 has given once and cluster 1 has one member only, so
    # cluster 0 gives again, its next farthest (position 3, 3.0 away)
    assert reseeded(assignment, chosen, stack, merged, 4) == {2: 0, 3: 3}
    assert reseeded(assignment, chosen, stack, merged, 2) == {}  # no empty cluster


# -- the loops --------------------------------------------------------------------------------------
@pytest.mark.parametrize("by", ["loss", "weights"])
def test_both_clusterings_recover_planted_groups_and_beat_one_model(planted, by):
    *_, group = planted
    plain = _run(planted)
    result = _run(planted, clusters=4, cluster_by=by)
    assert _same_partition(result.clusters, group), result.clusters
    last = result.history[-1]
    assert last["own_accuracy_mean"] > plain.history[-1]["own_accuracy_mean"] + 0.15
    assert result.global_model.n_models == 4 and len(last["cluster_accuracy"]) == 4
    assert last["clusters"] == result.clusters.tolist() and sum(last["cluster_sizes"]) == len(group)
    # global_* are the routed scores: each segment's rows through its cluster's model
    assert last["global_accuracy"] == pytest.approx(last["own_accuracy_mean"], abs=1e-9)  # equal-size segments
    # the k models serve Ensemble and merge like any stack
    X_val, y_val = planted[3]
    vote = segfast.predict_proba(result.global_model, X_val).mean(axis=0).argmax(axis=1)
    assert segfast.Ensemble(result.global_model, "soft").score(X_val, y_val) == pytest.approx(np.mean(vote == y_val))
    assert segfast.merge(result.global_model, "uniform").n_models == 1


def test_weight_clustering_every_third_round_keeps_clusters_between(planted):
    result = _run(planted, clusters=4, cluster_by="weights", recluster_every=3)
    assert _same_partition(result.clusters, planted[-1])
    for r in range(0, 10, 3):  # reclustered in rounds 1, 4, 7 and 10, kept between
        kept = result.history[r : r + 3]
        assert all(h["clusters"] == kept[0]["clusters"] for h in kept)


def test_one_model_with_segment_val_reports_own_accuracy_and_keeps_the_rest(planted):
    X, y, segments, val, segment_val, _ = planted
    common = dict(rounds=2, lr=0.1, progress=False, seed=3, val=val)
    plain = segfast.rounds(DIMS, X, y, segments, **common)
    own = segfast.rounds(DIMS, X, y, segments, segment_val=segment_val, **common)
    np.testing.assert_array_equal(plain.global_model.params, own.global_model.params)
    assert own.clusters is None and plain.history[-1]["global_accuracy"] == own.history[-1]["global_accuracy"]
    per_segment = [np.mean(segfast.predict(own.global_model, val[0][rows])[0] == val[1][rows]) for rows in segment_val]
    assert own.history[-1]["own_accuracy_mean"] == pytest.approx(np.mean(per_segment))


def test_partial_participation_routes_unseen_segments_by_loss(planted):
    result = _run(planted, clusters=2, fraction=0.25, rounds=2)
    first = np.array(result.history[0]["clusters"])
    assert (first == -1).sum() == 12 and set(first[first >= 0]) <= {0, 1}
    assert "own_accuracy_mean" in result.history[0]


@pytest.mark.parametrize("by", ["loss", "weights"])
def test_clustered_run_resumes_bit_identical(planted, by, tmp_path):
    X, y, segments, val, segment_val, _ = planted
    common = dict(clusters=3, cluster_by=by, server_momentum=0.5, lr=0.1, progress=False, seed=2, val=val)
    common["val_segments"] = False  # the segment models' scores change with the run's last round
    whole = segfast.rounds(DIMS, X, y, segments, rounds=5, segment_val=segment_val, **common)
    segfast.rounds(DIMS, X, y, segments, rounds=2, segment_val=segment_val, out=tmp_path / "r", **common)
    state = np.load(tmp_path / "r" / "checkpoint.npz")
    assert state["global"].shape == (3, whole.global_model.n_params) and state["clusters"].dtype == np.int64
    resumed = segfast.rounds(
        DIMS, X, y, segments, rounds=5, segment_val=segment_val, out=tmp_path / "r", resume=True, **common
    )
    np.testing.assert_array_equal(resumed.global_model.params, whole.global_model.params)
    np.testing.assert_array_equal(resumed.clusters, whole.clusters)
    np.testing.assert_array_equal(resumed.best_model.params, whole.best_model.params)
    drop = ("seconds_train", "seconds_merge", "seconds_eval")
    assert [{k: v for k, v in h.items() if k not in drop} for h in resumed.history] == [
        {k: v for k, v in h.items() if k not in drop} for h in whole.history
    ]
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert (config["clusters"], config["cluster_by"]) == (3, by)
    assert "clusters" not in (tmp_path / "r" / "summary.csv").read_text().splitlines()[0].split(",")
    assert MLPStack.load(tmp_path / "r" / "final.npz").n_models == 3


def test_a_forged_cluster_id_in_the_checkpoint_is_refused(planted, tmp_path):
    X, y, segments, val, *_ = planted
    common = dict(clusters=2, lr=0.1, progress=False, val=val)
    segfast.rounds(DIMS, X, y, segments, rounds=1, out=tmp_path, **common)
    state = dict(np.load(tmp_path / "checkpoint.npz"))
    state["clusters"][3] = 2
    results.write_atomic(tmp_path / "checkpoint.npz", results._npz_bytes(**state))
    with pytest.raises(ValueError, match=r"clusters must hold cluster ids in \[-1, 2\)"):
        segfast.rounds(DIMS, X, y, segments, rounds=2, out=tmp_path, resume=True, **common)


# -- bad input --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options, error, match",
    [
        ({"clusters": 0}, ValueError, r"clusters must be an integer >= 1"),
        ({"clusters": 17}, ValueError, r"clusters must be an integer >= 1 and <= 16"),
        ({"clusters": True}, ValueError, r"clusters must be an integer"),
        ({"clusters": 2, "cluster_by": "cosine"}, ValueError, r"cluster_by must be one of 'loss', 'weights'"),
        ({"clusters": 2, "recluster_every": 0}, ValueError, r"recluster_every must be an integer >= 1"),
        ({"clusters": 2, "device": "cuda"}, ValueError, r"clusters > 1 trains on the CPU"),
        ({"clusters": 2, "merge": "cluster-best"}, ValueError, r"merge='cluster-best' clusters the segment models"),
        ({"segment_val": [np.arange(3)] * 16, "val": None}, ValueError, r"segment_val indexes the val rows"),
        ({"segment_val": [np.arange(3)] * 15}, ValueError, r"segment_val must give one list of val rows per segment"),
        ({"segment_val": [np.arange(3) + 10**6] * 16}, ValueError, r"^segment_val \(each segment's own val rows"),
        ({"segment_val": 5}, TypeError, r"^segment_val \(each segment's own val rows"),
        ({"clusters": 2, "cluster_by": "weights", "fraction": 0.5}, ValueError, r"cluster_by='weights' .* fraction=1"),
        ({"clusters": 2, "cluster_by": np.array(["weights"])}, ValueError, r"cluster_by must be one of"),
        ({"segment_val": [np.array([0.5, 1.5])] * 16}, TypeError, r"^segment_val \(each segment's own val rows"),
        ({"segment_val": [np.array([], dtype=np.int64)] * 16}, ValueError, r"^segment_val \(each segment's own"),
        ({"clusters": 2**62}, ValueError, r"clusters must be an integer >= 1 and <= 16"),
    ],
)
def test_bad_cluster_options_are_refused_naming_the_argument(planted, options, error, match, tmp_path):
    X, y, segments, val, *_ = planted
    options = {"val": val, **options}
    with pytest.raises(error, match=match):
        segfast.rounds(DIMS, X, y, segments, rounds=1, progress=False, out=tmp_path / "run", **options)
    assert not (tmp_path / "run").exists()  # refused before the run directory


def test_zero_weight_members_leave_their_cluster_unmerged(planted):
    X, y, segments, val, *_ = planted
    weights = np.ones(16)
    weights[:8] = 0  # two groups with weight 0: their clusters keep their models
    result = segfast.rounds(
        DIMS,
        X,
        y,
        segments,
        rounds=3,
        clusters=4,
        merge={"method": "weighted", "weights": weights},
        val=val,
        progress=False,
        lr=0.1,
    )
    assert result.global_model.n_models == 4 and np.isfinite(result.global_model.params).all()


def test_start_models_must_number_k_for_the_loss_rule(planted):
    X, y, segments, *_ = planted
    with pytest.raises(ValueError, match=r"clusters=3 starts from 3 global models; got a stack of 1"):
        segfast.rounds(MLPStack(DIMS, 1), X, y, segments, rounds=1, clusters=3, progress=False)
    with pytest.raises(ValueError, match=r"rounds starts from one global model; got a stack of 2"):
        segfast.rounds(MLPStack(DIMS, 2), X, y, segments, rounds=1, progress=False)
    # one model with weight clustering: k copies of it; k models: as given
    result = segfast.rounds(
        MLPStack(DIMS, 1), X, y, segments, rounds=1, clusters=3, cluster_by="weights", progress=False
    )
    assert result.global_model.n_models == 3
    given = MLPStack(DIMS, 3, seed=9)
    result = segfast.rounds(given, X, y, segments, rounds=1, clusters=3, progress=False, val_segments=False)
    assert result.global_model.n_models == 3
