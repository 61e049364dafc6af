"""Resuming a run directory: a kill after the last checkpoint, forged or damaged files, numpy
scalars in the config, bools where numbers are meant."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import segfast
from conftest import blobs
from segfast import MLPStack
from segfast.cli import main

DIMS = [16, 12, 4]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X, y = blobs(rng, n=1200, d=16, classes=4, spread=1.5)
    return X[:1000], y[:1000], (X[1000:], y[1000:]), segfast.segment(y[:1000], 5, "iid", seed=0)


KW = dict(rounds=3, server_momentum=0.5, progress=False)


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory):
    """A finished run directory of 3 evaluated rounds, and the result that wrote it."""
    X, y, val, seg = data
    out = tmp_path_factory.mktemp("finished") / "run"
    return out, segfast.rounds(DIMS, X, y, seg, val=val, out=out, **KW)


@pytest.fixture
def run_copy(finished, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished[0], out)
    return out


def resume(data, out):
    X, y, val, seg = data
    return segfast.rounds(DIMS, X, y, seg, val=val, out=out, resume=True, **KW)


# -- a kill between the last checkpoint and the end of rounds() --------------------------------------
KILLED_AFTER_LAST_CHECKPOINT = textwrap.dedent("""
    import os, signal, sys
    import numpy as np, segfast
    import segfast.results as results
    sys.path.insert(0, {tests!r})
    from conftest import blobs
    original = results.RunDirectory.write_round
    def write_then_die(self, history, state, best):
        original(self, history, state, best)
        if len(history) == {rounds}:  # the last checkpoint is written: die before rounds() returns
            os.kill(os.getpid(), signal.SIGKILL)
    results.RunDirectory.write_round = write_then_die
""")


def run_killed(tmp_path, rounds, call):
    script = tmp_path / "killed.py"
    script.write_text(
        KILLED_AFTER_LAST_CHECKPOINT.format(tests=os.path.dirname(__file__), rounds=rounds) + textwrap.dedent(call)
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()


def test_a_kill_after_the_last_checkpoint_keeps_the_segment_models(data, finished, tmp_path):
    out = tmp_path / "killed"
    run_killed(
        tmp_path,
        3,
        f"""
        rng = np.random.default_rng(0)
        X, y = blobs(rng, n=1200, d=16, classes=4, spread=1.5)
        seg = segfast.segment(y[:1000], 5, "iid", seed=0)
        segfast.rounds({DIMS}, X[:1000], y[:1000], seg, val=(X[1000:], y[1000:]), out={str(out)!r}, **{KW!r})
        """,
    )
    resumed = resume(data, out)
    whole = finished[1]
    assert resumed.local_models is not None
    np.testing.assert_array_equal(resumed.local_models.params, whole.local_models.params)
    np.testing.assert_array_equal(resumed.global_model.params, whole.global_model.params)
    np.testing.assert_array_equal(resumed.best_model.params, whole.best_model.params)
    for name in ("final.npz", "local_models.npz", "best.npz"):
        a, b = MLPStack.load(out / name), MLPStack.load(finished[0] / name)
        assert a.params.tobytes() == b.params.tobytes() and a.diverged.tobytes() == b.diverged.tobytes(), name


def test_cli_resume_after_a_kill_after_the_last_checkpoint(tmp_path, capsys):
    args = [
        "run",
        "--segments",
        "2",
        "--hidden",
        "8",
        "--epochs",
        "1",
        "--rounds",
        "2",
        "--quiet",
        "--out",
        str(tmp_path / "run"),
        "-o",
        str(tmp_path / "r.json"),
    ]
    run_killed(tmp_path, 2, f"from segfast.cli import main; main({args!r})")
    assert main(args + ["--resume"]) == 0, capsys.readouterr().err
    assert len(json.loads((tmp_path / "r.json").read_text())["val_accuracy"]) == 2


def test_a_finished_run_without_its_segment_models_is_a_clear_error(data, run_copy):
    (run_copy / "local_models.npz").unlink()  # what a kill after the last checkpoint left before
    with pytest.raises(ValueError, match="local_models.npz is missing"):
        resume(data, run_copy)


def test_segment_models_of_another_shape_are_refused(data, run_copy):
    MLPStack(DIMS, 4).save(run_copy / "local_models.npz")
    with pytest.raises(ValueError, match=r"local_models.npz holds 4 model\(s\)"):
        resume(data, run_copy)


def test_a_finished_run_resumes_to_its_result(data, finished, run_copy):
    resumed = resume(data, run_copy)
    whole = finished[1]
    np.testing.assert_array_equal(resumed.local_models.params, whole.local_models.params)
    assert [h["global_accuracy"] for h in resumed.history] == [h["global_accuracy"] for h in whole.history]


# -- forged or damaged files --------------------------------------------------------------------------
def forge_checkpoint(out, **changes):
    """Rewrite checkpoint.npz with fields replaced (None: removed)."""
    with np.load(out / "checkpoint.npz") as f:
        state = {k: f[k] for k in f.files}
    for k, v in changes.items():
        if v is None:
            state.pop(k)
        else:
            state[k] = v
    with open(out / "checkpoint.npz", "wb") as f:
        np.savez(f, **state)


P = sum(a * b + b for a, b in zip(DIMS[:-1], DIMS[1:]))


@pytest.mark.parametrize(
    "changes,match",
    [
        (dict(round=np.int64(-1)), "round is -1, outside this run of 3"),
        (dict(round=np.int64(3)), "round is 3, outside"),
        (dict(round=np.int64(10**6)), "round is 1000000, outside"),
        (dict(round=np.int64(2**62)), "outside"),  # summed local epochs over range(2**62): hung
        (dict(round=np.float64(1.0)), "round must be an integer scalar"),
        (dict(round=np.array([1])), "round must be an integer scalar"),
        (dict(server_buffer=np.float64(0.0)), rf"server_buffer must be \({P},\) float64"),
        (dict(server_buffer=np.zeros(P + 1)), "server_buffer must be"),
        (dict(server_buffer=np.zeros(P, dtype=np.float32)), "server_buffer must be"),
        (dict(server_buffer=np.array([None] * P)), "Python objects"),
        (dict(server_buffer=np.full(P, np.inf)), "server_buffer holds NaN or infinite"),
        (dict(**{"global": np.zeros(P, dtype=np.float64)}), "global must be"),
        (dict(**{"global": np.full(P, np.nan, dtype=np.float32)}), "global holds NaN"),
        (dict(round=None), "has no array 'round'"),
        (dict(server_buffer=None), "has no array 'server_buffer'"),
        (dict(**{"global": None}), "has no array 'global'"),
    ],
)
def test_forged_checkpoints_are_refused(data, run_copy, changes, match):
    forge_checkpoint(run_copy, **changes)
    with pytest.raises(ValueError, match="checkpoint.npz") as info:
        resume(data, run_copy)
    assert info.match(match)


def test_a_checkpoint_that_is_no_npz_is_refused(data, run_copy):
    (run_copy / "checkpoint.npz").write_bytes(b"\x93NUMPY not a zip")
    with pytest.raises(ValueError, match="checkpoint.npz is not an .npz file"):
        resume(data, run_copy)


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines))


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda lines: lines[:2], r"holds 2 round\(s\), but checkpoint.npz records 3"),
        (lambda lines: lines + lines[-1:] + lines[-1:], r"holds 5 round\(s\)"),
        (lambda lines: ["{not json"] + lines[1:], "line 1 is not JSON"),
        (lambda lines: ["[1, 2]"] + lines[1:], "line 1 must be a JSON object"),
        (lambda lines: [lines[1]] + lines[1:], "line 1: round must be 1, got 2"),
        (lambda lines: [json.dumps(dict(json.loads(lines[0]), round=True))] + lines[1:], "round must be 1, got True"),
        (
            lambda lines: [json.dumps(dict(json.loads(lines[0]), global_accuracy="high"))] + lines[1:],
            "global_accuracy must be a number",
        ),
        (lambda lines: [json.dumps({"round": 1})] + lines[1:], "global_accuracy must be a number"),
    ],
)
def test_forged_histories_are_refused(data, run_copy, edit, match):
    path = run_copy / "rounds.jsonl"
    write_lines(path, edit(path.read_text().splitlines()))
    with pytest.raises(ValueError, match="rounds.jsonl") as info:
        resume(data, run_copy)
    assert info.match(match)


def test_a_missing_history_is_refused(data, run_copy):
    (run_copy / "rounds.jsonl").unlink()
    with pytest.raises(ValueError, match="rounds.jsonl is missing"):
        resume(data, run_copy)


@pytest.mark.parametrize(
    "text,match",
    [
        ("[]", "must hold a JSON object"),
        ("{", "is not a readable JSON file"),
        ("\udcff", "is not a readable JSON file"),
    ],
)
def test_forged_configs_are_refused(data, run_copy, text, match):
    (run_copy / "config.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(ValueError, match="config.json") as info:
        resume(data, run_copy)
    assert info.match(match)


def test_a_best_model_of_other_dims_or_none_is_refused(data, run_copy):
    MLPStack([16, 8, 4]).save(run_copy / "best.npz")
    with pytest.raises(ValueError, match=r"best.npz holds 1 model\(s\) of dims \[16, 8, 4\]"):
        resume(data, run_copy)
    (run_copy / "best.npz").unlink()
    with pytest.raises(ValueError, match="best.npz is missing"):
        resume(data, run_copy)


def test_temporary_files_a_kill_left_are_removed_on_resume(data, run_copy):
    stale = [run_copy / "rounds.jsonl.tmp", run_copy / ".final.npz.0123456789ab.tmp"]
    for p in stale:
        p.write_bytes(b"half")
    (run_copy / "notes.tmp").write_text("mine")  # not a run file's: kept
    resume(data, run_copy)
    assert not any(p.exists() for p in stale) and (run_copy / "notes.tmp").exists()


# -- arguments ------------------------------------------------------------------------------------------
def test_numpy_scalars_are_written_as_json_numbers(data, tmp_path):
    X, y, _, seg = data
    kw = dict(
        rounds=np.int64(2),
        lr=np.float32(0.1),
        fraction=np.float64(0.6),
        seed=np.int64(1),
        batch_size=np.int64(16),
        server_lr=np.float32(1.0),
        local_epochs=np.int32(1),
        progress=False,
    )
    out = tmp_path / "run"
    first = segfast.rounds(DIMS, X, y, seg, out=out, **kw)
    config = json.loads((out / "config.json").read_text())
    assert config["rounds"] == 2 and config["fraction"] == 0.6 and config["train"]["batch_size"] == 16
    again = segfast.rounds(DIMS, X, y, seg, out=out, resume=True, **kw)
    np.testing.assert_array_equal(again.global_model.params, first.global_model.params)
    np.testing.assert_array_equal(again.local_models.params, first.local_models.params)
    assert again.local_models.n_models == 3  # 0.6 of 5 segments


@pytest.mark.parametrize("value", [True, False])
def test_fraction_refuses_bools(data, value):
    X, y, _, seg = data
    with pytest.raises(ValueError, match="fraction must be in"):
        segfast.rounds(DIMS, X, y, seg, rounds=1, fraction=value, progress=False)


@pytest.mark.parametrize("value", [2**31 - 1, 2**200, np.uint64(2**63)])
def test_absurd_round_counts_are_refused_at_once(data, value):
    X, y, _, seg = data  # the schedule was checked round by round first: these spun for ever
    with pytest.raises(ValueError, match="rounds must be an integer >= 1 and <= 1000000"):
        segfast.rounds(DIMS, X, y, seg, rounds=value, progress=False)


def test_more_rounds_extend_a_finished_run_as_if_asked_from_the_start(tmp_path):
    import segfast

    rng = np.random.default_rng(0)
    X = rng.standard_normal((240, 6)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0)
    seg = segfast.segment(y, 5, seed=0)
    kw = dict(val=(X, y), progress=False, seed=3, local_epochs=[1, 2], server_momentum=0.5)
    direct = segfast.rounds([6, 8, 3], X, y, seg, rounds=5, out=tmp_path / "direct", **kw)
    segfast.rounds([6, 8, 3], X, y, seg, rounds=3, out=tmp_path / "grown", **kw)
    grown = segfast.rounds([6, 8, 3], X, y, seg, rounds=5, out=tmp_path / "grown", resume=True, **kw)
    assert np.array_equal(grown.global_model.params, direct.global_model.params)
    assert np.array_equal(grown.local_models.params, direct.local_models.params)
    strip = lambda h: [{k: v for k, v in r.items() if not k.startswith("seconds")} for r in h]  # noqa: E731
    # Round 3 ended the first run, so it scored the segment models on every val row (the last
    # round always does); in the direct run it is a middle round, scored on a subsample.
    scoring = ("segments_val_rows", "segment_accuracy_mean", "segment_accuracy_std", "ensemble_accuracy")
    assert grown.history[2]["segments_val_rows"] == 240 > direct.history[2]["segments_val_rows"]
    for h in (grown.history[2], direct.history[2]):
        for key in scoring:
            h.pop(key)
    assert strip(grown.history) == strip(direct.history)
    with pytest.raises(ValueError, match="rounds can grow, not shrink"):
        segfast.rounds([6, 8, 3], X, y, seg, rounds=4, out=tmp_path / "grown", resume=True, **kw)
