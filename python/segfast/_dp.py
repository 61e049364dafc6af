"""User-level differential privacy for rounds: DP-FedAvg (McMahan et al. 2018, "Learning
Differentially Private Recurrent Language Models").

Each round every segment takes part with probability q = fraction (Poisson sampling, seeded by
(seed, round)); each participant's update (its trained model minus the global model) is scaled to
L2 norm at most ``clip``; the scaled updates are summed (one C++ pass, _core.clipped_update_sum),
Gaussian noise of standard deviation noise_multiplier * clip is added to the sum, and the sum is
divided by the expected number of participants q * N (the fixed-denominator estimator, whose
sensitivity to one segment is clip / (q N)). The privacy spent is tracked by the RDP accountant
of Google's dp-accounting library (an optional extra: pip install "segfast-mlp[dp]"): chosen over
Opacus's because it needs no PyTorch and is the library TensorFlow Privacy's own accounting uses.

What it is not: privacy of the val rows the rounds evaluate on (they are the analyst's), nor of
the rows within a segment (record-level DP): the unit protected is a whole segment.
"""

from __future__ import annotations

import logging
import numbers
from dataclasses import dataclass

import numpy as np

from . import _core

_KEYS = {"clip", "noise_multiplier", "delta"}


@dataclass(frozen=True)
class DPConfig:
    clip: float
    noise_multiplier: float
    delta: float = 1e-5

    @classmethod
    def checked(cls, dp, fraction: float, merge: dict, clusters) -> DPConfig | None:
        if dp is None:
            return None
        if not isinstance(dp, dict):
            raise TypeError(f"dp must be a dict(clip=, noise_multiplier=, delta=), got {type(dp).__name__}")
        unknown = set(dp) - _KEYS
        if unknown or not {"clip", "noise_multiplier"} <= set(dp):
            raise ValueError(f"dp takes clip=, noise_multiplier= and delta= (1e-5); got {sorted(dp)}")
        clip, noise, delta = (_real(dp.get(k, 1e-5)) for k in ("clip", "noise_multiplier", "delta"))
        if clip is None or not np.isfinite(clip) or clip <= 0:
            raise ValueError(f"dp clip must be a finite number > 0, got {dp['clip']!r}")
        if noise is None or not np.isfinite(noise) or noise < 0:
            raise ValueError(f"dp noise_multiplier must be a finite number >= 0, got {dp['noise_multiplier']!r}")
        if delta is None or not 0 < delta < 1:
            raise ValueError(f"dp delta must be in (0, 1), got {dp.get('delta')!r}")
        if fraction >= 1:
            raise ValueError(
                "dp needs fraction < 1: segments are Poisson-sampled with probability fraction, and with "
                "fraction=1 every segment takes part every round, so the sampling hides nobody and the "
                "guarantee rests on the noise alone (far weaker for the same noise); pass fraction=q, e.g. 0.1"
            )
        if merge != {"method": "uniform"}:
            raise ValueError(
                "dp merges by DP-FedAvg's rule (the clipped updates' noisy sum over the expected participants); "
                f"pass merge='uniform', got {merge!r}"
            )
        if clusters != 1:
            raise ValueError("dp with clusters > 1 is not supported: each segment's choice of cluster would leak")
        accountant()  # a clear error now if dp-accounting is missing
        return cls(clip, noise, delta)

    def participants(self, seed: int, r: int, n_segments: int, q: float) -> np.ndarray:
        """Round r's Poisson sample: each segment in with probability q, keyed by (seed, round)."""
        return np.flatnonzero(np.random.default_rng([seed, r, 0xD9]).random(n_segments) < q)

    def merged(self, current: np.ndarray, models, q: float, n_segments: int, seed: int, r: int, threads: int):
        """(the round's merge (P,) float32, {share of updates clipped}): current + (sum of the clipped
        updates + noise) / (q N). ``models``: the participants that did not diverge, or None."""
        total = np.zeros(current.shape)
        clipped = 0.0
        if models is not None and models.n_models:
            total, norms = _core.clipped_update_sum(models.params, current, self.clip, threads)
            clipped = float(np.mean(norms > self.clip))
        noise = np.random.default_rng([seed, r, 0xD9, 1]).normal(0.0, self.noise_multiplier * self.clip, current.shape)
        return (current + (total + noise) / (q * n_segments)).astype(np.float32), {"dp_clipped_share": clipped}

    def epsilon(self, q: float, rounds: int) -> float:
        """The (epsilon, delta) guarantee's epsilon after ``rounds`` rounds, by the RDP accountant."""
        dp_accounting, rdp = accountant()
        event = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(self.noise_multiplier))
        absl = logging.getLogger("absl")
        level = absl.level
        absl.setLevel(logging.ERROR)  # it logs each RDP order it leaves out as not converging
        try:
            tracker = rdp.RdpAccountant()
            tracker.compose(event, rounds)
            return float(tracker.get_epsilon(self.delta))
        finally:
            absl.setLevel(level)


def accountant():
    try:
        import dp_accounting
        from dp_accounting import rdp
    except ImportError:
        raise ImportError(
            'dp= reports its privacy with Google\'s dp-accounting library: pip install "segfast-mlp[dp]"'
        ) from None
    return dp_accounting, rdp


def _real(value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)
