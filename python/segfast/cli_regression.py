"""``segfast run --task regression``: the regression run of the command, on a table (the small
one shipped with segfast, the diamonds table, or a CSV file).

The same steps and outputs as the classification run (cli.py checks the flags and the paths
first): segments, rounds, the merged model and an ensemble of the last round's segment models,
a table per segment model, results.json, a run directory with plots. The models learn
standardised targets; RMSE is reported in the target's own units (one target) and R^2 beside it.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import schedule, tabular
from .cli import (
    _CommandError,
    _merge_arguments,
    _privacy_spent,
    _private_results,
    _record_command,
    _report,
    _rounds_val_segments,
    _version,
)
from .ensemble import Ensemble
from .predict import evaluate
from .rounds import rounds
from .segments import segment
from .stack import MLPStack


def _load(args) -> tabular.TabularDataset:
    if args.data == "default":
        if args.target is not None:
            raise _CommandError("--target applies to a CSV file; --data default has its own target")
        return tabular.load_default_regression()
    if args.data == "diamonds":
        if args.target is not None:
            raise _CommandError("--target applies to a CSV file; diamonds predicts price")
        return tabular.load_diamonds(args.data_dir, seed=args.seed)
    if not Path(args.data).is_file():
        raise _CommandError(
            f"--data {args.data}: --task regression reads 'default', 'diamonds' or a CSV file, and this is none"
        )
    if args.target is None:
        raise _CommandError(f"--data {args.data}: name the column(s) to predict with --target")
    targets = [t.strip() for t in args.target.split(",")]
    return tabular.load_csv(args.data, targets if len(targets) > 1 else targets[0], seed=args.seed)


def _number(value: float) -> str:
    """An error in a target's units: whole numbers from 100 up (prices), else 4 digits."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.4g}"


def _held_out(data, n_val: int):
    """(X, y) training rows and the last n_val of them as validation rows, as holdout() does."""
    n = len(data.X_train)
    if not 1 <= n_val < n:
        raise _CommandError(f"--val {n_val}: needs at least one training row left of the {n}")
    return (data.X_train[:-n_val], data.y_train[:-n_val]), (data.X_train[-n_val:], data.y_train[-n_val:])


def _rmse_scale(data) -> float:
    """What turns a standardised RMSE into the target's units (one target; several stay standardised)."""
    return float(data.y_scale[0]) if data.n_targets == 1 else 1.0


def _scores(data, model_scores) -> dict:
    """RMSE (in the target's units for one target, else standardised) and R^2 of evaluate()'s result."""
    return {"rmse": (model_scores.rmse * _rmse_scale(data)).tolist(), "r2": model_scores.r2.tolist()}


def _ensemble_scores(data, ensemble, X, y) -> dict:
    predicted = ensemble.predict(X).reshape(len(X), -1).astype(np.float64)
    residual = predicted - y.reshape(len(X), -1)
    return {"rmse": float(np.sqrt(np.mean(residual**2)) * _rmse_scale(data)), "r2": float(ensemble.score(X, y))}


def run_regression(args, dp: dict | None = None) -> int:
    data = _load(args)
    (X, y), (X_val, y_val) = _held_out(data, args.val if args.val is not None else max(1, len(data.X_train) // 10))
    merge_arguments = _merge_arguments(args, X)
    if args.merge == "cluster-merge":
        raise _CommandError(
            "--merge cluster-merge reports per-cluster accuracy; with --task regression use cluster-best"
        )
    if args.out is not None:
        _record_command(args)
    segs = segment(y, args.segments, args.scheme, alpha=args.alpha, seed=args.seed)
    dims = [data.n_features, *args.hidden, data.n_targets]
    start = MLPStack(dims, n_models=1, seed=args.seed, task="regression")
    local = schedule.progressive(max=args.epochs) if args.progressive else args.epochs
    units = "standardised units" if data.n_targets > 1 else f"in the units of {data.target_names[0]}"
    print(
        f"segfast {_version()}: {data.name} regression of {', '.join(data.target_names)}, {len(y)} training rows in "
        f"{args.segments} {args.scheme} segments, {len(y_val)} validation rows, MLP {'-'.join(map(str, dims))}, "
        f"{args.rounds} round(s)"
    )
    begin = time.perf_counter()
    result = rounds(
        start,
        X,
        y,
        segs,
        rounds=args.rounds,
        local_epochs=local,
        merge="uniform" if dp is not None else {"method": args.merge, "align": args.align, **merge_arguments},
        fraction=args.fraction,
        server_lr=args.server_lr,
        server_momentum=args.server_momentum,
        server_optimizer=args.server_optimizer,
        betas=args.server_betas,
        tau=args.server_tau,
        proximal_mu=args.proximal_mu,
        val=(X_val, y_val),
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
        loss=args.loss,
        huber_delta=1.0 if args.huber_delta is None else args.huber_delta,
        device=args.device,
        dp=dp,
    )
    seconds = time.perf_counter() - begin
    merged_val = _scores(data, evaluate(result.global_model, X_val, y_val, n_jobs=args.n_jobs))
    if dp is not None:
        return _private_report(args, data, dims, segs, result, merged_val, units, seconds)
    models = result.local_models
    if models is None:  # a resumed run that had already finished
        models = MLPStack.load(Path(args.out) / "local_models.npz")
    segment_val = _scores(data, evaluate(models, X_val, y_val, n_jobs=args.n_jobs))
    method = args.ensemble or "mean"
    ensemble = Ensemble(models, method, n_jobs=args.n_jobs).fit(X_val, y_val)
    ensemble_val = _ensemble_scores(data, ensemble, X_val, y_val)

    trained = result.local_segments if result.local_segments is not None else np.arange(models.n_models)
    took_part = "" if len(trained) == len(segs) else f": {len(trained)} of {len(segs)} segments took part"
    header = f"{'segment':>7} {'rows':>6} {'val RMSE':>10} {'val R^2':>8}"
    print(f"\n{header}   (segment models of the last round{took_part})")
    for i, seg in enumerate(trained):
        flag = "  diverged" if models.diverged[i] else ""
        print(f"{seg:>7} {segs.sizes[seg]:>6} {_number(segment_val['rmse'][i]):>10} {segment_val['r2'][i]:>8.4f}{flag}")
    rmse = np.array(segment_val["rmse"])
    print(
        f"\nsegment models: mean RMSE {_number(rmse.mean())}, min {_number(rmse.min())}, "
        f"max {_number(rmse.max())} ({units})"
    )
    print(
        f"merged ({args.merge}{', aligned' if args.align else ''}): RMSE {_number(merged_val['rmse'][0])}, "
        f"R^2 {merged_val['r2'][0]:.4f}   ensemble ({method}): RMSE {_number(ensemble_val['rmse'])}, "
        f"R^2 {ensemble_val['r2']:.4f}   ({seconds:.2f} s)"
    )
    test = {}
    if data.X_test is not None and len(data.X_test):
        merged_test = _scores(data, evaluate(result.global_model, data.X_test, data.y_test, n_jobs=args.n_jobs))
        test = {
            "merged": {"rmse": merged_test["rmse"][0], "r2": merged_test["r2"][0]},
            "ensemble": _ensemble_scores(data, ensemble, data.X_test, data.y_test),
            "segments": _scores(data, evaluate(models, data.X_test, data.y_test, n_jobs=args.n_jobs)),
        }
        print(
            f"test: merged RMSE {_number(test['merged']['rmse'])} (R^2 {test['merged']['r2']:.4f}), "
            f"ensemble RMSE {_number(test['ensemble']['rmse'])} (R^2 {test['ensemble']['r2']:.4f})"
        )
    results = {
        "segfast_version": _version(),
        "task": "regression",
        "config": {k: v for k, v in vars(args).items() if k != "command"},
        "data": data.name,
        "targets": list(data.target_names),
        "rmse_units": units,
        "dims": dims,
        "segment_sizes": segs.sizes.tolist(),
        "local_segments": trained.tolist(),
        "rounds": result.history,
        "val_rmse": segment_val["rmse"],
        "val_r2": segment_val["r2"],
        "merged_val_rmse": merged_val["rmse"][0],
        "merged_val_r2": merged_val["r2"][0],
        "ensemble_val_rmse": ensemble_val["rmse"],
        "ensemble_val_r2": ensemble_val["r2"],
        "test": test,
        "seconds": seconds,
    }
    _report(args, results)
    return 0


def _private_report(args, data, dims, segs, result, merged_val: dict, units: str, seconds: float) -> int:
    """A DP run: the global model's scores and the privacy spent; the segment models stay private."""
    test = {}
    if data.X_test is not None and len(data.X_test):
        scores = _scores(data, evaluate(result.global_model, data.X_test, data.y_test, n_jobs=args.n_jobs))
        test = {"merged": {"rmse": scores["rmse"][0], "r2": scores["r2"][0]}}
    print(
        f"\nmerged ({args.merge}, DP-FedAvg): RMSE {_number(merged_val['rmse'][0])} ({units}), "
        f"R^2 {merged_val['r2'][0]:.4f}"
        + (f"; test RMSE {_number(test['merged']['rmse'])}" if test else "")
        + f"   ({seconds:.2f} s)\n{_privacy_spent(result.history, len(segs))}"
    )
    scores = {
        "task": "regression",
        "rmse_units": units,
        "merged_val_rmse": merged_val["rmse"][0],
        "merged_val_r2": merged_val["r2"][0],
        "test": test,
    }
    _report(args, _private_results(args, dims, segs, result, scores, seconds))
    return 0
