"""MLPStack: N MLPs of one architecture stored as ONE (N, P) float32 array.

Row i is model i: W0 (d0, d1), b0 (d1,), W1 (d1, d2), b1 (d2,), ... with weights stored
input-major, so ``x @ W + b`` is a layer. Per-layer views are carved out of that array, never
copied: averaging models is a reduction over rows, clustering sees a model as a row.
"""
from __future__ import annotations

import numbers
from pathlib import Path

import numpy as np

from . import _core

_FORMAT = "segfast.MLPStack/1"


def _check_dims(dims) -> tuple[int, ...]:
    try:
        dims = tuple(dims)
    except TypeError:
        raise TypeError(f"dims must be a sequence of layer widths like [784, 128, 10], got {dims!r}") from None
    if len(dims) < 2:
        raise ValueError(f"dims needs at least an input and an output width, got {list(dims)}")
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 1:
            raise ValueError(f"every width in dims must be an integer >= 1, got {list(dims)}")
    if dims[-1] < 2:
        raise ValueError(f"the output width (classes) must be >= 2, got {dims[-1]}")
    return tuple(int(d) for d in dims)


class MLPStack:
    """N ReLU MLPs with the same layer widths ``dims``, e.g. ``MLPStack([784, 128, 10], 10)``.

    ``init="independent"`` draws each model's start on its own; ``init="shared"`` gives every
    model the same start (the design notes' "same starting point"). Both use PyTorch's default
    for ``nn.Linear``: weights and biases uniform in +-1/sqrt(fan_in). Model i's draw depends
    only on (seed, i), so a stack of 10 begins with the same models as the first 10 of 100.
    """

    def __init__(self, dims, n_models: int = 1, init: str = "independent", seed: int = 0):
        self.dims = _check_dims(dims)
        if isinstance(n_models, bool) or not isinstance(n_models, numbers.Integral) or n_models < 1:
            raise ValueError(f"n_models must be an integer >= 1, got {n_models!r}")
        if init not in ("independent", "shared"):
            raise ValueError(f"init must be 'independent' or 'shared', got {init!r}")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        self.params = np.empty((int(n_models), self.n_params), dtype=np.float32)
        self.diverged = np.zeros(int(n_models), dtype=bool)
        for i in range(int(n_models)):
            if init == "shared" and i > 0:
                self.params[i] = self.params[0]
            else:
                self.params[i] = self._initial_row(np.random.default_rng([int(seed), i]))

    def _initial_row(self, rng: np.random.Generator) -> np.ndarray:
        row = np.empty(self.n_params, dtype=np.float32)
        offset = 0
        for d_in, d_out in zip(self.dims[:-1], self.dims[1:]):
            bound = 1.0 / np.sqrt(d_in)
            size = d_in * d_out + d_out
            row[offset:offset + size] = rng.uniform(-bound, bound, size)
            offset += size
        return row

    @classmethod
    def from_params(cls, dims, params, diverged=None) -> "MLPStack":
        """A stack around existing parameters (copied into a fresh C-contiguous float32 array)."""
        dims = _check_dims(dims)
        params = np.array(params, dtype=np.float32, order="C", copy=True)
        n_params = _core.n_params(list(dims))
        if params.ndim == 1:
            params = params[None, :]
        if params.ndim != 2 or params.shape[1] != n_params or params.shape[0] < 1:
            raise ValueError(f"params must have shape (n_models, {n_params}) for dims {list(dims)}, "
                             f"got {params.shape}")
        stack = cls.__new__(cls)
        stack.dims = dims
        stack.params = params
        stack.diverged = (np.zeros(len(params), dtype=bool) if diverged is None
                          else np.array(diverged, dtype=bool).reshape(len(params)))
        return stack

    # -- shape -------------------------------------------------------------------------------
    @property
    def n_models(self) -> int:
        return self.params.shape[0]

    @property
    def n_params(self) -> int:
        return _core.n_params(list(self.dims))

    @property
    def n_layers(self) -> int:
        return len(self.dims) - 1

    @property
    def n_features(self) -> int:
        return self.dims[0]

    @property
    def n_classes(self) -> int:
        return self.dims[-1]

    def __len__(self) -> int:
        return self.n_models

    def __repr__(self) -> str:
        return f"MLPStack(dims={list(self.dims)}, n_models={self.n_models}, n_params={self.n_params})"

    # -- per-layer views ----------------------------------------------------------------------
    def _offsets(self, layer: int) -> tuple[int, int, int, int]:
        if isinstance(layer, bool) or not isinstance(layer, numbers.Integral):
            raise TypeError(f"layer must be an int, got {layer!r}")
        if not -self.n_layers <= layer < self.n_layers:
            raise IndexError(f"layer {layer} out of range for {self.n_layers} layers")
        layer %= self.n_layers
        offset = sum(a * b + b for a, b in zip(self.dims[:layer], self.dims[1:layer + 1]))
        return offset, self.dims[layer], self.dims[layer + 1], offset + self.dims[layer] * self.dims[layer + 1]

    def weights(self, layer: int) -> np.ndarray:
        """Layer ``layer``'s weights of every model, a (N, d_in, d_out) view into ``params``."""
        w0, d_in, d_out, _ = self._offsets(layer)
        return self.params[:, w0:w0 + d_in * d_out].reshape(self.n_models, d_in, d_out)

    def biases(self, layer: int) -> np.ndarray:
        """Layer ``layer``'s biases of every model, a (N, d_out) view into ``params``."""
        _, _, d_out, b0 = self._offsets(layer)
        return self.params[:, b0:b0 + d_out]

    # -- sub-stacks ---------------------------------------------------------------------------
    def select(self, indices) -> "MLPStack":
        """A new stack (own copy of the parameters) of the models at ``indices``."""
        idx = np.arange(self.n_models)[indices]
        idx = np.atleast_1d(idx)
        if idx.size == 0:
            raise ValueError("select() needs at least one model index")
        return MLPStack.from_params(self.dims, self.params[idx], self.diverged[idx])

    def __getitem__(self, index) -> "MLPStack":
        if isinstance(index, numbers.Integral) and not isinstance(index, bool):
            if not -self.n_models <= index < self.n_models:
                raise IndexError(f"model {index} out of range for a stack of {self.n_models}")
            return self.select([int(index)])
        return self.select(index)

    def copy(self) -> "MLPStack":
        return MLPStack.from_params(self.dims, self.params, self.diverged)

    # -- files --------------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write the stack to an .npz file (plain arrays, no pickle: loading runs no code).

        The file is written beside the target and renamed into place, so an existing file is
        never left half-written.
        """
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, format=np.array(_FORMAT), dims=np.array(self.dims, dtype=np.int64),
                     params=self.params, diverged=self.diverged)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path) -> "MLPStack":
        """Read a stack written by :meth:`save` (refuses pickled content)."""
        with np.load(path, allow_pickle=False) as f:
            if "format" not in f.files or str(f["format"]) != _FORMAT:
                raise ValueError(f"{path} is not a segfast MLPStack file (format {_FORMAT})")
            return cls.from_params(f["dims"].tolist(), f["params"], f["diverged"])

    # -- PyTorch-style state dicts --------------------------------------------------------------
    def state_dict(self, model: int = 0) -> dict[str, np.ndarray]:
        """Model ``model`` as the state dict of ``nn.Sequential(Linear, ReLU, Linear, ...)``:
        keys ``0.weight`` (d1, d0), ``0.bias``, ``2.weight``, ... as numpy arrays (copies)."""
        if not -self.n_models <= model < self.n_models:
            raise IndexError(f"model {model} out of range for a stack of {self.n_models}")
        out = {}
        for layer in range(self.n_layers):
            out[f"{2 * layer}.weight"] = self.weights(layer)[model].T.copy()
            out[f"{2 * layer}.bias"] = self.biases(layer)[model].copy()
        return out

    @classmethod
    def from_state_dict(cls, state: dict) -> "MLPStack":
        """A one-model stack from a state dict of ``nn.Sequential(Linear, ReLU, ...)``
        (numpy arrays or tensors; keys as :meth:`state_dict` writes them)."""
        def array(key):
            if key not in state:
                raise ValueError(f"state dict has no entry {key!r} (keys: {sorted(state)})")
            value = state[key]
            if hasattr(value, "detach"):
                value = value.detach().cpu().numpy()
            return np.asarray(value, dtype=np.float32)

        layers = sorted({int(k.split(".")[0]) for k in state if k.endswith(".weight")})
        if not layers or layers != list(range(0, 2 * len(layers), 2)):
            raise ValueError(f"expected Linear layers at indices 0, 2, 4, ...; got keys {sorted(state)}")
        weights = [array(f"{i}.weight") for i in layers]
        biases = [array(f"{i}.bias") for i in layers]
        dims = [weights[0].shape[1]] + [w.shape[0] for w in weights]
        for i, (w, b) in enumerate(zip(weights, biases)):
            if w.ndim != 2 or w.shape != (dims[i + 1], dims[i]) or b.shape != (dims[i + 1],):
                raise ValueError(f"layer {2 * i}: weight {w.shape} / bias {b.shape} do not chain "
                                 f"with the widths {dims}")
        row = np.concatenate([np.concatenate([w.T.ravel(), b]) for w, b in zip(weights, biases)])
        return cls.from_params(dims, row[None, :])
