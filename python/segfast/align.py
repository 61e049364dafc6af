"""align(): permute hidden units so that models line up, without changing what they compute."""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from . import _core
from ._threads import resolve_n_jobs
from ._validate import check_stack, integer
from .stack import MLPStack


def align(stack: MLPStack, reference=0, *, max_iter: int = 10, n_jobs: int = -1, rounds=None) -> MLPStack:
    """A copy of ``stack`` whose hidden units are permuted to match a reference (weight matching).

    ``reference`` is a model index or a one-model stack of the same architecture. With an index,
    every model is first matched to that model, then (up to ``max_iter`` times) every other model
    is matched to the mean of the rest until no assignment changes: the "merge many" scheme,
    with the reference kept fixed as the anchor. With a one-model stack, every model is matched
    to it. Each match is coordinate descent over the hidden layers, each step a linear
    assignment on unit similarities (incoming weights, bias, outgoing weights), all in C++.
    The input is untouched; every model of the result computes exactly the same function.
    The permutations are in ``result.permutations`` ((N, hidden units), original unit indices),
    the passes made in ``result.align_iterations``. ``rounds=`` is the deprecated name of
    ``max_iter`` (a "round" is segfast.rounds' unit of federated training).
    """
    check_stack(stack)
    if rounds is not None:
        warnings.warn("align(): rounds= is deprecated and will be removed; use max_iter=", FutureWarning, stacklevel=2)
        max_iter = rounds
    max_iter = integer(max_iter, "max_iter", 0, 2**31 - 1)
    threads = resolve_n_jobs(n_jobs)
    if isinstance(reference, MLPStack):
        if reference.dims != stack.dims:
            raise ValueError(f"reference has dims {list(reference.dims)} but the stack has {list(stack.dims)}")
        if reference.n_models != 1:
            raise ValueError(f"reference must be a one-model stack, got {reference.n_models} models")
        params = np.concatenate([reference.params, stack.params])
        perms, _ = _align_stack(stack.dims, params, 0, 0, threads)
        out = stack.like(params[1:], stack.diverged)
        out.permutations = perms[1:]
        return out
    if isinstance(reference, bool) or not isinstance(reference, numbers.Integral):
        raise TypeError(f"reference must be a model index or a one-model MLPStack, got {reference!r}")
    if not -stack.n_models <= int(reference) < stack.n_models:
        raise ValueError(f"reference {reference} is not a model index of a stack of {stack.n_models}")
    out = stack.copy()
    out.permutations, out.align_iterations = _align_stack(
        stack.dims, out.params, int(reference) % stack.n_models, max_iter, threads
    )
    return out


# Unit similarities are float32 sums of products of weights: weights up to 2^40 keep them finite
# (2^80 a product, 2^100 for a million of them, under float32's 2^128).
_SCORE_LIMIT = 2.0**40


def _align_stack(dims, params: np.ndarray, reference: int, max_iter: int, threads: int):
    """_core.align_stack in place on params (N, P), for any finite parameters: where the
    weights are so large that the similarities would overflow, the assignments are found on a
    copy scaled by a power of two (which scales every similarity alike and so changes no
    assignment) and the permutations then applied to params themselves, exactly."""
    if not np.isfinite(params).all():
        raise ValueError("the stack's parameters must be finite (NaN or inf found)")
    top = float(np.abs(params).max(initial=0.0))
    if top <= _SCORE_LIMIT:
        return _core.align_stack(list(dims), params, reference, max_iter, threads)
    scaled = params * np.float32(2.0 ** (math.floor(math.log2(_SCORE_LIMIT)) - math.ceil(math.log2(top))))
    perms, done = _core.align_stack(list(dims), scaled, reference, max_iter, threads)
    params[:] = permute_units(dims, params, perms)
    return perms, done


def permute_units(dims, params: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """params (N, P) with each hidden layer's units reordered: perms (N, hidden units), the
    layers one after another, perms[m, off + i] the original index of the unit that goes to
    position i (what align records). Incoming weights, bias and outgoing weights move together."""
    n = params.shape[0]
    out = np.empty_like(params)
    rows = np.arange(n)[:, None]
    off = unit = 0
    before = None  # the permutation of this layer's inputs (None: the data's features)
    for layer, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        w = params[:, off : off + a * b].reshape(n, a, b)
        bias = params[:, off + a * b : off + a * b + b]
        now = perms[:, unit : unit + b].astype(np.intp) if layer < len(dims) - 2 else None
        if before is not None:
            w = w[rows, before, :]
        if now is not None:
            w = np.take_along_axis(w, now[:, None, :], axis=2)
            bias = np.take_along_axis(bias, now, axis=1)
            unit += b
        out[:, off : off + a * b] = w.reshape(n, -1)
        out[:, off + a * b : off + a * b + b] = bias
        off += a * b + b
        before = now
    return out
