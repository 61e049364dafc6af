"""The anchors every speed ratio in bench/ is measured against, written once so that each ratio
means the same computation in every script: many small MLPs trained and run at once the way the
PyTorch field (torch.func) and a JAX user (jit + vmap) do it.

torch.func (TorchFuncMLPs; bench_train, bench_gpu, bench_rounds, bench_ensemble): the models held
as a dict of stacked parameters, name -> (N, ...) tensor in nn.Linear's layout (weights (N, d_out,
d_in), biases (N, d_out)), and the architecture as an nn.Sequential on the "meta" device (no
storage). A training step is vmap over models of grad_and_value of the cross-entropy of
functional_call, every model on minibatch t of its own segment at once, then plain SGD written
with in-place ops; prediction is vmap of the softmax of the forward.

JAX (JaxMLPs; bench_train, bench_gpu): the models as a list of per-layer (W (N, d_in, d_out),
b (N, d_out)) arrays; a step is vmap over models of value_and_grad of the same loss with the SGD
update inside one jax.jit (parameters donated), and an epoch one jit of lax.scan over its full
minibatches (plus one step for a short last one).

What it is not: segfast, nor a check of it (each script checks the anchors against segfast before
timing). PyTorch and JAX are optional: the scripts import them (or not) and pass the module in, so
importing this file imports neither.
"""

from __future__ import annotations

import numpy as np


def layer_views(dims, params: np.ndarray):
    """[(W (N, d_in, d_out), b (N, d_out)), ...] views of segfast's (N, P) parameter array."""
    out, off = [], 0
    n = params.shape[0]
    for d_in, d_out in zip(dims[:-1], dims[1:]):
        w = params[:, off : off + d_in * d_out].reshape(n, d_in, d_out)
        off += d_in * d_out
        out.append((w, params[:, off : off + d_out]))
        off += d_out
    return out


def architecture(torch, dims, device=None):
    """Linear, ReLU, ..., Linear for `dims`: the PyTorch twin of segfast.MLPStack(dims). Its
    parameter names ("0.weight", "0.bias", "2.weight", ...) are the stacked dict's keys."""
    layers = []
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [torch.nn.Linear(a, b, device=device), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])


def stacked_from_segfast(torch, dims, params: np.ndarray, device="cpu") -> dict:
    """The stacked dict holding the same numbers as segfast's (N, P) `params`, in torch's own
    (contiguous) storage, as stack_module_state of the models loaded one by one would give."""
    stacked = {}
    for layer, (w, b) in enumerate(layer_views(dims, params)):
        stacked[f"{2 * layer}.weight"] = torch.from_numpy(w.transpose(0, 2, 1).copy()).clone().to(device)
        stacked[f"{2 * layer}.bias"] = torch.from_numpy(b.copy()).clone().to(device)
    return stacked


def stacked_copies(torch, dims, n_models: int, seed: int, device="cpu") -> dict:
    """n_models copies of one nn.Sequential initialised by torch after torch.manual_seed(seed),
    stacked: a start that needs no segfast (bench_gpu's)."""
    torch.manual_seed(seed)
    one = architecture(torch, dims)
    return {k: v.detach().to(device).repeat(n_models, *([1] * v.dim())).contiguous() for k, v in one.named_parameters()}


def minibatches(torch, order: np.ndarray, batch_size: int, device="cpu") -> list:
    """Row indices of each step: (N, <=batch_size) views of the (N, L) `order`, model i's rows
    in the order it visits them (all segments of equal length: the models step together)."""
    idx = torch.from_numpy(order).to(device)
    return [idx[:, s : s + batch_size] for s in range(0, order.shape[1], batch_size)]


class TorchFuncMLPs:
    """The vmapped step, epoch and prediction of MLPs of `dims`; the stacked parameters are
    passed to each call (and updated in place by `epoch`), so one instance serves any number of
    parameter sets (bench_rounds makes a new one each round)."""

    def __init__(self, torch, dims, loss: str = "cross_entropy"):
        from torch.func import functional_call, grad_and_value, vmap

        self.torch = torch
        self.base = architecture(torch, dims, device="meta")
        F = torch.nn.functional
        criterion = F.mse_loss if loss == "mse" else F.cross_entropy  # mse: float targets (batch, k)

        def loss(p, xb, yb):
            return criterion(functional_call(self.base, p, (xb,)), yb)

        self._step_grad = vmap(grad_and_value(loss))
        self._proba = vmap(lambda p, x: F.softmax(functional_call(self.base, p, (x,)), dim=-1), in_dims=(0, None))
        self.functional_call = functional_call

    def epoch(self, params: dict, X, y, steps: list, lr: float):
        """One SGD step of every model per entry of `steps` (each (N, batch) row indices of X and
        y, gathered into an (N, batch, d) minibatch). Returns the (N,) losses of the last step,
        taken before its update."""
        losses = None
        for b in steps:
            g, losses = self._step_grad(params, X[b], y[b])
            with self.torch.no_grad():
                for k, v in params.items():
                    v.sub_(g[k], alpha=lr)
        return losses

    def proba(self, params: dict, X):
        """(N, n, classes) softmax probabilities of every model on the same rows X (n, d)."""
        with self.torch.no_grad():
            return self._proba(params, X)

    def logits(self, one: dict, X):
        """Logits of ONE model (unstacked parameters, e.g. the merged global model) on X."""
        with self.torch.no_grad():
            return self.functional_call(self.base, one, (X,))


def jax_layers(jax, dims, params: np.ndarray) -> list:
    """segfast's (N, P) parameters as JAX per-layer arrays [(W (N, d_in, d_out), b (N, d_out)), ...] (copies)."""
    return [(jax.numpy.asarray(w), jax.numpy.asarray(b)) for w, b in layer_views(dims, params)]


def jax_forward(jax, p, x):
    """Logits of ONE model: p = [(W (d_in, d_out), b (d_out,)), ...], x (n, d_in)."""
    for layer, (w, b) in enumerate(p):
        x = x @ w + b
        if layer < len(p) - 1:
            x = jax.nn.relu(x)
    return x


def jax_proba(jax):
    """The jitted (N, n, classes) softmax probabilities of every model on the same rows."""
    return jax.jit(jax.vmap(lambda p, x: jax.nn.softmax(jax_forward(jax, p, x), axis=-1), in_axes=(0, None)))


class JaxMLPs:
    """SGD of every model on its own minibatches, on the rows of X (n, d) and labels y (n,): `step`
    is one jitted step of all models on (N, batch) row indices, gathered inside the jit; `epoch`
    runs a whole epoch as one jitted lax.scan over its full minibatches (and a step for the short
    last one). Both donate the parameters (the update reuses their buffers); `step` also returns the
    (N,) losses taken before its update."""

    def __init__(self, jax, X, y, lr: float):
        from functools import partial

        jnp = jax.numpy
        self.jax = jax

        def loss_fn(p, xb, yb):
            logits = jax_forward(jax, p, xb)
            picked = jnp.take_along_axis(logits, yb[:, None], axis=1)[:, 0]
            return jnp.mean(jax.nn.logsumexp(logits, axis=1) - picked)

        grads = jax.vmap(jax.value_and_grad(loss_fn))

        def step_body(p, b):  # b: (N, batch) row indices; gathers (N, batch, d) inside the jit
            loss, g = grads(p, X[b], y[b])
            return jax.tree_util.tree_map(lambda v, d: v - lr * d, p, g), loss

        self.step = jax.jit(step_body, donate_argnums=0)

        @partial(jax.jit, donate_argnums=0)
        def scan_epoch(p, full):  # full: (steps, N, batch)
            return jax.lax.scan(step_body, p, full)

        self._scan_epoch = scan_epoch

    def minibatches(self, order: np.ndarray, batch_size: int):
        """The (N, L) `order` as `epoch` takes it: full (steps, N, batch_size) and the short last
        minibatch (N, L % batch_size), None when there is none."""
        jnp = self.jax.numpy
        n_models, length = order.shape
        n_full = length // batch_size
        full = order[:, : n_full * batch_size].reshape(n_models, n_full, batch_size).transpose(1, 0, 2)
        tail = jnp.asarray(order[:, n_full * batch_size :]) if length % batch_size else None
        return (jnp.asarray(full) if n_full else None), tail

    def epoch(self, p, full, tail):
        """One epoch from parameters p (donated): the new parameters."""
        if full is not None:
            p, _ = self._scan_epoch(p, full)
        if tail is not None:
            p, _ = self.step(p, tail)
        return p
