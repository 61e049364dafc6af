"""A small, deterministic L-BFGS minimiser (two-loop recursion, Armijo backtracking), so that
the learned combiners need nothing beyond numpy."""

from __future__ import annotations

import numpy as np


def minimize(fun_grad, x0: np.ndarray, max_iter: int = 300, memory: int = 10, gtol: float = 1e-6) -> np.ndarray:
    """Minimise f(x), where ``fun_grad(x)`` returns (f, grad). Returns the best x found."""
    x = np.array(x0, dtype=np.float64)
    f, g = fun_grad(x)
    s_hist: list[np.ndarray] = []
    y_hist: list[np.ndarray] = []
    for _ in range(max_iter):
        if np.linalg.norm(g, np.inf) < gtol:
            break
        # Two-loop recursion: d = -H g with H the L-BFGS inverse-Hessian estimate.
        q = g.copy()
        alphas = []
        for s, y in reversed(list(zip(s_hist, y_hist))):
            a = s @ q / (y @ s)
            alphas.append(a)
            q -= a * y
        if y_hist:
            q *= (s_hist[-1] @ y_hist[-1]) / (y_hist[-1] @ y_hist[-1])
        for (s, y), a in zip(zip(s_hist, y_hist), reversed(alphas)):
            q += s * (a - y @ q / (y @ s))
        direction = -q
        slope = g @ direction
        if slope >= 0:  # not a descent direction: restart from steepest descent
            s_hist.clear()
            y_hist.clear()
            direction, slope = -g, -(g @ g)
        step = 1.0
        while True:
            x_new = x + step * direction
            f_new, g_new = fun_grad(x_new)
            if f_new <= f + 1e-4 * step * slope or step < 1e-10:
                break
            step *= 0.5
        if step < 1e-10:
            break
        s, y = x_new - x, g_new - g
        if s @ y > 1e-12:
            s_hist.append(s)
            y_hist.append(y)
            if len(s_hist) > memory:
                s_hist.pop(0)
                y_hist.pop(0)
        converged = abs(f - f_new) <= 1e-12 * max(1.0, abs(f))
        x, f, g = x_new, f_new, g_new
        if converged:
            break
    return x
