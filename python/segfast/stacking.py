"""The learned combiners of ``Ensemble(method="stacking")``, fitted on validation rows by L-BFGS.

``weights``: one weight per model on its log-probabilities, softmaxed. ``logistic``: multinomial
logistic regression on all models' probabilities side by side, on a log scale: log(max(p, 1e-6))
(on raw probabilities the fit needed a finely tuned penalty; on logs it was within 0.2 points
for l2 from 1e-3 to 1e-5). Both minimise the mean negative log-likelihood plus ``l2`` times the
squared norm of their weights (the logistic intercept is not penalised). What it is not: the
ensemble (segfast.ensemble runs the models and keeps what is fitted here).

Every function takes the models' probabilities as one (N, n, C) array: N models, n rows, C classes.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from ._lbfgs import minimize

L2_GRID = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)  # what l2="auto" tries, strong to weak, each warm-started


def holdout_cut(n: int) -> int:
    """Where l2="auto" cuts n validation rows (either task): it fits on rows [:cut] and scores on
    the last fifth, [cut:], at least one row."""
    cut = n - max(1, n // 5)
    if cut < 1:
        raise ValueError("l2='auto' needs at least 2 validation rows; pass a number")
    return cut


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (n, C) logits."""
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def log_features(probs: np.ndarray) -> np.ndarray:
    """(N, n, C) probabilities -> (n, N * C) float64 log-probabilities, the logistic combiner's input."""
    n_models, n, C = probs.shape
    return np.log(np.maximum(probs, 1e-6)).transpose(1, 0, 2).reshape(n, n_models * C).astype(np.float64)


def fit_weights(probs: np.ndarray, y: np.ndarray, l2: float, start=None) -> np.ndarray:
    """The (N,) weights of the models' log-probabilities (start: uniform, or ``start``)."""
    log_p = np.log(np.maximum(probs, 1e-30))
    n_models, n, _ = log_p.shape
    rows = np.arange(n)

    def loss_grad(w):
        p = softmax(np.einsum("m,mrc->rc", w, log_p))
        nll = -np.log(np.maximum(p[rows, y], 1e-300)).mean()
        g = p
        g[rows, y] -= 1.0
        grad = np.einsum("mrc,rc->m", log_p, g) / n + 2 * l2 * w
        return nll + l2 * w @ w, grad

    return minimize(loss_grad, np.full(n_models, 1.0 / n_models) if start is None else start)


def weights_logits(theta: np.ndarray, probs: np.ndarray) -> np.ndarray:
    return np.einsum("m,mrc->rc", theta, np.log(np.maximum(probs, 1e-30)))


def fit_logistic(probs: np.ndarray, y: np.ndarray, l2: float, start=None) -> np.ndarray:
    """theta: the (N * C, C) coefficients, raveled, then the (C,) intercept (start: zeros, or
    ``start``); :func:`logistic_parts` splits it."""
    n_models, n, C = probs.shape
    F = log_features(probs)
    rows = np.arange(n)
    size = F.shape[1] * C

    def loss_grad(theta):
        W, b = theta[:size].reshape(F.shape[1], C), theta[size:]
        p = softmax(F @ W + b)
        nll = -np.log(np.maximum(p[rows, y], 1e-300)).mean()
        g = p
        g[rows, y] -= 1.0
        g /= n
        grad = np.concatenate([(F.T @ g + 2 * l2 * W).ravel(), g.sum(axis=0)])
        return nll + l2 * np.sum(W * W), grad

    return minimize(loss_grad, np.zeros(size + C) if start is None else start)


def logistic_parts(theta: np.ndarray, n_models: int, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(coef (N * C, C), intercept (C,)), views of a logistic combiner's theta."""
    size = n_models * n_classes * n_classes
    return theta[:size].reshape(-1, n_classes), theta[size:]


def logistic_logits(theta: np.ndarray, probs: np.ndarray) -> np.ndarray:
    coef, intercept = logistic_parts(theta, probs.shape[0], probs.shape[2])
    return log_features(probs) @ coef + intercept


class Combiner(NamedTuple):
    fit: Callable  # (probs (N, n, C) float64, y (n,), l2, start theta or None) -> theta
    logits: Callable  # (theta, probs (N, n, C)) -> (n, C) combined logits


COMBINERS = {"weights": Combiner(fit_weights, weights_logits), "logistic": Combiner(fit_logistic, logistic_logits)}


def _loss(combiner: Combiner, theta, probs, y) -> float:
    p = softmax(combiner.logits(theta, probs))
    return float(-np.log(np.maximum(p[np.arange(len(y)), y], 1e-300)).mean())


def fit(name: str, probs: np.ndarray, y: np.ndarray, l2) -> tuple[float, np.ndarray]:
    """Fit combiner ``name`` to (N, n, C) float64 probabilities and labels y; returns (the l2
    used, theta). ``l2="auto"`` picks it from :data:`L2_GRID` on the last fifth of the rows,
    fitted on the rest, then refits on all of them from the chosen fit."""
    combiner = COMBINERS[name]
    if l2 == "auto":
        cut = holdout_cut(len(y))
        theta, fits = None, []
        for candidate in L2_GRID:
            theta = combiner.fit(probs[:, :cut], y[:cut], candidate, theta)
            fits.append((_loss(combiner, theta, probs[:, cut:], y[cut:]), candidate, theta))
        _, l2, start = min(fits, key=lambda f: f[0])  # the first of equal losses: the strongest l2
    else:
        l2, start = float(l2), None
    return l2, combiner.fit(probs, y, l2, start)
