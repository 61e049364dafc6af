"""The `segfast` command as a user runs it (a child process): every path checked before it trains,
an interrupted run that says where it stands, run directories that rerun bit for bit and resume
with more rounds, config files whose errors name the file, and its version: a newcomer's first
hour (issue: bad paths found after training lost the results)."""

import json
import re
import signal
import subprocess
import sys
import time

import pytest


def segfast(*flags, cwd=None):
    """The real command, in a child process: what a user sees on stdout and stderr."""
    return subprocess.run([sys.executable, "-m", "segfast.cli", *flags], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize(
    "make, flags, says",
    [
        (lambda d: (d / "adir").mkdir(), lambda d: ["-o", str(d / "adir")], "--output .*is a directory"),
        (lambda d: None, lambda d: ["-o", str(d / "nope" / "x.json")], "--output .*does not exist"),
        (
            lambda d: (d / "afile").write_text("x"),
            lambda d: ["-o", str(d / "r.json"), "--out", str(d / "afile")],
            "--out .*is a file",
        ),
        (lambda d: None, lambda d: ["-o", str(d / "r.json"), "--resume"], "--resume needs --out"),
        (lambda d: None, lambda d: ["-o", str(d / "r.json"), "--resume", "--out", str(d / "none")], "no run to resume"),
        (lambda d: None, lambda d: ["-o", str(d / "r.json"), "--data-dir", str(d / "missing")], "--data-dir .*no such"),
        # an option that earlier versions accepted and then ignored
        (lambda d: None, lambda d: ["-o", str(d / "r.json"), "--init", "independent"], "--init independent: "),
    ],
)
def test_bad_paths_are_one_line_errors_before_any_training(tmp_path, make, flags, says):
    make(tmp_path)
    start = time.perf_counter()
    done = segfast("run", "--epochs", "1", "--quiet", *flags(tmp_path), cwd=tmp_path)
    assert done.returncode == 2
    assert "segment models" not in done.stdout and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert re.search(says, done.stderr), done.stderr
    assert time.perf_counter() - start < 10  # refused at once, not after training
    assert not list(tmp_path.glob("**/*.tmp")) and not (tmp_path / "segfast-results.json").exists()
    assert not (tmp_path / "none").exists()  # --resume on a missing directory starts nothing there


def test_version():
    from segfast import __version__

    done = segfast("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"segfast {__version__}"


def test_ctrl_c_says_where_the_run_stands_and_exits_130(tmp_path):
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable,
        "-c",
        "import sys; from segfast.cli import main; sys.exit(main(sys.argv[1:]))",
        "run",
        "--rounds",
        "200",
        "--epochs",
        "1",
        "--segments",
        "4",
        "--quiet",
        "--out",
        str(run_dir),
        "-o",
        str(tmp_path / "r.json"),
    ]
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = run_dir / "rounds.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.is_file() and log.read_text().count("\n") >= 2):
        time.sleep(0.05)
    assert child.poll() is None, child.communicate()
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 130, err
    assert "Traceback" not in err
    done = len(log.read_text().splitlines())
    assert f"interrupted after round {done} of 200" in err and "--resume" in err
    config = json.loads((run_dir / "config.json").read_text())
    assert config["rounds"] == 200 and (run_dir / "checkpoint.npz").is_file()  # still resumable


def test_results_have_short_reprs(rng):
    import numpy as np

    import segfast
    from conftest import blobs

    X, y = blobs(rng, n=200, d=6, classes=3)
    seg = segfast.segment(y, 50, seed=0)
    hist = segfast.train(segfast.MLPStack([6, 4, 3], 50), X, y, seg, epochs=3)
    text = repr(hist)
    assert text.startswith("History(epochs=3, models=50") and len(text) < 200
    result = segfast.rounds([6, 4, 3], X, y, seg, rounds=2, val=(X, y), progress=False)
    text = repr(result)
    assert "2 rounds" in text and "global accuracy" in text and len(text) < 300
    assert np.isfinite(hist.loss).all()


def test_config_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = = 3\n")
    done = segfast("run", "--config", str(bad))
    assert done.returncode == 2 and f"--config {bad}: not valid TOML" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    done = segfast("run", "--config", str(tmp_path / "missing.toml"))
    assert done.returncode == 2 and "missing.toml: cannot be read" in done.stderr


def test_a_run_directory_holds_everything_and_reruns_bit_for_bit(tmp_path):
    import numpy as np

    from segfast import MLPStack

    first, second = tmp_path / "first", tmp_path / "second"
    flags = ["--epochs", "1", "--rounds", "2", "--segments", "3", "--hidden", "16", "--seed", "5", "--quiet"]
    made = ["--scheme", "dirichlet", "--alpha", "0.8", "--val", "800", "--ensemble", "hard"]
    assert segfast("run", *flags, *made, "--out", str(first), cwd=tmp_path).returncode == 0
    names = ("command.json", "config.json", "results.json", "final.npz", "local_models.npz", "rounds.jsonl")
    for name in names:
        assert (first / name).is_file(), name
    assert not (tmp_path / "segfast-results.json").exists()  # the results go into the run directory
    recorded = json.loads((first / "command.json").read_text())
    assert recorded["segments"] == 3 and recorded["hidden"] == [16] and recorded["data"] == "default"
    assert (recorded["scheme"], recorded["alpha"], recorded["val"], recorded["ensemble"]) == (
        "dirichlet",
        0.8,
        800,
        "hard",
    )
    assert segfast("rerun", str(first), "--out", str(second), "--quiet").returncode == 0
    assert np.array_equal(MLPStack.load(first / "final.npz").params, MLPStack.load(second / "final.npz").params)
    a, b = (json.loads((d / "results.json").read_text()) for d in (first, second))
    assert a["val_accuracy"] == b["val_accuracy"] and a["ensemble_val_accuracy"] == b["ensemble_val_accuracy"]
    assert len(a["val_accuracy"]) == 3 and len(b["rounds"]) == 2
    # the same directory again without --resume would overwrite a run: refused, nothing touched
    before = (first / "command.json").read_text()
    again = segfast("run", *flags, "--segments", "4", "--out", str(first))
    assert again.returncode == 2 and "already holds a run" in again.stderr
    assert (first / "command.json").read_text() == before


def test_resume_with_more_rounds_extends_a_finished_run(tmp_path):
    import numpy as np

    from segfast import MLPStack

    extended, straight = tmp_path / "extended", tmp_path / "straight"
    flags = ["--epochs", "1", "--segments", "3", "--hidden", "16", "--quiet"]
    assert segfast("run", *flags, "--rounds", "2", "--out", str(extended)).returncode == 0
    more = segfast("run", *flags, "--rounds", "3", "--out", str(extended), "--resume")
    assert more.returncode == 0, more.stderr
    assert segfast("run", *flags, "--rounds", "3", "--out", str(straight)).returncode == 0
    assert len((extended / "rounds.jsonl").read_text().splitlines()) == 3
    # the later round as if the run had been asked for 3 rounds from the start
    same = (MLPStack.load(d / "final.npz").params for d in (extended, straight))
    assert np.array_equal(*same)
    # a resume that changes anything but --rounds asks for another run: refused
    other = segfast("run", *flags, "--rounds", "4", "--lr", "0.1", "--out", str(extended), "--resume")
    assert other.returncode == 2 and "differs in lr" in other.stderr


@pytest.mark.parametrize(
    "line, says",
    [
        ('epochs = "ten"', "epochs must be an integer, got 'ten'"),
        ("segments = 2.5", "segments must be an integer, got 2.5"),
        ('quiet = "yes"', "quiet must be true or false"),
        ('merge = "nope"', "merge must be one of uniform, "),
        ("hidden = [32, 0]", "hidden: every width must be >= 1"),
        ("merge-trim = 0.7", "merge-trim: must be a number in [0, 0.5)"),
        ("data = 3", "data must be text"),
    ],
)
def test_a_config_value_of_the_wrong_type_is_one_line_naming_the_file(tmp_path, line, says):
    config = tmp_path / "exp.toml"
    config.write_text(line + "\n")
    done = segfast("run", "--config", str(config), "--quiet", cwd=tmp_path)
    assert done.returncode == 2 and "segment models" not in done.stdout
    assert done.stderr.startswith(f"segfast: error: {config}: {says}"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "usage:" not in done.stderr
