"""train(): determinism, learning on real data, per-model epochs, augmentation, divergence, bad input."""

import io
import sys

import numpy as np
import pytest

import segfast
from conftest import blobs
from segfast import MLPStack, Segments


@pytest.fixture
def problem(rng):
    X, y = blobs(rng, n=900, d=20, classes=4)
    return X, y, segfast.segment(y, 6, "iid", seed=0)


def test_bit_identical_for_any_thread_count(problem):
    X, y, seg = problem
    results = []
    for n_jobs in (1, 2, -1):
        stack = MLPStack([20, 16, 4], n_models=6, seed=1)
        hist = segfast.train(stack, X, y, seg, epochs=3, momentum=0.9, seed=7, augment=None, n_jobs=n_jobs)
        results.append((stack.params, hist.loss))
    for params, loss in results[1:]:
        assert np.array_equal(params, results[0][0])
        assert np.array_equal(loss, results[0][1])


def test_seed_changes_the_minibatches(problem):
    X, y, seg = problem
    a, b = MLPStack([20, 16, 4], 6), MLPStack([20, 16, 4], 6)
    segfast.train(a, X, y, seg, seed=0)
    segfast.train(b, X, y, seg, seed=1)
    assert not np.array_equal(a.params, b.params)


def test_each_model_sees_only_its_segment(rng):
    X, y = blobs(rng, n=200, d=10, classes=3)
    seg = Segments.from_indices([np.arange(0, 100), np.arange(100, 200)])
    stack = MLPStack([10, 8, 3], 2, init="shared")
    segfast.train(stack, X, y, seg, epochs=2)
    two = MLPStack([10, 8, 3], 2, init="shared")
    X2 = X.copy()
    X2[:100] = 0  # rows outside model 1's segment must not matter to it
    segfast.train(two, X2, y, seg, epochs=2)
    assert np.array_equal(two.params[1], stack.params[1])
    assert not np.array_equal(two.params[0], stack.params[0])


def test_training_on_embedded_data_beats_chance_clearly():
    data = segfast.datasets.load_default()
    split = segfast.holdout(data, val=1000)
    seg = segfast.segment(split.y_train, 10, "iid", seed=0)
    stack = MLPStack([784, 64, 10], 10, init="shared", seed=0)
    hist = segfast.train(stack, split.X_train, split.y_train, seg, epochs=6, lr=0.05)
    assert np.all(np.diff(np.nanmean(hist.loss, axis=1)) < 0)
    acc = segfast.evaluate(stack, split.X_val, split.y_val).accuracy
    # 900 images a model; PyTorch with the same settings gives about the same
    assert acc.min() > 0.4 and acc.mean() > 0.6, acc  # chance is 0.10


def test_epochs_per_model(problem):
    X, y, seg = problem
    stack = MLPStack([20, 16, 4], 6)
    start = stack.params.copy()
    hist = segfast.train(stack, X, y, seg, epochs=[0, 1, 2, 3, 1, 0])
    np.testing.assert_array_equal(hist.epochs, [0, 1, 2, 3, 1, 0])
    assert hist.loss.shape == (3, 6)
    assert np.isnan(hist.loss[:, 0]).all() and np.isnan(hist.loss[1:, 1]).all()
    assert np.array_equal(stack.params[0], start[0]) and np.array_equal(stack.params[5], start[5])
    # a model trained for 1 epoch in a call with others trained longer equals one trained alone
    alone = MLPStack([20, 16, 4], 6)
    segfast.train(alone, X, y, seg, epochs=1)
    assert np.array_equal(alone.params[1], stack.params[1])


def test_hflip_augmentation(rng):
    X = rng.random((200, 16)).astype(np.float32)
    y = rng.integers(0, 3, 200)
    seg = Segments.from_indices([np.arange(200)])
    plain, flipped = MLPStack([16, 8, 3], 1), MLPStack([16, 8, 3], 1)
    segfast.train(plain, X, y, seg)
    segfast.train(flipped, X, y, seg, augment="hflip")
    assert not np.array_equal(plain.params, flipped.params)
    # images symmetric left-right are unchanged by a flip, so training is too
    sym = X.reshape(200, 4, 4)
    sym = ((sym + sym[:, :, ::-1]) / 2).reshape(200, 16).astype(np.float32)
    a, b = MLPStack([16, 8, 3], 1), MLPStack([16, 8, 3], 1)
    segfast.train(a, sym, y, seg)
    segfast.train(b, sym, y, seg, augment="hflip")
    np.testing.assert_array_equal(a.params, b.params)
    with pytest.raises(ValueError, match="square"):
        segfast.train(MLPStack([15, 4, 3], 1), X[:, :15], y, seg, augment="hflip")
    with pytest.raises(ValueError, match="augment"):
        segfast.train(plain, X, y, seg, augment="rotate")


def test_divergence_is_detected_and_contained(problem):
    X, y, seg = problem
    stack = MLPStack([20, 16, 4], 6, seed=0)
    X = X * 50
    with pytest.warns(RuntimeWarning, match="diverged"):
        hist = segfast.train(stack, X, y, seg, epochs=3, lr=1e6)
    assert hist.diverged.any()
    assert np.array_equal(stack.diverged, hist.diverged)
    assert np.isfinite(stack.params).all()
    # diverged models are not trained again
    before = stack.params[stack.diverged].copy()
    segfast.train(stack, X / 50, y, seg, epochs=1, lr=0.01)
    assert np.array_equal(stack.params[stack.diverged], before)


def test_no_silent_copies_of_the_parameters(problem):
    X, y, seg = problem
    stack = MLPStack([20, 16, 4], 6)
    view = stack.weights(0)
    before = view.copy()
    segfast.train(stack, X, y, seg)
    assert not np.array_equal(view, before)  # the view sees the in-place update


def test_accepts_convertible_inputs(problem):
    X, y, seg = problem
    a, b = MLPStack([20, 16, 4], 6), MLPStack([20, 16, 4], 6)
    segfast.train(a, X, y, seg)
    segfast.train(b, np.asfortranarray(X.astype(np.float64)), y.astype(np.int32), seg)
    np.testing.assert_array_equal(a.params, b.params)
    c = MLPStack([20, 16, 4], 6)
    segfast.train(c, X, y, [seg[i] for i in range(len(seg))])
    np.testing.assert_array_equal(a.params, c.params)


@pytest.mark.parametrize(
    "change,error,match",
    [
        (lambda a: dict(a, X=a["X"][0]), ValueError, "X must be 2-D"),
        (lambda a: dict(a, X=np.where(a["X"] > 1, np.nan, a["X"])), ValueError, "X holds .* NaN"),
        (lambda a: dict(a, X=np.full_like(a["X"], np.inf)), ValueError, "X holds .* NaN or infinite"),
        (lambda a: dict(a, X=a["X"].astype(complex)), ValueError, "Complex data not supported"),
        (lambda a: dict(a, X=a["X"].astype(str)), TypeError, "X must be a numeric array"),
        (lambda a: dict(a, X=a["X"][:, :5]), ValueError, "X has 5 features, but the stack is expecting 20"),
        (lambda a: dict(a, y=a["y"].astype(float)), TypeError, "y must hold integer class labels"),
        (lambda a: dict(a, y=a["y"] + 4), ValueError, r"y holds labels in \[4, 7\] but the models have 4 classes"),
        (lambda a: dict(a, y=a["y"] - 1), ValueError, r"labels must be in \[0, 3\]"),
        (lambda a: dict(a, y=a["y"][:-1]), ValueError, "y has 899 labels but X has 900 rows"),
        (lambda a: dict(a, segments=segfast.segment(a["y"], 5)), ValueError, "5 segments but the stack has 6 models"),
        (
            lambda a: dict(a, segments=Segments.from_indices([np.arange(10)] * 5 + [np.arange(0)])),
            ValueError,
            "segment 5 is empty",
        ),
        (lambda a: dict(a, segments=Segments.from_indices([np.arange(10)] * 5 + [np.array([900])])), ValueError, "900"),
        (lambda a: dict(a, segments="iid"), TypeError, "segments must be"),
        (lambda a: dict(a, batch_size=0), ValueError, "batch_size must be an integer >= 1"),
        (lambda a: dict(a, lr=float("nan")), ValueError, "lr must be a finite number"),
        (lambda a: dict(a, lr=-1.0), ValueError, "lr must be >= 0"),
        (lambda a: dict(a, momentum=float("inf")), ValueError, "momentum must be a finite"),
        (lambda a: dict(a, epochs=-1), ValueError, "epochs must be an integer >= 0"),
        (lambda a: dict(a, epochs=[1, 2]), ValueError, "one per model"),
        (lambda a: dict(a, n_jobs=0), ValueError, "n_jobs must be -1"),
        (lambda a: dict(a, seed=-3), ValueError, "seed must be"),
        (lambda a: dict(a, stack="model"), TypeError, "stack must be a segfast.MLPStack"),
    ],
)
def test_bad_input_names_the_argument(problem, change, error, match):
    X, y, seg = problem
    args = change(dict(stack=MLPStack([20, 16, 4], 6), X=X, y=y, segments=seg))
    params = args["stack"].params.copy() if isinstance(args["stack"], MLPStack) else None
    with pytest.raises(error, match=match):
        segfast.train(
            args["stack"],
            args["X"],
            args["y"],
            args["segments"],
            **{k: v for k, v in args.items() if k not in ("stack", "X", "y", "segments")},
        )
    if params is not None:  # nothing was touched
        assert np.array_equal(args["stack"].params, params)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal_only(problem, monkeypatch, capsys):
    """A bar per epoch with the training loss on a terminal; nothing (no carriage returns) when
    standard error is a file or a pipe, and nothing with progress=False."""
    X, y, seg = problem
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    segfast.train(MLPStack([20, 16, 4], 6), X, y, seg, epochs=2, progress=True)
    shown = terminal.getvalue()
    assert "train: 100%" in shown and "2/2" in shown and "train loss" in shown
    terminal.truncate(0)
    segfast.train(MLPStack([20, 16, 4], 6), X, y, seg, epochs=2, progress=False)
    assert terminal.getvalue().strip("\x00") == ""
    monkeypatch.undo()
    segfast.train(MLPStack([20, 16, 4], 6), X, y, seg, epochs=2, progress=True)
    assert capsys.readouterr().err == ""  # pytest's capture is not a terminal


def test_a_block_trained_alone_matches_the_whole_stack(rng):
    """first_model keys the random streams by global model index: training models 2..3 as a
    stack of their own (one worker's block) gives exactly their rows of the whole run."""
    from segfast._epochs import TrainConfig, run_epochs

    X, y = blobs(rng, n=300, d=10, classes=3)
    segments = segfast.segment(y, 4, seed=1)
    whole = segfast.MLPStack([X.shape[1], 7, 3], 4, seed=3)
    block = whole.select([2, 3])
    config = TrainConfig(batch_size=8, lr=0.05, momentum=0.9, seed=5)
    run_epochs(whole, X, y, segments, np.full(4, 2), config, 1)
    block_segments = segfast.Segments.from_indices([segments[2], segments[3]])
    run_epochs(block, X, y, block_segments, np.full(2, 2), config, 1, first_model=2)
    np.testing.assert_array_equal(block.params, whole.params[2:])


def test_merge_pieces_of_parts_add_up_to_the_whole_call_exactly(rng):
    """A stack trained in parts (one per worker) returns its fused merge in pieces that, added in
    position order, give the whole call's merged sum bit for bit."""
    from segfast._epochs import FusedMerge, TrainConfig, run_epochs

    X, y = blobs(rng, n=400, d=10, classes=3)
    segments = segfast.segment(y, 10, seed=1)
    start = MLPStack([10, 7, 3], 1, seed=3).params[0]
    weights = rng.random(10)
    config = TrainConfig(batch_size=8, lr=0.05, seed=5)

    def fold(pieces):  # what segfast.distributed does with them
        total, open_sum, open_block = 0.0, None, -1
        for position, row in pieces:
            if position // 3 == open_block:
                open_sum = open_sum + row  # one more model of a block that an earlier part began
            else:
                total = total if open_sum is None else total + open_sum
                open_sum, open_block = row, position // 3
        return total + open_sum

    _, whole = run_epochs(
        MLPStack([10, 7, 3], 10),
        X,
        y,
        segments,
        np.full(10, 2),
        config,
        2,
        start_row=start,
        fused=FusedMerge(weights, block=3, pieces=True),
    )
    assert [p for p, _ in whole.pieces] == [0, 3, 6, 9]
    np.testing.assert_array_equal(fold(whole.pieces), whole.total)
    pieces = []
    for a, b in [(0, 4), (4, 5), (5, 10)]:
        part = Segments.from_indices([segments[i] for i in range(a, b)])
        _, merged = run_epochs(
            MLPStack([10, 7, 3], b - a),
            X,
            y,
            part,
            np.full(b - a, 2),
            config,
            2,
            start_row=start,
            first_model=a,
            fused=FusedMerge(weights[a:b], block=3, first=a, pieces=True),
        )
        pieces += merged.pieces
    assert [p for p, _ in pieces] == [0, 3, 4, 5, 6, 9]
    np.testing.assert_array_equal(fold(pieces), whole.total)
