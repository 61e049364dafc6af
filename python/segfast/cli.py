"""The ``segfast`` command: ``segfast run`` trains segment models (in one or more rounds), merges
and ensembles them and reports; ``segfast plot RUNDIR`` draws a run; ``segfast info`` says what
this build can do."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

from . import _core, datasets, schedule
from ._clustered import CLUSTER_BY
from ._server import ADAPTIVE_LR
from ._server import OPTIMIZERS as SERVER_OPTIMIZERS
from .ensemble import METHODS as ENSEMBLE_METHODS
from .ensemble import Ensemble
from .learned_merge import GRANULARITY
from .merge import METHODS as MERGE_METHODS
from .merge import merge
from .predict import evaluate
from .regression_ensemble import METHODS as REGRESSION_METHODS
from .results import write_atomic
from .rounds import rounds
from .segments import SCHEMES, segment
from .split import holdout
from .stack import MLPStack

# Ensemble methods that only a regression stack has ("weighted", "stacking", "competence": both).
REGRESSION_ONLY = tuple(m for m in REGRESSION_METHODS if m not in ENSEMBLE_METHODS)


class _CommandError(ValueError):
    """An error the command finds itself: its message already speaks in flags."""


def _pair_of_numbers(text: str) -> list:
    try:
        first, second = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be two numbers separated by a comma, got {text!r}") from None
    return [first, second]  # a list: what command.json reads back


def _widths(text: str) -> list[int]:
    try:
        widths = [int(w) for w in text.split(",") if w.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated widths like 128 or 256,128, got {text!r}") from None
    if any(w < 1 for w in widths):
        raise argparse.ArgumentTypeError(f"every width must be >= 1, got {text!r}")
    return widths


def _integer_from(minimum: int):
    """An argparse type: an integer >= minimum."""

    def parse(text) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value

    return parse


def _val_segments(text: str) -> str:
    """--val-segments: auto, all, none or a number of val rows (kept as given: command.json
    records it; _rounds_val_segments turns it into rounds()' argument)."""
    if text in _VAL_SEGMENTS:
        return text
    try:
        _integer_from(1)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be auto, all, none or a number of rows >= 1, got {text!r}") from None
    return str(int(text))


_VAL_SEGMENTS = {"auto": "auto", "all": True, "none": False}


def _rounds_val_segments(text: str):
    return _VAL_SEGMENTS[text] if text in _VAL_SEGMENTS else int(text)


def _number_where(accepts, shown: str):
    """An argparse type: a finite number that ``accepts``, described as ``shown`` in errors."""

    def parse(text) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number {shown}, got {text!r}") from None
        if not (math.isfinite(value) and accepts(value)):
            raise argparse.ArgumentTypeError(f"must be a number {shown}, got {text}")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segfast",
        description="Train many small MLPs at once, one per data segment.",
        epilog="Start with `segfast run`: it needs no downloads (it uses the data set shipped inside segfast).",
    )
    parser.add_argument("--version", action="version", version=f"segfast {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run",
        help="cut a data set into segments, train one MLP per segment, report",
        description="Cut a data set into segments, train one MLP per segment concurrently, "
        "print each segment model's validation accuracy and write the results as JSON.",
    )
    run.add_argument(
        "--data",
        default="default",
        help="'default' (the Fashion-MNIST subset shipped with segfast), 'fashion-mnist', 'mnist' "
        "or 'kmnist' (IDX files from --data-dir, $SEGFAST_DATA_DIR or /usr/share/datasets)",
    )
    run.add_argument("--data-dir", default=None, help="folder holding the IDX files")
    run.add_argument(
        "--task",
        default="classification",
        choices=["classification", "regression"],
        help="classification (labels) or regression: --data default is then a small real table shipped with "
        "segfast, 'diamonds' the ggplot2 table, or a CSV file with --target (classification)",
    )
    run.add_argument(
        "--target",
        default=None,
        help="--task regression with a CSV file: the column(s) to predict, comma-separated",
    )
    run.add_argument(
        "--loss", default=None, choices=["mse", "huber"], help="--task regression: the training loss (mse)"
    )
    run.add_argument(
        "--huber-delta",
        type=_number_where(lambda d: d > 0, "> 0"),
        default=None,
        help="--loss huber: where the loss turns from quadratic to linear, in standardised target units (1)",
    )
    run.add_argument("--segments", type=int, default=10, help="number of segments = number of models (10)")
    run.add_argument("--scheme", default="iid", choices=SCHEMES, help="how rows are cut into segments (iid)")
    run.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration for --scheme dirichlet (0.5)")
    run.add_argument("--hidden", type=_widths, default=[128], help="hidden widths, comma-separated (128)")
    run.add_argument(
        "--init",
        default="shared",
        choices=["shared", "independent"],
        help="shared: every segment model starts from the same model, the only start segfast run has "
        "(independent is refused: use the Python API for one start per segment)",
    )
    run.add_argument(
        "--config",
        default=None,
        help="a TOML (or JSON) file of these options (keys as the flags, "
        "with _ for -); flags given on the command line win. A run "
        "directory's command.json redoes its run",
    )
    run.add_argument("--epochs", type=int, default=10, help="epochs of local training per round (10)")
    run.add_argument(
        "--progressive",
        action="store_true",
        help="local epochs 1, 1, 2, 2, 4, 4, 8, ... (capped at --epochs) instead of --epochs every round",
    )
    run.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="rounds: broadcast, train locally, merge, repeat (1 = train once and merge)",
    )
    merging = run.add_argument_group("merging the segment models (segfast.merge)")
    merging.add_argument(
        "--merge",
        default="uniform",
        choices=MERGE_METHODS,
        help="how segment models are merged each round (uniform); cluster-merge makes one model per "
        "cluster of segment models, so it is for one round only (--rounds 1)",
    )
    merging.add_argument("--align", action="store_true", help="align hidden units before merging")
    merging.add_argument(
        "--merge-temperature",
        metavar="T",
        type=_number_where(lambda t: t > 0, "> 0"),
        default=None,
        help="--merge loss: weights are the softmax of minus the validation losses over this temperature (1)",
    )
    merging.add_argument(
        "--merge-trim",
        metavar="SHARE",
        type=_number_where(lambda t: 0 <= t < 0.5, "in [0, 0.5)"),
        default=None,
        help="--merge trimmed: share of the values left out at each end of every weight (0.1)",
    )
    merging.add_argument(
        "--merge-threshold",
        metavar="ACC",
        type=_number_where(lambda t: 0 <= t <= 1, "in [0, 1]"),
        default=None,
        help="--merge learned: keep the learned merge only if its validation accuracy (R^2 for regression) "
        "reaches ACC, else use the best fixed merge (uniform, loss, rank, greedy) if better, and say so (off)",
    )
    merging.add_argument(
        "--merge-coefficients",
        choices=GRANULARITY,
        default=None,
        help="--merge learned: one coefficient per model and layer, or per model and unit (layer)",
    )
    merging.add_argument(
        "--clusters",
        metavar="K",
        type=_integer_from(1),
        default=None,
        help="--merge cluster-best or cluster-merge: number of k-means clusters of segment models "
        "(default: the best silhouette score; needs 3 segments or more). With any other merge: "
        "clustered rounds, K global models, each segment training the one of its cluster (off)",
    )
    merging.add_argument(
        "--cluster-by",
        choices=CLUSTER_BY,
        default=None,
        help="clustered rounds: a segment joins the model of lowest loss on its rows (loss, IFCA), or "
        "k-means of the trained segment models every --recluster-every rounds decides (weights) (loss)",
    )
    merging.add_argument(
        "--recluster-every",
        metavar="R",
        type=_integer_from(1),
        default=None,
        help="clustered rounds by weights: k-means every R rounds, segments keeping their cluster between (1)",
    )
    merging.add_argument(
        "--cluster-margin",
        metavar="MARGIN",
        type=_number_where(lambda m: 0 <= m < 1, "in [0, 1)"),
        default=None,
        help="--merge cluster-best: the best cluster's merge is kept when its validation loss beats the "
        "runner-up's by this share, else every cluster's merge is averaged (0.1)",
    )
    merging.add_argument(
        "--repair-rows",
        metavar="N",
        type=_integer_from(2),
        default=None,
        help="REPAIR: after each merge, rescale the merged model's hidden units to the segment models' "
        "statistics on this many training rows (a sample drawn with --seed) (off)",
    )
    merging.add_argument(
        "--rescale", action="store_true", help="after each merge, restore each layer's mean weight norm"
    )
    run.add_argument("--fraction", type=float, default=1.0, help="share of segments taking part each round (1)")
    run.add_argument("--server-momentum", type=float, default=0.0, help="FedAvgM server momentum (0)")
    run.add_argument(
        "--server-lr",
        type=float,
        default=None,
        help="server learning rate (1; 0.01 with an adaptive --server-optimizer)",
    )
    run.add_argument(
        "--server-optimizer",
        choices=SERVER_OPTIMIZERS,
        default="sgd",
        help="the server step on merged - global: sgd (FedAvg, FedAvgM with --server-momentum), or FedAdam, "
        "FedYogi, FedAdagrad (sgd)",
    )
    run.add_argument(
        "--server-betas",
        metavar="B1,B2",
        type=_pair_of_numbers,
        default=[0.9, 0.99],
        help="an adaptive server optimizer's moment decays (0.9,0.99)",
    )
    run.add_argument(
        "--server-tau", type=float, default=1e-3, help="an adaptive server optimizer's adaptivity tau (0.001)"
    )
    run.add_argument("--proximal-mu", type=float, default=0.0, help="FedProx proximal coefficient (0)")
    privacy = run.add_argument_group("user-level differential privacy (DP-FedAvg; needs segfast[dp])")
    privacy.add_argument(
        "--dp-clip",
        metavar="C",
        type=_number_where(lambda c: c > 0, "> 0"),
        default=None,
        help="clip each segment's update to L2 norm C; with --dp-noise, turns DP-FedAvg on: --fraction is then "
        "each segment's chance of taking part, and the segment models stay private (off)",
    )
    privacy.add_argument(
        "--dp-noise",
        metavar="Z",
        type=_number_where(lambda z: z > 0, "> 0"),
        default=None,
        help="Gaussian noise of std Z * C added to the sum of the clipped updates (off)",
    )
    privacy.add_argument(
        "--dp-delta",
        metavar="D",
        type=_number_where(lambda d: 0 < d < 1, "in (0, 1)"),
        default=None,
        help="the delta of the (epsilon, delta) guarantee each round reports; below 1/segments (1e-5)",
    )
    run.add_argument(
        "--ensemble",
        default=None,
        choices=ENSEMBLE_METHODS + REGRESSION_ONLY,
        help="how the last round's segment models are ensembled for the report (soft; mean for regression)",
    )
    run.add_argument("--out", default=None, help="run directory: config, per-round records, weights, plots")
    run.add_argument("--resume", action="store_true", help="continue the run in --out from its last round")
    run.add_argument("--batch-size", type=int, default=32, help="minibatch size (32)")
    run.add_argument("--lr", type=float, default=0.05, help="learning rate (0.05)")
    run.add_argument("--momentum", type=float, default=0.0, help="SGD momentum (0)")
    run.add_argument("--weight-decay", type=float, default=0.0, help="L2 weight decay (0)")
    run.add_argument(
        "--val",
        type=_integer_from(1),
        default=None,
        help="validation rows taken from the end of the training rows "
        "(default: 1000 for the shipped data, 5000 otherwise)",
    )
    run.add_argument(
        "--val-segments",
        type=_val_segments,
        default="auto",
        metavar="{auto,all,none,N}",
        help="val rows that score the segment models and their vote each round: auto (a share of "
        "the round's cost), all, none, or N rows; the last round always uses every val row (auto)",
    )
    run.add_argument("--seed", type=int, default=0, help="seed for segments, initialisation and minibatches (0)")
    run.add_argument("--n-jobs", type=int, default=-1, help="threads; -1 = all cores (-1)")
    run.add_argument(
        "--device",
        default="cpu",
        choices=["cpu", "cuda", "auto"],
        help="where models train and predict: cpu, cuda for an NVIDIA GPU, or auto (the GPU where one is usable) (cpu)",
    )
    run.add_argument(
        "--output",
        "-o",
        default=None,
        help="JSON results file (DIR/results.json with --out DIR, else segfast-results.json)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar")

    rerun = sub.add_parser(
        "rerun",
        help="redo the run of a run directory, bit for bit, into a new one",
        description="Redo `segfast run` with the options a run directory recorded (its "
        "command.json): the same data, segments, models and results.",
    )
    rerun.add_argument("rundir", help="a directory written by `segfast run --out`")
    rerun.add_argument("--out", required=True, help="the new run directory (must not hold a run)")
    rerun.add_argument("--quiet", action="store_true", help="no progress bar")

    plot = sub.add_parser("plot", help="draw a run directory's accuracy per round and weight-space map (PNG)")
    plot.add_argument("rundir", help="a directory written by `segfast run --out`")
    sub.add_parser("info", help="version, threads, kernels and GPU support of this build")
    return parser


# The options that make the run (not where it goes or how it reports): command.json records them.
_NOT_THE_RUN = {"command", "config", "out", "resume", "output", "quiet", "n_jobs", "device"}


def _check_paths(args) -> None:
    """Every path the run reads or writes, checked before any work: a bad one found after
    training would lose the results."""
    if args.output is None:
        args.output = str(Path(args.out) / "results.json") if args.out is not None else "segfast-results.json"
    output = Path(args.output)
    if output.is_dir():
        raise _CommandError(f"--output {output}: is a directory; give a file name such as {output / 'results.json'}")
    if output.exists() and not output.is_file():
        raise _CommandError(f"--output {output}: exists and is not a regular file")
    into_run_dir = args.out is not None and output.parent.resolve() == Path(args.out).resolve()
    if not into_run_dir and not output.parent.is_dir():
        raise _CommandError(f"--output {output}: the folder {output.parent} does not exist")
    if not into_run_dir and not os.access(output.parent, os.W_OK):
        raise _CommandError(f"--output {output}: the folder {output.parent} is not writable")
    if args.resume and args.out is None:
        raise _CommandError("--resume needs --out DIR, the run directory to continue")
    if args.out is not None:
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise _CommandError(f"--out {out}: is a file, not a run directory")
        if not args.resume and (out / "config.json").is_file():
            raise _CommandError(
                f"--out {out}: already holds a run; add --resume to continue it, or choose another directory"
            )
        if args.resume and not (out / "config.json").is_file():
            raise _CommandError(
                f"--out {out}: holds no run to resume (no {out / 'config.json'}); leave out --resume to start one there"
            )
        if not args.resume and not out.exists() and not out.parent.is_dir():
            raise _CommandError(f"--out {out}: the folder {out.parent} does not exist")
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        raise _CommandError(f"--data-dir {args.data_dir}: no such directory")


# Which merge methods use each merge flag: a flag given for another method would change nothing.
_USED_BY = {
    "merge_temperature": ("loss",),
    "merge_trim": ("trimmed",),
    "cluster_margin": ("cluster-best",),
    "merge_threshold": ("learned",),
    "merge_coefficients": ("learned",),
}


def _dp(args) -> dict | None:
    """--dp-clip / --dp-noise / --dp-delta as rounds' dp=, checked together before any work."""
    given = [f"--dp-{name}" for name in ("clip", "noise", "delta") if getattr(args, f"dp_{name}") is not None]
    if not given:
        return None
    if args.dp_clip is None or args.dp_noise is None:
        raise _CommandError(f"{' and '.join(given)}: DP-FedAvg needs both --dp-clip C and --dp-noise Z")
    if args.ensemble is not None:
        raise _CommandError("--ensemble votes with the segment models, which DP-FedAvg keeps private")
    merging = [f for f, on in (("--align", args.align), ("--rescale", args.rescale)) if on]
    merging += ["--repair-rows"] if args.repair_rows is not None else []
    if args.merge != "uniform" or merging:
        chosen = " ".join([f"--merge {args.merge}"] if args.merge != "uniform" else merging)
        raise _CommandError(f"{chosen}: DP-FedAvg merges by its own rule (the noisy sum of the clipped updates)")
    dp = {"clip": args.dp_clip, "noise_multiplier": args.dp_noise}
    return dp if args.dp_delta is None else {**dp, "delta": args.dp_delta}


def _check_merge(args) -> None:
    """The merge flags against the method and the rounds, before any work: segfast.merge
    checks its arguments only when a round ends."""
    for dest, methods in _USED_BY.items():
        if getattr(args, dest) is not None and args.merge not in methods:
            raise _CommandError(
                f"--{dest.replace('_', '-')} applies to --merge {' or '.join(methods)}, not {args.merge}"
            )
    if args.merge == "cluster-merge" and (args.repair_rows is not None or args.rescale):
        raise _CommandError(
            f"{'--repair-rows' if args.repair_rows is not None else '--rescale'} applies to a merge into one "
            "model, not to cluster-merge's one model per cluster"
        )
    if args.merge == "cluster-merge" and args.rounds != 1:
        raise _CommandError(
            "--merge cluster-merge makes one model per cluster, and a round broadcasts one model: use it "
            "with --rounds 1 (it then merges the segment models at the end), or --merge cluster-best for rounds"
        )
    if args.clusters is not None and args.clusters > args.segments:
        raise _CommandError(f"--clusters {args.clusters} is more than the {args.segments} segments")
    for flag in ("cluster_by", "recluster_every"):
        if getattr(args, flag) is not None and not _clustered_rounds(args):
            raise _CommandError(
                f"--{flag.replace('_', '-')} applies to clustered rounds: --clusters K (K >= 2) with a merge into "
                "one model (not cluster-best or cluster-merge)"
            )
    if args.recluster_every is not None and (args.cluster_by or "loss") != "weights":
        raise _CommandError("--recluster-every applies to --cluster-by weights")
    if _clustered_rounds(args) and args.task == "regression":
        raise _CommandError(
            "clustered rounds from the command line are for classification; for regression use Python: "
            "segfast.rounds(..., clusters=K)"
        )
    if args.merge.startswith("cluster-") and args.clusters is None and args.segments < 3:
        raise _CommandError(
            f"--merge {args.merge}: choosing the number of clusters needs 3 segments or more; give --clusters"
        )


def _clustered_rounds(args) -> bool:
    """--clusters K with a merge into one model: K global models (rounds' clusters=K)."""
    return args.clusters is not None and args.clusters > 1 and not args.merge.startswith("cluster-")


def _merge_arguments(args, X_train) -> dict:
    """segfast.merge's keyword arguments that the merge flags set (none when none is given)."""
    arguments = {
        "temperature": args.merge_temperature,
        "trim": args.merge_trim,
        "k": args.clusters if args.merge.startswith("cluster-") else None,
        "margin": args.cluster_margin,
        "threshold": args.merge_threshold,
        "coefficients": args.merge_coefficients,
        "rescale": args.rescale or None,
    }
    if args.repair_rows is not None:
        if args.repair_rows > len(X_train):
            raise _CommandError(f"--repair-rows {args.repair_rows} is more than the {len(X_train)} training rows")
        rows = np.random.default_rng(args.seed).choice(len(X_train), args.repair_rows, replace=False)
        arguments["repair"] = X_train[np.sort(rows)]
    return {name: value for name, value in arguments.items() if value is not None}


def _interrupted(args) -> int:
    """Ctrl-C: say where the run stands and how to go on, without a traceback (exit 130)."""
    if args is None or getattr(args, "command", None) != "run":
        print("segfast: interrupted", file=sys.stderr)
        return 130
    if args.out is None:
        print("segfast: interrupted; nothing was kept (with --out DIR a run can be continued)", file=sys.stderr)
        return 130
    log = Path(args.out) / "rounds.jsonl"
    done = sum(1 for line in log.read_text().splitlines() if line.strip()) if log.is_file() else 0
    print(
        f"segfast: interrupted after round {done} of {args.rounds}; continue with the same command and "
        f"--resume (run directory {args.out})",
        file=sys.stderr,
    )
    return 130


def _check_task(args) -> None:
    """The flags that belong to one task, refused for the other before any work."""
    if args.task == "regression":
        if args.ensemble is not None and args.ensemble not in REGRESSION_METHODS:
            raise _CommandError(
                f"--ensemble {args.ensemble} is a classification method; with --task regression use "
                f"{', '.join(REGRESSION_METHODS)}"
            )
        return
    for dest in ("target", "loss", "huber_delta"):
        if getattr(args, dest) is not None:
            raise _CommandError(f"--{dest.replace('_', '-')} applies to --task regression")
    if args.ensemble in REGRESSION_ONLY:
        raise _CommandError(
            f"--ensemble {args.ensemble} is a regression method; with labels use {', '.join(ENSEMBLE_METHODS)}"
        )


def _run(args) -> int:
    if args.server_lr is None:  # resolved before command.json records it (1.0, as older runs recorded)
        args.server_lr = 1.0 if args.server_optimizer == "sgd" else ADAPTIVE_LR
    _check_paths(args)
    _check_merge(args)
    _check_task(args)
    dp = _dp(args)
    if args.task == "regression":
        from .cli_regression import run_regression

        return run_regression(args, dp)
    args.ensemble = args.ensemble or ("soft" if dp is None else None)
    if args.init == "independent":  # accepted by earlier versions, which then used a shared start anyway
        raise _CommandError(
            "--init independent: segfast run trains in rounds from one shared start; for one start per "
            "segment use Python: segfast.MLPStack(dims, n, init='independent'), segfast.train, segfast.merge"
        )
    data = datasets.load(args.data, data_dir=args.data_dir)
    val = args.val if args.val is not None else (1000 if args.data == "default" else 5000)
    split = holdout(data, val=val)
    merge_arguments = _merge_arguments(args, split.X_train)
    if args.out is not None:
        _record_command(args)
    segs = segment(split.y_train, args.segments, args.scheme, alpha=args.alpha, seed=args.seed)
    dims = [data.n_features, *args.hidden, data.n_classes]
    clustered = _clustered_rounds(args)
    k = args.clusters if clustered else 1
    local = schedule.progressive(max=args.epochs) if args.progressive else args.epochs
    print(
        f"segfast {_version()}: {data.name}, {len(split.y_train)} training rows in {args.segments} "
        f"{args.scheme} segments, {len(split.y_val)} validation rows, MLP {'-'.join(map(str, dims))}, "
        f"{args.rounds} round(s)"
        + (f", {k} clustered global models (by {args.cluster_by or 'loss'})" if clustered else "")
    )
    # cluster-merge ends with one model per cluster: the round merges uniformly, the end by clusters.
    cluster_merge = args.merge == "cluster-merge"
    round_merge = {"method": "uniform" if cluster_merge else args.merge, "align": args.align}
    if not cluster_merge:
        round_merge.update(merge_arguments)
    begin = time.perf_counter()
    result = rounds(
        dims,  # seeded by seed=: one model, or k for clustered rounds
        split.X_train,
        split.y_train,
        segs,
        rounds=args.rounds,
        local_epochs=local,
        merge="uniform" if dp is not None else round_merge,
        fraction=args.fraction,
        server_lr=args.server_lr,
        server_momentum=args.server_momentum,
        server_optimizer=args.server_optimizer,
        betas=args.server_betas,
        tau=args.server_tau,
        proximal_mu=args.proximal_mu,
        val=split.val,
        val_segments=_rounds_val_segments(args.val_segments),
        out=args.out,
        resume=args.resume,
        seed=args.seed,
        n_jobs=args.n_jobs,
        progress=not args.quiet,
        lr=args.lr,
        batch_size=args.batch_size,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        device=args.device,
        clusters=k,
        cluster_by=args.cluster_by or "loss",
        recluster_every=args.recluster_every or 1,
        dp=dp,
    )
    seconds = time.perf_counter() - begin
    if dp is not None:
        merged_val = evaluate(result.global_model, *split.val, n_jobs=args.n_jobs, device=args.device)
        test = {}
        if len(split.y_test):
            test["merged"] = float(evaluate(result.global_model, *split.test, device=args.device).accuracy[0])
        print(
            f"\nmerged ({round_merge['method']}, DP-FedAvg): {100 * merged_val.accuracy[0]:.2f}% validation accuracy"
            + (f", {100 * test['merged']:.2f}% test" if test else "")
            + f"   ({seconds:.2f} s)\n{_privacy_spent(result.history, len(segs))}"
        )
        scores = {"merged_val_accuracy": float(merged_val.accuracy[0]), "test_accuracy": test}
        _report(args, _private_results(args, dims, segs, result, scores, seconds))
        return 0
    models = result.local_models
    if models is None:  # a resumed run that had already finished
        models = MLPStack.load(Path(args.out) / "local_models.npz")
    val_eval = evaluate(models, *split.val, n_jobs=args.n_jobs, device=args.device)
    merged_val = evaluate(result.global_model, *split.val, n_jobs=args.n_jobs, device=args.device)
    tiebreak = None if clustered else result.global_model  # a tiebreak is one model
    ens = Ensemble(models, args.ensemble, tiebreak=tiebreak, n_jobs=args.n_jobs, device=args.device)
    ens.fit(*split.val)

    # The segment of each model: the last round's participants (rounds() names them whenever it
    # returns local models; all segments in order is what an older result would mean).
    trained = result.local_segments if result.local_segments is not None else np.arange(models.n_models)
    took_part = "" if len(trained) == len(segs) else f": {len(trained)} of {len(segs)} segments took part"
    print(
        f"\n{'segment':>7} {'rows':>6} {'val loss':>9} {'val acc':>8}   (segment models of the last round{took_part})"
    )
    for i, seg in enumerate(trained):
        flag = "  diverged" if models.diverged[i] else ""
        print(f"{seg:>7} {segs.sizes[seg]:>6} {val_eval.loss[i]:>9.4f} {100 * val_eval.accuracy[i]:>7.2f}%{flag}")
    acc = 100 * val_eval.accuracy
    print(f"\nsegment models: mean {acc.mean():.2f}%, min {acc.min():.2f}%, max {acc.max():.2f}% validation accuracy")
    best = int(np.argmax(merged_val.accuracy))  # one model, or the best of the clustered rounds' k
    print(
        f"merged ({round_merge['method']}{', aligned' if args.align else ''}"
        f"{f', best of {k} clusters' if clustered else ''}): {100 * merged_val.accuracy[best]:.2f}%   "
        f"ensemble ({args.ensemble}): {100 * ens.score(*split.val):.2f}%   ({seconds:.2f} s)"
    )
    clusters = _cluster_merge(args, models, trained, split, merge_arguments) if cluster_merge else {}
    if clustered:
        clusters = _cluster_models(args, result, split, merged_val.accuracy)
    test = {}
    if len(split.y_test):
        test = {
            "merged": evaluate(result.global_model[best], *split.test, device=args.device).accuracy[0],
            "ensemble": ens.score(*split.test),
            "segments": evaluate(models, *split.test, device=args.device).accuracy.tolist(),
        }
        print(f"test accuracy: merged {100 * test['merged']:.2f}%, ensemble {100 * test['ensemble']:.2f}%")

    results = {
        "segfast_version": _version(),
        "config": {k: v for k, v in vars(args).items() if k != "command"},
        "dims": dims,
        "segment_sizes": segs.sizes.tolist(),
        "local_segments": trained.tolist(),  # the segment of each entry of the per-model lists
        "rounds": result.history,
        "val_loss": val_eval.loss.tolist(),
        "val_accuracy": val_eval.accuracy.tolist(),
        "merged_val_accuracy": float(merged_val.accuracy[best]),
        "ensemble_val_accuracy": ens.score(*split.val),
        "test_accuracy": {k: (float(v) if not isinstance(v, list) else v) for k, v in test.items()},
        "seconds": seconds,
        **clusters,
    }
    _report(args, results)
    return 0


def _privacy_spent(history: list, n_segments: int) -> str:
    """The guarantee of a DP run, as its last round's record says it."""
    last = history[-1]
    return (
        f"user-level privacy after {last['round']} rounds: (epsilon {last['epsilon']:.3g}, delta {last['delta']:.3g}) "
        f"for each of the {n_segments} segments; the segment models stay private (no per-segment scores, no ensemble)"
    )


def _private_results(args, dims, segs, result, scores: dict, seconds: float) -> dict:
    """results.json of a DP run: the global model's scores (as each task names them) and the
    privacy spent, nothing of the segment models."""
    return {
        "segfast_version": _version(),
        "config": {k: v for k, v in vars(args).items() if k != "command"},
        "dims": dims,
        "segment_sizes": segs.sizes.tolist(),
        "rounds": result.history,
        **scores,
        "epsilon": result.history[-1]["epsilon"],
        "delta": result.history[-1]["delta"],
        "seconds": seconds,
    }


def _report(args, results: dict) -> None:
    """results.json, written whole or not at all, then the run directory's plots."""
    out = Path(args.output)
    write_atomic(out, json.dumps(results, indent=2).encode())
    print(f"results written to {out}" + (f"; run directory {args.out}" if args.out else ""))
    if args.out:
        _plots(args.out)


def _cluster_models(args, result, split, val_accuracy: np.ndarray) -> dict:
    """Clustered rounds: each cluster's global model and segments, printed, and results.json's
    entries (those of cluster-merge, and each segment's cluster)."""
    print(f"\nclustered rounds: {len(val_accuracy)} global models")
    members = [np.flatnonzero(result.clusters == c).tolist() for c in range(len(val_accuracy))]
    for c, in_cluster in enumerate(members):
        print(f"{c:>7} {100 * val_accuracy[c]:>7.2f}% val acc   segments {', '.join(map(str, in_cluster)) or '-'}")
    entries = {
        "clusters": result.clusters.tolist(),
        "cluster_segments": members,
        "cluster_val_accuracy": val_accuracy.tolist(),
    }
    if len(split.y_test):
        test = evaluate(result.global_model, *split.test, n_jobs=args.n_jobs).accuracy
        entries["cluster_test_accuracy"] = test.tolist()
    return entries


def _cluster_merge(args, models: MLPStack, segments: np.ndarray, split, merge_arguments: dict) -> dict:
    """--merge cluster-merge: the segment models merged into one model per cluster, printed, saved
    as DIR/clusters.npz with --out, and returned as results.json's entries."""
    merged, details = merge(
        models,
        "cluster-merge",
        val=split.val,
        align=args.align,
        seed=args.seed,
        n_jobs=args.n_jobs,
        device=args.device,
        return_details=True,
        **merge_arguments,
    )
    kept, labels = details["models"], details["labels"]
    members = [[int(segments[i]) for i in kept[labels == c]] for c in range(merged.n_models)]
    accuracy = evaluate(merged, *split.val, n_jobs=args.n_jobs, device=args.device).accuracy
    print(
        f"\ncluster-merge: {merged.n_models} cluster models{' (silhouette chose k)' if args.clusters is None else ''}"
    )
    for c, in_cluster in enumerate(members):
        print(f"{c:>7} {100 * accuracy[c]:>7.2f}% val acc   segments {', '.join(map(str, in_cluster))}")
    entries = {"cluster_segments": members, "cluster_val_accuracy": accuracy.tolist()}
    if len(split.y_test):
        test = evaluate(merged, *split.test, n_jobs=args.n_jobs, device=args.device).accuracy
        entries["cluster_test_accuracy"] = test.tolist()
    if len(kept) == models.n_models:  # the plots colour segment models by cluster
        entries["segment_clusters"] = [int(c) for c in labels]
    if args.out is not None:
        merged.save(Path(args.out) / "clusters.npz")
    return entries


def _record_command(args) -> None:
    """DIR/command.json: the options that make the run, so that `segfast run --config
    DIR/command.json` (or `segfast rerun DIR`) redoes it. Written before training; a resume
    must ask for the same run (it may ask for more rounds)."""
    path = Path(args.out) / "command.json"
    options = {k: v for k, v in sorted(vars(args).items()) if k not in _NOT_THE_RUN}
    if args.resume and path.is_file():
        try:
            recorded = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise _CommandError(f"{path}: not valid JSON ({e})") from None
        # An option newer than the recorded run was, for that run, at its default.
        run = _run_parser(_parser())
        differ = sorted(
            k
            for k in set(recorded) | set(options)
            if k != "rounds" and recorded.get(k, run.get_default(k)) != options.get(k)
        )
        if differ:
            raise _CommandError(f"--resume: {path} records another run (it differs in {', '.join(differ)})")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(options, indent=2) + "\n")
    tmp.replace(path)


def _plots(run_dir) -> None:
    """The run directory's plots, where matplotlib is installed (`pip install matplotlib`)."""
    try:
        from .plot import plot_run

        written = plot_run(run_dir)
    except ImportError:
        print("plots skipped: they need matplotlib (pip install matplotlib), then `segfast plot DIR`")
        return
    print("plots: " + ", ".join(str(p) for p in written))


def _rerun(args) -> int:
    recorded = Path(args.rundir) / "command.json"
    if not recorded.is_file():
        raise _CommandError(f"{args.rundir}: no command.json (a run directory of `segfast run --out` holds one)")
    argv = ["run", "--config", str(recorded), "--out", args.out] + (["--quiet"] if args.quiet else [])
    return main(argv)


def _plot(args) -> int:
    from .plot import plot_run

    for path in plot_run(args.rundir):
        print(f"wrote {path}")
    return 0


def _version() -> str:
    from . import __version__

    return __version__


def _info() -> int:
    print(f"segfast {_version()}")
    print(f"OpenMP:      {'yes' if _core.has_openmp() else 'no (single-threaded build)'}")
    print(f"threads:     {_core.available_threads()} (n_jobs=-1)")
    print(f"gemm kernel: {_core.gemm_kernel()}")
    if not _core.has_cuda:
        print("CUDA:        no (this build has no CUDA path)")
    elif _core.cuda_unavailable_reason():
        print(f"CUDA:        built, but no usable GPU here ({_core.cuda_unavailable_reason()})")
    else:
        print(f"CUDA:        yes, {_core.cuda_device_name()} (device='cuda')")
    return 0


def _run_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    return parser._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr,index]


def _config_value(action: argparse.Action, key: str, value, path) -> object:
    """A --config value as its flag would give it, or a one-line error naming the file and the
    option: argparse would answer a value of the wrong type with its whole usage text."""
    if action.nargs == 0:  # a switch such as --align
        if not isinstance(value, bool):
            raise _CommandError(f"{path}: {key} must be true or false, got {value!r}")
        return value
    if value is None and action.default is None:  # an option left unset (command.json writes null)
        return None
    if action.type is None:
        if not isinstance(value, str):
            raise _CommandError(f"{path}: {key} must be text, got {value!r}")
    else:
        kind = {int: "an integer", float: "a number", _widths: "a list of widths such as [256, 128]"}
        listed = isinstance(value, list) and action.type in (_widths, _pair_of_numbers)  # [256, 128], [0.9, 0.99]
        text = ",".join(map(str, value)) if listed else str(value)
        try:
            value = action.type(text)  # type: ignore[operator]
        except argparse.ArgumentTypeError as e:
            raise _CommandError(f"{path}: {key}: {e}") from None
        except ValueError:
            raise _CommandError(
                f"{path}: {key} must be {kind.get(action.type, 'another value')}, got {value!r}"
            ) from None
    if action.choices is not None and value not in action.choices:
        raise _CommandError(f"{path}: {key} must be one of {', '.join(map(str, action.choices))}, got {value!r}")
    return value


def _with_config(parser, argv):
    """Parse argv; a --config TOML file supplies defaults that explicit flags override."""
    args = parser.parse_args(argv)
    if getattr(args, "config", None):
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # the same parser, as a dependency
            import tomli as tomllib

        try:
            with open(args.config, "rb") as f:
                loaded = json.load(f) if str(args.config).endswith(".json") else tomllib.load(f)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise _CommandError(
                f"--config {args.config}: not valid {'JSON' if str(args.config).endswith('.json') else 'TOML'}: {e}"
            ) from None
        except OSError as e:
            raise _CommandError(f"--config {args.config}: cannot be read: {e.strerror}") from None
        if not isinstance(loaded, dict):
            raise _CommandError(f"--config {args.config}: must hold a table of options, got {type(loaded).__name__}")
        run = _run_parser(parser)
        actions = {a.dest: a for a in run._actions if a.dest not in ("help", "config")}
        unknown = {k for k in loaded if k.replace("-", "_") not in actions}
        if unknown:
            raise _CommandError(f"{args.config}: unknown option(s) {', '.join(sorted(unknown))}")
        run.set_defaults(
            **{
                k.replace("-", "_"): _config_value(actions[k.replace("-", "_")], k, v, args.config)
                for k, v in loaded.items()
            }
        )
        args = parser.parse_args(argv)
    return args


# The library's argument names as the flags that set them: its messages speak to a Python caller.
_FLAGS = {
    "n_segments": "--segments",
    "local_epochs": "--epochs",
    "max": "--epochs",  # schedule.progressive(max=--epochs)
    "rounds": "--rounds",
    "batch_size": "--batch-size",
    "lr": "--lr",
    "momentum": "--momentum",
    "weight_decay": "--weight-decay",
    "proximal_mu": "--proximal-mu",
    "fraction": "--fraction",
    "server_lr": "--server-lr",
    "server_momentum": "--server-momentum",
    "server_optimizer": "--server-optimizer",
    "betas": "--server-betas",
    "tau": "--server-tau",
    "alpha": "--alpha",
    "val": "--val",
    "seed": "--seed",
    "n_jobs": "--n-jobs",
    "device": "--device",
    "data_dir": "--data-dir",
    "temperature": "--merge-temperature",
    "trim": "--merge-trim",
    "k": "--clusters",
    "margin": "--cluster-margin",
    "threshold": "--merge-threshold",
    "coefficients": "--merge-coefficients",
    "clusters": "--clusters",
    "cluster_by": "--cluster-by",
    "recluster_every": "--recluster-every",
    "repair": "--repair-rows",
    "huber_delta": "--huber-delta",
    "target": "--target",
    "dp clip": "--dp-clip",
    "dp noise_multiplier": "--dp-noise",
    "dp delta": "--dp-delta",
}
# A name followed by " must", " = ", "='value'", "=value" or a bare "=" (as in "pass data_dir=").
_NAMED = re.compile(
    r"(?<![\w\-./])(" + "|".join(_FLAGS) + r")(?:(?P<must> must\b)|(?: = |=)'?(?P<value>[^\s',;:)]*)'?)"
)
_PHRASES = (  # what is left of Python once the names are flags
    ("--epochs must give integers", "--epochs must be an integer"),
    (" for round 0", ""),  # --epochs is the same every round (or 1, 1, 2, ... up to it)
    ("rows of y", "training rows"),
    ("load('default')", "--data default"),
)


def _in_flags(message: str) -> str:
    """A library error as the command line says it: n_segments -> --segments, data_dir= -> --data-dir."""

    def flag(match: re.Match) -> str:
        name = _FLAGS[match.group(1)]
        if match.group("must"):
            return name + " must"
        return f"{name} {match.group('value')}" if match.group("value") else name

    message = _NAMED.sub(flag, message)
    for python, flags in _PHRASES:
        message = message.replace(python, flags)
    return message


def main(argv=None) -> int:
    parser = _parser()
    args = None
    try:
        args = _with_config(parser, argv)
        if args.command == "run":
            return _run(args)
        if args.command == "plot":
            return _plot(args)
        if args.command == "rerun":
            return _rerun(args)
        return _info()
    except KeyboardInterrupt:
        return _interrupted(args)
    except _CommandError as error:
        print(f"segfast: error: {error}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, RuntimeError, FileNotFoundError, ImportError) as error:  # the library's
        print(f"segfast: error: {_in_flags(str(error))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
