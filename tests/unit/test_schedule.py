"""Sleep schedules: validation naming the field, and the window judged on an injected clock."""
from __future__ import annotations

import datetime
import zoneinfo

import pytest

from common import schedule
from common.errors import ValidationError

AMSTERDAM = "Europe/Amsterdam"


def at(text: str, tz: str = AMSTERDAM) -> float:
    """The Unix time of a local wall-clock time such as ``2026-12-07 08:59`` (a Monday) in ``tz``."""
    local = datetime.datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=zoneinfo.ZoneInfo(tz))
    return local.timestamp()


def sched(**fields):
    return schedule.parse({"start": "09:00", "end": "19:00", "tz": AMSTERDAM, **fields})


WORKDAYS = ["mon", "tue", "wed", "thu", "fri"]


@pytest.mark.parametrize("when, asleep", [
    ("2026-12-07 08:59", False),  # Monday, before the window
    ("2026-12-07 09:00", True),  # the start is inside
    ("2026-12-07 18:59", True),
    ("2026-12-07 19:00", False),  # the end is outside
    ("2026-12-12 12:00", False),  # Saturday is not listed
    ("2026-12-11 12:00", True),  # Friday
])
def test_a_daytime_window_covers_its_listed_days_from_start_to_end(when, asleep):
    assert schedule.is_asleep(sched(days=WORKDAYS), at(when)) is asleep


@pytest.mark.parametrize("when, asleep", [
    ("2026-12-07 21:59", False),  # Monday evening before the window opens
    ("2026-12-07 22:00", True),
    ("2026-12-07 23:59", True),
    ("2026-12-08 00:00", True),  # after midnight: still Monday's window
    ("2026-12-08 05:59", True),
    ("2026-12-08 06:00", False),
    ("2026-12-08 22:30", False),  # Tuesday's evening: Tuesday is not listed
    ("2026-12-07 03:00", False),  # Monday early: Sunday's window, and Sunday is not listed
])
def test_a_window_crossing_midnight_closes_on_the_next_day(when, asleep):
    night = schedule.parse({"days": ["mon"], "start": "22:00", "end": "06:00", "tz": AMSTERDAM})
    assert schedule.is_asleep(night, at(when)) is asleep


def test_the_window_is_judged_in_its_own_time_zone_not_the_dispatchers():
    tokyo = schedule.parse({"days": ["mon"], "start": "09:00", "end": "10:00", "tz": "Asia/Tokyo"})
    monday_nine_thirty_in_tokyo = at("2026-12-07 09:30", "Asia/Tokyo")
    assert schedule.is_asleep(tokyo, monday_nine_thirty_in_tokyo)
    # The same wall-clock time in Amsterdam is eight hours later: outside Tokyo's window.
    assert not schedule.is_asleep(tokyo, at("2026-12-07 09:30"))


def test_a_window_keeps_its_local_hours_across_a_daylight_saving_change():
    window = sched(days=["sun"])
    assert schedule.is_asleep(window, at("2026-03-29 09:30"))  # the first day of summer time
    assert not schedule.is_asleep(window, at("2026-03-29 08:30"))
    assert schedule.is_asleep(window, at("2026-10-25 18:30"))  # back to winter time


def test_without_days_a_window_opens_every_day_and_24_00_ends_it_at_midnight():
    whole = schedule.parse({"start": "00:00", "end": "24:00", "tz": "UTC"})
    assert whole.days == tuple(range(7))
    assert all(schedule.is_asleep(whole, at(f"2026-12-{day:02d} 23:59", "UTC")) for day in range(7, 14))
    assert whole.to_json() == {"days": list(schedule.DAYS), "start": "00:00",
                               "end": "24:00", "tz": "UTC"}


def test_a_schedule_is_stored_in_one_normal_form():
    parsed = schedule.parse({"days": ["FRI", "mon", "mon"], "start": "09:00", "end": "19:00", "tz": "UTC"})
    assert parsed.to_json() == {"days": ["mon", "fri"], "start": "09:00", "end": "19:00", "tz": "UTC"}
    assert schedule.parse(parsed.to_json()) == parsed


@pytest.mark.parametrize("value, field", [
    ("mon 9-19", "sleep_schedule"),
    ({"start": "09:00", "end": "19:00"}, "sleep_schedule.tz"),
    ({"end": "19:00", "tz": "UTC"}, "sleep_schedule.start"),
    ({"start": "09:00", "tz": "UTC"}, "sleep_schedule.end"),
    ({"start": "9:00", "end": "19:00", "tz": "UTC"}, "sleep_schedule.start"),
    ({"start": "24:00", "end": "19:00", "tz": "UTC"}, "sleep_schedule.start"),
    ({"start": "09:00", "end": "19:60", "tz": "UTC"}, "sleep_schedule.end"),
    ({"start": "09:00", "end": 19, "tz": "UTC"}, "sleep_schedule.end"),
    ({"start": "09:00", "end": "09:00", "tz": "UTC"}, "sleep_schedule.end"),
    ({"start": "09:00", "end": "19:00", "tz": "Mars/Olympus"}, "sleep_schedule.tz"),
    ({"start": "09:00", "end": "19:00", "tz": "../../etc/passwd"}, "sleep_schedule.tz"),
    ({"start": "09:00", "end": "19:00", "tz": 1}, "sleep_schedule.tz"),
    ({"start": "09:00", "end": "19:00", "tz": "UTC", "days": []}, "sleep_schedule.days"),
    ({"start": "09:00", "end": "19:00", "tz": "UTC", "days": "mon"}, "sleep_schedule.days"),
    ({"start": "09:00", "end": "19:00", "tz": "UTC", "days": ["mon", "funday"]}, "sleep_schedule.days[1]"),
    ({"start": "09:00", "end": "19:00", "tz": "UTC", "weeks": [1]}, "sleep_schedule.weeks"),
])
def test_a_malformed_schedule_is_refused_naming_the_field(value, field):
    with pytest.raises(ValidationError) as caught:
        schedule.parse(value)
    assert caught.value.field == field
