"""The ``segfast`` command: ``segfast run`` trains segment models (in one or more rounds), merges
and ensembles them and reports; ``segfast plot RUNDIR`` draws a run; ``segfast info`` says what
this build can do."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from . import _core, datasets, schedule
from .ensemble import METHODS as ENSEMBLE_METHODS
from .ensemble import Ensemble
from .merge import METHODS as MERGE_METHODS
from .predict import evaluate
from .rounds import rounds
from .segments import SCHEMES, segment
from .split import holdout
from .stack import MLPStack


def _widths(text: str) -> list[int]:
    try:
        return [int(w) for w in text.split(",") if w.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated widths like 128 or 256,128, got {text!r}") from None


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
    run.add_argument("--segments", type=int, default=10, help="number of segments = number of models (10)")
    run.add_argument("--scheme", default="iid", choices=SCHEMES, help="how rows are cut into segments (iid)")
    run.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration for --scheme dirichlet (0.5)")
    run.add_argument("--hidden", type=_widths, default=[128], help="hidden widths, comma-separated (128)")
    run.add_argument(
        "--init",
        default="shared",
        choices=["shared", "independent"],
        help="same starting point for every model, or one each (shared)",
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
    run.add_argument(
        "--merge",
        default="uniform",
        choices=[m for m in MERGE_METHODS if m != "cluster-merge"],
        help="how segment models are merged each round (uniform)",
    )
    run.add_argument("--align", action="store_true", help="align hidden units before merging")
    run.add_argument("--fraction", type=float, default=1.0, help="share of segments taking part each round (1)")
    run.add_argument("--server-momentum", type=float, default=0.0, help="FedAvgM server momentum (0)")
    run.add_argument("--server-lr", type=float, default=1.0, help="server learning rate (1)")
    run.add_argument("--proximal-mu", type=float, default=0.0, help="FedProx proximal coefficient (0)")
    run.add_argument(
        "--ensemble",
        default="soft",
        choices=ENSEMBLE_METHODS,
        help="how the last round's segment models are ensembled for the report (soft)",
    )
    run.add_argument("--out", default=None, help="run directory: config, per-round records, weights, plots")
    run.add_argument("--resume", action="store_true", help="continue the run in --out from its last round")
    run.add_argument("--batch-size", type=int, default=32, help="minibatch size (32)")
    run.add_argument("--lr", type=float, default=0.05, help="learning rate (0.05)")
    run.add_argument("--momentum", type=float, default=0.0, help="SGD momentum (0)")
    run.add_argument("--weight-decay", type=float, default=0.0, help="L2 weight decay (0)")
    run.add_argument(
        "--val",
        type=int,
        default=None,
        help="validation rows taken from the end of the training rows "
        "(default: 1000 for the shipped data, 5000 otherwise)",
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
        raise ValueError(f"--output {output}: is a directory; give a file name such as {output / 'results.json'}")
    if output.exists() and not output.is_file():
        raise ValueError(f"--output {output}: exists and is not a regular file")
    into_run_dir = args.out is not None and output.parent.resolve() == Path(args.out).resolve()
    if not into_run_dir and not output.parent.is_dir():
        raise ValueError(f"--output {output}: the folder {output.parent} does not exist")
    if not into_run_dir and not os.access(output.parent, os.W_OK):
        raise ValueError(f"--output {output}: the folder {output.parent} is not writable")
    if args.resume and args.out is None:
        raise ValueError("--resume needs --out DIR, the run directory to continue")
    if args.out is not None:
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out}: is a file, not a run directory")
        if not args.resume and (out / "config.json").is_file():
            raise ValueError(
                f"--out {out}: already holds a run; add --resume to continue it, or choose another directory"
            )
        if args.resume and not (out / "config.json").is_file():
            raise ValueError(
                f"--out {out}: holds no run to resume (no {out / 'config.json'}); leave out --resume to start one there"
            )
        if not args.resume and not out.exists() and not out.parent.is_dir():
            raise ValueError(f"--out {out}: the folder {out.parent} does not exist")
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        raise ValueError(f"--data-dir {args.data_dir}: no such directory")


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


def _run(args) -> int:
    _check_paths(args)
    data = datasets.load(args.data, data_dir=args.data_dir)
    if args.out is not None:
        _record_command(args)
    val = args.val if args.val is not None else (1000 if args.data == "default" else 5000)
    split = holdout(data, val=val)
    segs = segment(split.y_train, args.segments, args.scheme, alpha=args.alpha, seed=args.seed)
    dims = [data.n_features, *args.hidden, data.n_classes]
    start = MLPStack(dims, n_models=1, seed=args.seed)
    local = schedule.progressive(max=args.epochs) if args.progressive else args.epochs
    print(
        f"segfast {_version()}: {data.name}, {len(split.y_train)} training rows in {args.segments} "
        f"{args.scheme} segments, {len(split.y_val)} validation rows, MLP {'-'.join(map(str, dims))}, "
        f"{args.rounds} round(s)"
    )
    begin = time.perf_counter()
    result = rounds(
        start,
        split.X_train,
        split.y_train,
        segs,
        rounds=args.rounds,
        local_epochs=local,
        merge={"method": args.merge, "align": args.align},
        fraction=args.fraction,
        server_lr=args.server_lr,
        server_momentum=args.server_momentum,
        proximal_mu=args.proximal_mu,
        val=split.val,
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
    )
    seconds = time.perf_counter() - begin
    models = result.local_models
    if models is None:  # a resumed run that had already finished
        models = MLPStack.load(Path(args.out) / "local_models.npz")
    val_eval = evaluate(models, *split.val, n_jobs=args.n_jobs, device=args.device)
    merged_val = evaluate(result.global_model, *split.val, n_jobs=args.n_jobs, device=args.device)
    ens = Ensemble(models, args.ensemble, tiebreak=result.global_model, n_jobs=args.n_jobs, device=args.device)
    ens.fit(*split.val)

    print(f"\n{'segment':>7} {'rows':>6} {'val loss':>9} {'val acc':>8}   (segment models of the last round)")
    for i in range(models.n_models):
        flag = "  diverged" if models.diverged[i] else ""
        print(f"{i:>7} {segs.sizes[i]:>6} {val_eval.loss[i]:>9.4f} {100 * val_eval.accuracy[i]:>7.2f}%{flag}")
    acc = 100 * val_eval.accuracy
    print(f"\nsegment models: mean {acc.mean():.2f}%, min {acc.min():.2f}%, max {acc.max():.2f}% validation accuracy")
    print(
        f"merged ({args.merge}{', aligned' if args.align else ''}): {100 * merged_val.accuracy[0]:.2f}%   "
        f"ensemble ({args.ensemble}): {100 * ens.score(*split.val):.2f}%   ({seconds:.2f} s)"
    )
    test = {}
    if len(split.y_test):
        test = {
            "merged": evaluate(result.global_model, *split.test, device=args.device).accuracy[0],
            "ensemble": ens.score(*split.test),
            "segments": evaluate(models, *split.test, device=args.device).accuracy.tolist(),
        }
        print(f"test accuracy: merged {100 * test['merged']:.2f}%, ensemble {100 * test['ensemble']:.2f}%")

    results = {
        "segfast_version": _version(),
        "config": {k: v for k, v in vars(args).items() if k != "command"},
        "dims": dims,
        "segment_sizes": segs.sizes.tolist(),
        "rounds": result.history,
        "val_loss": val_eval.loss.tolist(),
        "val_accuracy": val_eval.accuracy.tolist(),
        "merged_val_accuracy": float(merged_val.accuracy[0]),
        "ensemble_val_accuracy": ens.score(*split.val),
        "test_accuracy": {k: (float(v) if not isinstance(v, list) else v) for k, v in test.items()},
        "seconds": seconds,
    }
    out = Path(args.output)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(out)  # never a half-written results file
    print(f"results written to {out}" + (f"; run directory {args.out}" if args.out else ""))
    if args.out:
        _plots(args.out)
    return 0


def _record_command(args) -> None:
    """DIR/command.json: the options that make the run, so that `segfast run --config
    DIR/command.json` (or `segfast rerun DIR`) redoes it. Written before training; a resume
    must ask for the same run."""
    path = Path(args.out) / "command.json"
    options = {k: v for k, v in sorted(vars(args).items()) if k not in _NOT_THE_RUN}
    if args.resume and path.is_file():
        try:
            recorded = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
        differ = sorted(k for k in set(recorded) | set(options) if k != "rounds" and recorded.get(k) != options.get(k))
        if differ:
            raise ValueError(f"--resume: {path} records another run (it differs in {', '.join(differ)})")
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
        raise ValueError(f"{args.rundir}: no command.json (a run directory of `segfast run --out` holds one)")
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
            raise ValueError(
                f"--config {args.config}: not valid {'JSON' if str(args.config).endswith('.json') else 'TOML'}: {e}"
            ) from None
        except OSError as e:
            raise ValueError(f"--config {args.config}: cannot be read: {e.strerror}") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"--config {args.config}: must hold a table of options, got {type(loaded).__name__}")
        values = {k.replace("-", "_"): v for k, v in loaded.items()}
        run = parser._subparsers._group_actions[0].choices["run"]
        known = {a.dest for a in run._actions}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"{args.config}: unknown option(s) {', '.join(sorted(unknown))}")
        run.set_defaults(**values)
        args = parser.parse_args(argv)
    return args


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
    except (ValueError, TypeError, RuntimeError, FileNotFoundError, ImportError) as error:
        print(f"segfast: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
