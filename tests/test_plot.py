"""The plots: every figure rendered, its title, axis labels and legend read back from matplotlib,
the weight map's explained variance checked against numpy, and plot_run on a real run directory."""

import json

import numpy as np
import pytest

import segfast
from conftest import blobs
from segfast import MLPStack

pytest.importorskip("matplotlib")
import matplotlib.pyplot as plt  # noqa: E402

from segfast import plot  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def legend_texts(ax) -> list:
    return [t.get_text() for legend in ax.findobj(plt.matplotlib.legend.Legend) for t in legend.get_texts()]


def assert_png(path, at_least=10_000):
    data = path.read_bytes()
    assert data[:8] == PNG and len(data) > at_least, (path, len(data))


def history(n_rounds=4, segments=True):
    out = []
    for r in range(1, n_rounds + 1):
        h = {"round": r, "global_accuracy": 0.5 + 0.05 * r}
        if segments:
            h.update(segment_accuracy_mean=0.4 + 0.05 * r, segment_accuracy_std=0.03, ensemble_accuracy=0.52 + 0.05 * r)
        out.append(h)
    return out


def test_accuracy_figure_says_validation_and_labels_every_line(tmp_path):
    fig = plot.rounds_figure(history())
    ax = fig.axes[0]
    assert ax.get_title() == "Validation accuracy per round"
    assert ax.get_ylabel() == "validation accuracy (%)" and ax.get_xlabel() == "round"
    assert legend_texts(ax) == [
        "segment models: ± 1 sd",
        "segment models: mean",
        "soft-vote ensemble",
        "merged (global) model",
    ]
    mean = next(line for line in ax.get_lines() if line.get_label() == "segment models: mean")
    np.testing.assert_allclose(mean.get_ydata(), [45, 50, 55, 60])
    assert_png(plot.plot_rounds(history(), tmp_path / "accuracy.png"))

    # Without val_segments the history has only the merged model's accuracy.
    ax = plot.rounds_figure(history(segments=False)).axes[0]
    assert legend_texts(ax) == ["merged (global) model"]
    with pytest.raises(ValueError, match="no evaluation"):
        plot.rounds_figure([{"round": 1, "train_loss": 0.3}])


def stacks(rng, n=12):
    segments = MLPStack.from_params([6, 5, 3], rng.standard_normal((n, 53)))
    return segments, segfast.merge(segments)


def test_explained_variance_is_the_pca_of_weight_map(rng):
    segments, merged = stacks(rng)
    share = plot.explained_variance(segments, merged)
    X = np.concatenate([segments.params, merged.params]).astype(np.float64)
    eigen = np.sort(np.linalg.eigvalsh(np.cov(X.T)))[::-1]  # the covariance's spectrum: PCA from scratch
    np.testing.assert_allclose(share, eigen[:2] / eigen.sum(), rtol=1e-9)
    # weight_map's two coordinates hold exactly these shares of the centred data's square sum.
    coords = np.concatenate(segfast.weight_map(segments, merged))
    centred = X - X.mean(0)
    np.testing.assert_allclose(share, np.square(coords).sum(0) / np.square(centred).sum(), rtol=1e-6)
    assert share[0] >= share[1] > 0
    same = MLPStack.from_params([6, 5, 3], np.ones((3, 53)))
    np.testing.assert_array_equal(plot.explained_variance(same), [0.0, 0.0])  # no variance: no share


def test_weight_map_figure_titles_axes_labels_sizes_and_clusters(rng, tmp_path):
    segments, merged = stacks(rng)
    share = plot.explained_variance(segments, merged)
    sizes = np.array([100, 200, 400, 800] * 3)
    clusters = np.array([0, 1, 2] * 4)
    fig = plot.weight_map_figure(segments, merged, sizes=sizes, clusters=clusters, round_number=7)
    ax = fig.axes[0]
    assert ax.get_title() == "Segment models of round 7 and the merged model in weight space"
    assert ax.get_xlabel() == f"PC 1 ({100 * share[0]:.0f}% of variance)"
    assert ax.get_ylabel() == f"PC 2 ({100 * share[1]:.0f}% of variance)"
    texts = legend_texts(ax)
    assert texts[:4] == [
        "cluster 0 (4 models)",
        "cluster 1 (4 models)",
        "cluster 2 (4 models)",
        "merged (global) model",
    ]
    assert texts[4:] == ["100 rows", "300 rows", "800 rows"]  # the size legend: smallest, median, largest
    dots = ax.collections[0]
    np.testing.assert_allclose(dots.get_sizes() / dots.get_sizes().max(), sizes / 800)  # area ∝ segment size
    colours = dots.get_facecolors()
    for c in range(3):  # one colour per cluster, a different one for each
        assert len({tuple(colours[i]) for i in np.flatnonzero(clusters == c)}) == 1
    assert len({tuple(colours[i]) for i in range(3)}) == 3
    np.testing.assert_allclose(dots.get_offsets(), segfast.weight_map(segments, merged)[0])
    assert [t.get_text() for t in ax.texts] == [str(i) for i in range(12)]  # each dot numbered

    # Defaults: gray dots of one size, no round in the title; an extra stack gets its own entry.
    groups = segfast.cluster(segments, k=3, align=False)
    ax = plot.weight_map_figure(segments, merged, {"cluster centroids": groups.centroids}).axes[0]
    assert ax.get_title() == "Segment models and the merged model in weight space"
    assert legend_texts(ax) == ["segment models", "merged (global) model", "cluster centroids"]
    assert plot.weight_map_figure(segments, merged, title="mine").axes[0].get_title() == "mine"
    many, many_merged = stacks(rng, n=31)
    assert len(plot.weight_map_figure(many, many_merged).axes[0].texts) == 0  # too many to number

    path = plot.plot_weight_map(segments, merged, tmp_path / "map.png", sizes=sizes, clusters=clusters, round_number=7)
    assert_png(path)
    with pytest.raises(ValueError, match="one positive row count per segment model"):
        plot.weight_map_figure(segments, merged, sizes=sizes[:5])
    with pytest.raises(ValueError, match="one label per segment model"):
        plot.weight_map_figure(segments, merged, clusters=clusters[:5])


def test_segment_accuracy_figure_bars_clusters_and_reference_lines(tmp_path):
    acc = np.array([0.61, 0.72, 0.55, 0.8, 0.66])
    clusters = [1, 0, 1, 0, 1]
    fig = plot.segment_accuracy_figure(acc, clusters=clusters, merged=0.75, ensemble=0.78, round_number=3)
    ax = fig.axes[0]
    assert ax.get_title() == "Validation accuracy of each segment model of round 3"
    assert ax.get_ylabel() == "validation accuracy (%)" and ax.get_xlabel() == "segment model"
    np.testing.assert_allclose([bar.get_height() for bar in ax.patches], 100 * acc)
    colours = [bar.get_facecolor() for bar in ax.patches]
    assert colours[0] == colours[2] == colours[4] != colours[1] == colours[3]
    assert legend_texts(ax) == [
        "cluster 0 (2 models)",
        "cluster 1 (3 models)",
        "segment models: mean 66.8%",
        "merged (global) model: 75.0%",
        "ensemble: 78.0%",
    ]
    lines = {line.get_label(): line.get_ydata()[0] for line in ax.get_lines()}
    assert lines["merged (global) model: 75.0%"] == 75.0 and lines["ensemble: 78.0%"] == 78.0
    assert_png(plot.plot_segment_accuracy(acc, tmp_path / "seg.png", merged=0.75), at_least=5_000)
    with pytest.raises(ValueError, match="one number per segment model"):
        plot.segment_accuracy_figure(np.zeros((2, 2)))


def test_figures_name_the_segments_a_sampled_round_trained(rng):
    """fraction < 1: the models are a sample of the segments, and the figures say which."""
    took_part = [2, 5, 9, 11, 14]
    ax = plot.segment_accuracy_figure([0.6, 0.7, 0.5, 0.8, 0.65], segments=took_part).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2", "5", "9", "11", "14"]
    assert ax.get_xlabel() == "segment"
    segments, merged = stacks(rng, n=5)
    ax = plot.weight_map_figure(segments, merged, segments=took_part).axes[0]
    assert [t.get_text() for t in ax.texts] == ["2", "5", "9", "11", "14"]
    with pytest.raises(ValueError, match="one segment index per segment model"):
        plot.segment_accuracy_figure([0.6, 0.7], segments=took_part)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished run directory of rounds() with val rows, and a results.json as `segfast run` writes."""
    rng = np.random.default_rng(0)
    X, y = blobs(rng, n=700, d=16, classes=4, spread=1.5)
    seg = segfast.segment(y[:600], 6, "dirichlet", alpha=0.5, seed=0)
    out = tmp_path_factory.mktemp("run")
    result = segfast.rounds(
        [16, 12, 4], X[:600], y[:600], seg, rounds=3, val=(X[600:], y[600:]), out=out, progress=False
    )
    results = {
        "segment_sizes": seg.sizes.tolist(),
        "val_accuracy": segfast.evaluate(result.local_models, X[600:], y[600:]).accuracy.tolist(),
        "merged_val_accuracy": 0.9,
        "ensemble_val_accuracy": 0.92,
    }
    return out, results


def test_plot_run_draws_every_figure_the_run_directory_has_data_for(run_dir, tmp_path):
    out, results = run_dir
    for name in ("accuracy.png", "weight_map.png", "segment_accuracy.png", "results.json"):
        (out / name).unlink(missing_ok=True)
    assert [p.name for p in plot.plot_run(out)] == ["accuracy.png", "weight_map.png"]  # no results.json

    (out / "results.json").write_text(json.dumps(dict(results, segment_clusters=[0, 1, 0, 1, 2, 2])))
    written = plot.plot_run(out)
    assert [p.name for p in written] == ["accuracy.png", "weight_map.png", "segment_accuracy.png"]
    for path in written:
        assert_png(path)

    # A sampled last round: local_segments picks the sizes of the segments that took part.
    sizes = [50, 60, 70, 80, 90, 100, 110, 120]
    sampled = dict(results, segment_sizes=sizes, local_segments=[0, 2, 3, 5, 6, 7])
    (out / "results.json").write_text(json.dumps(sampled))
    drawn = {}
    real_map, real_bars = plot.plot_weight_map, plot.plot_segment_accuracy
    with pytest.MonkeyPatch.context() as patch:  # the real figures, with their options recorded
        patch.setattr(plot, "plot_weight_map", lambda *a, **o: drawn.setdefault("map", o) and real_map(*a, **o))
        patch.setattr(plot, "plot_segment_accuracy", lambda *a, **o: drawn.setdefault("bars", o) and real_bars(*a, **o))
        assert [p.name for p in plot.plot_run(out)] == ["accuracy.png", "weight_map.png", "segment_accuracy.png"]
    assert drawn["map"]["sizes"] == [50, 70, 80, 100, 110, 120]
    assert drawn["map"]["segments"] == drawn["bars"]["segments"] == [0, 2, 3, 5, 6, 7]

    # A forged local_segments (out of range, not integers) picks no sizes; the figures still draw.
    for forged in ([0, 2, 3, 5, 6, 99], [0, 2, 3, 5, 6, -1], [0, 2, 3, 5, 6, "x"], [0.5] * 6, [True] * 6, "0,1"):
        (out / "results.json").write_text(json.dumps(dict(sampled, local_segments=forged)))
        assert len(plot.plot_run(out)) == 3

    # Per-model lists that do not match local_models.npz (another run's results) are left out.
    (out / "results.json").write_text(json.dumps(dict(results, val_accuracy=[0.5, 0.6])))
    assert [p.name for p in plot.plot_run(out)] == ["accuracy.png", "weight_map.png"]
    (out / "results.json").write_text("{not json")
    with pytest.raises(ValueError, match="results.json is not a readable JSON file"):
        plot.plot_run(out)
    with pytest.raises(ValueError, match="no finished round"):
        plot.plot_run(tmp_path)
