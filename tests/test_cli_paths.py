"""The CLI checks every path before it trains, says where an interrupted run stands, and tells
its version: a newcomer's first hour (issue: bad paths found after training lost the results)."""

import json
import signal
import subprocess
import sys
import time

import pytest

from segfast.cli import main


def _run(tmp_path, *flags):
    return main(["run", "--epochs", "1", "--quiet", *flags])


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
    ],
)
def test_bad_paths_are_one_line_errors_before_any_training(tmp_path, capsys, make, flags, says):
    make(tmp_path)
    start = time.perf_counter()
    assert _run(tmp_path, *flags(tmp_path)) == 2
    out, err = capsys.readouterr()
    assert "segment models" not in out and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    import re

    assert re.search(says, err), err
    assert time.perf_counter() - start < 5  # refused at once, not after training
    assert not list(tmp_path.glob("**/*.tmp"))


def test_version(capsys):
    from segfast import __version__

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"segfast {__version__}"


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


def test_config_errors_name_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = = 3\n")
    assert main(["run", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"--config {bad}: not valid TOML" in err and len(err.strip().splitlines()) == 1
    assert main(["run", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml: cannot be read" in capsys.readouterr().err


def test_a_run_directory_holds_everything_and_reruns_bit_for_bit(tmp_path, capsys):
    import numpy as np

    from segfast import MLPStack

    first, second = tmp_path / "first", tmp_path / "second"
    flags = ["--epochs", "1", "--rounds", "2", "--segments", "3", "--hidden", "16", "--seed", "5", "--quiet"]
    assert main(["run", *flags, "--out", str(first)]) == 0
    for name in ("command.json", "config.json", "results.json", "final.npz", "local_models.npz", "rounds.jsonl"):
        assert (first / name).is_file(), name
    recorded = json.loads((first / "command.json").read_text())
    assert recorded["segments"] == 3 and recorded["hidden"] == [16] and recorded["data"] == "default"
    assert main(["rerun", str(first), "--out", str(second), "--quiet"]) == 0
    assert np.array_equal(MLPStack.load(first / "final.npz").params, MLPStack.load(second / "final.npz").params)
    a, b = (json.loads((d / "results.json").read_text()) for d in (first, second))
    assert a["val_accuracy"] == b["val_accuracy"] and a["ensemble_val_accuracy"] == b["ensemble_val_accuracy"]
    # the same directory again without --resume would overwrite a run: refused, nothing touched
    before = (first / "command.json").read_text()
    assert main(["run", *flags, "--segments", "4", "--out", str(first)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (first / "command.json").read_text() == before
