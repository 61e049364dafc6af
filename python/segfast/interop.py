"""Models that travel: a segment model as a PyTorch ``nn.Sequential``, and a whole stack as a
safetensors file (the format the field shares weights in), written and read back checked.

Layout in the file: per layer ``{2l}.weight`` (N, d_out, d_in) and ``{2l}.bias`` (N, d_out), float32:
the layout of ``torch.func.stack_module_state`` of ``nn.Sequential(Linear, ReLU, Linear, ...)``, so
``{k: t[i] for k, t in tensors.items()}`` is model i's state dict; ``diverged`` (N,) uint8; the
metadata names the format, the layer widths and the task (absent in older files: classification).
PyTorch and safetensors are optional."""

from __future__ import annotations

from pathlib import Path

import numpy as np

FORMAT = "segfast-stack-1"


def to_torch(stack, model: int):
    """Model ``model`` of ``stack`` as ``nn.Sequential(Linear, ReLU, ..., Linear)`` (float32,
    on the CPU): the same function, to 1e-6."""
    try:
        import torch
    except ImportError:
        raise ImportError("to_torch needs PyTorch: pip install torch") from None
    layers = []
    for d_in, d_out in zip(stack.dims[:-1], stack.dims[1:]):
        layers += [torch.nn.Linear(d_in, d_out), torch.nn.ReLU()]
    net = torch.nn.Sequential(*layers[:-1])
    net.load_state_dict({k: torch.from_numpy(v) for k, v in stack.state_dict(model).items()})
    return net


def _safetensors():
    try:
        from safetensors import numpy as st
    except ImportError:
        raise ImportError("safetensors files need the safetensors package: pip install safetensors") from None
    return st


def save_safetensors(stack, path) -> Path:
    """Write the whole stack to ``path`` (a temporary file renamed into place: never half-written)."""
    import os

    st = _safetensors()
    path = Path(path)
    if path.is_dir() or not path.parent.is_dir():
        raise ValueError(f"{path}: not a file path in an existing folder")
    tensors = {}
    for layer in range(stack.n_layers):
        tensors[f"{2 * layer}.weight"] = np.ascontiguousarray(stack.weights(layer).transpose(0, 2, 1))
        tensors[f"{2 * layer}.bias"] = np.ascontiguousarray(stack.biases(layer))
    tensors["diverged"] = stack.diverged.astype(np.uint8)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        meta = {"format": FORMAT, "dims": ",".join(map(str, stack.dims)), "task": stack.task}
        st.save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_safetensors(path):
    """A stack written by :func:`save_safetensors`, every tensor checked against the widths in
    the metadata (ValueError naming the file and the tensor)."""
    from .stack import MLPStack, check_task

    st = _safetensors()
    path = Path(path)
    from safetensors import safe_open

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            keys = set(f.keys())
    except Exception as e:  # the parser's own errors (it raises its own types): a damaged or forged file
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: metadata format is {meta.get('format')!r}, not {FORMAT!r}")
    try:
        dims = [int(w) for w in meta.get("dims", "").split(",")]
    except ValueError:
        raise ValueError(f"{path}: metadata dims {meta.get('dims')!r} are not comma-separated widths") from None
    try:
        task = check_task(meta.get("task", "classification"))
    except ValueError as e:
        raise ValueError(f"{path}: metadata {e}") from None
    n_layers = len(dims) - 1
    want = {f"{2 * layer}.{kind}" for layer in range(n_layers) for kind in ("weight", "bias")} | {"diverged"}
    if keys != want:
        raise ValueError(f"{path}: tensors {sorted(keys)} do not match dims {dims} (expected {sorted(want)})")
    tensors = st.load_file(str(path))
    n = tensors["diverged"].shape[0] if tensors["diverged"].ndim == 1 else -1
    rows = []
    for layer, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        w, b = tensors[f"{2 * layer}.weight"], tensors[f"{2 * layer}.bias"]
        for name, t, shape in ((f"{2 * layer}.weight", w, (n, d_out, d_in)), (f"{2 * layer}.bias", b, (n, d_out))):
            if t.dtype != np.float32 or t.shape != shape:
                raise ValueError(f"{path}: tensor {name} is {t.dtype} {t.shape}, expected float32 {shape}")
        rows += [w.transpose(0, 2, 1).reshape(n, -1), b]
    diverged = tensors["diverged"]
    if diverged.dtype != np.uint8 or (diverged > 1).any():
        raise ValueError(f"{path}: tensor diverged must hold 0 or 1 as uint8")
    return MLPStack.from_params(dims, np.concatenate(rows, axis=1), diverged.astype(bool), task=task)
