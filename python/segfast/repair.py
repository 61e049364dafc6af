"""REPAIR-style renormalisation of a merged model.

Averaging models shrinks the spread of each hidden unit's pre-activation (the merged weights
come out scaled down). REPAIR measures, on calibration rows, each unit's mean
and standard deviation in the source models and in the merged one, and folds an affine
correction into the merged weights so that every unit gets back the (weighted) average of the
sources' statistics. The result is a plain MLP again.
"""

from __future__ import annotations

import numpy as np

from . import _core
from .stack import MLPStack


def repair(merged: MLPStack, sources: MLPStack, X_calib: np.ndarray, weights, n_jobs: int) -> MLPStack:
    """Renormalise the one-model ``merged`` against the (aligned) ``sources``, in a copy
    (n_jobs: threads, already resolved: >= 1). weights: the merge's (N,) weights, or a learned
    merge's coefficients, one (N, 1 or units) array per layer: each hidden unit's target
    statistics weigh the sources as that unit's merge did."""
    dims = list(merged.dims)
    mean, std = _core.preactivation_stats(dims, sources.params, X_calib, n_jobs)
    out = merged.copy()
    offset = 0
    for layer in range(merged.n_layers - 1):
        # Layer by layer: correcting layer l changes what every later layer sees.
        width = dims[layer + 1]
        m, s = _core.preactivation_stats(dims, out.params, X_calib, n_jobs)
        m, s = m[0, offset : offset + width], s[0, offset : offset + width]
        units = slice(offset, offset + width)
        if isinstance(weights, list):  # a learned merge's (N, 1 or width) coefficients of this layer
            t_mean, t_std = (weights[layer] * mean[:, units]).sum(axis=0), (weights[layer] * std[:, units]).sum(axis=0)
        else:
            t_mean, t_std = weights @ mean[:, units], weights @ std[:, units]
        # Dead units (no spread) keep their weights: there is nothing to rescale.
        scale = np.where(s > 1e-8, t_std / np.maximum(s, 1e-8), 1.0)
        shift = np.where(s > 1e-8, t_mean - m * scale, 0.0)
        W, b = out.weights(layer), out.biases(layer)
        W[0] *= scale.astype(np.float32)
        b[0] = (b[0] * scale + shift).astype(np.float32)
        offset += width
    return out
