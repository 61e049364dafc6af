"""A round's segment models and their vote (soft for classes, the mean for regression) scored on
val rows, part by part: each part adds its models' scores and its share of the vote's sum to a
carry, in model order, so a stack scored in one call and one scored block by block where
segfast.distributed trained it (never moving the models) give the same bits.

What it is not: the choice of the rows (rounds' plan) nor the global model's scores (_round_eval).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import _core, _device


@dataclass
class ScoreCarry:
    """The scores so far: one (n,) array per part (accuracy, or RMSE for regression), and the
    vote's running sum over the models so far, (rows, C) or (rows, k) float64."""

    per_model: list = field(default_factory=list)
    total: np.ndarray | None = None


def add_part(carry: ScoreCarry | None, dims, task: str, params, X, y, threads: int, device: str = "cpu"):
    """The carry after the models ``params`` (the next ones in model order). A new carry: Dask
    keeps a task's inputs, so this never changes the one it was given."""
    rows, outputs = len(X), dims[-1]
    total = np.zeros((rows, outputs)) if carry is None or carry.total is None else carry.total.copy()
    if task == "regression":
        values = _core.predict_proba(list(dims), params, X, threads, softmax=False)  # (n, rows, k)
        metric = np.sqrt(((values - y[None]) ** 2).mean(axis=(1, 2), dtype=np.float64))
        for model_values in values:  # in model order, as the next part goes on
            total += model_values
    elif _device.check_device(device) == "cpu":
        _, metric, _ = _core.evaluate(list(dims), params, X, y, threads, with_vote=True, vote_sum=total)
    else:  # the GPU (this process's engine, one part): its vote comes rounded to float32 once
        assert carry is None, "the GPU scores a stack in one part"
        _, metric, summed = _device.evaluate_and_vote(dims, params, X, y, device, threads)
        total += summed
    return ScoreCarry([*(carry.per_model if carry else []), metric], total)


def record(carry: ScoreCarry, y, task: str, segment_rows: int) -> dict:
    """The round record's fields for the segment models and their vote."""
    per_model = np.concatenate(carry.per_model)
    assert carry.total is not None
    if task == "regression":
        mean = carry.total / len(per_model)
        return {
            "segments_val_rows": segment_rows,
            "segment_rmse_mean": float(per_model.mean()),
            "segment_rmse_std": float(per_model.std()),
            "ensemble_rmse": float(np.sqrt(((mean - y) ** 2).mean())),
        }
    summed = carry.total.astype(np.float32)  # what one call returns: the float64 sums, rounded once
    return {
        "segments_val_rows": segment_rows,
        "segment_accuracy_mean": float(per_model.mean()),
        "segment_accuracy_std": float(per_model.std()),
        # Ensemble(models, "soft").score(X, y), from the same forward pass
        "ensemble_accuracy": float(np.mean((summed / len(per_model)).argmax(axis=1) == y)),
    }
