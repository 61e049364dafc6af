"""Regression quality on the diamonds table (53,940 rows; price from carat, cut, colour, clarity
and the stone's measurements): issue 18's table.

Setting: the price itself as the target, features and target standardised on the training rows
(80%, seeded split; test = the other 20%); a seeded 10% of the training rows are validation rows that the
segment models never see (stacking, weighted and competence learn from them). 26 features after
one-hot encoding, MLP 26-64-1, plain SGD lr 0.01, batch 32, MSE loss. N=10 IID segments trained
EPOCHS epochs each; RMSE in dollars on the test rows, mean over the seeds.

Rows of the table:
  single segment model (mean of the 10), each ensemble method, the shared-init uniform merge,
  20 rounds with the progressive schedule (1, 1, 2, 2, 4, 4, 8, ... local epochs), one segfast
  model on all training rows for as many epochs as those rounds, scikit-learn's MLPRegressor
  (same width, SGD, same epochs, same batch and learning rate) and HistGradientBoostingRegressor.

  The rounds against the all-rows model twice: at the same lr (0.01; plain FedAvg, and FedAvgM
  with server momentum 0.6), and each tuned on the validation rows, as one would tune either
  for real: lr in LR_GRID for both, and for the rounds also the server momentum in
  MOMENTUM_GRID. At one lr the comparison is of optimisation progress: a round's segment models
  take a tenth of the all-rows model's sequential steps per epoch, so their best lr may lie higher
  (the grid reaches 0.1 because 0.05, its first edge, was the rounds' best on seed 0). The target
  is read on the tuned pair.

    python bench/quality_regression.py [--seeds 0 1 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np

import segfast

N_SEGMENTS, HIDDEN, EPOCHS, LR, BATCH, ROUNDS = 10, 64, 20, 0.01, 32, 20
SCHEDULE = segfast.schedule.progressive()
ROUND_EPOCHS = sum(SCHEDULE(r) for r in range(ROUNDS))  # what the all-rows models train for
LR_GRID, MOMENTUM_GRID = (0.005, 0.01, 0.02, 0.03, 0.05, 0.07, 0.1), (0.0, 0.5, 0.7)

ENSEMBLES = [
    ("ensemble: mean", dict(method="mean")),
    ("ensemble: median", dict(method="median")),
    ("ensemble: weighted (1/val MSE)", dict(method="weighted")),
    ("ensemble: stacking, ridge", dict(method="stacking", combiner="ridge", l2="auto")),
    ("ensemble: stacking, nnls", dict(method="stacking", combiner="nnls")),
    ("ensemble: competence, k=20", dict(method="competence", k=20)),
    ("ensemble: mean + merged model", dict(method="mean", include="merged")),
]


def split(data, seed):
    """(train, val, test) pairs: the loader's test rows, and its training rows cut 90/10."""
    n_val = len(data.X_train) // 10
    order = np.random.default_rng([seed, 1]).permutation(len(data.X_train))
    val, train = order[:n_val], order[n_val:]
    pick = lambda rows: (data.X_train[rows], data.y_train[rows])  # noqa: E731
    return pick(train), pick(val), (data.X_test, data.y_test)


def rmse_dollars(data, predicted, y) -> float:
    """RMSE in the target's own units (the standardisation undone)."""
    difference = data.inverse_transform_y(predicted) - data.inverse_transform_y(y)
    return float(np.sqrt(np.mean(difference**2)))


def run_seed(data, seed) -> dict:
    (X, y), val, (X_test, y_test) = split(data, seed)
    dims = [X.shape[1], HIDDEN, 1]
    out = {}
    segments = segfast.segment(y, N_SEGMENTS, "iid", seed=seed)
    # Independent starts for the ensembles (their diversity is what a vote averages out); one
    # shared start for the merge (averaging needs it).
    stack = segfast.MLPStack(dims, N_SEGMENTS, init="independent", seed=seed, task="regression")
    shared = segfast.MLPStack(dims, N_SEGMENTS, init="shared", seed=seed, task="regression")
    t = time.perf_counter()
    segfast.train(stack, X, y, segments, epochs=EPOCHS, lr=LR, batch_size=BATCH, seed=seed)
    out["seconds: train 10 segment models"] = time.perf_counter() - t
    segfast.train(shared, X, y, segments, epochs=EPOCHS, lr=LR, batch_size=BATCH, seed=seed)
    singles = [rmse_dollars(data, segfast.predict(stack[i], X_test)[0], y_test) for i in range(N_SEGMENTS)]
    out["single segment model (mean of 10)"] = float(np.mean(singles))
    singles = [rmse_dollars(data, segfast.predict(shared[i], X_test)[0], y_test) for i in range(N_SEGMENTS)]
    out["single segment model, shared init (mean of 10)"] = float(np.mean(singles))
    merged = segfast.merge(shared, "uniform")
    out["merge: uniform (shared init)"] = rmse_dollars(data, segfast.predict(merged, X_test)[0], y_test)
    for label, options in ENSEMBLES:
        options = dict(options)
        if options.get("include") == "merged":
            options["include"] = merged
        ensemble = segfast.Ensemble(stack, **options).fit(*val)
        out[label] = rmse_dollars(data, ensemble.predict(X_test), y_test)

    start = segfast.MLPStack(dims, 1, seed=seed, task="regression")
    t = time.perf_counter()
    result = segfast.rounds(start, X, y, segments, ROUNDS, SCHEDULE, lr=LR, batch_size=BATCH, seed=seed, progress=False)
    out["seconds: 20 rounds"] = time.perf_counter() - t
    out[f"rounds: 20, progressive ({ROUND_EPOCHS} epochs)"] = rmse_dollars(
        data, segfast.predict(result.global_model, X_test)[0], y_test
    )
    one = start.copy()
    everything = segfast.Segments.from_indices([np.arange(len(y))])
    t = time.perf_counter()
    segfast.train(one, X, y, everything, epochs=ROUND_EPOCHS, lr=LR, batch_size=BATCH, seed=seed)
    out["seconds: one model, all rows"] = time.perf_counter() - t
    out[f"one model, all rows ({ROUND_EPOCHS} epochs)"] = rmse_dollars(data, segfast.predict(one, X_test)[0], y_test)
    result = segfast.rounds(
        start, X, y, segments, ROUNDS, SCHEDULE, lr=LR, batch_size=BATCH, seed=seed, progress=False, server_momentum=0.6
    )
    out["rounds: FedAvgM, server momentum 0.6"] = rmse_dollars(
        data, segfast.predict(result.global_model, X_test)[0], y_test
    )
    out.update(tuned_rows(data, X, y, val, (X_test, y_test), segments, start, seed))
    out.update(sklearn_rows(data, X, y, X_test, y_test, seed))
    return out


def tuned_rows(data, X, y, val, test, segments, start, seed) -> dict:
    """The rounds and the all-rows model, each at the settings of its grid that score best on
    the validation rows (test RMSE reported; the settings too)."""
    everything = segfast.Segments.from_indices([np.arange(len(y))])

    def scores(model):  # None: every model of a round diverged
        if model is None:
            return (np.inf, np.inf)
        return tuple(rmse_dollars(data, segfast.predict(model, rows)[0], target) for rows, target in (val, test))

    def best(trials):  # (settings, model) pairs: the one best on validation
        scored = [(scores(model), settings) for settings, model in trials]
        return min(scored, key=lambda s: s[0][0] if np.isfinite(s[0][0]) else np.inf)

    def all_rows(lr):
        model = start.copy()
        segfast.train(model, X, y, everything, epochs=ROUND_EPOCHS, lr=lr, batch_size=BATCH, seed=seed)
        return model

    def rounds(lr, momentum):
        try:
            return segfast.rounds(
                start, X, y, segments, ROUNDS, SCHEDULE, lr=lr, batch_size=BATCH, seed=seed, progress=False,
                server_momentum=momentum,
            ).global_model  # fmt: skip
        except ValueError:  # "every model of the stack diverged: nothing to merge"
            return None

    with warnings.catch_warnings():  # a diverged setting is a result of the search, not news
        warnings.simplefilter("ignore", RuntimeWarning)
        (_, one_test), one_lr = best([(lr, all_rows(lr)) for lr in LR_GRID])
        (_, rounds_test), (lr, momentum) = best(
            [((lr, m), rounds(lr, m)) for lr in LR_GRID for m in MOMENTUM_GRID]
        )  # fmt: skip
    return {
        "tuned: rounds (lr, server momentum by val)": rounds_test,
        "tuned: one model, all rows (lr by val)": one_test,
        "tuned settings: rounds lr": lr,
        "tuned settings: rounds server momentum": momentum,
        "tuned settings: all rows lr": one_lr,
    }


def sklearn_rows(data, X, y, X_test, y_test, seed) -> dict:
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.neural_network import MLPRegressor

    out = {}
    mlp = MLPRegressor(
        hidden_layer_sizes=(HIDDEN,), solver="sgd", learning_rate_init=LR, batch_size=BATCH, momentum=0.0, alpha=0.0,
        max_iter=ROUND_EPOCHS, n_iter_no_change=ROUND_EPOCHS + 1, tol=0.0, random_state=seed,
    )  # fmt: skip
    t = time.perf_counter()
    mlp.fit(X, y)
    out["seconds: scikit-learn MLPRegressor"] = time.perf_counter() - t
    key = f"scikit-learn MLPRegressor, all rows ({ROUND_EPOCHS} epochs)"
    out[key] = rmse_dollars(data, mlp.predict(X_test), y_test)
    hgb = HistGradientBoostingRegressor(random_state=seed)
    t = time.perf_counter()
    hgb.fit(X, y)
    out["seconds: scikit-learn HistGradientBoosting"] = time.perf_counter() - t
    out["scikit-learn HistGradientBoostingRegressor"] = rmse_dollars(data, hgb.predict(X_test), y_test)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    runs = []
    for seed in args.seeds:
        data = segfast.tabular.load_diamonds(seed=seed)
        runs.append(run_seed(data, seed))
        print(f"seed {seed} done", flush=True)
    table = {key: (float(np.mean([r[key] for r in runs])), float(np.std([r[key] for r in runs]))) for key in runs[0]}
    print(f"\ndiamonds, N={N_SEGMENTS} IID segments, MLP d-{HIDDEN}-1, test RMSE in dollars, seeds {args.seeds}")
    for key, (mean, std) in table.items():
        unit = "s" if key.startswith("seconds") else "" if key.startswith("tuned settings") else "$"
        digits = 3 if key.startswith("tuned settings") else 1
        print(f"  {key:<58} {mean:>9.{digits}f} {unit}  (std {std:.{digits}f})")
    # Each target as the median over seeds of a per-seed ratio: a seed whose split holds the
    # priciest stones moves every row's RMSE together (and one all-rows model of 3 went unstable
    # in measurement), and a mean of RMSEs or of ratios would let that seed decide.
    rounds_key = next(k for k in table if k.startswith("rounds:"))
    all_rows_key = next(k for k in table if k.startswith("one model, all rows"))

    def ratio(a, b):
        value = float(np.median([r[a] / r[b] for r in runs]))
        print(f"  ratio {a} / {b}: median {value:.3f} (per seed {', '.join(f'{r[a] / r[b]:.3f}' for r in runs)})")
        return value

    single = "single segment model (mean of 10)"
    checks = [
        ("mean ensemble RMSE <= 0.95 x the mean single model's", ratio("ensemble: mean", single) <= 0.95),
        ("stacking (ridge) <= mean ensemble", ratio("ensemble: stacking, ridge", "ensemble: mean") <= 1.0),
        ("shared-init uniform merge <= mean single model",
         ratio("merge: uniform (shared init)", "single segment model, shared init (mean of 10)") <= 1.0),
        ("20 progressive rounds within 5% of one model on all rows, each tuned on val",
         ratio("tuned: rounds (lr, server momentum by val)", "tuned: one model, all rows (lr by val)") <= 1.05),
    ]  # fmt: skip
    ratio(rounds_key, all_rows_key)  # at one lr: shown, not the target (see the docstring)
    ratio("rounds: FedAvgM, server momentum 0.6", all_rows_key)
    for what, ok in checks:
        print(f"target {'met' if ok else 'MISSED'}: {what}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"seeds": args.seeds, "runs": runs, "mean_std": table}, f, indent=2)


if __name__ == "__main__":
    main()
