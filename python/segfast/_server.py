"""The server's step at the end of a round: the global model moved along the pseudo-gradient
delta = merged - global, by plain SGD with momentum (FedAvg, FedAvgM) or by an adaptive optimiser
(FedAdam, FedYogi, FedAdagrad: Reddi et al. 2021, "Adaptive Federated Optimization", Algorithm 2):

    m = b1 * m + (1 - b1) * delta
    v = v + delta^2                                   (adagrad)
    v = b2 * v + (1 - b2) * delta^2                   (adam)
    v = v - (1 - b2) * delta^2 * sign(v - delta^2)    (yogi)
    global = global + lr * m / (sqrt(v) + tau)

with v starting at tau^2, as the paper's v_{-1} >= tau^2. The state is float64, one row per
global model, and lives in the run directory's checkpoint.

What it is not: the merge that gives ``merged`` (segfast.merge), nor the rounds loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validate import finite_float

OPTIMIZERS = ("sgd", "adam", "yogi", "adagrad")
ADAPTIVE_LR = 0.01  # server_lr's default for the adaptive ones (1.0 for sgd: plain replacement)


@dataclass(frozen=True)
class ServerOptimizer:
    name: str = "sgd"
    lr: float = 1.0
    momentum: float = 0.0  # sgd only (FedAvgM)
    betas: tuple = (0.9, 0.99)  # the adaptive ones
    tau: float = 1e-3  # the adaptive ones: their degree of adaptivity

    @classmethod
    def checked(cls, name, lr, momentum, betas, tau) -> ServerOptimizer:
        if not isinstance(name, str) or name not in OPTIMIZERS:
            raise ValueError(f"server_optimizer must be one of {', '.join(map(repr, OPTIMIZERS))}, got {name!r}")
        adaptive = name != "sgd"
        lr = finite_float((ADAPTIVE_LR if adaptive else 1.0) if lr is None else lr, "server_lr", minimum=0.0)
        momentum = finite_float(momentum, "server_momentum", minimum=0.0)
        if momentum >= 1:
            raise ValueError(f"server_momentum must be < 1, got {momentum}")
        if adaptive and momentum:
            raise ValueError(f"server_momentum is FedAvgM's (server_optimizer='sgd'); {name} takes betas=(b1, b2)")
        if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
            raise ValueError(f"betas must be two numbers in [0, 1), (b1, b2), got {betas!r}")
        betas = tuple(finite_float(b, "betas", minimum=0.0) for b in betas)
        if max(betas) >= 1:
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        tau = finite_float(tau, "tau")
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        return cls(name, lr, momentum, (float(betas[0]), float(betas[1])), tau)

    @property
    def adaptive(self) -> bool:
        return self.name != "sgd"

    def state_names(self) -> tuple:
        return ("server_buffer", "server_second_moment") if self.adaptive else ("server_buffer",)

    def initial_state(self, shape) -> dict:
        """The server state of the global rows of ``shape``: the momentum (sgd) or first moment,
        and for the adaptive ones the second moment."""
        state = {"server_buffer": np.zeros(shape)}
        if self.adaptive:
            state["server_second_moment"] = np.full(shape, self.tau**2)
        return state

    def reset(self, state: dict, row: int) -> None:
        """Row ``row``'s state as at the start (a global model replaced outright)."""
        for name, value in self.initial_state(state["server_buffer"][row].shape).items():
            state[name][row] = value

    def step(self, current: np.ndarray, merged: np.ndarray, state: dict, row: int) -> np.ndarray:
        """The new global model (P,) float32 from the current one and the round's merge,
        updating row ``row`` of the state in place."""
        m = state["server_buffer"]
        if not self.adaptive:
            # float64: with lr 1 and no momentum the step is exactly a replacement by the merge
            m[row] = self.momentum * m[row] + (merged.astype(np.float64) - current)
            return (current + self.lr * m[row]).astype(np.float32)
        delta = merged.astype(np.float64) - current
        b1, b2 = self.betas
        m[row] = b1 * m[row] + (1 - b1) * delta
        v, squared = state["server_second_moment"], delta**2
        if self.name == "adagrad":
            v[row] = v[row] + squared
        elif self.name == "adam":
            v[row] = b2 * v[row] + (1 - b2) * squared
        else:  # yogi: v moves toward delta^2 additively, by (1 - b2) delta^2 at most
            v[row] = v[row] - (1 - b2) * squared * np.sign(v[row] - squared)
        return (current + self.lr * m[row] / (np.sqrt(v[row]) + self.tau)).astype(np.float32)
