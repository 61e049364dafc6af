"""Plots of a run (matplotlib, an optional extra: pip install 'segfast-mlp[plot]').

Three figures. Each has a ``*_figure`` function that returns the matplotlib Figure (to show in a
notebook, restyle or test) and a ``plot_*`` function that saves it as a PNG file:

    accuracy.png          validation accuracy per round: the merged model, the segment models'
                          mean and spread, their soft-vote ensemble (rmse.png: a regression
                          run's validation RMSE, the ensemble their mean prediction)
    weight_map.png        where the segment models and the merged model sit in weight space: a
                          2-D PCA of every model's parameters, one dot per model
    segment_accuracy.png  each segment model's validation accuracy, against the merged model's
                          and the ensemble's

``plot_run(dir)`` draws all that a run directory has the data for.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .cluster import weight_map
from .stack import MLPStack

_LABEL_AT_MOST = 30  # segment dots and bars are numbered up to this many models; more would be a smear
_MERGED = "merged (global) model"
_LARGEST_DOT = 220.0  # area in points² of the largest segment's dot


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError(
            "plots need matplotlib: pip install 'segfast-mlp[plot]' (or pip install matplotlib)"
        ) from None
    matplotlib.use("Agg")  # files only: works without a display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> Path:
    path = Path(path)
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)
    return path


def _models(n: int) -> str:
    return f"{n} model" if n == 1 else f"{n} models"


def _cluster_colours(clusters, n_models: int):
    """One colour per model from its cluster label (None: no clusters), and the distinct labels."""
    if clusters is None:
        return None, []
    clusters = np.asarray(clusters)
    if clusters.shape != (n_models,):
        raise ValueError(f"clusters must hold one label per segment model ({n_models}), got shape {clusters.shape}")
    labels = list(np.unique(clusters))
    palette = _pyplot().get_cmap("tab10" if len(labels) <= 10 else "tab20")
    colours = [palette(labels.index(c) % palette.N) for c in clusters]
    return colours, labels


def _segment_labels(segments, n_models: int) -> list:
    """What each segment model is called on a figure: its segment's index where ``segments`` says
    which segment each model trained on (fraction < 1: a sample of them), else its place."""
    if segments is None:
        return [str(i) for i in range(n_models)]
    segments = np.asarray(segments)
    if segments.shape != (n_models,):
        raise ValueError(f"segments must hold one segment index per segment model ({n_models}), got {segments!r}")
    return [str(int(i)) for i in segments]


# What a round's record scores: accuracy (in %) for classification, RMSE for regression (on the
# targets as the models learn them, standardised by segfast.tabular).
_ROUND_METRICS = {
    "global_accuracy": ("accuracy", 100.0, "validation accuracy (%)", "soft-vote ensemble"),
    "global_rmse": ("rmse", 1.0, "validation RMSE (targets as trained)", "mean-vote ensemble"),
}


def rounds_figure(history: list):
    """Validation accuracy (a regression run: RMSE) per round: the merged (global) model, the
    segment models' mean and spread, their ensemble. ``history`` is RoundsResult.history (or the
    lines of rounds.jsonl); its scores were measured on the val rows given to rounds(val=...)."""
    plt = _pyplot()
    rounds = [h["round"] for h in history]
    key = next((k for k in _ROUND_METRICS if rounds and k in history[0]), None)
    if key is None:
        raise ValueError("the history has no evaluation: run rounds() with val=(X, y) to plot accuracy")
    name, scale, label, ensemble = _ROUND_METRICS[key]
    value = lambda field: scale * np.array([h[field] for h in history if field in h])  # noqa: E731
    fig, ax = plt.subplots(figsize=(7, 4.8), constrained_layout=True)
    # The segment models are scored in the rounds whose records have their scores
    # (rounds' val_segments: on all val rows or a subsample, and always in the last round).
    scored = [h["round"] for h in history if f"segment_{name}_mean" in h]
    if scored:
        mean, std = value(f"segment_{name}_mean"), value(f"segment_{name}_std")
        ax.fill_between(scored, mean - std, mean + std, alpha=0.2, color="tab:gray", label="segment models: ± 1 sd")
        ax.plot(scored, mean, marker=".", color="tab:gray", label="segment models: mean")
        ax.plot(scored, value(f"ensemble_{name}"), marker=".", color="tab:orange", label=ensemble)
    ax.plot(rounds, value(key), marker="o", color="tab:blue", label=_MERGED)
    # rounds(segment_val=, personalize_epochs=): each segment's own val rows, through the round's
    # merged model (every segment), and through each participant's model after E local epochs
    # from the round's starting model (the participants)
    for field, colour, text in (
        (f"own_{name}_mean", "tab:green", "merged model, each segment's own rows"),
        (f"personalized_{name}_mean", "tab:red", "after E local epochs, participants' own rows"),
    ):
        if any(field in h for h in history):
            ax.plot([h["round"] for h in history if field in h], value(field), marker=".", color=colour, label=text)
    title = label.split(" (")[0]
    ax.set_title(f"{title[0].upper()}{title[1:]} per round")
    ax.set_xlabel("round")
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    # Below the axes: inside, it would hide the lines of some run or other.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=9, frameon=False)
    return fig


def plot_rounds(history: list, path) -> Path:
    """rounds_figure(history) saved as a PNG file at ``path``."""
    return _save(rounds_figure(history), path)


def explained_variance(*stacks: MLPStack) -> np.ndarray:
    """The share of the models' variance that weight_map's two axes hold, (2,) in [0, 1]: the
    same centred parameters, their top two squared singular values over the total."""
    X = np.concatenate([s.params for s in stacks]).astype(np.float64)
    X -= X.mean(axis=0)
    total = float(np.square(X).sum())
    top = np.linalg.svd(X, compute_uv=False)[:2] ** 2
    share = np.zeros(2)
    share[: len(top)] = top / total if total > 0 else 0.0  # identical models: no variance to share
    return share


def weight_map_figure(
    segment_models: MLPStack,
    merged: MLPStack,
    extra: dict | None = None,
    *,
    sizes=None,
    clusters=None,
    segments=None,
    round_number: int | None = None,
    title: str | None = None,
):
    """Where the segment models and the merged model sit in weight space: one 2-D PCA of all
    their parameters (weight_map), axes with the share of the variance each holds.

    ``extra`` adds labelled stacks (e.g. ``{"cluster centroids": clustering.centroids}``);
    ``sizes`` (rows per segment) makes each dot's area proportional to its segment's size;
    ``clusters`` (a label per segment model) colours the dots by cluster; ``round_number`` names
    the round the segment models come from in the title, ``title`` replaces it. Segment dots
    are numbered when there are at most 30: by ``segments`` (the segment each model trained on)
    where given, else by their index in the stack.
    """
    plt = _pyplot()
    extra = extra or {}
    n = segment_models.n_models
    names = _segment_labels(segments, n)
    coords = weight_map(segment_models, merged, *extra.values())
    share = explained_variance(segment_models, merged, *extra.values())
    fig, ax = plt.subplots(figsize=(8, 5.6))

    area = np.full(n, 28.0)
    if sizes is not None:
        sizes = np.asarray(sizes, dtype=np.float64)
        if sizes.shape != (n,) or not (sizes > 0).all():
            raise ValueError(f"sizes must hold one positive row count per segment model ({n}), got {sizes!r}")
        area = _LARGEST_DOT * sizes / sizes.max()  # area, not radius, in proportion: how eyes read dot size
    colours, labels = _cluster_colours(clusters, n)
    common = dict(s=area, alpha=0.8, edgecolors="white", linewidths=0.5, zorder=2)
    if colours is None:
        ax.scatter(*coords[0].T, color="tab:gray", label="segment models", **common)
    else:
        ax.scatter(*coords[0].T, c=colours, **common)
        for c in labels:  # one legend entry per cluster, with its size
            members = np.flatnonzero(np.asarray(clusters) == c)
            ax.scatter([], [], s=40, color=colours[members[0]], label=f"cluster {c} ({_models(len(members))})")
    if n <= _LABEL_AT_MOST:
        for name, xy, s in zip(names, coords[0], area):
            off = 0.36 * np.sqrt(s) + 1  # just outside the dot: s is the square of its diameter in points
            ax.annotate(name, xy, xytext=(off, off), textcoords="offset points", fontsize=7, color="0.25")
    ax.scatter(*coords[1].T, s=220, marker="*", color="tab:red", edgecolors="black", linewidths=0.5, zorder=3)
    ax.scatter([], [], s=120, marker="*", color="tab:red", edgecolors="black", linewidths=0.5, label=_MERGED)
    for (name, _), xy, marker in zip(extra.items(), coords[2:], "Ds^vP"):  # hollow: the dots show through
        ax.scatter(
            *xy.T, s=70, marker=marker, facecolors="none", edgecolors="black", linewidths=1.2, label=name, zorder=3
        )

    models = "Segment models" if round_number is None else f"Segment models of round {round_number}"
    ax.set_title(title if title is not None else f"{models} and the merged model in weight space")
    ax.set_xlabel(f"PC 1 ({100 * share[0]:.0f}% of variance)")
    ax.set_ylabel(f"PC 2 ({100 * share[1]:.0f}% of variance)")
    ax.set_aspect("equal", adjustable="datalim")  # one unit of weight distance is as long on both axes
    ax.grid(alpha=0.3)
    legend = ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, fontsize=9)
    if sizes is not None:  # a second legend: what the dot sizes mean
        ax.add_artist(legend)
        shown = np.unique(np.round(np.quantile(sizes, [0.0, 0.5, 1.0])).astype(int))
        handles = [ax.scatter([], [], s=_LARGEST_DOT * v / sizes.max(), color="0.6") for v in shown]
        ax.legend(
            handles,
            [f"{v} rows" for v in shown],
            title="segment size\n(dot area)",
            loc="lower left",
            bbox_to_anchor=(1.02, 0.0),
            borderaxespad=0,
            fontsize=9,
            labelspacing=1.2,
            borderpad=0.9,
        )
    fig.tight_layout()  # makes room for the legends right of the axes
    return fig


def plot_weight_map(segment_models: MLPStack, merged: MLPStack, path, extra: dict | None = None, **options) -> Path:
    """weight_map_figure(segment_models, merged, extra, **options) saved as a PNG file at ``path``;
    the options are its sizes, clusters, segments, round_number and title."""
    return _save(weight_map_figure(segment_models, merged, extra, **options), path)


def segment_accuracy_figure(
    accuracies,
    *,
    clusters=None,
    segments=None,
    merged: float | None = None,
    ensemble: float | None = None,
    round_number: int | None = None,
    title: str | None = None,
):
    """A bar per segment model's validation accuracy (fractions in [0, 1], one per model in the
    stack's order), coloured by cluster where ``clusters`` gives a label per model, with the
    merged model's and the ensemble's validation accuracy as reference lines. ``segments`` (the
    segment each model trained on) labels the bars where given."""
    plt = _pyplot()
    acc = 100 * np.asarray(accuracies, dtype=np.float64)
    if acc.ndim != 1 or len(acc) == 0:
        raise ValueError(f"accuracies must be one number per segment model, got shape {acc.shape}")
    n = len(acc)
    names = _segment_labels(segments, n)
    colours, labels = _cluster_colours(clusters, n)
    fig, ax = plt.subplots(figsize=(min(12, max(7, 0.25 * n + 2)), 4.8), constrained_layout=True)
    ax.bar(np.arange(n), acc, color=colours if colours is not None else "tab:gray", width=0.75, zorder=2)
    for c in labels:  # one legend entry per cluster, with its size
        members = np.flatnonzero(np.asarray(clusters) == c)
        ax.fill_between([], [], color=colours[members[0]], label=f"cluster {c} ({_models(len(members))})")
    ax.axhline(acc.mean(), color="0.3", linestyle=":", label=f"segment models: mean {acc.mean():.1f}%", zorder=3)
    if merged is not None:
        ax.axhline(100 * merged, color="tab:blue", label=f"{_MERGED}: {100 * merged:.1f}%", zorder=3)
    if ensemble is not None:
        ax.axhline(
            100 * ensemble, color="tab:orange", linestyle="--", label=f"ensemble: {100 * ensemble:.1f}%", zorder=3
        )
    models = "segment model" if round_number is None else f"segment model of round {round_number}"
    ax.set_title(title if title is not None else f"Validation accuracy of each {models}")
    ax.set_xlabel("segment" if segments is not None else "segment model")
    if n <= _LABEL_AT_MOST or segments is not None:  # a sample of segments: every bar says which
        ax.set_xticks(
            np.arange(n), names, fontsize=None if n <= _LABEL_AT_MOST else 6, rotation=0 if n <= _LABEL_AT_MOST else 90
        )
    else:
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_ylabel("validation accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3, zorder=0)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=9, frameon=False)
    return fig


def plot_segment_accuracy(accuracies, path, **options) -> Path:
    """segment_accuracy_figure(accuracies, **options) saved as a PNG file at ``path``; the options
    are its clusters, segments, merged, ensemble, round_number and title."""
    return _save(segment_accuracy_figure(accuracies, **options), path)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:  # ValueError: not JSON, or not UTF-8
        raise ValueError(f"{path} is not a readable JSON file: {e}") from None


def plot_run(run_dir) -> list:
    """The plots a run directory has the data for, saved as PNG files into it: accuracy.png
    (rounds.jsonl of a run with val rows), weight_map.png (local_models.npz and final.npz) and
    segment_accuracy.png (results.json, which `segfast run --out DIR` writes there). Sizes and
    cluster labels come from results.json's segment_sizes and segment_clusters where it has them
    for every segment model. Returns the paths written."""
    run_dir = Path(run_dir)
    lines = (run_dir / "rounds.jsonl").read_text().splitlines() if (run_dir / "rounds.jsonl").exists() else []
    if not lines:
        raise ValueError(f"{run_dir} holds no finished round (no rounds.jsonl)")
    written = []
    history = [json.loads(line) for line in lines]
    last_round = history[-1].get("round")
    if "global_accuracy" in history[0]:
        written.append(plot_rounds(history, run_dir / "accuracy.png"))
    elif "global_rmse" in history[0]:
        written.append(plot_rounds(history, run_dir / "rmse.png"))
    results = _read_json(run_dir / "results.json") if (run_dir / "results.json").is_file() else {}
    local_path = run_dir / "local_models.npz"
    n_models = MLPStack.load(local_path).n_models if local_path.exists() else None
    # With fraction < 1 the last round trained a sample of the segments: results.json's
    # local_segments names them, and the per-segment sizes are picked for those.
    # A forged or damaged list (not segment indices) is left out: the models are then numbered.
    local_segments = results.get("local_segments")
    sizes = results.get("segment_sizes")
    bound = len(sizes) if isinstance(sizes, list) else float("inf")
    if not (
        isinstance(local_segments, list) and all(type(i) is int and 0 <= i < bound for i in local_segments)  # type: not bool, not float
    ):
        results = {k: v for k, v in results.items() if k != "local_segments"}
    elif isinstance(sizes, list):
        results = {**results, "segment_sizes": [sizes[i] for i in local_segments]}
    # Per model only where results.json has one value per model of local_models.npz.
    per_model = {
        key: results[key]
        for key in ("segment_sizes", "segment_clusters", "val_accuracy", "local_segments")
        if isinstance(results.get(key), list) and (n_models is None or len(results[key]) == n_models)
    }
    if local_path.exists() and (run_dir / "final.npz").exists():
        written.append(
            plot_weight_map(
                MLPStack.load(local_path),
                MLPStack.load(run_dir / "final.npz"),
                run_dir / "weight_map.png",
                sizes=per_model.get("segment_sizes"),
                clusters=per_model.get("segment_clusters"),
                segments=per_model.get("local_segments"),
                round_number=last_round,
            )
        )
    if "val_accuracy" in per_model:
        written.append(
            plot_segment_accuracy(
                per_model["val_accuracy"],
                run_dir / "segment_accuracy.png",
                clusters=per_model.get("segment_clusters"),
                segments=per_model.get("local_segments"),
                merged=results.get("merged_val_accuracy"),
                ensemble=results.get("ensemble_val_accuracy"),
                round_number=last_round,
            )
        )
    return written
