"""A round's scores on the val rows: the global model(s), the segments' own held-out rows, and the
segment models with their vote, each from one forward pass.

What it is not: the choice of what a round evaluates (_round_plan.Plan), nor the record's writing.
"""

from __future__ import annotations

import numpy as np

from . import _core, _device
from . import _segment_scores as segment_scores
from .predict import r2_scores, regression_scores


def cross_entropy(p_true: np.ndarray) -> np.ndarray:
    """Per-row cross-entropy (float64) from the probabilities given to the true class, a zero
    probability read as float32's smallest (a finite loss, as the C++ evaluation's)."""
    return -np.log(np.maximum(p_true.astype(np.float64), np.finfo(np.float32).tiny))


def evaluated(plan, start, global_params: np.ndarray, score_segments, segment_rows: int, routes: np.ndarray) -> dict:
    """The round's scores. global_params: (k, P), one row per cluster. routes: (n_segments,)
    the model each segment's own val rows (``plan.segment_val``) go through. With k > 1,
    ``cluster_*`` lists every cluster model's scores on all val rows, and ``global_*`` are the
    routed scores over the segments' own rows, or without them the best cluster model's.
    score_segments(X, y, threads): the round's segment models scored where they are (a
    _segment_scores.ScoreCarry), on ``segment_rows`` val rows when that is > 0."""
    assert plan.val is not None  # called only with val rows
    scores = _models_scores(plan, start, global_params)
    record: dict = {}
    if len(global_params) == 1:
        record.update({f"global_{key}": float(v[0]) for key, v in scores.items()})
    else:
        record.update({f"cluster_{key}": [float(x) for x in v] for key, v in scores.items()})
    own: dict = {}
    if plan.segment_val is not None:
        summary, own = _own_scores(plan, start, global_params, routes)
        record.update(summary)
    if len(global_params) > 1:
        if not own:  # no rows of their own: the best cluster model stands for all
            best = int(np.argmin(scores["loss"]) if start.is_regression else np.argmax(scores["accuracy"]))
            own = {key: float(v[best]) for key, v in scores.items()}
        record.update({f"global_{key}": value for key, value in own.items()})
    if segment_rows:
        assert score_segments is not None, "rows to score, and no models: a round without participants"
        X, y = plan.val_subsample(segment_rows)
        record.update(segment_scores.record(score_segments(X, y, plan.threads), y, start.task, segment_rows))
    return record


def _models_scores(plan, start, global_params: np.ndarray) -> dict:
    """{"loss", "accuracy"} (regression: "loss" = MSE, "rmse", "r2"): (k,) arrays, each model's
    score on every val row."""
    X, y = plan.val  # checked once by the plan: the core is called on them directly
    if start.is_regression:
        scores = regression_scores(*_core.regression_errors(list(start.dims), global_params, X, y, plan.threads), y)
        return {"loss": scores.loss, "rmse": scores.rmse, "r2": scores.r2}
    loss, acc = _device.evaluate(start.dims, global_params, X, y, plan.device, plan.threads)
    return {"loss": loss, "accuracy": acc}


def _own_scores(plan, start, global_params: np.ndarray, routes: np.ndarray) -> tuple[dict, dict]:
    """(summary, scores): each segment's own val rows through its model (``routes``), summarised
    as own_accuracy_mean/_std over segments (regression: own_rmse_mean/_std), and the scores over
    all those rows as _models_scores names them."""
    X, y = plan.val
    own = plan.segment_val
    segment_of_row = np.repeat(np.arange(len(own)), own.sizes)
    rows = own.order
    values = _core.predict_proba(
        list(start.dims), global_params, X[rows], plan.threads, softmax=not start.is_regression
    )
    picked = values[routes[segment_of_row], np.arange(len(rows))]  # (rows, outputs)
    count = own.sizes.astype(np.float64)

    def per_segment(per_row):
        return np.bincount(segment_of_row, weights=per_row, minlength=len(own)) / count

    if start.is_regression:
        target = y[rows].astype(np.float64)
        squared = (picked - target) ** 2
        rmse = np.sqrt(per_segment(squared.mean(axis=1)))
        mse = float(squared.mean())
        r2 = float(r2_scores(squared.sum(axis=0)[None], target)[0])
        summary = {"own_rmse_mean": float(rmse.mean()), "own_rmse_std": float(rmse.std())}
        return summary, {"loss": mse, "rmse": float(np.sqrt(mse)), "r2": r2}
    truth = y[rows]
    correct = (picked.argmax(axis=1) == truth).astype(np.float64)
    p = picked[np.arange(len(rows)), truth]
    accuracy = per_segment(correct)
    summary = {"own_accuracy_mean": float(accuracy.mean()), "own_accuracy_std": float(accuracy.std())}
    loss = float(cross_entropy(p).mean())
    return summary, {"loss": loss, "accuracy": float(correct.mean())}


def personalized(plan, start, snapshot: np.ndarray, chosen: np.ndarray, diverged: np.ndarray) -> dict:
    """Personalisation: each participant's model after personalize_epochs local epochs from the
    round's starting global model (``snapshot``, copied between the epochs of the round's own
    training call) scored on the participant's own val rows; their mean and spread over the
    participants that did not diverge (``personalized_segments`` counts them)."""
    X, y = plan.val
    dims, scores = list(start.dims), []
    for model, segment in zip(snapshot[~diverged], chosen[~diverged]):
        rows = plan.segment_val[segment]
        if start.is_regression:
            squared, _ = _core.regression_errors(dims, model[None], X[rows], y[rows], plan.threads)
            scores.append(np.sqrt(squared.sum() / y[rows].size))
        else:
            scores.append(_core.evaluate(dims, model[None], X[rows], y[rows], plan.threads)[1][0])
    key = "personalized_rmse" if start.is_regression else "personalized_accuracy"
    if not scores:
        return {"personalized_segments": 0}
    return {
        f"{key}_mean": float(np.mean(scores)),
        f"{key}_std": float(np.std(scores)),
        "personalized_segments": len(scores),
    }
