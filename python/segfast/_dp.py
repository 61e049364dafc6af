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

What it protects: the global models each round releases (and what is computed from them: the
val scores, best.npz, final.npz). What it does not: the run directory's checkpoint (it holds
the key) and anything of the local models, which a dp run neither returns nor writes nor
scores; the val rows themselves (the analyst's); the rows within a segment (record-level DP):
the unit protected is a whole segment.
"""

from __future__ import annotations

import logging
import numbers
from dataclasses import dataclass, replace

import numpy as np

from . import _core
from ._validate import finite_float

_KEYS = {"clip", "noise_multiplier", "delta", "seed"}
DEFAULT_DELTA = 1e-5


@dataclass(frozen=True)
class DPConfig:
    clip: float
    noise_multiplier: float
    delta: float = DEFAULT_DELTA
    # The secret the sampling and the noise are drawn from (the run's seed is public: config.json
    # records it). dp=dict(seed=S) gives it; else a fresh one from the OS, which the run
    # directory's checkpoint keeps (never config.json) so that a resumed run ends bit for bit.
    key: int = 0
    key_given: bool = False  # by dp=dict(seed=): a resumed run must be given the same

    @classmethod
    def checked(cls, dp, fraction: float, merge: dict, clusters, n_segments: int) -> DPConfig | None:
        if dp is None:
            return None
        if not isinstance(dp, dict):
            raise TypeError(f"dp must be a dict(clip=, noise_multiplier=, delta=, seed=), got {type(dp).__name__}")
        unknown = set(dp) - _KEYS
        if unknown or not {"clip", "noise_multiplier"} <= set(dp):
            raise ValueError(f"dp takes clip=, noise_multiplier=, delta= ({DEFAULT_DELTA}) and seed=; got {sorted(dp)}")
        clip = finite_float(dp["clip"], "dp clip")
        noise = finite_float(dp["noise_multiplier"], "dp noise_multiplier")
        delta = finite_float(dp.get("delta", DEFAULT_DELTA), "dp delta")
        if clip <= 0:
            raise ValueError(f"dp clip must be > 0, got {clip}")
        if noise <= 0:
            raise ValueError(f"dp noise_multiplier must be > 0 (0 is no privacy: epsilon is infinite), got {noise}")
        if not 0 < delta < 1 / n_segments:
            raise ValueError(
                f"dp delta must be in (0, 1/segments) = (0, {1 / n_segments:.3g}), got {delta}: a delta of 1/N or "
                "more allows releasing one segment's data outright"
            )
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
        given = dp.get("seed")
        if given is not None and (isinstance(given, bool) or not isinstance(given, numbers.Integral) or given < 0):
            raise ValueError(f"dp seed must be an integer >= 0 (kept secret), got {given!r}")
        entropy = np.random.SeedSequence().entropy  # from the OS: the run's secret, unless given
        key = int(given) if given is not None else int(entropy)  # type: ignore[arg-type]
        return cls(clip, noise, delta, key, given is not None)

    def resumed(self, key: int) -> DPConfig:
        """This config with the key the run's checkpoint holds (a different dp seed is refused)."""
        if self.key_given and key != self.key:
            raise ValueError("dp seed is not the one this run directory was started with; give the same, or none")
        return replace(self, key=key, key_given=True)

    def _rng(self, r: int, stream: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence(self.key, spawn_key=(r, stream)))

    def participants(self, r: int, n_segments: int, q: float) -> np.ndarray:
        """Round r's Poisson sample: each segment in with probability q, drawn from the secret key."""
        return np.flatnonzero(self._rng(r, 0).random(n_segments) < q)

    def merged(self, current: np.ndarray, models, q: float, n_segments: int, r: int, threads: int) -> np.ndarray:
        """The round's merge (P,) float32: current + (sum of the clipped updates + noise) / (q N).
        ``models``: the participants that did not diverge, or None. N is treated as public, as
        the expected number of participants per round q N is in DP-FedAvg."""
        total = np.zeros(current.shape)
        if models is not None and models.n_models:
            total, _ = _core.clipped_update_sum(models.params, current, self.clip, threads)
        noise = self._rng(r, 1).normal(0.0, self.noise_multiplier * self.clip, current.shape)
        return (current + (total + noise) / (q * n_segments)).astype(np.float32)

    @property
    def key_words(self) -> np.ndarray:
        """The key as uint64 words, as checkpoint.npz stores it."""
        return np.array([(self.key >> (64 * i)) & (2**64 - 1) for i in range(4)], dtype=np.uint64)

    @staticmethod
    def key_of(words: np.ndarray) -> int:
        return sum(int(w) << (64 * i) for i, w in enumerate(words))

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
