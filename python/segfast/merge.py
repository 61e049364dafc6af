"""merge(): many segment models into one (or one per cluster), with every strategy in one call."""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import numpy as np

from . import _core, learned_merge
from ._device import check_device
from ._threads import resolve_n_jobs
from ._validate import as_features, check_stack, val_pair
from .align import align as align_stack
from .cluster import cluster
from .predict import evaluate
from .repair import repair as repair_merge
from .segments import Segments
from .stack import MLPStack

METHODS = (
    "uniform",
    "weighted",
    "loss",
    "rank",
    "greedy",
    "learned",
    "median",
    "trimmed",
    "cluster-best",
    "cluster-merge",
)
NEEDS_VAL = ("loss", "rank", "greedy", "learned", "cluster-best")
# learned's fallback when it misses threshold=: the fixed merges that score on val, best kept
_FIXED = ("uniform", "loss", "rank", "greedy")


def rank_weights(losses: np.ndarray) -> np.ndarray:
    """Ranked weights: sort by loss; the best gets 1/2, the next 1/4, ..., and the
    last gets the rest (so the last two get the same share)."""
    n = len(losses)
    order = np.argsort(losses, kind="stable")
    shares = 0.5 ** np.arange(1, n + 1)
    shares[-1] = 1.0 - shares[:-1].sum()
    weights = np.empty(n)
    weights[order] = shares
    return weights


def _explicit_weights(weights, n_models: int) -> np.ndarray:
    if weights is None:
        raise ValueError(
            "method='weighted' needs weights= (an array of N weights, or the Segments to weight by segment size)"
        )
    if isinstance(weights, Segments):
        weights = weights.sizes
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n_models,):
        raise ValueError(f"weights must hold one weight per model ({n_models}), got shape {w.shape}")
    if not np.isfinite(w).all():
        raise ValueError("weights must be finite (found NaN or inf)")
    if (w < 0).any():
        raise ValueError(f"weights must be >= 0, got {w.min()}")
    if w.max() <= 0:
        raise ValueError("weights must sum to a positive number")
    w = w / w.max()  # first to at most 1: the sum of weights near 1e308 would overflow
    return w / w.sum()


def _real(value):
    """value as a float when it is a real number (not a bool, not too large for a float), else None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def _one(like: MLPStack, row) -> MLPStack:
    return like.like(np.asarray(row)[None, :])


def val_score(stack: MLPStack, val, threads: int, device: str = "cpu") -> np.ndarray:
    """Each model's validation score, higher is better: accuracy for classification, minus the
    mean squared error for regression."""
    scores = evaluate(stack, *val, n_jobs=threads, device=device)
    return -scores.loss if stack.is_regression else scores.accuracy


def _greedy_soup(stack: MLPStack, val, threads: int, device: str = "cpu") -> np.ndarray:
    """Greedy soup: add models best-first, keep each only if the soup's validation score
    (accuracy; minus the MSE for regression) does not drop. Returns the uniform weights over the kept models."""
    acc = val_score(stack, val, threads, device)
    order = np.argsort(-acc, kind="stable")
    kept = [order[0]]
    best = acc[order[0]]
    for i in order[1:]:
        trial = kept + [i]
        soup = _one(stack, stack.params[trial].mean(axis=0, dtype=np.float64))
        trial_acc = val_score(soup, val, threads, device)[0]
        if trial_acc >= best:
            kept, best = trial, trial_acc
    weights = np.zeros(stack.n_models)
    weights[kept] = 1.0 / len(kept)
    return weights


def _rescale(merged: MLPStack, sources: MLPStack) -> None:
    """Scale each layer's weights so their norm is the mean norm of that layer in the sources."""
    for layer in range(merged.n_layers):
        target = np.linalg.norm(sources.weights(layer).reshape(sources.n_models, -1), axis=1).mean()
        norm = np.linalg.norm(merged.weights(layer))
        if norm > 0:
            merged.weights(layer)[...] *= np.float32(target / norm)


def checked_options(
    n_features: int,
    n_classes: int,
    n_models: int,
    method: str,
    *,
    weights=None,
    val=None,
    repair=None,
    temperature=1.0,
    trim=0.1,
    margin=0.1,
    threshold=None,
    coefficients=None,
    task="classification",
):
    """merge()'s checks of its options for ``n_models`` models of these widths, without merging:
    rounds() runs them before any training. Returns (val pair or None, repair rows or
    None, normalised explicit weights or None)."""
    if method not in METHODS:
        raise ValueError(f"unknown merge method {method!r}; choose one of {', '.join(METHODS)}")
    val = val_pair(val, n_features, n_classes, task=task)
    if method in NEEDS_VAL and val is None:
        raise ValueError(f"method={method!r} needs val=(X_val, y_val) to rank the models")
    if repair is not None:
        repair = as_features(repair, "repair", n_features)
        if len(repair) < 2:
            raise ValueError("repair needs at least 2 calibration rows")
    if not (_real(temperature) is not None and np.isfinite(_real(temperature)) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    if not (_real(trim) is not None and 0 <= trim < 0.5):
        raise ValueError(f"trim must be in [0, 0.5), got {trim!r}")
    if not (_real(margin) is not None and 0 <= margin < 1):
        raise ValueError(f"margin must be a number in [0, 1), got {margin!r}")
    if threshold is not None:
        if method != "learned":
            raise ValueError(f"threshold= is only used by method='learned', not {method!r}")
        if not (_real(threshold) is not None and 0 <= threshold <= 1):
            raise ValueError(f"threshold must be a number in [0, 1] (a validation accuracy, or R^2), got {threshold!r}")
    if coefficients is not None:
        if method != "learned":
            raise ValueError(f"coefficients= is only used by method='learned', not {method!r}")
        if not isinstance(coefficients, str) or coefficients not in learned_merge.GRANULARITY:
            raise ValueError(
                f"coefficients must be {' or '.join(map(repr, learned_merge.GRANULARITY))}, got {coefficients!r}"
            )
    explicit = None
    if method == "weighted":
        explicit = _explicit_weights(weights, n_models)
    elif weights is not None:
        raise ValueError(f"weights= is only used by method='weighted', not {method!r}")
    return val, repair, explicit


def merge(
    stack: MLPStack,
    method: str = "uniform",
    *,
    weights=None,
    val=None,
    align: bool = False,
    repair=None,
    rescale: bool = False,
    temperature: float = 1.0,
    trim: float = 0.1,
    k=None,
    margin: float = 0.1,
    threshold=None,
    coefficients=None,
    seed: int = 0,
    return_details: bool = False,
    n_jobs: int = -1,
    device: str = "cpu",
):
    """Merge the models of ``stack`` into one model (a one-model MLPStack).

    method:
      ``uniform``   plain average.
      ``weighted``  weights= (N non-negative numbers, or a Segments to weight by segment size).
      ``loss``      softmax of minus the validation loss / temperature.
      ``rank``      sorted by validation loss, the best gets 1/2, the next 1/4, ..., the last the rest.
      ``greedy``    greedy soup by validation accuracy (by validation MSE for regression).
      ``learned``   one coefficient per model and layer (softmax-normalised: still an average),
                    fitted by L-BFGS to minimise the merged model's validation loss, with its
                    exact gradient through the network (segfast.learned_merge);
                    coefficients="unit": one per model and unit of every layer instead (an
                    aligned merge of independent models gains from it). threshold= is
                    the notes' rule: the learned merge is kept only if its validation accuracy
                    (R^2 for regression) reaches it, else the best of the fixed merges uniform,
                    loss, rank and greedy is returned, with a warning (details["fallback"]).
      ``median``, ``trimmed``  coordinate-wise median / mean without the ``trim`` share at each end.
      ``cluster-best``   k-means in weight space; the merge of the best cluster when its validation
                    loss beats the runner-up by more than ``margin`` (relative), else the average
                    of every cluster's merge.
      ``cluster-merge``  one uniform merge per cluster: a k-model stack, to retrain.
    align=True matches hidden units first (see :func:`segfast.align`; the reference is the
    model with the best validation loss when ``val`` is given, else model 0). repair=X_calib
    renormalises hidden units (REPAIR); rescale=True restores each layer's mean weight norm.
    val is an (X, y) pair (float targets for a regression stack, whose methods rank by the
    validation mean squared error: evaluate's ``loss``). Diverged models (``stack.diverged``)
    are left out with a warning.
    With return_details=True, returns (merged, details) where details holds the weights used.
    device="cuda" evaluates the models on val (the forward passes) on the GPU; the averages,
    alignment, REPAIR and k-means run on the CPU, where the stack is (an average reads each
    weight once: sending the stack to the GPU for it would cost more than it saves).
    """
    check_stack(stack)
    threads = resolve_n_jobs(n_jobs)
    device = check_device(device)
    val, repair, explicit = checked_options(
        stack.n_features,
        stack.n_classes,
        stack.n_models,
        method,
        weights=weights,
        val=val,
        repair=repair,
        temperature=temperature,
        trim=trim,
        margin=margin,
        threshold=threshold,
        coefficients=coefficients,
        task=stack.task,
    )

    keep = np.flatnonzero(~stack.diverged)
    if keep.size == 0:
        raise ValueError("every model of the stack diverged: nothing to merge")

    if keep.size < stack.n_models:
        warnings.warn(
            f"leaving out diverged model(s) {', '.join(map(str, np.flatnonzero(stack.diverged)))}",
            RuntimeWarning,
            stacklevel=2,
        )
        if method == "weighted":
            explicit = explicit[keep]
            if explicit.sum() <= 0:
                raise ValueError("the models left after removing diverged ones all have weight 0")
            explicit = explicit / explicit.sum()
        stack = stack.select(keep)

    first = _core.first_non_finite(stack.params, threads)  # one pass: a merge reads them all anyway
    if first >= 0:
        raise ValueError(
            f"model {int(keep[first // stack.n_params])} of the stack holds NaN or infinite parameters but is not "
            "marked diverged: every merge would be NaN; mark it (stack.diverged) to leave it out, or drop it"
        )
    details: dict[str, Any] = {"models": keep}
    val_eval = evaluate(stack, *val, n_jobs=threads, device=device) if val is not None else None
    if align:
        reference = int(np.argmin(val_eval.loss)) if val_eval is not None else 0
        stack = align_stack(stack, reference, n_jobs=threads)
        details.update(reference=int(keep[reference]), align_iterations=stack.align_iterations)

    if method in ("cluster-best", "cluster-merge"):
        merged, info = _cluster_policy(stack, method, val, k, margin, seed, threads)
        details.update(info)
        w = info["weights"]
    elif method in ("median", "trimmed"):
        cut = -1 if method == "median" else int(np.floor(trim * stack.n_models))
        merged = _one(stack, _core.robust_reduce(stack.params, cut, threads))
        w = np.full(stack.n_models, 1.0 / stack.n_models)  # for REPAIR's targets
    elif method == "learned":
        fitted = learned_merge.fit_coefficients(stack, val, threads, coefficients or "layer")
        details["coefficients"] = fitted
        merged = _one(stack, learned_merge.merged_row(stack, fitted))
        w = np.mean([a.mean(axis=1) for a in fitted], axis=0)  # for details; REPAIR takes each unit's
    else:
        if method == "uniform":
            w = np.full(stack.n_models, 1.0 / stack.n_models)
        elif method == "weighted":
            w = explicit
        elif method == "loss":
            assert val_eval is not None  # merge() checked: these methods need val
            z = -val_eval.loss / temperature
            w = np.exp(z - z.max())
            w /= w.sum()
        elif method == "rank":
            assert val_eval is not None
            w = rank_weights(val_eval.loss)
        else:  # greedy
            w = _greedy_soup(stack, val, threads, device)
        merged = _one(stack, _core.weighted_sum(stack.params, w, threads))
    details["weights"] = w

    if merged.n_models == 1:
        if rescale:
            _rescale(merged, stack.select(np.flatnonzero(w > 0)))
        if repair is not None:
            merged = repair_merge(merged, stack, repair, details.get("coefficients", w), threads)
    if threshold is not None:
        merged = _kept_or_fallback(merged, stack, val, threshold, details, repair, rescale, threads, device)
    return (merged, details) if return_details else merged


def _threshold_score(model: MLPStack, val, threads: int, device: str) -> float:
    """What threshold= is compared with: validation accuracy, or R^2 for regression."""
    scores = evaluate(model, *val, n_jobs=threads, device=device)
    return float(scores.r2[0] if model.is_regression else scores.accuracy[0])


def _kept_or_fallback(merged, stack, val, threshold, details, repair, rescale, threads, device) -> MLPStack:
    """The learned merge if it scores at least ``threshold`` on val; else the best fixed merge (of
    the same, already aligned, models, with the same REPAIR and rescale) if it scores better,
    said in a warning either way. After a fallback ``details`` describes the merge returned, and
    the learned coefficients move to ``learned_coefficients``."""
    score = _threshold_score(merged, val, threads, device)
    details["val_score"] = score
    if score >= threshold:
        return merged
    options = dict(val=val, repair=repair, rescale=rescale, n_jobs=threads, device=device, return_details=True)
    fixed = {name: merge(stack, name, **options) for name in _FIXED}
    scores = {name: _threshold_score(model, val, threads, device) for name, (model, _) in fixed.items()}
    best = max(scores, key=scores.__getitem__)  # the first of equal scores, in _FIXED's order
    what = "R^2" if stack.is_regression else "accuracy"
    missed = f"the learned merge's validation {what} {score:.4f} is below threshold {threshold}"
    if scores[best] <= score:  # nothing reached it, and the learned merge is still the best there is
        warnings.warn(f"{missed}, and no fixed merge does better: returning the learned one", RuntimeWarning, 3)
        return merged
    warnings.warn(
        f"{missed}; returning the best fixed merge instead: {best} ({scores[best]:.4f})", RuntimeWarning, stacklevel=3
    )
    details["learned_coefficients"] = details.pop("coefficients")
    details.update(fallback=best, fallback_score=scores[best], weights=fixed[best][1]["weights"])
    return fixed[best][0]


def _cluster_policy(stack, method, val, k, margin, seed, threads):
    result = cluster(stack, k=k, align=False, seed=seed, n_jobs=threads)
    groups = [np.flatnonzero(result.labels == c) for c in range(result.k)]
    rows = [stack.params[g].mean(axis=0, dtype=np.float64) for g in groups]
    per_cluster = stack.like(np.stack(rows))
    info = {"labels": result.labels, "k": result.k, "silhouette": result.silhouette}
    if method == "cluster-merge":
        info["weights"] = np.full(stack.n_models, 1.0 / stack.n_models)
        return per_cluster, info
    losses = evaluate(per_cluster, *val, n_jobs=threads).loss
    order = np.argsort(losses)
    clearly = result.k == 1 or losses[order[0]] < (1.0 - margin) * losses[order[1]]
    w = np.zeros(stack.n_models)
    if clearly:
        w[groups[order[0]]] = 1.0 / len(groups[order[0]])
    else:  # every cluster counts the same, whatever its size
        for g in groups:
            w[g] = 1.0 / (len(g) * len(groups))
    info.update(weights=w, cluster_losses=losses, chosen=int(order[0]) if clearly else None)
    return _one(stack, _core.weighted_sum(stack.params, w, threads)), info
