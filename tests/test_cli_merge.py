"""`segfast run`'s merge flags: every method of segfast.merge (cluster-merge for one round), its
options, each recorded in the run directory so that `segfast rerun` redoes it."""

import json
import subprocess
import sys

import numpy as np
import pytest

from segfast import MLPStack

SMALL = ["--epochs", "1", "--segments", "4", "--hidden", "16", "--quiet"]


def segfast(*flags, cwd=None):
    """The real command, in a child process."""
    return subprocess.run([sys.executable, "-m", "segfast.cli", *flags], capture_output=True, text=True, cwd=cwd)


def test_cluster_merge_after_one_round_gives_one_model_per_cluster(tmp_path):
    run_dir, again = tmp_path / "run", tmp_path / "again"
    done = segfast("run", *SMALL, "--merge", "cluster-merge", "--clusters", "2", "--out", str(run_dir))
    assert done.returncode == 0, done.stderr
    assert "cluster-merge: 2 cluster models" in done.stdout
    results = json.loads((run_dir / "results.json").read_text())
    members = results["cluster_segments"]
    assert len(members) == 2 and sorted(sum(members, [])) == [0, 1, 2, 3]
    assert all(i in members[c] for i, c in enumerate(results["segment_clusters"]))
    assert len(results["cluster_val_accuracy"]) == 2 and min(results["cluster_val_accuracy"]) > 0.1
    assert MLPStack.load(run_dir / "clusters.npz").n_models == 2
    recorded = json.loads((run_dir / "command.json").read_text())
    assert recorded["merge"] == "cluster-merge" and recorded["clusters"] == 2
    assert segfast("rerun", str(run_dir), "--out", str(again), "--quiet").returncode == 0
    same = (MLPStack.load(d / "clusters.npz").params for d in (run_dir, again))
    assert np.array_equal(*same)


@pytest.mark.parametrize(
    "flags, merge_arguments, recorded",
    [
        (
            ["--merge", "loss", "--merge-temperature", "0.5"],
            {"method": "loss", "temperature": 0.5},
            {"merge": "loss", "merge_temperature": 0.5},
        ),
        (
            ["--merge", "trimmed", "--merge-trim", "0.25"],
            {"method": "trimmed", "trim": 0.25},
            {"merge": "trimmed", "merge_trim": 0.25},
        ),
        (
            ["--merge", "cluster-best", "--clusters", "2", "--cluster-margin", "0.2"],
            {"method": "cluster-best", "k": 2, "margin": 0.2},
            {"merge": "cluster-best", "clusters": 2, "cluster_margin": 0.2},
        ),
        (["--repair-rows", "64"], {"method": "uniform", "repair": "array"}, {"repair_rows": 64}),
        (["--rescale", "--align"], {"method": "uniform", "rescale": True, "align": True}, {"rescale": True}),
    ],
)
def test_each_merge_flag_reaches_every_round_and_the_record(tmp_path, flags, merge_arguments, recorded):
    run_dir = tmp_path / "run"
    done = segfast("run", *SMALL, "--rounds", "2", *flags, "--out", str(run_dir))
    assert done.returncode == 0, done.stderr
    merged_by = json.loads((run_dir / "config.json").read_text())["merge"]  # what rounds() was given
    assert merged_by.items() >= merge_arguments.items(), merged_by
    command = json.loads((run_dir / "command.json").read_text())  # what `segfast rerun` gives again
    assert command.items() >= recorded.items(), command


def test_merge_flags_change_the_run_and_rerun_bit_for_bit(tmp_path):
    flagged, again, plain = tmp_path / "flagged", tmp_path / "again", tmp_path / "plain"
    options = ["--merge", "trimmed", "--merge-trim", "0.25", "--repair-rows", "64", "--rescale", "--align"]
    assert segfast("run", *SMALL, "--rounds", "2", *options, "--out", str(flagged)).returncode == 0
    assert segfast("rerun", str(flagged), "--out", str(again), "--quiet").returncode == 0
    assert segfast("run", *SMALL, "--rounds", "2", "--merge", "trimmed", "--out", str(plain)).returncode == 0
    final = {d: MLPStack.load(d / "final.npz").params for d in (flagged, again, plain)}
    assert np.array_equal(final[flagged], final[again])
    assert not np.array_equal(final[flagged], final[plain])


@pytest.mark.parametrize(
    "flags, says",
    [
        (["--merge-temperature", "2"], "--merge-temperature applies to --merge loss, not uniform"),
        (["--merge", "loss", "--merge-trim", "0.2"], "--merge-trim applies to --merge trimmed, not loss"),
        (["--cluster-margin", "0.2"], "--cluster-margin applies to --merge cluster-best"),
        (["--merge", "cluster-merge", "--rounds", "3"], "use it with --rounds 1"),
        (["--merge", "cluster-merge", "--rescale"], "--rescale applies to a merge into one model"),
        (["--merge", "cluster-merge", "--segments", "2"], "give --clusters"),
        (["--merge", "cluster-best", "--clusters", "9"], "--clusters 9 is more than the 4 segments"),
        (["--repair-rows", "100000"], "--repair-rows 100000 is more than the 9000 training rows"),
        (["--merge-trim", "0.5"], "argument --merge-trim: must be a number in [0, 0.5), got 0.5"),
        (["--repair-rows", "1"], "argument --repair-rows: must be an integer >= 2, got 1"),
    ],
)
def test_a_merge_flag_that_would_change_nothing_or_fail_later_is_refused_at_once(tmp_path, flags, says):
    run_dir = tmp_path / "run"
    done = segfast("run", *SMALL, *flags, "--out", str(run_dir))
    assert done.returncode == 2 and says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "segment models" not in done.stdout
    assert not run_dir.exists()  # nothing written


def test_a_run_recorded_before_the_merge_flags_still_resumes(tmp_path):
    run_dir = tmp_path / "run"
    assert segfast("run", *SMALL, "--out", str(run_dir)).returncode == 0
    path = run_dir / "command.json"
    new = ("merge_temperature", "merge_trim", "clusters", "cluster_margin", "repair_rows", "rescale")
    older = {k: v for k, v in json.loads(path.read_text()).items() if k not in new}
    path.write_text(json.dumps(older))
    done = segfast("run", *SMALL, "--rounds", "2", "--out", str(run_dir), "--resume")
    assert done.returncode == 0, done.stderr
    assert len((run_dir / "rounds.jsonl").read_text().splitlines()) == 2


def test_learned_merge_and_its_threshold_from_the_command_line(tmp_path):
    out = tmp_path / "r.json"
    done = segfast("run", *SMALL, "--merge", "learned", "--merge-threshold", "1", "-o", str(out))
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())
    # a fallback only where a fixed merge scores better (the rule's own tests: test_learned_merge.py)
    assert results["config"]["merge_threshold"] == 1.0 and results["rounds"][0]["merge_fallbacks"] in (0, 1)
    refused = segfast("run", *SMALL, "--merge-threshold", "0.5")
    assert refused.returncode == 2 and "--merge-threshold applies to --merge learned, not uniform" in refused.stderr
