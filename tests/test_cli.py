"""The `segfast` command end to end on the shipped data set."""

import json
import subprocess
import sys

import pytest

import segfast
from segfast.cli import main


def test_main_job_runs_on_the_shipped_data(tmp_path, capsys):
    out = tmp_path / "results.json"
    assert main(["run", "--epochs", "2", "--quiet", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "segment" in printed and "val acc" in printed and "merged (uniform)" in printed
    results = json.loads(out.read_text())
    assert len(results["val_accuracy"]) == 10
    assert min(results["val_accuracy"]) > 0.3  # 10 classes: chance is 0.1
    assert results["config"]["segments"] == 10 and len(results["rounds"]) == 1


def test_rounds_run_directory_config_file_and_plot(tmp_path, capsys):
    config = tmp_path / "exp.toml"
    config.write_text('segments = 4\nrounds = 3\nepochs = 1\nmerge = "weighted"\nhidden = [32]\n')
    run_dir = tmp_path / "run"
    code = main(["run", "--config", str(config), "--quiet", "--out", str(run_dir), "-o", str(tmp_path / "r.json")])
    assert code == 0
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["config"]["merge"] == "weighted" and results["dims"] == [784, 32, 10]
    assert len((run_dir / "rounds.jsonl").read_text().splitlines()) == 3
    pytest.importorskip("matplotlib")
    assert main(["plot", str(run_dir)]) == 0
    assert (run_dir / "accuracy.png").stat().st_size > 1000 and (run_dir / "weight_map.png").exists()


def test_a_sampled_last_round_reports_the_segments_that_took_part(tmp_path, capsys):
    """--fraction < 1: the table, results.json and the plots name the last round's participants
    (by segment index, with their own sizes), not the first rows of the segment list."""
    run_dir = tmp_path / "run"
    flags = ["--segments", "8", "--scheme", "dirichlet", "--fraction", "0.5", "--rounds", "2", "--epochs", "1"]
    assert main(["run", *flags, "--hidden", "16", "--quiet", "--out", str(run_dir)]) == 0
    printed = capsys.readouterr().out
    results = json.loads((run_dir / "results.json").read_text())
    took_part = results["local_segments"]
    assert len(took_part) == 4 == len(results["val_accuracy"]) and took_part == sorted(set(took_part))
    assert took_part != [0, 1, 2, 3]  # seed 0 samples others: the test would not tell otherwise
    assert "4 of 8 segments took part" in printed
    table = printed.split("took part)")[1].strip().split("\n\n")[0].splitlines()
    rows = [line.split()[:2] for line in table]
    assert rows == [[str(i), str(results["segment_sizes"][i])] for i in took_part]


@pytest.mark.parametrize(
    "flags,scored",
    [
        ([], [225, 1000]),  # auto: a quarter of a segment's 900 rows, then every val row
        (["--val-segments", "all"], [1000, 1000]),
        (["--val-segments", "37"], [37, 1000]),
        (["--val-segments", "none"], [None, None]),
    ],
)
def test_val_segments_chooses_the_rows_that_score_the_segment_models(tmp_path, flags, scored):
    run_dir = tmp_path / "run"
    base = ["run", "--rounds", "2", "--epochs", "1", "--hidden", "16", "--quiet", "--out", str(run_dir)]
    assert main(base + flags) == 0
    records = [json.loads(line) for line in (run_dir / "rounds.jsonl").read_text().splitlines()]
    assert [r.get("segments_val_rows") for r in records] == scored
    recorded = json.loads((run_dir / "command.json").read_text())["val_segments"]
    assert recorded == (flags[1] if flags else "auto")  # so that rerun scores the same rows


def test_val_segments_refuses_what_it_cannot_read(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--val-segments", "some"])
    assert "--val-segments: must be auto, all, none or a number of rows >= 1" in capsys.readouterr().err


def test_errors_exit_with_a_message(tmp_path, capsys):
    assert main(["run", "--data", "no-such-set", "-o", str(tmp_path / "x.json")]) == 2
    assert "unknown" in capsys.readouterr().err.lower()
    bad = tmp_path / "bad.toml"
    bad.write_text("colour = 3\n")
    assert main(["run", "--config", str(bad)]) == 2
    assert "unknown option" in capsys.readouterr().err
    if not segfast.cuda_available():  # asking for a GPU that is not there: a message, no traceback
        assert main(["run", "--device", "cuda", "--quiet", "-o", str(tmp_path / "y.json")]) == 2
        assert "--device cuda" in capsys.readouterr().err


def test_info_and_help_as_a_console_script():
    info = subprocess.run([sys.executable, "-m", "segfast.cli", "info"], capture_output=True, text=True)
    assert info.returncode == 0 and "OpenMP" in info.stdout and "gemm kernel" in info.stdout
    assert "CUDA:" in info.stdout
    helptext = subprocess.run([sys.executable, "-m", "segfast.cli", "run", "--help"], capture_output=True, text=True)
    assert "--segments" in helptext.stdout and "--rounds" in helptext.stdout
    assert "--merge-temperature" in helptext.stdout and "cluster-merge" in helptext.stdout
    for command in ([], ["run"], ["rerun"], ["plot"], ["info"]):  # the design notes do not ship
        shown = subprocess.run(
            [sys.executable, "-m", "segfast.cli", *command, "--help"], capture_output=True, text=True
        )
        assert shown.returncode == 0 and "design" not in shown.stdout.lower()


@pytest.mark.parametrize(
    "flags, says, not_said",
    [
        (["--segments", "0"], "--segments must be an integer >= 1", "n_segments"),
        (["--segments", "100000"], "--segments 100000 exceeds the 9000 training rows", "rows of y"),
        (["--epochs", "0"], "--epochs must be an integer >= 1 and <= 1000000, got 0\n", "round 0"),
        (["--progressive", "--epochs", "0"], "--epochs must be an integer >= 1", "max"),
        (["--server-momentum", "1"], "--server-momentum must be < 1", "server_momentum"),
        (["--batch-size", "0"], "--batch-size must be an integer >= 1", "batch_size"),
        (["--val", "100000"], "--val 100000 leaves no training rows", "val ="),
        (["--data", "mnist", "--data-dir", "."], "then pass --data-dir or set", "data_dir"),
    ],
)
def test_library_errors_name_the_flags(tmp_path, flags, says, not_said):
    done = subprocess.run(
        [sys.executable, "-m", "segfast.cli", "run", "--quiet", "--epochs", "1", *flags],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert says in done.stderr and not_said not in done.stderr, done.stderr


def test_flag_names_replace_python_names_only_where_they_name_an_argument():
    from segfast.cli import _in_flags

    assert (
        _in_flags("k=3 is larger than the number of models (2)")
        == "--clusters 3 is larger than the number of models (2)"
    )
    assert _in_flags("device='cuda': no GPU") == "--device cuda: no GPU"
    assert (
        _in_flags("temperature must be a finite number > 0, got 0")
        == "--merge-temperature must be a finite number > 0, got 0"
    )
    assert _in_flags("seed must be an integer >= 0") == "--seed must be an integer >= 0"
    # words that merely look like argument names stay as they are
    assert (
        _in_flags("unknown merge method 'x' for rounds; choose one")
        == "unknown merge method 'x' for rounds; choose one"
    )
    assert _in_flags("--out run_dir/val=3: a file") == "--out run_dir/val=3: a file"


def test_clustered_rounds_from_the_command_line(tmp_path, capsys):
    run_dir, out = tmp_path / "run", tmp_path / "r.json"
    flags = ["--segments", "6", "--rounds", "2", "--epochs", "1", "--hidden", "16", "--clusters", "2"]
    assert main(["run", *flags, "--cluster-by", "weights", "--quiet", "--out", str(run_dir), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "2 clustered global models (by weights)" in printed and "clustered rounds: 2 global models" in printed
    results = json.loads(out.read_text())
    assert sorted(sum(results["cluster_segments"], [])) == list(range(6))
    assert len(results["clusters"]) == 6 and len(results["cluster_test_accuracy"]) == 2
    assert segfast.MLPStack.load(run_dir / "final.npz").n_models == 2


@pytest.mark.parametrize(
    "flags, says",
    [
        (["--cluster-by", "weights"], "--cluster-by applies to clustered rounds: --clusters K (K >= 2)"),
        (["--clusters", "2", "--recluster-every", "2"], "--recluster-every applies to --cluster-by weights"),
        (["--clusters", "2", "--task", "regression"], "clustered rounds from the command line are for classification"),
        (["--clusters", "2", "--recluster-every", "0"], "--recluster-every: must be an integer >= 1"),
        (["--clusters", "11"], "--clusters 11 is more than the 10 segments"),
        (["--clusters", "2", "--cluster-by", "cosine"], "invalid choice: 'cosine'"),
    ],
)
def test_cluster_flags_refused_before_any_work(flags, says, capsys):
    try:
        code = main(["run", "--quiet", *flags])
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    assert code == 2 and says in capsys.readouterr().err


def test_dp_fedavg_from_the_command_line(tmp_path, capsys):
    """--dp-clip/--dp-noise run DP-FedAvg: the global model and the privacy spent are reported,
    nothing of the segment models is written or scored, and the run resumes as any other."""
    pytest.importorskip("dp_accounting")
    run_dir, out = tmp_path / "run", tmp_path / "r.json"
    flags = ["--segments", "20", "--fraction", "0.5", "--epochs", "1", "--hidden", "16", "--quiet"]
    flags += ["--dp-clip", "1", "--dp-noise", "1.1", "--out", str(run_dir), "-o", str(out)]
    assert main(["run", "--rounds", "2", *flags]) == 0
    printed = capsys.readouterr().out
    assert "DP-FedAvg" in printed and "for each of the 20 segments" in printed and "segment models:" not in printed
    results = json.loads(out.read_text())
    records = [json.loads(line) for line in (run_dir / "rounds.jsonl").read_text().splitlines()]
    assert results["epsilon"] == records[-1]["epsilon"] > records[0]["epsilon"] > 0
    assert results["delta"] == 1e-5 and "val_accuracy" not in results and "ensemble_val_accuracy" not in results
    # the final model scored again by the command: the rounds' own score of it on the same rows
    assert results["merged_val_accuracy"] == records[-1]["global_accuracy"]
    assert set(results["test_accuracy"]) == {"merged"}
    assert not (run_dir / "local_models.npz").exists()
    assert json.loads((run_dir / "command.json").read_text())["dp_clip"] == 1.0
    assert main(["run", "--rounds", "3", "--resume", *flags]) == 0  # one more round, the same privacy ledger
    records = [json.loads(line) for line in (run_dir / "rounds.jsonl").read_text().splitlines()]
    assert len(records) == 3 and json.loads(out.read_text())["epsilon"] == records[-1]["epsilon"]


def test_dp_regression_from_the_command_line(tmp_path, capsys):
    pytest.importorskip("dp_accounting")
    out = tmp_path / "r.json"
    flags = ["--task", "regression", "--segments", "10", "--fraction", "0.5", "--rounds", "2", "--epochs", "1"]
    assert main(["run", *flags, "--dp-clip", "0.05", "--dp-noise", "1", "--lr", "0.01", "--quiet", "-o", str(out)]) == 0
    assert "DP-FedAvg" in capsys.readouterr().out
    results = json.loads(out.read_text())
    assert results["task"] == "regression" and results["epsilon"] > 0 and "val_rmse" not in results
    scale = segfast.tabular.load_default_regression().y_scale[0]  # RMSE in the target's units
    assert results["merged_val_rmse"] == pytest.approx(results["rounds"][-1]["global_rmse"] * scale, rel=1e-6)
    assert set(results["test"]) == {"merged"}


@pytest.mark.parametrize(
    "flags, says",
    [
        (["--dp-clip", "1"], "--dp-clip: DP-FedAvg needs both --dp-clip C and --dp-noise Z"),
        (["--dp-noise", "1", "--dp-delta", "1e-6"], "--dp-noise and --dp-delta: DP-FedAvg needs both"),
        (["--dp-clip", "1", "--dp-noise", "1", "--ensemble", "soft"], "--ensemble votes with the segment models"),
        (["--dp-clip", "1", "--dp-noise", "1", "--merge", "median"], "--merge median: DP-FedAvg merges by its own"),
        (["--dp-clip", "1", "--dp-noise", "1", "--repair-rows", "50"], "--repair-rows: DP-FedAvg merges by its own"),
        (["--dp-clip", "0", "--dp-noise", "1"], "--dp-clip: must be a number > 0, got 0"),
        (["--dp-clip", "1", "--dp-noise", "nan"], "--dp-noise: must be a number > 0"),
        (["--dp-clip", "1e400", "--dp-noise", "1"], "--dp-clip: must be a number > 0, got 1e400"),
        (["--dp-clip", "1", "--dp-noise", "1", "--fraction", "0.5", "--dp-delta", "0.5"], "--dp-delta must be in (0,"),
        (["--dp-clip", "1", "--dp-noise", "1"], "dp needs fraction < 1"),
    ],
)
def test_dp_flags_refused_with_a_message(flags, says, capsys, tmp_path):
    pytest.importorskip("dp_accounting")
    try:
        code = main(["run", "--quiet", "--rounds", "1", "--epochs", "1", "-o", str(tmp_path / "r.json"), *flags])
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    assert code == 2 and says in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()
