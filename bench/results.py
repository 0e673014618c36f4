"""What a benchmark row reports: measurements for the table and targets to judge."""
from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class Measure:
    """One line of the table: ``row`` groups lines, ``key`` lets targets find a value."""

    row: str
    key: str
    label: str
    value: float
    unit: str
    note: str = ""

    def shown(self) -> str:
        if self.value >= 100:
            return f"{self.value:,.0f}"
        if self.value >= 10:
            return f"{self.value:.1f}"
        return f"{self.value:.2f}"


@dataclasses.dataclass(frozen=True)
class Target:
    """A goal checked against measures of the same run; ``met`` is None when not measured."""

    goal: str
    measured: str
    met: bool | None


class Results:
    """Measures collected in one run, in the order they were taken."""

    def __init__(self) -> None:
        self.measures: list[Measure] = []

    def add(self, row: str, key: str, label: str, value: float, unit: str, note: str = "") -> None:
        self.measures.append(Measure(row, key, label, float(value), unit, note))

    def get(self, key: str) -> float | None:
        for measure in reversed(self.measures):
            if measure.key == key:
                return measure.value
        return None


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile by linear interpolation (pct in 0-100)."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return float(values[0])
    return statistics.quantiles(values, n=100, method="inclusive")[int(pct) - 1] if pct < 100 \
        else float(max(values))
