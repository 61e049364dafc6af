"""Cost of going distributed: segfast.rounds on this machine against segfast.distributed.rounds
on a 2-worker Dask LocalCluster on the same machine, in one run.

20 rounds of FedAvg (one local epoch, uniform merge, plain SGD lr 0.05, batch 32), 1,000 IID
segments of the 60,000 Fashion-MNIST training images, 784-32-10, no evaluation (the rounds
themselves are timed). Local: one process, all cores. Distributed: 2 worker processes of one
thread each, loopback TCP; the data placed once, either scattered from this process or read
by each worker from its own shard files. Checked first: the distributed run ends bit-identical
to the local one. Measured:
  - seconds per round (median of rounds 2..20, median of 3 runs); overhead = distributed / local - 1
    (target <= 15%);
  - bytes per round after round 1: all loopback traffic (/proc/net/dev, both directions of every
    connection counted once) of a 20-round run minus that of a 1-round run, over 19 rounds; as a
    multiple of one model's parameters (float32) and of the whole stack's (target <= 2x).

Then rounds with the default evaluation (val rows: the 10,000 test images; val_segments="auto"
scores the segment models and their vote each round, where the models trained): local and
distributed seconds a round, and bytes a round as a share of the stack (the models stay put).

Then the fixed cost of a distributed round by round length: the scattered run with 1, 5 and 20
local epochs a round (--epochs), fixed cost = distributed - local seconds per round (target
< 30 ms), overhead (target <= 15% for rounds of 0.5 s or more).

    python bench/bench_distributed.py [--rounds 20] [--repeats 3] [--workers 2] [--threads 1]
                                      [--epochs 1,5,20]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile

import numpy as np

import segfast
import segfast.distributed
from _common import ForeignLoad, Table, cpu_name, segfast_build, warm_up_cpu

DIMS, N_SEGMENTS, LR, BATCH = [784, 32, 10], 1000, 0.05, 32


def loopback_bytes() -> int:
    """Bytes sent over the loopback interface so far (what the Dask processes exchange here)."""
    with open("/proc/net/dev") as f:
        for line in f:
            name, _, counters = line.partition(":")
            if name.strip() == "lo":
                return int(counters.split()[8])  # transmitted bytes
    raise RuntimeError("no loopback interface in /proc/net/dev")


def seconds_per_round(result) -> float:
    """Median wall time of rounds 2.. (round 1 of a distributed run also places the data)."""
    return statistics.median(r["seconds_train"] + r["seconds_merge"] + r["seconds_eval"] for r in result.history[1:])


def fixed_cost_by_round_length(client, start, X, y, segs, args) -> list:
    """Local and distributed seconds per round for rounds of several lengths (local epochs):
    the difference is what going distributed costs a round, whatever the round's work."""
    rounds = max(4, args.rounds // 4)
    print(f"\nfixed cost a round, {rounds} rounds each, scattered data, {args.workers}x{args.threads} workers:")
    table = Table(
        [("local epochs", 12, ">"), ("local s", 8, ">"), ("dask s", 8, ">"), ("fixed ms", 9, ">"), ("overhead", 9, ">")]
    )
    table.header()
    targets = []
    for epochs in (int(e) for e in args.epochs.split(",")):
        kw = dict(rounds=rounds, local_epochs=epochs, progress=False, lr=LR, batch_size=BATCH)
        here = statistics.median(
            seconds_per_round(segfast.rounds(start, X, y, segs, **kw)) for _ in range(args.repeats)
        )
        there = statistics.median(
            seconds_per_round(segfast.distributed.rounds(start, X, y, segs, **kw, client=client))
            for _ in range(args.repeats)
        )
        fixed, overhead = there - here, there / here - 1
        table.row(str(epochs), f"{here:.3f}", f"{there:.3f}", f"{1000 * fixed:.1f}", f"{100 * overhead:+.1f}%")
        targets.append((f"E={epochs}: fixed cost < 30 ms a round", 1000 * fixed, " ms", fixed < 0.030))
        if here >= 0.5:
            targets.append(
                (f"E={epochs} ({here:.2f} s rounds): overhead <= 15%", 100 * overhead, "%", overhead <= 0.15)
            )
    return targets


def with_default_evaluation(client, start, X, y, segs, val, args) -> list:
    """Rounds as users run them, with val rows and the default segment evaluation: what a round
    costs on the cluster against this process, and what it moves (the models must not)."""
    kw = dict(rounds=max(4, args.rounds // 4), progress=False, lr=LR, batch_size=BATCH, val=val)
    here = statistics.median(seconds_per_round(segfast.rounds(start, X, y, segs, **kw)) for _ in range(args.repeats))
    times, moved, evals = [], [], []
    for _ in range(args.repeats):  # bytes a round: a run's minus a 1-round run's (the data's placement)
        b0 = loopback_bytes()
        segfast.distributed.rounds(start, X, y, segs, **dict(kw, rounds=1), client=client)
        b1 = loopback_bytes()
        result = segfast.distributed.rounds(start, X, y, segs, **kw, client=client)
        moved.append(((loopback_bytes() - b1) - (b1 - b0)) / (kw["rounds"] - 1))
        times.append(seconds_per_round(result))
        evals.append(statistics.median(r["seconds_eval"] for r in result.history[1:]))
    there, stack_bytes = statistics.median(times), 4 * start.n_params * N_SEGMENTS
    print(
        f"\nwith val rows and the default evaluation (val_segments='auto'), {kw['rounds']} rounds, scattered data:\n"
        f"  local {here:.3f} s a round; distributed {there:.3f} s ({100 * (there / here - 1):+.1f}%), of which "
        f"evaluation {statistics.median(evals):.3f} s; {statistics.median(moved) / stack_bytes:.3f}x the stack's "
        "bytes a round"
    )
    return [
        (
            "default evaluation: the models stay on the workers (< 0.5x the stack a round)",
            statistics.median(moved) / stack_bytes,
            "x",
            statistics.median(moved) < 0.5 * stack_bytes,
        )
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    parser.add_argument("--threads", type=int, default=1, help="threads per worker")
    parser.add_argument("--epochs", default="1,5,20", help="local epochs a round for the fixed-cost table")
    args = parser.parse_args()
    from dask.distributed import Client, LocalCluster

    data = segfast.datasets.load("fashion-mnist")
    X, y = data.X_train, data.y_train
    segs = segfast.segment(y, N_SEGMENTS, "iid", seed=0)
    start = segfast.MLPStack(DIMS, 1, seed=0)
    n_params = start.n_params
    kw = dict(rounds=args.rounds, progress=False, lr=LR, batch_size=BATCH)
    print(f"{segfast_build()}, {cpu_name()}, {segfast._core.available_threads()} threads")
    print(
        f"{args.rounds} rounds of FedAvg (E=1, uniform), {N_SEGMENTS} IID segments of {len(X)} Fashion-MNIST "
        f"images, {'-'.join(map(str, DIMS))} ({n_params} parameters, {4 * n_params} bytes a model, "
        f"{4 * n_params * N_SEGMENTS / 1e6:.1f} MB the stack); medians of {args.repeats} runs\n"
    )
    warm_up_cpu()

    load = ForeignLoad().start()  # only around the local runs: the cluster's own processes count as foreign
    local_runs = [segfast.rounds(start, X, y, segs, **kw) for _ in range(args.repeats)]
    other = load.stop()
    local = statistics.median(seconds_per_round(r) for r in local_runs)
    want = local_runs[0].global_model.params

    shard_dir = tempfile.mkdtemp(prefix="segfast-shards-")
    shards = segfast.datasets.save_shards(X, y, segs, shard_dir)
    table = Table(
        [
            ("run", 34, "<"),
            ("s/round", 8, ">"),
            ("overhead", 9, ">"),
            ("bytes/round", 12, ">"),
            ("x model", 8, ">"),
            ("x stack", 8, ">"),
            ("round 1 s", 9, ">"),
            ("same bits", 9, "<"),
        ]
    )
    table.header()
    table.row(f"local, {segfast._core.available_threads()} threads", f"{local:.4f}", "", "", "", "", "", "")
    targets = []
    with (
        LocalCluster(
            n_workers=args.workers,
            threads_per_worker=args.threads,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as client,
    ):
        for name, source in (("scattered", (X, y, segs)), ("shard files", (shards, None, segs))):
            times, moved, first, same = [], [], [], True
            for _ in range(args.repeats):
                b0 = loopback_bytes()
                one = segfast.distributed.rounds(start, *source, **dict(kw, rounds=1), client=client)
                b1 = loopback_bytes()
                result = segfast.distributed.rounds(start, *source, **kw, client=client)
                b2 = loopback_bytes()
                same &= np.array_equal(result.global_model.params, want)
                times.append(seconds_per_round(result))
                moved.append(((b2 - b1) - (b1 - b0)) / (args.rounds - 1))
                first.append(one.history[0]["seconds_train"])
            per_round, per_bytes = statistics.median(times), statistics.median(moved)
            overhead = per_round / local - 1
            table.row(
                f"{args.workers}x{args.threads} LocalCluster, {name}",
                f"{per_round:.4f}",
                f"{100 * overhead:+.1f}%",
                f"{per_bytes:,.0f}",
                f"{per_bytes / (4 * n_params):.1f}",
                f"{per_bytes / (4 * n_params * N_SEGMENTS):.4f}",
                f"{statistics.median(first):.2f}",
                "yes" if same else "NO",
            )
            targets.append((f"{name}: overhead <= 15% of a local round", 100 * overhead, "%", overhead <= 0.15))
            targets.append(
                (
                    f"{name}: bytes/round <= 2x the stack's parameters",
                    per_bytes / (4 * n_params * N_SEGMENTS),
                    "x",
                    per_bytes <= 2 * 4 * n_params * N_SEGMENTS,
                )
            )
            targets.append((f"{name}: bit-identical to the local run", float(same), "", same))
        targets += with_default_evaluation(client, start, X, y, segs, (data.X_test, data.y_test), args)
        targets += fixed_cost_by_round_length(client, start, X, y, segs, args)
    shutil.rmtree(shard_dir)
    if other is not None:
        print(f"\nother processes used {100 * other:.0f}% of the CPU during the local runs")
    print("\ntargets:")
    for label, value, unit, ok in targets:
        print(f"  {label:<58} {value:8.3f}{unit}  {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
