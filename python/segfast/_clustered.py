"""Clustered rounds' choices: which of k global models each segment trains (IFCA's rule: the one
with the lowest loss on the segment's own rows), and cluster ids kept stable when the segment
models are clustered again in weight space.

What it is not: the rounds loop (rounds.py), nor k-means itself (segfast.cluster).
"""

from __future__ import annotations

import numpy as np

from . import _core
from ._round_eval import cross_entropy
from ._validate import integer
from .cluster import kmeans_labels
from .segments import Segments
from .stack import MLPStack

CLUSTER_BY = ("loss", "weights")

# A segment scores the k models on at most this many of its own rows, evenly spaced through it:
# the same rows every round and on every engine, with no random draw to key. 128 rather than 256
# halves the cost of the choice and told rotated Fashion-MNIST's groups apart as well (the
# measurements: bench/README.md, clustered rounds).
LOSS_ROWS = 128

# Rows scored per core call, times k models and C outputs: the (k, rows, C) probabilities stay
# near 64 MB however many segments take part.
_CHUNK_VALUES = 1 << 24


def scored_rows(segments: Segments, ids: np.ndarray, rows: int = LOSS_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """(row indices, count per segment): up to ``rows`` evenly spaced rows of each segment ``ids``."""
    sizes = segments.sizes[ids]
    counts = np.minimum(sizes, rows)
    owner = np.repeat(np.arange(len(ids)), counts)
    step = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    positions = segments.offsets[ids][owner] + step * sizes[owner] // np.maximum(counts[owner], 1)
    return segments.order[positions], counts


def segment_losses(dims, task: str, models: np.ndarray, X, y, segments: Segments, ids, threads: int) -> np.ndarray:
    """(len(ids), k) float64: each segment's mean loss of each of the k models (rows of
    ``models``) on its scored rows (cross-entropy, or squared error for regression); 0 for a
    segment without rows."""
    rows, counts = scored_rows(segments, np.asarray(ids))
    k, n_outputs = len(models), dims[-1]
    out = np.zeros((len(counts), k))
    ends = np.cumsum(counts)
    per_chunk = max(LOSS_ROWS, _CHUNK_VALUES // (k * n_outputs))
    first = 0
    while first < len(counts):
        # whole segments, as many as fit the chunk (at least one)
        base = ends[first - 1] if first else 0
        stop = max(first + 1, int(np.searchsorted(ends, base + per_chunk, side="right")))
        picked = rows[base : ends[stop - 1]]
        values = _core.predict_proba(list(dims), models, X[picked], threads, softmax=task == "classification")
        if task == "classification":
            p = np.take_along_axis(values, y[picked][None, :, None].astype(np.intp), axis=2)[:, :, 0]
            per_row = cross_entropy(p)
        else:
            per_row = ((values - y[picked][None]) ** 2).mean(axis=2, dtype=np.float64)
        summed = np.concatenate([np.zeros((k, 1)), np.cumsum(per_row, axis=1)], axis=1)
        local = ends[first:stop] - base
        sums = summed[:, local] - summed[:, np.concatenate([[0], local[:-1]])]
        out[first:stop] = (sums / np.maximum(counts[first:stop], 1)).T
        first = stop
    return out


def relabel(new: np.ndarray, old: np.ndarray, k: int) -> np.ndarray:
    """``new`` cluster labels renamed to the ``old`` ids (-1: none) they share most members with,
    largest overlap first, so that a cluster keeps its id, its model and its server state across
    reclusterings; a new cluster that overlaps none takes the lowest free id."""
    overlap = np.zeros((k, k), dtype=np.int64)
    known = old >= 0
    np.add.at(overlap, (new[known], old[known]), 1)
    mapping = np.full(k, -1)
    taken = np.zeros(k, dtype=bool)
    for flat in np.argsort(-overlap, axis=None, kind="stable"):
        a, b = divmod(int(flat), k)
        if overlap[a, b] == 0:
            break
        if mapping[a] < 0 and not taken[b]:
            mapping[a], taken[b] = b, True
    free = iter(np.flatnonzero(~taken))
    for a in range(k):
        if mapping[a] < 0:
            mapping[a] = next(free)
    return mapping[new]


def checked_cluster_by(cluster_by) -> str:
    if not isinstance(cluster_by, str) or cluster_by not in CLUSTER_BY:
        raise ValueError(f"cluster_by must be one of {', '.join(map(repr, CLUSTER_BY))}, got {cluster_by!r}")
    return cluster_by


def checked_clusters(clusters, cluster_by, recluster_every, n_segments: int, device: str, fraction: float) -> dict:
    clusters = integer(clusters, "clusters", 1, n_segments)  # at most one cluster per segment
    cluster_by = checked_cluster_by(cluster_by)
    recluster_every = integer(recluster_every, "recluster_every", 1)
    if clusters > 1:
        check_device(device)
        if cluster_by == "weights" and fraction < 1:
            # k-means of a round's few participants would split one group to make k clusters, and
            # hand the pieces the ids (and models) of absent segments' clusters
            raise ValueError(
                "cluster_by='weights' clusters every segment's trained model, so it needs fraction=1; "
                "with partial participation use cluster_by='loss' (each segment chooses by its own loss)"
            )
    return {"clusters": clusters, "cluster_by": cluster_by, "recluster_every": recluster_every}


def check_device(device) -> None:
    if device == "cuda":
        raise ValueError("clusters > 1 trains on the CPU (one start per segment); pass device='auto' or device='cpu'")


def chosen_clusters(plan, engine, chosen: np.ndarray, global_params: np.ndarray, assignment: np.ndarray):
    """The assignment with the round's participants placed. cluster_by="loss": each takes the
    model of lowest loss on its own rows (IFCA; ties to the lower id); "weights": a participant
    keeps its cluster and only a newcomer chooses so."""
    assignment = assignment.copy()
    asked = chosen if plan.cluster_by == "loss" else chosen[assignment[chosen] < 0]
    if len(asked) and (global_params != global_params[0]).any():
        assignment[asked] = engine.losses(asked, global_params, plan.threads).argmin(axis=1)
    elif len(asked):  # k equal models (weight clustering's shared start): nothing to score
        assignment[asked] = 0
    return assignment


def reseeded(assignment: np.ndarray, chosen: np.ndarray, models: MLPStack, merged: dict, k: int) -> dict:
    """{empty cluster: the round position whose trained model becomes its model}. IFCA's random
    starts often leave a cluster that no segment chooses, and a cluster nobody trains never
    improves enough to be chosen: it is revived as k-means revives an empty cluster, from the
    point farthest from its centroid. The donors are the participants whose trained models lie
    farthest from their cluster's merged model (``merged``: cluster -> row), as the members of
    a cluster that holds two groups do, at most one per cluster while that lasts and never the
    last member of a cluster; each donor moves to the cluster it seeds."""
    sizes = np.bincount(assignment[assignment >= 0], minlength=k)
    empty = list(np.flatnonzero(sizes == 0))
    if not empty:
        return {}
    labels = assignment[chosen]
    far = np.full(len(chosen), -np.inf)
    for i in np.flatnonzero(~models.diverged):
        far[i] = np.sum((models.params[i] - merged[labels[i]]).astype(np.float64) ** 2)
    picks: dict = {}
    worst_first = [i for i in np.argsort(-far, kind="stable") if np.isfinite(far[i])]
    for one_per_cluster in (True, False):
        donors = set()
        for i in worst_first:
            if not empty:
                return picks
            c = assignment[chosen[i]]
            if i in picks.values() or sizes[c] < 2 or (one_per_cluster and c in donors):
                continue
            donors.add(c)
            sizes[c] -= 1
            picks[empty.pop(0)] = i
    return picks


def reclustered(plan, models: MLPStack, chosen: np.ndarray, assignment: np.ndarray, r: int) -> np.ndarray:
    """The assignment after k-means of the participants' trained models (diverged ones keep
    theirs), cluster ids matched to the old ones by overlap so that models and server state stay
    with their cluster."""
    ok = np.flatnonzero(~models.diverged)
    if not len(ok):
        return assignment
    seed = int(np.random.default_rng([plan.config.seed, r, 0xC1]).integers(2**31))
    labels = kmeans_labels(models.select(ok), min(plan.clusters, len(ok)), seed=seed, n_jobs=plan.threads)
    assignment = assignment.copy()
    assignment[chosen[ok]] = relabel(labels, assignment[chosen[ok]], plan.clusters)
    return assignment


def routes(plan, engine, global_params: np.ndarray, assignment: np.ndarray) -> np.ndarray:
    """The model each segment's own val rows go through: its cluster's, or for a segment that has
    not taken part yet, the model of lowest loss on its training rows (IFCA's rule, as a new
    client would choose)."""
    if plan.segment_val is None or len(global_params) == 1:
        return np.zeros(len(assignment), dtype=np.int64)
    routes = assignment.copy()
    unseen = np.flatnonzero(routes < 0)
    if len(unseen):
        routes[unseen] = engine.losses(unseen, global_params, plan.threads).argmin(axis=1)
    return routes
