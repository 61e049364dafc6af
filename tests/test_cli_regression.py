"""`segfast run --task regression`: the shipped table, a CSV file with --target, resume, and the
flags that belong to the other task refused before any work."""

import json

import numpy as np
import pytest

import segfast
from segfast.cli import main


def run(tmp_path, *flags):
    return main(["run", "--task", "regression", "--quiet", "--rounds", "2", "--epochs", "2", "--lr", "0.01", *flags])


def test_default_table_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    assert run(tmp_path, "--out", str(out)) == 0
    printed = capsys.readouterr().out
    assert "txhousing regression of median" in printed and "test: merged RMSE" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "regression" and len(results["val_rmse"]) == 10
    assert results["test"]["ensemble"]["r2"] > 0.5  # learnt something real in 4 epochs
    final = segfast.MLPStack.load(out / "final.npz")
    assert final.task == "regression"
    # the RMSE printed is the model's, in dollars: the standardised RMSE times the target's scale
    data = segfast.tabular.load_default_regression()
    scores = segfast.evaluate(final, data.X_test, data.y_test)
    assert results["test"]["merged"]["rmse"] == pytest.approx(scores.rmse[0] * data.y_scale[0], rel=1e-6)
    # resuming for more rounds goes on from the checkpoint
    assert run(tmp_path, "--out", str(out), "--resume", "--rounds", "3") == 0
    assert len((out / "rounds.jsonl").read_text().splitlines()) == 3


def test_csv_with_a_target_column(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    y = 3 * X[:, 0] - X[:, 1] ** 2 + 0.1 * rng.normal(size=400)
    path = tmp_path / "table.csv"
    rows = ["a,b,c,colour,y"] + [f"{a},{b},{c},{'red' if a > 0 else 'blue'},{t}" for (a, b, c), t in zip(X, y)]
    path.write_text("\n".join(rows) + "\n")
    output = tmp_path / "r.json"
    assert run(tmp_path, "--data", str(path), "--target", "y", "--segments", "4", "-o", str(output)) == 0
    results = json.loads(output.read_text())
    assert results["targets"] == ["y"] and results["dims"][0] == 5  # a, b, c and two colours


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--task", "classification", "--target", "y"], "--target applies to --task regression"),
        (["--task", "classification", "--loss", "mse"], "--loss applies to --task regression"),
        (["--task", "classification", "--ensemble", "mean"], "--ensemble mean is a regression method"),
        (["--task", "regression", "--ensemble", "soft"], "--ensemble soft is a classification method"),
        (["--task", "regression", "--data", "nowhere.csv"], "'default', 'diamonds' or a CSV file"),
        (["--task", "regression", "--target", "price"], "--target applies to a CSV file"),
        (["--task", "regression", "--merge", "cluster-merge"], "with --task regression use cluster-best"),
    ],
)
def test_flags_of_the_other_task_are_refused(tmp_path, capsys, flags, message):
    output, out = tmp_path / "r.json", tmp_path / "run"
    assert main(["run", "--quiet", "--rounds", "1", "--epochs", "1", "-o", str(output), "--out", str(out), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not output.exists() and not (out / "config.json").exists()  # refused before any work


def test_csv_without_target_or_with_a_missing_column(tmp_path, capsys):
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,2\n3,4\n5,6\n")
    assert run(tmp_path, "--data", str(path)) == 2
    assert "--target" in capsys.readouterr().err
    assert run(tmp_path, "--data", str(path), "--target", "price") == 2
    assert "price" in capsys.readouterr().err
