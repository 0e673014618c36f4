"""Frame lists: parsing ``"1-10,15,20-22"`` and splitting frames into chunks."""
from __future__ import annotations

import re
from collections.abc import Iterator

from common.errors import ValidationError

FRAME_MIN, FRAME_MAX = -1_048_574, 1_048_574  # Blender's own limits
MAX_FRAMES = 1_000_000
_PART = re.compile(r"^\s*(-?\d{1,9})\s*(?:-\s*(-?\d{1,9})\s*)?$")

Ranges = list[list[int]]


def parse_frames(spec: str, field: str = "frames") -> list[int]:
    """Parse a frame list like ``"1-5,9,20-22"`` into sorted unique frames."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValidationError(field, "must be a frame list such as '1-10,15,20-22'")
    frames: set[int] = set()
    for part in spec.split(","):
        match = _PART.match(part)
        if not match:
            raise ValidationError(field, f"{part.strip()!r} is not a frame or a range like '4-8'")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first:
            raise ValidationError(field, f"range {first}-{last} ends before it starts")
        _check_frame(first, field)
        _check_frame(last, field)
        if len(frames) + (last - first + 1) > MAX_FRAMES:
            raise ValidationError(field, f"more than {MAX_FRAMES} frames")
        frames.update(range(first, last + 1))
    return sorted(frames)


def _check_frame(frame: int, field: str) -> None:
    if not FRAME_MIN <= frame <= FRAME_MAX:
        raise ValidationError(field, f"frame {frame} is outside {FRAME_MIN}..{FRAME_MAX}")


def to_ranges(frames: list[int]) -> Ranges:
    """Collapse sorted frames into inclusive ``[first, last]`` ranges."""
    ranges: Ranges = []
    for frame in frames:
        if ranges and frame == ranges[-1][1] + 1:
            ranges[-1][1] = frame
        else:
            ranges.append([frame, frame])
    return ranges


def expand(ranges: Ranges) -> list[int]:
    return [f for first, last in ranges for f in range(first, last + 1)]


def count(ranges: Ranges) -> int:
    return sum(last - first + 1 for first, last in ranges)


def format_ranges(ranges: Ranges) -> str:
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def split_chunks(ranges: Ranges, chunk_size: int) -> Iterator[Ranges]:
    """Split frames into chunks of at most ``chunk_size`` frames, in order of their first frame.

    Each run of consecutive frames is cut into full chunks on its own, so those
    render as one Blender range. Only the short remainders of runs are packed
    together (crossing a gap) while they fit: that saves a scene load per chunk
    without ever splitting a run that could have stayed whole.

    A generator, so a million-frame task is never a list of chunks: a full chunk
    is yielded at once, except while a packed chunk is still open, which starts
    before it and so must come first (only those full chunks wait, in ``held``).
    """
    partial: Ranges = []
    packed = 0  # frames in ``partial``
    held: list[Ranges] = []
    for first, last in ranges:
        start = first
        while start <= last:
            end = min(start + chunk_size - 1, last)
            if end - start + 1 == chunk_size:
                if partial:
                    held.append([[start, end]])
                else:
                    yield [[start, end]]
            elif partial and packed + end - start + 1 <= chunk_size:
                partial.append([start, end])
                packed += end - start + 1
            else:
                if partial:
                    yield partial
                    yield from held
                    held = []
                partial, packed = [[start, end]], end - start + 1
            start = end + 1
    if partial:
        yield partial
    yield from held
