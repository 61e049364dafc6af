"""The grammar: each case is one public call with one argument replaced by a hostile value
(wrong type, wrong shape, non-finite, huge, empty, out of range), the others valid. A case is
plain data (its entry point, the argument it attacks and the seed that draws the value), so a
worker process can rebuild and rerun it alone.

What a case may do: return, or raise ValueError / TypeError (segfast's NotFittedError is a
ValueError), or MemoryError for a request larger than the machine (numpy's says how large).
Anything else is a finding: another exception type, a signal, a hang."""

from __future__ import annotations

import numpy as np

N_ROWS, N_FEATURES, N_CLASSES, N_MODELS = 60, 8, 3, 4


def hostile_scalars(rng):
    """Values for an int or float argument: each once a valid-looking, once a poisonous one."""
    return [
        0,
        -1,
        1,
        2,
        7,
        2**31,
        2**31 - 1,
        2**63,
        -(2**63),
        2**200,
        True,
        False,
        np.int64(3),
        np.uint8(255),
        3.5,
        -0.0,
        1e-320,
        1e308,
        -1e308,
        float("nan"),
        float("inf"),
        float("-inf"),
        np.float32(0.5),
        None,
        "3",
        b"x",
        [1],
        (2,),
        {},
        1j,
        np.array(2),
        np.array([1, 2]),
        object(),
        int(rng.integers(-5, 50)),
        float(rng.normal() * 10),
    ]


def hostile_arrays(rng, rows, cols):
    """Values for X-like arguments."""
    good = rng.standard_normal((rows, cols)).astype(np.float32)
    nan = good.copy()
    nan[rows // 2, cols // 2] = np.nan
    return [
        good,
        good[:0],
        good[:, :0],
        good[:, : cols - 1],
        np.hstack([good, good]),
        good[0],
        good[None],
        nan,
        good * np.float32(np.inf),
        good * np.float32(1e30),
        good.astype(np.float64) * 1e300,
        np.asfortranarray(good),
        good[::-1],
        good.astype(">f4"),
        good.astype(np.int64),
        good > 0,
        good.astype(np.complex64),
        good.astype(str),
        good.astype(object),
        good.tolist(),
        None,
        "X",
        3.0,
        np.zeros((rows, cols), dtype=np.float16),
        np.empty((0, 0)),
    ]


def hostile_labels(rng, rows):
    good = rng.integers(0, N_CLASSES, rows)
    return [
        good,
        good[:-1],
        good[:, None],
        -good - 1,
        good + N_CLASSES,
        good.astype(np.float64),
        good.astype(np.float64) + 0.5,
        good.astype(bool),
        good.astype(np.uint64),
        good.astype(str),
        None,
        np.full(rows, 2**62),
        good.tolist(),
        np.full(rows, np.nan),
    ]


def hostile_segments(rng, rows):
    from segfast import Segments

    order = rng.permutation(rows)
    return [
        Segments(order, np.array([0, 15, 30, 45, rows])),
        [order[:10], order[10:]],
        [np.array([rows + 5])],
        [np.array([-1, 2])],
        [np.array([], dtype=int)] * 4,
        [order[:2]] * N_MODELS,
        [order.astype(np.float64)[:20]] * N_MODELS,
        None,
        "iid",
        4,
        np.arange(rows),
        [order[:15], order[15:30], order[30:45], order[45:]],
        [[1, 2, 3]] * N_MODELS,
        [np.array([2**62])] * 4,
    ]


def hostile_dims(rng):
    return [
        [N_FEATURES, 5, N_CLASSES],
        [N_FEATURES, N_CLASSES],
        [],
        [N_FEATURES],
        [0, 3],
        [N_FEATURES, -1, 3],
        [N_FEATURES, 2**31, N_CLASSES],
        [2**31 - 1] * 6,
        [N_FEATURES, 5.5, N_CLASSES],
        "8,5,3",
        None,
        [N_FEATURES, True, N_CLASSES],
        [N_FEATURES, 5, 1],
        [N_FEATURES, 2**24, 2**24, N_CLASSES],
        np.array([N_FEATURES, 4, N_CLASSES]),
        [N_FEATURES, 5, 2**20],
    ]


def hostile_stacks(rng):
    from segfast import MLPStack

    good = MLPStack([N_FEATURES, 5, N_CLASSES], N_MODELS, init="independent", seed=1)
    nan = good.copy()
    nan.params[1, 3] = np.nan
    big = MLPStack.from_params(good.dims, good.params * np.float32(1e20))
    wrong = MLPStack([N_FEATURES + 1, 5, N_CLASSES], N_MODELS, seed=1)
    return [
        good,
        good[0],
        nan,
        big,
        wrong,
        None,
        good.params,
        "stack",
        MLPStack([N_FEATURES, 5, N_CLASSES + 2], 2, seed=2),
    ]


# entry point -> (its arguments and their hostile families, the call)
def _call(name, args):
    import segfast

    X, y, seg, stack = args["X"], args["y"], args["segments"], args["stack"]
    if name == "MLPStack":
        return segfast.MLPStack(args["dims"], args["n_models"], init=args["init"], seed=args["seed"])
    if name == "train":
        return segfast.train(
            stack,
            X,
            y,
            seg,
            epochs=args["epochs"],
            batch_size=args["batch_size"],
            lr=args["lr"],
            momentum=args["momentum"],
            weight_decay=args["weight_decay"],
            seed=args["seed"],
            n_jobs=args["n_jobs"],
            proximal_mu=args["proximal_mu"],
            start_epoch=args["start_epoch"],
        )
    if name == "predict_proba":
        return segfast.predict_proba(stack, X, n_jobs=args["n_jobs"])
    if name == "evaluate":
        return segfast.evaluate(stack, X, y, n_jobs=args["n_jobs"])
    if name == "merge":
        return segfast.merge(
            stack,
            args["method"],
            weights=args["weights"],
            val=(X, y),
            align=args["align"],
            temperature=args["temperature"],
            trim=args["trim"],
            k=args["k"],
            margin=args["margin"],
            seed=args["seed"],
            n_jobs=args["n_jobs"],
        )
    if name == "align":
        return segfast.align(stack, args["reference"], rounds=args["rounds"], n_jobs=args["n_jobs"])
    if name == "cluster":
        return segfast.cluster(
            stack, k=args["k"], seed=args["seed"], k_max=args["k_max"], max_iter=args["max_iter"], n_jobs=args["n_jobs"]
        )
    if name == "segment":
        return segfast.segment(
            y, args["n_segments"], args["scheme"], alpha=args["alpha"], seed=args["seed"], min_size=args["min_size"]
        )
    if name == "Ensemble":
        ens = segfast.Ensemble(stack, args["method_e"], weights=args["weights"], k=args["k"], n_jobs=args["n_jobs"])
        return ens.fit(X, y).predict_proba(X)
    if name == "rounds":
        return segfast.rounds(
            args["dims"],
            X,
            y,
            seg,
            rounds=args["rounds"],
            local_epochs=args["epochs"],
            fraction=args["fraction"],
            server_lr=args["lr"],
            server_momentum=args["momentum"],
            seed=args["seed"],
            n_jobs=args["n_jobs"],
            progress=False,
            val_segments=False,
        )
    raise KeyError(name)


ENTRY_POINTS = {
    "MLPStack": ["dims", "n_models", "init", "seed"],
    "train": [
        "stack",
        "X",
        "y",
        "segments",
        "epochs",
        "batch_size",
        "lr",
        "momentum",
        "weight_decay",
        "seed",
        "n_jobs",
        "proximal_mu",
        "start_epoch",
    ],
    "predict_proba": ["stack", "X", "n_jobs"],
    "evaluate": ["stack", "X", "y", "n_jobs"],
    "merge": ["stack", "method", "weights", "X", "y", "align", "temperature", "trim", "k", "margin", "seed", "n_jobs"],
    "align": ["stack", "reference", "rounds", "n_jobs"],
    "cluster": ["stack", "k", "seed", "k_max", "max_iter", "n_jobs"],
    "segment": ["y", "n_segments", "scheme", "alpha", "seed", "min_size"],
    "Ensemble": ["stack", "method_e", "weights", "X", "y", "k", "n_jobs"],
    "rounds": ["dims", "X", "y", "segments", "rounds", "epochs", "fraction", "lr", "momentum", "seed", "n_jobs"],
}


def _valid(rng):
    import segfast

    X = rng.standard_normal((N_ROWS, N_FEATURES)).astype(np.float32)
    y = rng.integers(0, N_CLASSES, N_ROWS)
    return {
        "X": X,
        "y": y,
        "segments": segfast.segment(y, N_MODELS, seed=0),
        "stack": segfast.MLPStack([N_FEATURES, 5, N_CLASSES], N_MODELS, init="independent", seed=1),
        "dims": [N_FEATURES, 5, N_CLASSES],
        "n_models": N_MODELS,
        "init": "independent",
        "seed": 0,
        "epochs": 1,
        "batch_size": 8,
        "lr": 0.05,
        "momentum": 0.0,
        "weight_decay": 0.0,
        "n_jobs": 1,
        "proximal_mu": 0.0,
        "start_epoch": 0,
        "method": "uniform",
        "weights": None,
        "align": False,
        "temperature": 1.0,
        "trim": 0.1,
        "k": 2,
        "margin": 0.1,
        "reference": 0,
        "rounds": 2,
        "k_max": 3,
        "max_iter": 20,
        "n_segments": 3,
        "scheme": "iid",
        "alpha": 0.5,
        "min_size": 1,
        "method_e": "soft",
        "fraction": 1.0,
    }


def _hostile(arg, rng):
    if arg == "X":
        return hostile_arrays(rng, N_ROWS, N_FEATURES)
    if arg == "y":
        return hostile_labels(rng, N_ROWS)
    if arg == "segments":
        return hostile_segments(rng, N_ROWS)
    if arg == "dims":
        return hostile_dims(rng)
    if arg == "stack":
        return hostile_stacks(rng)
    if arg == "init":
        return ["shared", "independent", "zeros", "", None, 3]
    if arg == "method":
        return [
            "uniform",
            "weighted",
            "loss",
            "rank",
            "greedy",
            "median",
            "trimmed",
            "cluster-best",
            "cluster-merge",
            "nope",
            None,
            1,
        ]
    if arg == "method_e":
        return ["soft", "hard", "weighted", "stacking", "competence", "vote", None, 2]
    if arg == "scheme":
        return ["iid", "dirichlet", "by_label", "contiguous", "x", None, 0]
    if arg == "weights":
        return [
            None,
            np.ones(N_MODELS),
            np.full(N_MODELS, 1e308),
            -np.ones(N_MODELS),
            np.zeros(N_MODELS),
            np.full(N_MODELS, np.nan),
            np.ones(N_MODELS + 1),
            [1, 2],
            "w",
            np.ones((N_MODELS, 1)),
        ]
    if arg == "align":
        return [True, False, None, "yes", 2]
    return hostile_scalars(rng)


def make_case(seed: int):
    """Case `seed`: (entry point, attacked argument, index of the hostile value)."""
    rng = np.random.default_rng(seed)
    names = sorted(ENTRY_POINTS)
    name = names[int(rng.integers(len(names)))]
    arg = ENTRY_POINTS[name][int(rng.integers(len(ENTRY_POINTS[name])))]
    pick = int(rng.integers(1 << 30))
    return name, arg, pick


def run_case(seed: int):
    """Run case `seed` here. Returns (name, arg, value repr, outcome, message): outcome is
    "ok", "rejected" (ValueError/TypeError) or "unexpected" (another exception)."""
    import warnings

    name, arg, pick = make_case(seed)
    rng = np.random.default_rng(seed)
    args = _valid(rng)
    values = _hostile(arg, rng)
    value = values[pick % len(values)]
    args[arg] = value
    shown = repr(value)
    shown = shown if len(shown) < 80 else shown[:77] + "..."
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _call(name, args)
        return name, arg, shown, "ok", ""
    except (ValueError, TypeError, MemoryError) as e:
        return name, arg, shown, "rejected", f"{type(e).__name__}: {e}"[:300]
    except Exception as e:  # noqa: BLE001 - a finding, reported
        return name, arg, shown, "unexpected", f"{type(e).__name__}: {e}"[:300]
