"""Progress bars (tqdm), advanced between C++ calls: one place for how they look and when they
show (on a terminal only, so a log file gets no carriage returns)."""

from __future__ import annotations

from tqdm.auto import tqdm


def progress_bar(total: int, label: str, unit: str, enabled: bool = True, initial: int = 0) -> tqdm:
    """A bar of ``total`` steps starting at ``initial``; ``enabled=False`` hides it, and so does
    a standard error that is not a terminal."""
    return tqdm(
        total=total,
        initial=initial,
        desc=label,
        unit=unit,
        disable=None if enabled else True,  # None: tqdm shows it only on a terminal
        dynamic_ncols=True,
    )
