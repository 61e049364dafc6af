"""Learned merge coefficients, fitted to the validation rows: one per model and layer, or one per
model and unit (each output unit of every layer: its column of weights and its bias).

Layer l of the merged model is sum_i a[l][i] * layer l of model i, with a[l] (N, 1) or (N, units)
the softmax over the models of theta[l] (so still an average: non-negative, summing to one for
each unit). theta starts at zero (the uniform merge) and minimises the merged model's mean
validation loss by L-BFGS, with the exact gradient: the C++ core's backward pass gives
dLoss/dparams of the merged model, and the chain rule through the sum and the softmax gives
dLoss/dtheta[l][i, j] = a[i, j] * (g[i, j] - sum_k a[k, j] g[k, j]), where g[i, j] is the inner
product of dLoss/d(unit j of layer l) with model i's unit j (summed over j per layer).

What it is not: the choice to keep it (merge()'s threshold=), nor the other merges.
"""

from __future__ import annotations

import numpy as np

from . import _core
from ._lbfgs import minimize
from .stack import MLPStack

GRANULARITY = ("layer", "unit")
MAX_ITER = 100  # L-BFGS iterations: more moved no validation score in 3 seeds


def _softmax_models(theta: np.ndarray) -> np.ndarray:
    """Softmax over the models (axis 0) of each column."""
    e = np.exp(theta - theta.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def coefficient_shapes(stack: MLPStack, per: str) -> list:
    """theta's shape for each layer: (N, 1) per layer, (N, units) per unit."""
    return [(stack.n_models, 1 if per == "layer" else width) for width in stack.dims[1:]]


def coefficients_of(stack: MLPStack, theta: np.ndarray, per: str) -> list:
    """The flat theta as each layer's (N, 1 or units) coefficients."""
    out, start = [], 0
    for shape in coefficient_shapes(stack, per):
        size = shape[0] * shape[1]
        out.append(_softmax_models(theta[start : start + size].reshape(shape)))
        start += size
    return out


def merged_row(stack: MLPStack, coefficients: list) -> np.ndarray:
    """(P,) float32: each unit of each layer the coefficients' average of the models' units."""
    parts = []
    for layer, a in enumerate(coefficients):
        W = stack.weights(layer).astype(np.float64)  # (N, d_in, d_out)
        b = stack.biases(layer).astype(np.float64)  # (N, d_out)
        parts += [np.einsum("ij,irj->rj", np.broadcast_to(a, b.shape), W).ravel(), (a * b).sum(axis=0)]
    return np.concatenate(parts).astype(np.float32)


def loss_and_gradient(stack: MLPStack, theta: np.ndarray, val, threads: int, per: str = "layer"):
    """The merged model's mean validation loss at the flat theta, and its gradient (flat)."""
    X, y = val
    coefficients = coefficients_of(stack, theta, per)
    loss_name = "mse" if stack.is_regression else "cross_entropy"
    loss, grad = _core.loss_gradient(list(stack.dims), merged_row(stack, coefficients), X, y, threads, loss=loss_name)
    out, start = [], 0
    for layer, (a, d_in, d_out) in enumerate(zip(coefficients, stack.dims[:-1], stack.dims[1:])):
        grad_W = grad[start : start + d_in * d_out].reshape(d_in, d_out)
        grad_b = grad[start + d_in * d_out : start + d_in * d_out + d_out]
        start += d_in * d_out + d_out
        W, b = stack.weights(layer), stack.biases(layer)
        g = np.einsum("rj,irj->ij", grad_W, W) + grad_b * b  # (N, d_out): d loss / d a per unit
        g = g.sum(axis=1, keepdims=True) if a.shape[1] == 1 else g
        out.append((a * (g - (a * g).sum(axis=0, keepdims=True))).ravel())
    return float(loss), np.concatenate(out)


def fit_coefficients(stack: MLPStack, val, threads: int, per: str = "layer", max_iter: int = MAX_ITER) -> list:
    """Each layer's (N, 1 or units) coefficients minimising the merged model's validation loss,
    from the uniform merge."""
    size = sum(n * m for n, m in coefficient_shapes(stack, per))

    def fun_grad(theta):
        loss, grad = loss_and_gradient(stack, theta, val, threads, per)
        if not np.isfinite(loss):  # a merge that blows up: L-BFGS backtracks from it
            return np.inf, np.zeros_like(theta)
        return loss, grad

    return coefficients_of(stack, minimize(fun_grad, np.zeros(size), max_iter=max_iter, gtol=1e-7), per)
