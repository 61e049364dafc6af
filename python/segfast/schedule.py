"""Schedules for the local work of each round ("progressively increase the number of
iterations with each grand epoch", in the design notes' words)."""
from __future__ import annotations

import numbers
from dataclasses import dataclass


@dataclass(frozen=True)
class Progressive:
    """start, start, start*factor, start*factor, ... : multiplied by ``factor`` every ``every``
    rounds, capped at ``max``. ``Progressive()(r)`` is the value for round r (0-based)."""

    start: int = 1
    factor: float = 2
    every: int = 2
    max: int = 8

    def __call__(self, round_index: int) -> int:
        return int(min(self.max, round(self.start * self.factor ** (round_index // self.every))))


def progressive(start: int = 1, factor: float = 2, every: int = 2, max: int = 8) -> Progressive:
    """The notes' growing local work: ``progressive()`` gives 1, 1, 2, 2, 4, 4, 8, 8, 8, ..."""
    for name, value in (("start", start), ("every", every), ("max", max)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if not isinstance(factor, numbers.Real) or factor < 1:
        raise ValueError(f"factor must be a number >= 1, got {factor!r}")
    return Progressive(int(start), factor, int(every), int(max))


def resolve(schedule, round_index: int, name: str = "local_epochs") -> int:
    """The value of a schedule (an int, a list, or a callable of the round) at a round."""
    if callable(schedule):
        value = schedule(round_index)
    elif isinstance(schedule, (list, tuple)):
        if not schedule:
            raise ValueError(f"{name} list is empty")
        value = schedule[min(round_index, len(schedule) - 1)]
    else:
        value = schedule
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 1 <= value <= 10**6:
        raise ValueError(f"{name} must give integers >= 1 and <= 10**6, got {value!r} for round {round_index}")
    return int(value)


def describe(schedule) -> object:
    """A JSON-able description of a schedule, for a run's config.json."""
    if isinstance(schedule, Progressive):
        return {"progressive": {"start": schedule.start, "factor": schedule.factor, "every": schedule.every,
                                "max": schedule.max}}
    if isinstance(schedule, (list, tuple)):
        return [int(v) for v in schedule]
    if callable(schedule):
        return getattr(schedule, "__name__", "callable")
    return int(schedule)
