"""Reading when something happened from a Corral process's log (``setup_logging``'s timestamps)."""
from __future__ import annotations

import datetime
import re
from pathlib import Path

STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")


def first_after(path: Path, needle: str, after: float) -> float | None:
    """The wall-clock time of the first log line containing ``needle`` logged after ``after``."""
    if not path.exists():
        return None
    for line in path.read_text(errors="replace").splitlines():
        match = STAMP.match(line)
        if not match or needle not in line:
            continue
        # asctime is local time, like time.time() is read against here.
        when = datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").timestamp()
        when += int(match.group(2)) / 1000
        if when >= after:
            return when
    return None
