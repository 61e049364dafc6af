"""Plots of a run (matplotlib, an optional extra: pip install 'segfast[plot]')."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .cluster import weight_map
from .stack import MLPStack


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plots need matplotlib: pip install 'segfast[plot]' (or pip install matplotlib)") from None
    matplotlib.use("Agg")  # files only: works without a display
    import matplotlib.pyplot as plt

    return plt


def plot_rounds(history: list, path) -> Path:
    """Accuracy per round: the global model, the segment models' mean and spread, the soft-vote
    ensemble. ``history`` is RoundsResult.history (or the lines of rounds.jsonl)."""
    plt = _pyplot()
    rounds = [h["round"] for h in history]
    if not rounds or "global_accuracy" not in history[0]:
        raise ValueError("the history has no evaluation: run rounds() with val=(X, y) to plot accuracy")
    acc = lambda key: 100 * np.array([h[key] for h in history])  # noqa: E731
    fig, ax = plt.subplots(figsize=(7, 4.2))
    if "segment_accuracy_mean" in history[0]:
        mean, std = acc("segment_accuracy_mean"), acc("segment_accuracy_std")
        ax.fill_between(
            rounds, mean - std, mean + std, alpha=0.2, color="tab:gray", label="segment models (mean +- sd)"
        )
        ax.plot(rounds, mean, color="tab:gray")
        ax.plot(rounds, acc("ensemble_accuracy"), marker=".", color="tab:orange", label="soft-vote ensemble")
    ax.plot(rounds, acc("global_accuracy"), marker="o", color="tab:blue", label="global (merged) model")
    ax.set_xlabel("round")
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_weight_map(segment_models: MLPStack, merged: MLPStack, path, extra: dict | None = None) -> Path:
    """The design notes' "spatial distribution" plot: segment and merged models in one 2-D PCA
    of weight space (``extra`` adds labelled stacks, e.g. cluster centroids)."""
    plt = _pyplot()
    extra = extra or {}
    coords = weight_map(segment_models, merged, *extra.values())
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.scatter(*coords[0].T, s=18, color="tab:gray", label="segment models")
    ax.scatter(*coords[1].T, s=120, marker="*", color="tab:red", label="merged model")
    for (name, _), xy in zip(extra.items(), coords[2:]):
        ax.scatter(*xy.T, s=60, marker="D", label=name)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_run(run_dir) -> list:
    """Both plots of a run directory, saved as PNG files into it."""
    run_dir = Path(run_dir)
    lines = (run_dir / "rounds.jsonl").read_text().splitlines() if (run_dir / "rounds.jsonl").exists() else []
    if not lines:
        raise ValueError(f"{run_dir} holds no finished round (no rounds.jsonl)")
    written = []
    history = [json.loads(line) for line in lines]
    if "global_accuracy" in history[0]:
        written.append(plot_rounds(history, run_dir / "accuracy.png"))
    if (run_dir / "local_models.npz").exists() and (run_dir / "final.npz").exists():
        written.append(
            plot_weight_map(
                MLPStack.load(run_dir / "local_models.npz"),
                MLPStack.load(run_dir / "final.npz"),
                run_dir / "weight_map.png",
            )
        )
    return written
