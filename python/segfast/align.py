"""align(): permute hidden units so that models line up, without changing what they compute."""
from __future__ import annotations

import numbers

import numpy as np

from . import _core
from ._threads import resolve_n_jobs
from .stack import MLPStack


def _check_stack(stack, name: str = "stack") -> None:
    if not isinstance(stack, MLPStack):
        raise TypeError(f"{name} must be a segfast.MLPStack, got {type(stack).__name__}")


def align(stack: MLPStack, reference=0, *, rounds: int = 10, n_jobs: int = -1) -> MLPStack:
    """A copy of ``stack`` whose hidden units are permuted to match a reference (weight matching).

    ``reference`` is a model index or a one-model stack of the same architecture. With an index,
    every model is first matched to that model, then (up to ``rounds`` times) every other model
    is matched to the mean of the rest until no assignment changes: the "merge many" scheme,
    with the reference kept fixed as the anchor. With a one-model stack, every model is matched
    to it. Each match is coordinate descent over the hidden layers, each step a linear
    assignment on unit similarities (incoming weights, bias, outgoing weights), all in C++.
    The input is untouched; every model of the result computes exactly the same function.
    The permutations are in ``result.permutations`` ((N, hidden units), original unit indices).
    """
    _check_stack(stack)
    if isinstance(rounds, bool) or not isinstance(rounds, numbers.Integral) or rounds < 0:
        raise ValueError(f"rounds must be an integer >= 0, got {rounds!r}")
    threads = resolve_n_jobs(n_jobs)
    if isinstance(reference, MLPStack):
        if reference.dims != stack.dims:
            raise ValueError(f"reference has dims {list(reference.dims)} but the stack has {list(stack.dims)}")
        if reference.n_models != 1:
            raise ValueError(f"reference must be a one-model stack, got {reference.n_models} models")
        params = np.concatenate([reference.params, stack.params])
        perms, _ = _core.align_stack(list(stack.dims), params, 0, 0, threads)
        out = MLPStack.from_params(stack.dims, params[1:], stack.diverged)
        out.permutations = perms[1:]
        return out
    if isinstance(reference, bool) or not isinstance(reference, numbers.Integral):
        raise TypeError(f"reference must be a model index or a one-model MLPStack, got {reference!r}")
    if not -stack.n_models <= reference < stack.n_models:
        raise ValueError(f"reference {reference} is not a model index of a stack of {stack.n_models}")
    out = stack.copy()
    out.permutations, out.align_rounds = _core.align_stack(
        list(stack.dims), out.params, int(reference) % stack.n_models, int(rounds), threads)
    return out
