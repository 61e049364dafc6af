"""Schedules for the local work of each round: local epochs that grow round by round, so early
rounds stay close to the global model and later ones refine further."""

from __future__ import annotations

from dataclasses import dataclass

from ._validate import MAX_EPOCHS, finite_float, integer


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
    start = integer(start, "start", minimum=1)
    every = integer(every, "every", minimum=1)
    max = integer(max, "max", minimum=1)
    finite_float(factor, "factor", minimum=1)  # checked, kept as given: an int factor stays exact
    return Progressive(start, factor, every, max)


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
    try:
        return integer(value, name, 1, MAX_EPOCHS)
    except ValueError:  # which round, too: a list or a callable gives one value per round
        raise ValueError(
            f"{name} must give integers >= 1 and <= {MAX_EPOCHS}, got {value!r} for round {round_index}"
        ) from None


def describe(schedule) -> object:
    """A JSON-able description of a schedule, for a run's config.json."""
    if isinstance(schedule, Progressive):
        return {
            "progressive": {
                "start": schedule.start,
                "factor": schedule.factor,
                "every": schedule.every,
                "max": schedule.max,
            }
        }
    if isinstance(schedule, (list, tuple)):
        return [int(v) for v in schedule]
    if callable(schedule):
        return getattr(schedule, "__name__", "callable")
    return int(schedule)
