"""Clustering models in weight space, and a 2-D map of weight space for plots."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from . import _core, _validate
from ._threads import resolve_n_jobs
from ._validate import check_stack, integer, positive_int
from .align import align as align_stack
from .stack import MLPStack


class Clustering(NamedTuple):
    labels: np.ndarray  # (N,) cluster of each model
    centroids: MLPStack  # (k models) the cluster means
    silhouette: float  # mean silhouette of the chosen labelling (0 when k = 1)
    k: int
    scores: dict  # silhouette for each k tried (k = None)


def cluster(
    stack: MLPStack,
    *,
    k=None,
    align: bool = True,
    seed: int = 0,
    k_max: int = 10,
    max_iter: int = 300,
    n_jobs: int = -1,
) -> Clustering:
    """k-means (k-means++ start, in C++) of the models seen as points (their parameter rows).

    With ``align=True`` the models are first aligned (merge-many to model 0), since unaligned
    models differ by permutations that say nothing about what they learned. ``k=None`` picks k
    in 2..min(k_max, N - 1) by the best silhouette score.
    """
    check_stack(stack)
    threads = resolve_n_jobs(n_jobs)
    n = stack.n_models
    if k is not None:
        k = integer(k, "k", minimum=1)
        if k > n:
            raise ValueError(f"k={k} is larger than the number of models ({n})")
    elif n < 3:
        raise ValueError(f"choosing k by silhouette needs at least 3 models, got {n}; pass k=")
    seed = _validate.seed(seed)
    k_max = integer(k_max, "k_max", minimum=2)
    max_iter = positive_int(max_iter, "max_iter")
    if not np.isfinite(stack.params).all():
        raise ValueError("the stack's parameters must be finite (NaN or inf found)")
    if align and n > 1:
        stack = align_stack(stack, 0, n_jobs=threads)
    X, scale = _scaled(stack.params)

    scores = {}
    if k is None:
        dist = _core.pairwise_distances(X, threads)
        best: tuple = ()  # (k, labels, centroids); the range below is never empty: n >= 3, k_max >= 2
        for kk in range(2, min(k_max, n - 1) + 1):
            labels, centroids, _, _ = _core.kmeans(X, kk, seed, max_iter, threads)
            scores[kk] = _core.silhouette(dist, labels, kk)
            if not best or scores[kk] > scores[best[0]]:
                best = (kk, labels, centroids)
        k, labels, centroids = best
        score = scores[k]
    else:
        labels, centroids, _, _ = _core.kmeans(X, k, seed, max_iter, threads)
        score = _core.silhouette(_core.pairwise_distances(X, threads), labels, k) if 1 < k < n else 0.0
    if scale != 1.0:
        centroids = centroids / np.float32(scale)
    return Clustering(labels.astype(np.int64), stack.like(centroids), float(score), k, scores)


def kmeans_labels(stack: MLPStack, k: int, *, seed: int, n_jobs: int = -1, max_iter: int = 300) -> np.ndarray:
    """The (N,) k-means labels of checked, finite models as they are (no alignment, no silhouette:
    clustered rounds call it every few rounds on models that share a start, where alignment
    would only cost time and the pairwise distances of a silhouette grow as N^2)."""
    points, _ = _scaled(stack.params)
    labels, _, _, _ = _core.kmeans(points, k, seed, max_iter, resolve_n_jobs(n_jobs))
    return labels.astype(np.int64)


def _scaled(params: np.ndarray):
    """params, scaled by a power of two where squared distances between models (float32 sums)
    could overflow: k-means and the silhouette see every distance scaled alike, so nothing
    they choose changes. Returns (points, scale)."""
    top = float(np.abs(params).max(initial=0.0))
    if top <= 2.0**40:
        return params, 1.0
    scale = 2.0 ** (40 - math.ceil(math.log2(top)))
    return params * np.float32(scale), scale


def weight_map(*stacks: MLPStack, method: str = "pca"):
    """2-D coordinates of every model of every stack in one shared weight-space projection.

    Returns one (n_models, 2) array per stack (a single array for a single stack): where
    segment, merged and centroid models sit relative to each other, as plot.weight_map_figure
    draws them.
    """
    if not stacks:
        raise ValueError("weight_map needs at least one stack")
    for s in stacks:
        check_stack(s)
        if s.dims != stacks[0].dims:
            raise ValueError(f"all stacks must share one architecture: {list(s.dims)} vs {list(stacks[0].dims)}")
    if method != "pca":
        raise ValueError(f"method must be 'pca', got {method!r}")
    X = np.concatenate([s.params for s in stacks]).astype(np.float64)
    X -= X.mean(axis=0)
    # Few points in a huge space: the eigenvectors of the small Gram matrix give the projection.
    gram = X @ X.T
    values, vectors = np.linalg.eigh(gram)
    top = np.argsort(values)[::-1][:2]
    coords = vectors[:, top] * np.sqrt(np.maximum(values[top], 0.0))
    if coords.shape[1] < 2:
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    # A fixed sign per axis, so maps of the same models look the same from run to run.
    signs = np.sign(coords[np.abs(coords).argmax(axis=0), np.arange(2)])
    coords *= np.where(signs == 0, 1.0, signs)
    out = np.split(coords, np.cumsum([s.n_models for s in stacks])[:-1])
    return out[0] if len(stacks) == 1 else out
