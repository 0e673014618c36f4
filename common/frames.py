"""Frame lists: parsing ``"1-10,15,20-22"`` and splitting frames into chunks."""
from __future__ import annotations

import re

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


def split_chunks(ranges: Ranges, chunk_size: int) -> list[Ranges]:
    """Split frames into chunks of at most ``chunk_size`` frames.

    Each run of consecutive frames is cut into full chunks on its own, so those
    render as one Blender range. Only the short remainders of runs are packed
    together (crossing a gap) while they fit: that saves a scene load per chunk
    without ever splitting a run that could have stayed whole.
    """
    chunks: list[Ranges] = []
    partial: Ranges = []
    for first, last in ranges:
        start = first
        while start <= last:
            end = min(start + chunk_size - 1, last)
            piece = [start, end]
            if end - start + 1 == chunk_size:
                chunks.append([piece])
            elif partial and count(partial) + end - start + 1 <= chunk_size:
                partial.append(piece)
            else:
                if partial:
                    chunks.append(partial)
                partial = [piece]
            start = end + 1
    if partial:
        chunks.append(partial)
    chunks.sort(key=lambda chunk: chunk[0][0])
    return chunks
