"""Plain numpy (float64) versions of segfast's kernels: the oracles the C++ is checked against."""

import numpy as np


def unpack(dims, row):
    """Split one parameter row into [(W (d_in, d_out), b (d_out,)), ...] float64 copies."""
    layers, offset = [], 0
    for d_in, d_out in zip(dims[:-1], dims[1:]):
        W = row[offset : offset + d_in * d_out].reshape(d_in, d_out).astype(np.float64)
        offset += d_in * d_out
        b = row[offset : offset + d_out].astype(np.float64)
        offset += d_out
        layers.append((W, b))
    return layers


def pack(layers):
    return np.concatenate([np.concatenate([W.ravel(), b]) for W, b in layers])


def forward(dims, row, X):
    """Logits and the list of layer inputs (post-ReLU activations)."""
    h = X.astype(np.float64)
    inputs = []
    layers = unpack(dims, row)
    for i, (W, b) in enumerate(layers):
        inputs.append(h)
        z = h @ W + b
        h = np.maximum(z, 0) if i + 1 < len(layers) else z
    return h, inputs


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def loss(dims, row, X, y):
    z, _ = forward(dims, row, X)
    p = softmax(z)
    return float(-np.log(p[np.arange(len(y)), y]).mean())


def loss_and_grad(dims, row, X, y):
    """Mean softmax cross-entropy and its gradient with respect to the parameter row."""
    z, inputs = forward(dims, row, X)
    p = softmax(z)
    n = len(y)
    value = float(-np.log(p[np.arange(n), y]).mean())
    g = p.copy()
    g[np.arange(n), y] -= 1.0
    g /= n
    layers = unpack(dims, row)
    grads = [None] * len(layers)
    for i in range(len(layers) - 1, -1, -1):
        W, _ = layers[i]
        grads[i] = (inputs[i].T @ g, g.sum(axis=0))
        if i > 0:
            g = (g @ W.T) * (inputs[i] > 0)
    return value, pack(grads)


def sgd_step(dims, row, velocity, X, y, lr, momentum=0.0, weight_decay=0.0):
    """One step of PyTorch's SGD rule; returns (new row, new velocity)."""
    _, g = loss_and_grad(dims, row, X, y)
    w = row.astype(np.float64)
    step = g + weight_decay * w
    if momentum > 0:
        velocity = momentum * velocity + step
        step = velocity
    return w - lr * step, velocity


def _views(dims, row):
    """Writable views [(W, b), ...] into a float32 parameter row."""
    layers, offset = [], 0
    for d_in, d_out in zip(dims[:-1], dims[1:]):
        W = row[offset : offset + d_in * d_out].reshape(d_in, d_out)
        offset += d_in * d_out
        layers.append((W, row[offset : offset + d_out]))
        offset += d_out
    return layers


def _unit_features(dims, row, h, dtype):
    """(d_in + 1 + d_out, d): column j is hidden unit j's incoming weights, bias, outgoing weights."""
    (W, b), (W_next, _) = _views(dims, row)[h : h + 2]
    return np.concatenate([W, b[None, :], W_next.T]).astype(dtype, copy=False)


def align_to(dims, target, row, perm, dtype=np.float64):
    """Weight matching of one row to a target, in place: each sweep solves every hidden layer's
    assignment (scipy) on unit similarities computed in dtype, keeping only strict improvements."""
    from scipy.optimize import linear_sum_assignment

    hidden = len(dims) - 2
    offsets = np.concatenate([[0], np.cumsum(dims[1:-1])])
    moved = False
    for _ in range(50):
        changed = False
        for h in range(hidden):
            score = _unit_features(dims, target, h, dtype).T @ _unit_features(dims, row, h, dtype)
            r, q = linear_sum_assignment(score, maximize=True)
            identity = np.trace(score)
            if score[r, q].sum() > identity + 1e-9 * (1 + abs(identity)):
                (W, b), (W_next, _) = _views(dims, row)[h : h + 2]
                W[...], b[...], W_next[...] = W[:, q], b[q], W_next[q, :]
                p = perm[offsets[h] : offsets[h + 1]]
                p[...] = p[q]
                changed = True
        moved |= changed
        if not changed or hidden == 1:  # one hidden layer: nothing else moved, the identity is optimal
            return moved
    return moved


def align_many(dims, params, reference, rounds, dtype=np.float64):
    """The "merge many" alignment: every model to the reference, then rounds of each other model,
    in turn, to the mean of the rest, until none moves. Returns the permuted rows and the
    permutations (original unit indices)."""
    params = params.copy()
    n = len(params)
    perms = np.tile(np.concatenate([np.arange(d) for d in dims[1:-1]]), (n, 1))
    for m in range(n):
        if m != reference:
            align_to(dims, params[reference], params[m], perms[m], dtype)
    total = params.sum(axis=0, dtype=np.float64)
    for _ in range(rounds):
        any_moved = False
        for m in range(n):
            if m == reference:
                continue
            before = params[m].copy()
            target = ((total - params[m]) * (1.0 / (n - 1))).astype(np.float32)
            if align_to(dims, target, params[m], perms[m], dtype):
                total += params[m].astype(np.float64) - before
                any_moved = True
        if not any_moved:
            break
    return params, perms
