"""k-means, silhouette, the cluster policies of merge() and the weight-space map."""

import numpy as np
import pytest

import segfast
from segfast import MLPStack, _core


def clustered_stack(rng, sizes=(4, 5, 6), dims=(6, 5, 3), spread=0.01):
    """Models scattered tightly around well separated centres: a known cluster structure."""
    P = _core.n_params(list(dims))
    centres = rng.standard_normal((len(sizes), P)) * 3
    labels = np.repeat(np.arange(len(sizes)), sizes)
    params = centres[labels] + spread * rng.standard_normal((len(labels), P))
    order = rng.permutation(len(labels))
    return MLPStack.from_params(dims, params[order]), labels[order]


def same_partition(a, b):
    return all(len(set(b[a == c])) == 1 for c in np.unique(a)) and len(np.unique(a)) == len(np.unique(b))


def test_kmeans_finds_separated_clusters_and_k(rng):
    stack, truth = clustered_stack(rng)
    result = segfast.cluster(stack, align=False)
    assert result.k == 3 and same_partition(result.labels, truth)
    assert result.silhouette > 0.9
    assert set(result.scores) == set(range(2, 11)) & set(range(2, 15))
    for c in range(3):
        members = stack.params[result.labels == c]
        np.testing.assert_allclose(result.centroids.params[c], members.mean(0), rtol=1e-4, atol=1e-5)


def test_kmeans_is_deterministic_and_thread_independent(rng):
    X = rng.standard_normal((200, 30)).astype(np.float32)
    a = _core.kmeans(X, 4, 3, 100, 1)
    b = _core.kmeans(X, 4, 3, 100, 2)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    # a local optimum of Lloyd: every point is nearest to its own centroid
    d = ((X[:, None, :] - a[1][None]) ** 2).sum(-1)
    np.testing.assert_array_equal(d.argmin(1), a[0])
    assert a[2] == pytest.approx(d.min(1).sum(), rel=1e-4)


def test_pairwise_distances_and_silhouette_match_numpy(rng):
    X = rng.standard_normal((60, 25)).astype(np.float32)
    dist = _core.pairwise_distances(X, 2)
    want = np.sqrt(((X[:, None, :].astype(np.float64) - X[None]) ** 2).sum(-1))
    np.testing.assert_allclose(dist, want, rtol=1e-4, atol=1e-4)
    labels = rng.integers(0, 3, 60).astype(np.int32)
    s = []
    for i in range(60):
        own = labels == labels[i]
        a = want[i, own].sum() / (own.sum() - 1)
        b = min(want[i, labels == c].mean() for c in range(3) if c != labels[i])
        s.append((b - a) / max(a, b))
    assert _core.silhouette(dist, labels, 3) == pytest.approx(np.mean(s), rel=1e-4)


def test_cluster_policies(rng):
    stack, truth = clustered_stack(rng, dims=(6, 5, 3))
    X = rng.standard_normal((50, 6)).astype(np.float32)
    y = rng.integers(0, 3, 50)
    per_cluster = segfast.merge(stack, "cluster-merge", k=3)
    assert per_cluster.n_models == 3
    merged, d = segfast.merge(stack, "cluster-best", val=(X, y), k=3, return_details=True)
    losses = d["cluster_losses"]
    best = np.argmin(losses)
    if d["chosen"] is not None:
        np.testing.assert_allclose(merged.params[0], stack.params[d["labels"] == best].mean(0), rtol=1e-4, atol=1e-5)
    else:
        want = np.mean([stack.params[d["labels"] == c].mean(0) for c in range(3)], axis=0)
        np.testing.assert_allclose(merged.params[0], want, rtol=1e-4, atol=1e-5)
    # margin 0: the best cluster is always "clearly" best
    _, d0 = segfast.merge(stack, "cluster-best", val=(X, y), k=3, margin=0.0, return_details=True)
    assert d0["chosen"] == best


def test_cluster_bad_input(rng):
    stack, _ = clustered_stack(rng)
    with pytest.raises(ValueError, match="larger than the number of models"):
        segfast.cluster(stack, k=16)
    with pytest.raises(ValueError, match="k must be an integer"):
        segfast.cluster(stack, k=0)
    with pytest.raises(ValueError, match="at least 3 models"):
        segfast.cluster(stack.select([0, 1]))
    with pytest.raises(TypeError, match="positional"):  # cluster(stack, 3, False) reads as anything
        segfast.cluster(stack, 3)
    with pytest.raises(ValueError, match="k must be in"):
        _core.kmeans(np.zeros((3, 2), np.float32), 4, 0, 10, 1)


def test_weight_map_is_a_shared_pca(rng):
    stack, _ = clustered_stack(rng)
    merged = segfast.merge(stack)
    coords, merged_xy = segfast.weight_map(stack, merged)
    assert coords.shape == (15, 2) and merged_xy.shape == (1, 2)
    X = np.concatenate([stack.params, merged.params]).astype(np.float64)
    X -= X.mean(0)
    u, s, _ = np.linalg.svd(X, full_matrices=False)
    want = u[:, :2] * s[:2]
    got = np.concatenate([coords, merged_xy])
    np.testing.assert_allclose(np.abs(got), np.abs(want), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="one architecture"):
        segfast.weight_map(stack, MLPStack([6, 4, 3]))
    with pytest.raises(ValueError, match="method"):
        segfast.weight_map(stack, method="tsne")
