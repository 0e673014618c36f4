"""Sleep schedules: weekly windows during which a worker takes no chunks.

A schedule is ``{"days": ["mon", ...], "start": "09:00", "end": "19:00",
"tz": "Europe/Amsterdam"}``. Times are wall-clock times in ``tz`` (an IANA
zone, read with ``zoneinfo``), so a window keeps its local hours across
daylight-saving changes. ``days`` names the days a window *opens*; a window
whose ``end`` is not after its ``start`` crosses midnight and closes on the next
day (``mon 22:00-06:00`` covers Monday night until Tuesday 06:00). ``end`` may
be ``24:00``. Without ``days`` the window opens every day.

The gateway validates with ``parse`` (errors name the field, e.g.
``sleep_schedule.start``) and the dispatcher decides with ``is_asleep``.
"""
from __future__ import annotations

import dataclasses
import datetime
import re
import zoneinfo
from typing import Any

from common.errors import ValidationError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
FIELD = "sleep_schedule"
KEYS = ("days", "start", "end", "tz")
_CLOCK = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
END_OF_DAY = "24:00"
MINUTES_PER_DAY = 24 * 60
MAX_TZ_CHARS = 64


@dataclasses.dataclass(frozen=True)
class SleepSchedule:
    """A checked weekly window; minutes count from local midnight."""

    days: tuple[int, ...]  # 0 = Monday, as datetime.weekday()
    start_min: int
    end_min: int
    tz: str

    def to_json(self) -> dict[str, Any]:
        return {"days": [DAYS[d] for d in self.days], "start": _clock(self.start_min),
                "end": _clock(self.end_min), "tz": self.tz}


def parse(value: Any, field: str = FIELD) -> SleepSchedule:
    """Check a schedule object; raise ValidationError naming the first bad field."""
    if not isinstance(value, dict):
        raise ValidationError(field, "must be an object with days, start, end and tz, or null")
    for key in value:
        if key not in KEYS:
            raise ValidationError(f"{field}.{key}", "is not a known field")
    for key in ("start", "end", "tz"):
        if value.get(key) is None:
            raise ValidationError(f"{field}.{key}", "is required")
    days = _days(value.get("days"), f"{field}.days")
    start = _minutes(value["start"], f"{field}.start", allow_end_of_day=False)
    end = _minutes(value["end"], f"{field}.end", allow_end_of_day=True)
    if start == end:
        raise ValidationError(f"{field}.end", "must differ from start (use 00:00 to 24:00 for a whole day)")
    return SleepSchedule(days, start, end, _zone(value["tz"], f"{field}.tz"))


def _days(value: Any, field: str) -> tuple[int, ...]:
    if value is None:
        return tuple(range(7))
    if not isinstance(value, list) or not value:
        raise ValidationError(field, f"must be a non-empty list of {', '.join(DAYS)}")
    found = set()
    for index, day in enumerate(value):
        if not isinstance(day, str) or day.lower() not in DAYS:
            raise ValidationError(f"{field}[{index}]", f"must be one of {', '.join(DAYS)}")
        found.add(DAYS.index(day.lower()))
    return tuple(sorted(found))


def _minutes(value: Any, field: str, allow_end_of_day: bool) -> int:
    if not isinstance(value, str):
        raise ValidationError(field, "must be a time of day as HH:MM")
    if allow_end_of_day and value == END_OF_DAY:
        return MINUTES_PER_DAY
    match = _CLOCK.match(value)
    if match is None:
        raise ValidationError(field, "must be a time of day as HH:MM (00:00 to 23:59"
                                     + (", or 24:00)" if allow_end_of_day else ")"))
    return int(match.group(1)) * 60 + int(match.group(2))


def _zone(value: Any, field: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_TZ_CHARS:
        raise ValidationError(field, "must be an IANA time zone name such as Europe/Amsterdam")
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ValidationError(field, f"{value!r} is not a known IANA time zone "
                                     "(such as Europe/Amsterdam or UTC)") from None
    return value


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def is_asleep(schedule: SleepSchedule, now: float) -> bool:
    """Whether the Unix time ``now`` falls inside one of the schedule's windows."""
    local = datetime.datetime.fromtimestamp(now, zoneinfo.ZoneInfo(schedule.tz))
    minute = local.hour * 60 + local.minute
    today, yesterday = local.weekday(), (local.weekday() - 1) % 7
    if schedule.start_min < schedule.end_min:
        return today in schedule.days and schedule.start_min <= minute < schedule.end_min
    # Crosses midnight: the evening part of today's window, or the morning part of yesterday's.
    return (today in schedule.days and minute >= schedule.start_min) or (
        yesterday in schedule.days and minute < schedule.end_min)


def asleep_now(stored: dict[str, Any] | None, now: float) -> bool:
    """``is_asleep`` for a schedule as stored (already validated); no schedule: awake."""
    if not stored:
        return False
    return is_asleep(parse(stored), now)
