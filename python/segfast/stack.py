"""MLPStack: N MLPs of one architecture stored as ONE (N, P) float32 array.

Row i is model i: W0 (d0, d1), b0 (d1,), W1 (d1, d2), b1 (d2,), ... with weights stored
input-major, so ``x @ W + b`` is a layer. Per-layer views are carved out of that array, never
copied: averaging models is a reduction over rows, clustering sees a model as a row.
"""

from __future__ import annotations

import numbers
import os
import secrets
import stat
from pathlib import Path

import numpy as np

from . import _core, _validate
from ._validate import as_index, integer, npz_array, npz_header, npz_open

_FORMAT = "segfast.MLPStack/1"
# What the output layer means: class logits (softmax cross-entropy) or k real values (regression).
TASKS = ("classification", "regression")
# More parameters per model than this (4 TiB of float32) is a forged or mistyped architecture;
# the C++ side keeps widths in ints and counts in size_t, both far from this.
_MAX_PARAMS = 2**40
_MAX_WIDTH = 2**31 - 1


def check_task(task) -> str:
    if not isinstance(task, str) or task not in TASKS:
        raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
    return task


def _check_dims(dims, task: str = "classification") -> tuple[int, ...]:
    try:
        dims = tuple(dims)
    except TypeError:
        raise TypeError(f"dims must be a sequence of layer widths like [784, 128, 10], got {dims!r}") from None
    if len(dims) < 2:
        raise ValueError(f"dims needs at least an input and an output width, got {list(dims)}")
    try:
        widths = tuple(integer(d, "dims", minimum=1) for d in dims)
    except ValueError:
        raise ValueError(f"every width in dims must be an integer >= 1, got {list(dims)}") from None
    if max(widths) > _MAX_WIDTH:
        raise ValueError(f"every width in dims must be <= {_MAX_WIDTH}, got {list(dims)}")
    if widths[-1] < 2 and task == "classification":
        raise ValueError(f"the output width (classes) must be >= 2, got {widths[-1]} (task='regression' allows 1)")
    dims = widths
    count = _param_count(dims)
    if count > _MAX_PARAMS:
        raise ValueError(
            f"dims {list(dims)} give {count} parameters per model, more than 2**40: a mistyped or forged architecture"
        )
    return dims


def _param_count(dims: tuple[int, ...]) -> int:
    """Parameters per model, in Python ints: widths from a file cannot wrap the count."""
    return sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))


def _check_save_path(path: Path) -> None:
    """Where save may write: an absent name or a regular file, in an existing folder. Anything
    else (a directory, a device, a pipe) would be written beside or through, not replaced."""
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        raise ValueError(f"path {path} exists and is not a regular file; save needs a file name")
    if not path.parent.is_dir():
        raise ValueError(f"path {path}: its folder {path.parent} does not exist (or is not a folder)")


def _check_params(params, n_params: int, dims) -> np.ndarray:
    """params as a fresh C-contiguous float32 (n_models, n_params) array. Only real numbers
    convert: complex would lose its imaginary part, strings and bools are not parameters."""
    params = np.asarray(params)
    if params.dtype.kind not in "fiu":  # not b (bool), c, O, U, S, V
        raise TypeError(f"params must be a real floating or integer array, got dtype {params.dtype}")
    if params.ndim == 1:
        params = params[None, :]
    if params.ndim != 2 or params.shape[1] != n_params or params.shape[0] < 1:
        raise ValueError(f"params must have shape (n_models, {n_params}) for dims {list(dims)}, got {params.shape}")
    return np.array(params, dtype=np.float32, order="C", copy=True)  # checked first: no copy of a wrong one


def _check_diverged(diverged, n_models: int) -> np.ndarray:
    """diverged as a fresh (n_models,) bool array: merge reads one flag per model, so a short or
    numeric one would silently mark the wrong models."""
    if diverged is None:
        return np.zeros(n_models, dtype=bool)
    diverged = np.asarray(diverged)
    if diverged.dtype != bool:
        raise TypeError(f"diverged must be a bool array, got dtype {diverged.dtype}")
    if diverged.shape != (n_models,):
        raise ValueError(f"diverged must have shape ({n_models},), one flag per model, got {diverged.shape}")
    return diverged.copy()


def _read_task(f, path) -> str:
    """The task a weight file declares; files from before regression declare none and classify."""
    if "task" not in f.files:
        return "classification"
    shape, dtype = npz_header(f, "task", path)
    longest = max(len(t) for t in TASKS)
    if shape != () or dtype.kind != "U" or dtype.itemsize > 4 * longest:
        raise ValueError(f"{path}: task must be one of {TASKS}, got an array of shape {shape} and {dtype}")
    try:
        return check_task(str(npz_array(f, "task", path)))
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


class MLPStack:
    """N ReLU MLPs with the same layer widths ``dims``, e.g. ``MLPStack([784, 128, 10], 10)``.

    ``task="classification"`` (the default) reads the last layer as class logits, trained with
    softmax cross-entropy; ``task="regression"`` reads it as ``dims[-1]`` real values (k >= 1
    targets), trained with a squared-error or Huber loss. The task travels with the stack: in
    its files, its sub-stacks, and every model merged or trained from it.

    ``init="independent"`` draws each model's start on its own; ``init="shared"`` gives every
    model the same start (the shared starting point that makes plain averaging work). Both use PyTorch's default
    for ``nn.Linear``: weights and biases uniform in +-1/sqrt(fan_in). Model i's draw depends
    only on (seed, i), so a stack of 10 begins with the same models as the first 10 of 100.
    """

    # set by segfast.align on the stacks it returns: each model's unit permutations
    # ((N, hidden units), original indices) and how many matching passes it made
    permutations: np.ndarray
    align_iterations: int

    def __init__(
        self, dims, n_models: int = 1, init: str = "independent", seed: int = 0, *, task: str = "classification"
    ):
        self.task = check_task(task)
        self.dims = _check_dims(dims, self.task)
        n_models = integer(n_models, "n_models", minimum=1)
        if n_models * self.n_params > 2**40:  # 4 TiB of float32: no machine holds it
            raise ValueError(f"n_models={n_models} models of {self.n_params} parameters is more than 2**40 parameters")
        if init not in ("independent", "shared"):
            raise ValueError(f"init must be 'independent' or 'shared', got {init!r}")
        seed = _validate.seed(seed)
        self.params = np.empty((n_models, self.n_params), dtype=np.float32)
        self.diverged = np.zeros(n_models, dtype=bool)
        for i in range(n_models):
            if init == "shared" and i > 0:
                self.params[i] = self.params[0]
            else:
                self.params[i] = self._initial_row(np.random.default_rng([seed, i]))

    def _initial_row(self, rng: np.random.Generator) -> np.ndarray:
        row = np.empty(self.n_params, dtype=np.float32)
        offset = 0
        for d_in, d_out in zip(self.dims[:-1], self.dims[1:]):
            bound = 1.0 / np.sqrt(d_in)
            size = d_in * d_out + d_out
            row[offset : offset + size] = rng.uniform(-bound, bound, size)
            offset += size
        return row

    @classmethod
    def from_params(cls, dims, params, diverged=None, *, task: str = "classification") -> MLPStack:
        """A stack around existing parameters (copied into a fresh C-contiguous float32 array)."""
        dims = _check_dims(dims, check_task(task))
        stack = cls._wrap(dims, _check_params(params, _param_count(dims), dims), task=task)
        stack.diverged = _check_diverged(diverged, stack.n_models)
        return stack

    @classmethod
    def _wrap(cls, dims, params: np.ndarray, *, task: str = "classification") -> MLPStack:
        """A stack over ``params`` itself, NOT a copy: what trains the stack writes into that array.

        For code that owns a buffer of rows and trains parts of it in place (segfast.distributed's
        workers); everyone else wants :meth:`from_params`. ``params`` must already be what a stack
        holds, a C-contiguous float32 (n_models, n_params) array for ``dims``: nothing is converted.
        Every model starts not diverged."""
        task = check_task(task)
        dims = _check_dims(dims, task)
        n_params = _param_count(dims)
        if not isinstance(params, np.ndarray):
            raise TypeError(f"params must be a numpy array to wrap without a copy, got {type(params).__name__}")
        if params.dtype != np.float32 or params.ndim != 2 or params.shape[0] < 1 or params.shape[1] != n_params:
            raise ValueError(
                f"params must be float32 of shape (n_models, {n_params}) for dims {list(dims)}, "
                f"got {params.dtype} of shape {params.shape}"
            )
        if not params.flags.c_contiguous:
            raise ValueError("params must be C-contiguous: the core reads each model as one row of the buffer")
        stack = cls.__new__(cls)
        stack.dims, stack.params, stack.diverged = dims, params, np.zeros(len(params), dtype=bool)
        stack.task = task
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
        """The output width: classes for classification, targets (k) for regression."""
        return self.dims[-1]

    @property
    def n_outputs(self) -> int:
        return self.dims[-1]

    @property
    def is_regression(self) -> bool:
        return self.task == "regression"

    def __len__(self) -> int:
        return self.n_models

    def __repr__(self) -> str:
        task = ", task='regression'" if self.is_regression else ""
        return f"MLPStack(dims={list(self.dims)}, n_models={self.n_models}, n_params={self.n_params}{task})"

    # -- per-layer views ----------------------------------------------------------------------
    def _offsets(self, layer: int) -> tuple[int, int, int, int]:
        layer = as_index(layer, "layer", self.n_layers, f"{self.n_layers} layers")
        offset = sum(a * b + b for a, b in zip(self.dims[:layer], self.dims[1 : layer + 1]))
        return offset, self.dims[layer], self.dims[layer + 1], offset + self.dims[layer] * self.dims[layer + 1]

    def weights(self, layer: int) -> np.ndarray:
        """Layer ``layer``'s weights of every model, a (N, d_in, d_out) view into ``params``."""
        w0, d_in, d_out, _ = self._offsets(layer)
        return self.params[:, w0 : w0 + d_in * d_out].reshape(self.n_models, d_in, d_out)

    def biases(self, layer: int) -> np.ndarray:
        """Layer ``layer``'s biases of every model, a (N, d_out) view into ``params``."""
        _, _, d_out, b0 = self._offsets(layer)
        return self.params[:, b0 : b0 + d_out]

    # -- sub-stacks ---------------------------------------------------------------------------
    def select(self, indices) -> MLPStack:
        """A new stack (own copy of the parameters) of the models at ``indices``."""
        idx = np.arange(self.n_models)[indices]
        idx = np.atleast_1d(idx)
        if idx.size == 0:
            raise ValueError("select() needs at least one model index")
        return MLPStack.from_params(self.dims, self.params[idx], self.diverged[idx], task=self.task)

    def __getitem__(self, index) -> MLPStack:
        if isinstance(index, numbers.Integral) and not isinstance(index, bool):
            return self.select([as_index(index, "model", self.n_models, f"a stack of {self.n_models}")])
        return self.select(index)

    def copy(self) -> MLPStack:
        return MLPStack.from_params(self.dims, self.params, self.diverged, task=self.task)

    def like(self, params, diverged=None) -> MLPStack:
        """A stack of this one's architecture and task around ``params`` (copied): what every
        merge, alignment or round builds from a stack it was given."""
        return MLPStack.from_params(self.dims, params, diverged, task=self.task)

    # -- files --------------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write the stack to an .npz file (plain arrays, no pickle: loading runs no code); a
        name without the .npz suffix gets it, as numpy.savez does. Returns the path written.

        The file is written beside the target under a unique name and renamed into place, so a
        crash leaves either the old file or the new one, never a half-written one. A path that
        is not a regular file (a directory, a device such as /dev/null, a pipe) or whose folder
        does not exist is a ValueError, raised before anything is written.
        """
        path = Path(path)
        _check_save_path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
            _check_save_path(path)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        # O_EXCL: never reuse another writer's temporary file; 0o666 under the umask, like open()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(
                    f,
                    format=np.array(_FORMAT),
                    dims=np.array(self.dims, dtype=np.int64),
                    params=self.params,
                    diverged=self.diverged,
                    task=np.array(self.task),
                )
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path) -> MLPStack:
        """Read a stack written by :meth:`save` (refuses pickled content).

        Every size in the file is checked against the others and against the bytes stored before
        anything is allocated from it, so a damaged or forged file is a ValueError naming it,
        never a huge allocation."""
        with npz_open(path) as f:
            if "format" not in f.files:
                raise ValueError(f"{path} is not a segfast MLPStack file (format {_FORMAT})")
            shape, dtype = npz_header(f, "format", path)
            if (
                shape != ()
                or dtype.kind != "U"
                or dtype.itemsize > 4 * len(_FORMAT)
                or str(npz_array(f, "format", path)) != _FORMAT
            ):
                raise ValueError(f"{path} is not a segfast MLPStack file (format {_FORMAT})")
            p_shape, p_dtype = npz_header(f, "params", path)
            d_shape, d_dtype = npz_header(f, "dims", path)
            v_shape, v_dtype = npz_header(f, "diverged", path)
            if len(p_shape) != 2 or p_shape[0] < 1 or p_dtype.kind not in "fiu":
                raise ValueError(
                    f"{path}: params must be a real (n_models, n_params) array, got shape {p_shape} of {p_dtype}"
                )
            # every layer holds at least 2 parameters, so more widths than that are forged
            if len(d_shape) != 1 or d_dtype.kind not in "iu" or not 2 <= d_shape[0] <= p_shape[1] // 2 + 1:
                raise ValueError(
                    f"{path}: dims must be 2 to {p_shape[1] // 2 + 1} integer widths for "
                    f"{p_shape[1]} parameters per model, got shape {d_shape} of {d_dtype}"
                )
            task = _read_task(f, path)
            try:
                dims = _check_dims(npz_array(f, "dims", path).tolist(), task)
            except ValueError as e:
                raise ValueError(f"{path}: {e}") from None
            n_params = _param_count(dims)
            if p_shape[1] != n_params:
                raise ValueError(
                    f"{path}: params has shape {p_shape} but dims {list(dims)} need (n_models, {n_params})"
                )
            if p_shape[0] * n_params > _MAX_PARAMS:
                raise ValueError(
                    f"{path}: {p_shape[0]} models of {n_params} parameters are more than 2**40 in all: a forged file"
                )
            if v_shape != (p_shape[0],) or v_dtype != np.dtype(bool):
                raise ValueError(
                    f"{path}: diverged must be ({p_shape[0]},) bool, one flag per model, got "
                    f"shape {v_shape} of {v_dtype}"
                )
            return cls.from_params(dims, npz_array(f, "params", path), npz_array(f, "diverged", path), task=task)

    # -- PyTorch-style state dicts --------------------------------------------------------------
    def state_dict(self, model: int | None = None) -> dict[str, np.ndarray]:
        """Model ``model`` as the state dict of ``nn.Sequential(Linear, ReLU, Linear, ...)``:
        keys ``0.weight`` (d1, d0), ``0.bias``, ``2.weight``, ... as numpy arrays (copies).
        ``model`` may be left out only for a one-model stack. For PyTorch, ``to_torch(model)``
        gives the module itself, or convert: ``{k: torch.from_numpy(v) for k, v in ...items()}``."""
        if model is None:
            if self.n_models > 1:  # model 0 of many, silently, would be the wrong model more often than not
                raise ValueError(f"this stack holds {self.n_models} models: pass the one you want, state_dict(model)")
            model = 0
        model = as_index(model, "model", self.n_models, f"a stack of {self.n_models}")
        out = {}
        for layer in range(self.n_layers):
            out[f"{2 * layer}.weight"] = self.weights(layer)[model].T.copy()
            out[f"{2 * layer}.bias"] = self.biases(layer)[model].copy()
        return out

    def to_torch(self, model: int):
        """Model ``model`` as a PyTorch ``nn.Sequential(Linear, ReLU, ..., Linear)`` (needs torch)."""
        from .interop import to_torch

        return to_torch(self, model)

    def save_safetensors(self, path) -> Path:
        """The whole stack as a safetensors file (needs safetensors; layout in segfast.interop)."""
        from .interop import save_safetensors

        return save_safetensors(self, path)

    @classmethod
    def load_safetensors(cls, path) -> MLPStack:
        """A stack from a file :meth:`save_safetensors` wrote, checked (needs safetensors)."""
        from .interop import load_safetensors

        return load_safetensors(path)

    @classmethod
    def from_state_dict(cls, state: dict, *, task: str = "classification") -> MLPStack:
        """A one-model stack from a state dict of ``nn.Sequential(Linear, ReLU, ...)``
        (numpy arrays or tensors; keys as :meth:`state_dict` writes them). A state dict holds
        tensors only (torch's ``load_state_dict`` refuses other keys), so the task is given here."""
        task = check_task(task)

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
                raise ValueError(
                    f"layer {2 * i}: weight {w.shape} / bias {b.shape} do not chain with the widths {dims}"
                )
        row = np.concatenate([np.concatenate([w.T.ravel(), b]) for w, b in zip(weights, biases)])
        return cls.from_params(dims, row[None, :], task=task)
