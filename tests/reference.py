"""Plain numpy (float64) versions of segfast's kernels: the oracles the C++ is checked against."""
import numpy as np


def unpack(dims, row):
    """Split one parameter row into [(W (d_in, d_out), b (d_out,)), ...] float64 copies."""
    layers, offset = [], 0
    for d_in, d_out in zip(dims[:-1], dims[1:]):
        W = row[offset:offset + d_in * d_out].reshape(d_in, d_out).astype(np.float64)
        offset += d_in * d_out
        b = row[offset:offset + d_out].astype(np.float64)
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
