"""The ``segfast`` command: ``segfast run`` trains segment models and reports, ``segfast info``
says what this build can do."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from . import _core, datasets
from .predict import evaluate
from .segments import SCHEMES, segment
from .split import holdout
from .stack import MLPStack
from .train import train


def _widths(text: str) -> list[int]:
    try:
        return [int(w) for w in text.split(",") if w.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated widths like 128 or 256,128, got {text!r}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segfast",
        description="Train many small MLPs at once, one per data segment.",
        epilog="Start with `segfast run`: it needs no downloads (it uses the data set shipped inside segfast).")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="cut a data set into segments, train one MLP per segment, report",
                         description="Cut a data set into segments, train one MLP per segment concurrently, "
                                     "print each segment model's validation accuracy and write the results as JSON.")
    run.add_argument("--data", default="default",
                     help="'default' (the Fashion-MNIST subset shipped with segfast), 'fashion-mnist', 'mnist' "
                          "or 'kmnist' (IDX files from --data-dir, $SEGFAST_DATA_DIR or /usr/share/datasets)")
    run.add_argument("--data-dir", default=None, help="folder holding the IDX files")
    run.add_argument("--segments", type=int, default=10, help="number of segments = number of models (10)")
    run.add_argument("--scheme", default="iid", choices=SCHEMES, help="how rows are cut into segments (iid)")
    run.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration for --scheme dirichlet (0.5)")
    run.add_argument("--hidden", type=_widths, default=[128], help="hidden widths, comma-separated (128)")
    run.add_argument("--init", default="shared", choices=["shared", "independent"],
                     help="same starting point for every model, or one each (shared)")
    run.add_argument("--epochs", type=int, default=10, help="epochs of local training (10)")
    run.add_argument("--batch-size", type=int, default=32, help="minibatch size (32)")
    run.add_argument("--lr", type=float, default=0.05, help="learning rate (0.05)")
    run.add_argument("--momentum", type=float, default=0.0, help="SGD momentum (0)")
    run.add_argument("--weight-decay", type=float, default=0.0, help="L2 weight decay (0)")
    run.add_argument("--val", type=int, default=None,
                     help="validation rows taken from the end of the training rows "
                          "(default: 1000 for the shipped data, 5000 otherwise)")
    run.add_argument("--seed", type=int, default=0, help="seed for segments, initialisation and minibatches (0)")
    run.add_argument("--n-jobs", type=int, default=-1, help="threads; -1 = all cores (-1)")
    run.add_argument("--output", "-o", default="segfast-results.json", help="JSON results file (segfast-results.json)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")

    sub.add_parser("info", help="version, threads, kernels and GPU support of this build")
    return parser


def _run(args) -> int:
    data = datasets.load(args.data, data_dir=args.data_dir)
    val = args.val if args.val is not None else (1000 if args.data == "default" else 5000)
    split = holdout(data, val=val)
    segs = segment(split.y_train, args.segments, args.scheme, alpha=args.alpha, seed=args.seed)
    dims = [data.n_features, *args.hidden, data.n_classes]
    stack = MLPStack(dims, n_models=args.segments, init=args.init, seed=args.seed)
    print(f"segfast {_version()}: {data.name}, {len(split.y_train)} training rows in {args.segments} "
          f"{args.scheme} segments, {len(split.y_val)} validation rows, MLP {'-'.join(map(str, dims))}")
    start = time.perf_counter()
    history = train(stack, split.X_train, split.y_train, segs, epochs=args.epochs, batch_size=args.batch_size,
                    lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay, seed=args.seed,
                    n_jobs=args.n_jobs, progress=not args.quiet)
    seconds = time.perf_counter() - start
    val_eval = evaluate(stack, split.X_val, split.y_val, n_jobs=args.n_jobs)
    test_eval = evaluate(stack, split.X_test, split.y_test, n_jobs=args.n_jobs) if len(split.y_test) else None

    print(f"\n{'segment':>7} {'rows':>6} {'train loss':>10} {'val loss':>9} {'val acc':>8}")
    for i in range(stack.n_models):
        flag = "  diverged" if history.diverged[i] else ""
        print(f"{i:>7} {segs.sizes[i]:>6} {history.final_loss[i]:>10.4f} {val_eval.loss[i]:>9.4f} "
              f"{100 * val_eval.accuracy[i]:>7.2f}%{flag}")
    acc = 100 * val_eval.accuracy
    print(f"\nvalidation accuracy: mean {acc.mean():.2f}%, min {acc.min():.2f}%, max {acc.max():.2f}% "
          f"({seconds:.2f} s of training, {args.epochs} epochs)")

    results = {
        "segfast_version": _version(),
        "config": {k: v for k, v in vars(args).items() if k != "command"},
        "dims": dims,
        "segment_sizes": segs.sizes.tolist(),
        "train_loss_per_epoch": np.where(np.isnan(history.loss), None, history.loss).tolist(),
        "diverged": history.diverged.tolist(),
        "val_loss": val_eval.loss.tolist(),
        "val_accuracy": val_eval.accuracy.tolist(),
        "test_loss": None if test_eval is None else test_eval.loss.tolist(),
        "test_accuracy": None if test_eval is None else test_eval.accuracy.tolist(),
        "train_seconds": seconds,
        "epoch_seconds": history.seconds,
    }
    out = Path(args.output)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(out)  # never a half-written results file
    print(f"results written to {out}")
    return 0


def _version() -> str:
    from . import __version__
    return __version__


def _info() -> int:
    print(f"segfast {_version()}")
    print(f"OpenMP:      {'yes' if _core.has_openmp() else 'no (single-threaded build)'}")
    print(f"threads:     {_core.available_threads()} (n_jobs=-1)")
    print(f"gemm kernel: {_core.gemm_kernel()}")
    print("CUDA:        no (not built)")
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        return _info()
    except (ValueError, TypeError, FileNotFoundError) as error:
        print(f"segfast: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
