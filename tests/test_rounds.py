"""rounds(): equivalences, seeding, server updates, run directories, resume after a kill."""

import io
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import segfast
from conftest import blobs
from segfast import MLPStack


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X, y = blobs(rng, n=1200, d=16, classes=4, spread=1.5)
    return X[:1000], y[:1000], (X[1000:], y[1000:]), segfast.segment(y[:1000], 5, "iid", seed=0)


def test_one_round_with_one_segment_is_plain_training(data):
    X, y, _, _ = data
    seg = segfast.Segments.from_indices([np.arange(1000)])
    start = MLPStack([16, 12, 4], seed=3)
    result = segfast.rounds(start, X, y, seg, rounds=1, local_epochs=2, progress=False, lr=0.1)
    plain = start.copy()
    segfast.train(plain, X, y, seg, epochs=2, lr=0.1)
    np.testing.assert_array_equal(result.global_model.params, plain.params)


def test_uniform_rounds_equal_manual_fedavg(data):
    X, y, _, seg = data
    start = MLPStack([16, 12, 4], seed=1)
    result = segfast.rounds(start, X, y, seg, rounds=3, local_epochs=1, progress=False)
    g = start.params[0]
    for r in range(3):
        local = MLPStack.from_params(start.dims, np.repeat(g[None], 5, axis=0))
        segfast.train(local, X, y, seg, epochs=1, start_epoch=r)
        g = local.params.mean(axis=0, dtype=np.float64).astype(np.float32)
    np.testing.assert_allclose(result.global_model.params[0], g, rtol=1e-6, atol=1e-7)
    assert [h["round"] for h in result.history] == [1, 2, 3]


@pytest.mark.parametrize("merge", ["uniform", "weighted", {"method": "weighted", "align": True}])
def test_rounds_are_bit_identical_for_any_thread_count(data, merge):
    X, y, _, _ = data
    seg = segfast.segment(y, 70, "iid", seed=1)  # more models than the fused merge's 64 blocks
    runs = [
        segfast.rounds([16, 12, 4], X, y, seg, rounds=2, merge=merge, n_jobs=n, progress=False).global_model.params
        for n in (1, 2)
    ]
    np.testing.assert_array_equal(runs[0], runs[1])


def test_fused_weighted_merge_equals_segfast_merge(data, tmp_path):
    X, y, _, seg = data
    start = MLPStack([16, 12, 4], seed=2)
    fused = segfast.rounds(start, X, y, seg, rounds=1, merge="weighted", progress=False)
    local = MLPStack.from_params(start.dims, np.repeat(start.params, 5, axis=0))
    segfast.train(local, X, y, seg)
    want = segfast.merge(local, "weighted", weights=seg)
    np.testing.assert_allclose(fused.global_model.params, want.params, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="weights must be >= 0"):
        segfast.rounds(
            start,
            X,
            y,
            seg,
            rounds=1,
            merge={"method": "weighted", "weights": [1, -1, 1, 1, 1]},
            progress=False,
            out=tmp_path / "bad",
        )
    assert not (tmp_path / "bad").exists()  # refused before the run directory was created


def test_server_momentum_and_learning_rate(data):
    X, y, _, seg = data
    start = MLPStack([16, 12, 4], seed=1)
    plain = segfast.rounds(start, X, y, seg, rounds=2, progress=False)
    half = segfast.rounds(start, X, y, seg, rounds=1, server_lr=0.5, progress=False)
    one = segfast.rounds(start, X, y, seg, rounds=1, progress=False)
    np.testing.assert_allclose(half.global_model.params, (start.params + one.global_model.params) / 2, atol=1e-6)
    moment = segfast.rounds(start, X, y, seg, rounds=2, server_momentum=0.9, progress=False)
    assert not np.allclose(moment.global_model.params, plain.global_model.params)


def test_fraction_sampling_is_seeded(data, tmp_path):
    X, y, _, seg = data
    a = segfast.rounds([16, 12, 4], X, y, seg, rounds=3, fraction=0.4, seed=5, progress=False)
    b = segfast.rounds([16, 12, 4], X, y, seg, rounds=3, fraction=0.4, seed=5, progress=False)
    c = segfast.rounds([16, 12, 4], X, y, seg, rounds=3, fraction=0.4, seed=6, progress=False)
    np.testing.assert_array_equal(a.global_model.params, b.global_model.params)
    assert not np.array_equal(a.global_model.params, c.global_model.params)
    assert all(h["participants"] == 2 for h in a.history)
    # The local models are the last round's participants, named by local_segments.
    assert a.local_models.n_models == 2 and a.local_segments.shape == (2,)
    assert np.all(np.diff(a.local_segments) > 0) and a.local_segments.max() < len(seg)
    full = segfast.rounds([16, 12, 4], X, y, seg, rounds=1, progress=False)
    np.testing.assert_array_equal(full.local_segments, np.arange(len(seg)))
    # A resume of the finished run loads its local models and names the same segments.
    options = dict(rounds=3, fraction=0.4, seed=5, progress=False, out=tmp_path / "run")
    segfast.rounds([16, 12, 4], X, y, seg, **options)
    again = segfast.rounds([16, 12, 4], X, y, seg, resume=True, **options)
    np.testing.assert_array_equal(again.local_segments, a.local_segments)
    np.testing.assert_array_equal(again.local_models.params, a.local_models.params)


def test_progressive_schedule_and_evaluation(data):
    X, y, val, seg = data
    sched = segfast.schedule.progressive(start=1, factor=2, every=2, max=4)
    assert [sched(r) for r in range(7)] == [1, 1, 2, 2, 4, 4, 4]
    result = segfast.rounds(
        [16, 12, 4], X, y, seg, rounds=5, local_epochs=sched, val=val, progress=False, merge={"method": "weighted"}
    )
    assert [h["local_epochs"] for h in result.history] == [1, 1, 2, 2, 4]
    last = result.history[-1]
    assert last["global_accuracy"] > 0.6
    # the last round's segment statistics are those of the segment models it returns
    seg = segfast.evaluate(result.local_models, *val).accuracy
    assert (last["segment_accuracy_mean"], last["segment_accuracy_std"]) == (float(seg.mean()), float(seg.std()))
    assert last["ensemble_accuracy"] == segfast.Ensemble(result.local_models, "soft").score(*val) > 0.5
    best = max(h["global_accuracy"] for h in result.history)
    assert float(segfast.evaluate(result.best_model, *val).accuracy[0]) == best


def test_segment_scoring_rows_per_round(data):
    """val_segments: "auto" scores the segment models and their vote on a quarter of a
    participant's rows of a seeded val subsample (the same rows every round), the last round on every val row;
    True every row each round; an int that many rows; False never. Each number is the one
    evaluate() and Ensemble.score() give for that round's segment models on those rows."""
    X, y, val, seg = data  # 5 segments of 200 rows, 200 val rows
    kw = dict(local_epochs=[1, 2, 1, 4, 1], val=val, progress=False, seed=4)
    auto = segfast.rounds([16, 12, 4], X, y, seg, rounds=5, **kw)
    assert [h["segments_val_rows"] for h in auto.history] == [50, 100, 50, 200, 200]  # 200 rows x epochs / 4; last: all
    last = auto.history[-1]
    scores = segfast.evaluate(auto.local_models, *val).accuracy
    assert (last["segment_accuracy_mean"], last["segment_accuracy_std"]) == (float(scores.mean()), float(scores.std()))
    assert last["ensemble_accuracy"] == segfast.Ensemble(auto.local_models, "soft").score(*val)

    # Round 1 on its 50 rows: the models of a one-round run are round 1's (keyed by seed and round).
    first = segfast.rounds([16, 12, 4], X, y, seg, rounds=1, **dict(kw, val_segments=False)).local_models
    keep = np.sort(np.random.default_rng([4, 0x5E9]).permutation(len(val[1]))[:50])
    rows = (val[0][keep], val[1][keep])
    scores = segfast.evaluate(first, *rows).accuracy
    assert auto.history[0]["segment_accuracy_mean"] == float(scores.mean())
    assert auto.history[0]["ensemble_accuracy"] == segfast.Ensemble(first, "soft").score(*rows)
    fixed = segfast.rounds([16, 12, 4], X, y, seg, rounds=3, **dict(kw, val_segments=50))
    assert [h["segments_val_rows"] for h in fixed.history] == [50, 50, 200]
    assert fixed.history[0]["segment_accuracy_mean"] == auto.history[0]["segment_accuracy_mean"]  # same rows

    every = segfast.rounds([16, 12, 4], X, y, seg, rounds=5, **dict(kw, val_segments=True))
    assert [h["segments_val_rows"] for h in every.history] == [200] * 5
    assert every.history[-1] == {**last, **{k: every.history[-1][k] for k in last if k.startswith("seconds")}}
    never = segfast.rounds([16, 12, 4], X, y, seg, rounds=5, **dict(kw, val_segments=False))
    assert not any("segments_val_rows" in h or "ensemble_accuracy" in h for h in never.history)
    np.testing.assert_array_equal(never.global_model.params, auto.global_model.params)  # scoring trains nothing


def test_fedprox_changes_local_training(data):
    X, y, _, seg = data
    a = segfast.rounds([16, 12, 4], X, y, seg, rounds=2, progress=False)
    b = segfast.rounds([16, 12, 4], X, y, seg, rounds=2, proximal_mu=1.0, progress=False)
    assert not np.array_equal(a.global_model.params, b.global_model.params)


def test_run_directory_is_complete_and_parses(data, tmp_path):
    X, y, val, seg = data
    out = tmp_path / "run"
    result = segfast.rounds([16, 12, 4], X, y, seg, rounds=3, val=val, out=out, progress=False)
    names = {p.name for p in out.iterdir()}
    assert {
        "config.json",
        "rounds.jsonl",
        "summary.csv",
        "checkpoint.npz",
        "best.npz",
        "final.npz",
        "local_models.npz",
    } <= names
    assert not any(n.endswith(".tmp") for n in names)
    config = json.loads((out / "config.json").read_text())
    assert config["segfast_version"] == segfast.__version__ and config["rounds"] == 3
    lines = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert [line["round"] for line in lines] == [1, 2, 3]
    assert (out / "summary.csv").read_text().splitlines()[0].startswith("round,")
    np.testing.assert_array_equal(MLPStack.load(out / "final.npz").params, result.global_model.params)
    # the same out again without resume is refused, files untouched
    before = (out / "rounds.jsonl").read_text()
    with pytest.raises(ValueError, match="already holds a run"):
        segfast.rounds([16, 12, 4], X, y, seg, rounds=3, out=out, progress=False)
    with pytest.raises(ValueError, match="different run's config"):
        segfast.rounds([16, 12, 4], X, y, seg, rounds=4, out=out, resume=True, progress=False)
    assert (out / "rounds.jsonl").read_text() == before


KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    import numpy as np, segfast
    sys.path.insert(0, {tests!r})
    from conftest import blobs
    rng = np.random.default_rng(0)
    X, y = blobs(rng, n=1200, d=16, classes=4, spread=1.5)
    seg = segfast.segment(y[:1000], 5, "iid", seed=0)
    kill_after = int(sys.argv[1])
    import segfast.results as results
    original = results.RunDirectory.write_round
    def write_then_die(self, history, state, best):
        original(self, history, state, best)
        if len(history) == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
    results.RunDirectory.write_round = write_then_die
    segfast.rounds([16, 12, 4], X[:1000], y[:1000], seg, rounds=5, local_epochs=[1, 2], val=(X[1000:], y[1000:]),
                   out=sys.argv[2], resume=True, server_momentum=0.5, progress=False)
""")


def test_killed_run_resumes_to_the_same_result(data, tmp_path):
    X, y, val, seg = data
    script = tmp_path / "run.py"
    script.write_text(KILLED_RUN.format(tests=os.path.dirname(__file__)))
    out = tmp_path / "killed"
    proc = subprocess.run([sys.executable, str(script), "2", str(out)], capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert len((out / "rounds.jsonl").read_text().splitlines()) == 2
    resumed = segfast.rounds(
        [16, 12, 4],
        X,
        y,
        seg,
        rounds=5,
        local_epochs=[1, 2],
        val=val,
        out=out,
        resume=True,
        server_momentum=0.5,
        progress=False,
    )
    whole = segfast.rounds(
        [16, 12, 4], X, y, seg, rounds=5, local_epochs=[1, 2], val=val, server_momentum=0.5, progress=False
    )
    np.testing.assert_array_equal(resumed.global_model.params, whole.global_model.params)
    assert [h["global_accuracy"] for h in resumed.history] == [h["global_accuracy"] for h in whole.history]


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(merge="average"), ValueError, "unknown merge method"),
        (dict(rounds=0), ValueError, "rounds must be an integer >= 1"),
        (dict(fraction=0.0), ValueError, r"fraction must be in \(0, 1\]"),
        (dict(fraction=1.5), ValueError, r"fraction must be in \(0, 1\]"),
        (dict(server_momentum=1.0), ValueError, "server_momentum must be < 1"),
        (dict(local_epochs=0), ValueError, "local_epochs must give integers >= 1"),
        (dict(val=np.zeros(3)), TypeError, "val must be an"),
        (dict(colour="red"), TypeError, "unexpected argument"),
        (dict(val_segments="some"), ValueError, "val_segments must be True, False, 'auto' or a number"),
        (dict(val_segments=0), ValueError, "val_segments must be"),
        (dict(val_segments=-3), ValueError, "val_segments must be"),
        (dict(val_segments=2.5), ValueError, "val_segments must be"),
        (dict(val_segments=None), ValueError, "val_segments must be"),
        # merge options are refused before any training, not at the end of the first round
        (dict(merge="loss"), ValueError, "needs val="),
        (dict(merge={"method": "median", "margin": 2}), ValueError, "margin must be"),
        (dict(merge={"method": "trimmed", "trim": 0.7}), ValueError, "trim must be"),
        (dict(merge={"method": "uniform", "weights": [1] * 5}), ValueError, "weights= is only used"),
        (dict(merge={"method": "uniform", "colour": 1}), TypeError, "merge has unknown option"),
    ],
)
def test_rounds_bad_input(data, kwargs, error, match, monkeypatch):
    """Each refused before any training (the engine's round would fail the test)."""
    from segfast._engine import LocalEngine

    monkeypatch.setattr(LocalEngine, "round", lambda *args: pytest.fail("trained before refusing"))
    X, y, _, seg = data
    with pytest.raises(error, match=match):
        segfast.rounds([16, 12, 4], X, y, seg, progress=False, **kwargs)


def test_deprecated_names_still_work_and_warn(data):
    """eval=/eval_segments= (now val=/val_segments=) and align's rounds= (now max_iter=) give the
    same results as the new names, with a FutureWarning naming the replacement."""
    X, y, val, seg = data
    kw = dict(rounds=2, progress=False)
    new = segfast.rounds([16, 12, 4], X, y, seg, val=val, val_segments=False, **kw)
    with pytest.warns(FutureWarning, match="use val="), pytest.warns(FutureWarning, match="use val_segments="):
        old = segfast.rounds([16, 12, 4], X, y, seg, eval=val, eval_segments=False, **kw)
    assert old.history[-1]["global_accuracy"] == new.history[-1]["global_accuracy"]
    assert "segment_accuracy_mean" not in old.history[-1]
    np.testing.assert_array_equal(old.global_model.params, new.global_model.params)
    with pytest.raises(TypeError, match="pass val= only"):
        segfast.rounds([16, 12, 4], X, y, seg, eval=val, val=val, **kw)
    stack = old.local_models
    with pytest.warns(FutureWarning, match="use max_iter="):
        aligned = segfast.align(stack, 0, rounds=3)
    np.testing.assert_array_equal(aligned.params, segfast.align(stack, 0, max_iter=3).params)


def test_rounds_needs_one_start_model(data):
    X, y, _, seg = data
    with pytest.raises(ValueError, match="one global model"):
        segfast.rounds(MLPStack([16, 12, 4], 2), X, y, seg, progress=False)


def test_progress_bar_names_what_it_shows(data, monkeypatch):
    """On a terminal, one bar over the rounds (starting at the first round still to run) whose
    note says the accuracy is the global model's on the val rows."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    X, y, val, seg = data
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    segfast.rounds([16, 12, 4], X, y, seg, rounds=2, val=val, val_segments=False)
    shown = terminal.getvalue()
    assert "round: 100%" in shown and "2/2" in shown and "val accuracy" in shown
