"""rounds(out=DIR) killed with SIGKILL anywhere, then resumed: the run directory ends with every
file of an uninterrupted run, the same bit for bit (wall-clock fields aside).

Kills land just before and just after a rename into the run directory (every file write ends in
one: the child process wraps os.replace, so the library has no test hook) and at seeded random
moments. The default run kills 6 times or so; SEGFAST_LONG_KILL_TEST=1 runs every write point of three
configurations and random kills (about 200 kills, a few minutes).
"""

import csv
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

CHILD = textwrap.dedent("""
    import json, os, signal, sys, time
    import numpy as np, segfast
    sys.path.insert(0, {tests!r})
    from conftest import blobs
    out, kw, mode, n = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    rng = np.random.default_rng(0)
    X, y = blobs(rng, n=1000, d=10, classes=3, spread=1.5)
    seg = segfast.segment(y[:800], 20, "iid", seed=0)
    kw["val"] = (X[800:], y[800:]) if kw["val"] else None
    if "progressive" in kw:
        kw["local_epochs"] = segfast.schedule.progressive(**kw.pop("progressive"))
    real, count = os.replace, [0]
    def replace(src, dst, *args, **kwargs):  # the kill hook: die around the n-th rename
        count[0] += 1
        if mode == "before" and count[0] == n:
            os.kill(os.getpid(), signal.SIGKILL)
        real(src, dst, *args, **kwargs)
        if mode == "after" and count[0] == n:
            os.kill(os.getpid(), signal.SIGKILL)
    os.replace = replace
    print("ready", flush=True)
    t0 = time.perf_counter()
    segfast.rounds([10, 8, 3], X[:800], y[:800], seg, rounds=6, out=out, resume=True, progress=False,
                   n_jobs=1, **kw)
    print(json.dumps({{"seconds": time.perf_counter() - t0, "writes": count[0]}}), flush=True)
""").format(tests=os.path.dirname(os.path.abspath(__file__)))

CONFIGS = {
    "fedavgm": dict(val=True, local_epochs=[1, 2], server_momentum=0.5),
    "median-sampled": dict(val=False, merge="median", fraction=0.5, lr_decay=0.9, seed=3),
    "weighted-prox": dict(
        val=True, merge="weighted", fraction=0.6, server_lr=0.7, proximal_mu=0.1, momentum=0.9, progressive={"max": 4}
    ),
}


def start(out, kw, mode="none", n=0):
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(out), json.dumps(kw), mode, str(n)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(out, kw) -> dict:
    """Run (or resume) to the end uninterrupted; its report."""
    proc = start(out, kw)
    stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stderr
    return json.loads(stdout.splitlines()[-1])


def killed_at_write(out, kw, mode, n) -> None:
    proc = start(out, kw, mode, n)
    _, stderr = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, f"{mode} write {n}: exit {proc.returncode}\n{stderr}"


def killed_at_random(out, kw, delay) -> bool:
    """Kill ``delay`` seconds into rounds(); False where the run had finished by then."""
    proc = start(out, kw)
    assert proc.stdout.readline() == "ready\n"
    time.sleep(delay)
    proc.kill()
    _, stderr = proc.communicate()
    assert proc.returncode in (0, -signal.SIGKILL), stderr
    return proc.returncode == -signal.SIGKILL


def _timeless(record: dict) -> dict:
    return {k: v for k, v in record.items() if not k.startswith("seconds_")}


def snapshot(out) -> dict:
    """Every file of a run directory, as what makes two runs the same: arrays as (dtype, shape,
    bytes) (an npz's zip headers hold write times), JSON parsed, wall-clock fields left out."""
    files = {}
    for p in sorted(out.iterdir()):
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as f:
                files[p.name] = {k: (f[k].dtype.str, f[k].shape, f[k].tobytes()) for k in f.files}
        elif p.name == "config.json":
            files[p.name] = {k: v for k, v in json.loads(p.read_text()).items() if k != "created"}
        elif p.name == "rounds.jsonl":
            files[p.name] = [_timeless(json.loads(line)) for line in p.read_text().splitlines()]
        elif p.name == "summary.csv":
            rows = list(csv.reader(io.StringIO(p.read_text())))
            keep = [i for i, c in enumerate(rows[0]) if not c.startswith("seconds_")]
            files[p.name] = [[row[i] for i in keep] for row in rows]
        else:
            files[p.name] = p.read_bytes()
    return files


def assert_same_run(out, reference, what):
    got, want = snapshot(out), reference
    assert sorted(got) == sorted(want), f"{what}: files {sorted(got)} != {sorted(want)}"
    differ = [name for name in want if got[name] != want[name]]
    assert not differ, f"{what}: {differ} differ from the uninterrupted run's"


def kill_and_resume(tmp_path, name, points, n_random, seed) -> int:
    """Kill runs of configuration ``name`` at each (mode, write) of ``points`` and ``n_random``
    times at random (up to 3 kills in a row before the resume), resume each, compare; the kills."""
    kw = CONFIGS[name]
    report = finish(tmp_path / name / "whole", kw)
    reference = snapshot(tmp_path / name / "whole")
    points = [(mode, report["writes"] if n == "last" else n) for mode, n in points]
    kills = 0
    for i, (mode, n) in enumerate(points):
        out = tmp_path / name / f"write-{i}"
        killed_at_write(out, kw, mode, n)
        kills += 1
        finish(out, kw)
        assert_same_run(out, reference, f"{name}, killed {mode} write {n} of {report['writes']}")
    rng = np.random.default_rng(seed)
    for i in range(n_random):
        out = tmp_path / name / f"random-{i}"
        for _ in range(3):
            delay = rng.uniform(0, 1.2 * report["seconds"])
            if not killed_at_random(out, kw, delay):
                break
            kills += 1
        finish(out, kw)
        assert_same_run(out, reference, f"{name}, random kills (seed {seed}, trial {i})")
    return kills


def test_killed_runs_resume_to_the_uninterrupted_files(tmp_path):
    # after the last write (the last checkpoint: the end-of-run files must be there already),
    # before it, after the config alone, and around mid-run renames (before: leaving its temporary file)
    points = [("after", "last"), ("before", "last"), ("after", 1), ("before", 9), ("after", 14)]
    kills = kill_and_resume(tmp_path, "fedavgm", points, 1, seed=0)
    assert kills >= 5


@pytest.mark.skipif(not os.environ.get("SEGFAST_LONG_KILL_TEST"), reason="set SEGFAST_LONG_KILL_TEST=1 (minutes)")
def test_many_kills_resume_to_the_uninterrupted_files(tmp_path):
    kills = 0
    for seed, name in enumerate(CONFIGS):
        writes = finish(tmp_path / name / "count", CONFIGS[name])["writes"]
        points = [(mode, n) for n in range(1, writes + 1) for mode in ("before", "after")]
        kills += kill_and_resume(tmp_path, name, points, 10, seed)
    print(f"{kills} kills, every resumed run directory the same as the uninterrupted one")
    assert kills >= 50
