"""The one place that turns ``n_jobs`` into a thread count (-1 = all cores)."""

from __future__ import annotations

import numbers

from . import _core


def resolve_n_jobs(n_jobs) -> int:
    """Validate ``n_jobs`` and return the number of threads it means on this machine."""
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral):
        raise TypeError(f"n_jobs must be an int (-1 = all cores), got {n_jobs!r}")
    n_jobs = int(n_jobs)
    if n_jobs == 0 or n_jobs < -1:
        raise ValueError(f"n_jobs must be -1 (all cores) or >= 1, got {n_jobs}")
    # at most the machine's cores (the C++ side caps too; this keeps huge ints out of its int)
    return _core.resolve_threads(min(n_jobs, _core.available_threads()))
