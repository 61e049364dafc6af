"""segfast's rounds against Flower, the federated-learning framework our users would otherwise
simulate with: the same FedAvg on the same partitions, in one run.

Fashion-MNIST's 60,000 training images in N IID segments (N = 10, 100, 1,000), 784-128-10, one
local epoch a round of plain SGD (lr 0.05, batch 32), FedAvg weighted by segment size, the
global model evaluated on the 10,000 test images after every round. Flower 1.42 runs its
simulation engine (Ray, one actor per core, PyTorch clients, `fraction_evaluate=0`: no client
evaluation, as in segfast's global-only run); segfast runs `rounds()` twice: evaluating only
the global model (the same work as Flower's) and with its defaults (`val_segments="auto"`: the
segment models and their vote scored too). Seconds per round are medians of rounds 2..; round 1
is shown apart (Flower's from the call on: it starts Ray and its actors). Flower's rounds are the
times between its global evaluations. The accuracy of each round
shows that both simulate the same thing (same start, different shuffles: close, not equal).
Target: segfast with its defaults >= 10x Flower at N >= 100.

Needs `pip install "flwr[simulation]" torch` (Flower is the optional anchor: without it only
segfast is timed).

    python bench/bench_flower.py [--segments 10,100,1000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time

import numpy as np

import segfast
from _common import Table, cpu_name, optional_import, segfast_build
from anchors import architecture
from flower_client import BATCH, DIMS, LR, partitions


def flower_rounds(n_segments: int, n_rounds: int, start: segfast.MLPStack):
    """FedAvg in Flower's simulation engine: ([seconds of each round, the first from the call on,
    so with Ray's start], [global test accuracy after each round])."""
    import torch
    from flwr.app import ArrayRecord, Context, MetricRecord
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg
    from flwr.simulation import run_simulation

    from flower_client import client_app  # a module, so that Ray's workers import it

    stamps, accuracy = [], []
    _, _, _, X_test, y_test = partitions(n_segments)
    test_net = architecture(torch, DIMS)
    first = start.state_dict(0)

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        state = arrays.to_torch_state_dict()
        if server_round > 0 and all(torch.equal(state[k], torch.from_numpy(v)) for k, v in first.items()):
            raise RuntimeError(f"Flower's round {server_round} left the start model unchanged: its clients failed")
        test_net.load_state_dict(state)
        with torch.no_grad():
            predicted = test_net(torch.from_numpy(X_test)).argmax(1).numpy()
        accuracy.append(float((predicted == y_test).mean()))
        stamps.append(time.perf_counter())
        return MetricRecord({"accuracy": accuracy[-1]})

    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = FedAvg(
            fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=n_segments, min_available_nodes=n_segments
        )
        initial = ArrayRecord({k: torch.from_numpy(v) for k, v in start.state_dict(0).items()})
        strategy.start(grid=grid, initial_arrays=initial, num_rounds=n_rounds, evaluate_fn=evaluate)

    begin = time.perf_counter()
    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=n_segments,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
    )
    # stamps[0]: the start model's evaluation, before round 1 (and before Ray starts its actors)
    return [stamps[1] - begin, *np.diff(stamps[1:])], accuracy[1:]


def segfast_rounds(n_segments: int, n_rounds: int, start: segfast.MLPStack, val_segments):
    X, y, segs, X_test, y_test = partitions(n_segments)
    result = segfast.rounds(
        start,
        X,
        y,
        segs,
        rounds=n_rounds,
        merge="weighted",
        val=(X_test, y_test),
        val_segments=val_segments,
        progress=False,
        lr=LR,
        batch_size=BATCH,
    )
    seconds = [h["seconds_train"] + h["seconds_merge"] + h["seconds_eval"] for h in result.history]
    return seconds, [h["global_accuracy"] for h in result.history]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segments", default="10,100,1000", help="comma-separated numbers of segments (clients)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per run (at least 2)")
    args = parser.parse_args()
    if args.rounds < 2:
        parser.error("--rounds must be at least 2 (round 1 warms up)")
    flwr = optional_import("flwr")
    torch = optional_import("torch")
    have_flower = flwr is not None and torch is not None
    logging.getLogger("flwr").setLevel(logging.WARNING)  # its per-round INFO lines would bury the table
    print(f"{segfast_build()}, {cpu_name()}, {os.cpu_count()} cores")
    if have_flower:
        print(f"Flower {flwr.__version__} (Ray simulation engine, one actor per core), PyTorch {torch.__version__}")
    else:
        print('Flower or PyTorch not installed (pip install "flwr[simulation]" torch): segfast only')
    print(
        f"FedAvg, {'-'.join(map(str, DIMS))}, 1 local epoch, SGD lr {LR}, batch {BATCH}, {args.rounds} rounds; "
        "seconds per round: median of rounds 2..\n"
    )
    table = Table(
        [
            ("N", 5, ">"),
            ("run", 36, "<"),
            ("round 1 s", 9, ">"),
            ("s/round", 8, ">"),
            ("x segfast", 10, ">"),
            ("accuracy by round (%)", 40, "<"),
        ]
    )
    table.header()
    targets = []
    for n in (int(v) for v in args.segments.split(",")):
        start = segfast.MLPStack(DIMS, 1, seed=0)
        timed = {}
        for name, val_segments in (("segfast, global model evaluated", False), ("segfast, defaults", "auto")):
            seconds, accuracy = segfast_rounds(n, args.rounds, start, val_segments)
            timed[name] = statistics.median(seconds[1:])
            curve = " ".join(f"{100 * a:.1f}" for a in accuracy)
            table.row(str(n), name, f"{seconds[0]:.2f}", f"{timed[name]:.3f}", "", curve)
        if have_flower:
            seconds, accuracy = flower_rounds(n, args.rounds, start)
            flower = statistics.median(seconds[1:])
            curve = " ".join(f"{100 * a:.1f}" for a in accuracy)
            ratio = flower / timed["segfast, defaults"]
            table.row(str(n), "Flower, global model evaluated", f"{seconds[0]:.2f}", f"{flower:.3f}", "", curve)
            table.row(
                str(n),
                "  Flower / segfast global-only",
                "",
                "",
                f"{flower / timed['segfast, global model evaluated']:.1f}x",
                "",
            )
            table.row(str(n), "  Flower / segfast defaults", "", "", f"{ratio:.1f}x", "")
            if n >= 100:
                targets.append((f"N={n}: segfast with defaults >= 10x Flower", ratio, "x", ratio >= 10))
    if targets:
        print("\ntargets:")
        for label, value, unit, ok in targets:
            print(f"  {label:<50} {value:8.1f}{unit}  {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
