"""Sampling a running process with py-spy while a row measures it (``--profile``).

``py-spy record --format raw`` writes collapsed stacks; ``top_frames`` turns them
into the share of samples that pass through each function (inclusive), which
is what the findings in docs/benchmarks.md quote.
"""
from __future__ import annotations

import collections
import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from bench import farm

PROFILE_DIR: Path | None = None  # set by ``python -m bench --profile``


@contextlib.contextmanager
def sampled(pid: int, name: str, enabled: bool = True, duration_s: int = 600) -> Iterator[None]:
    """Record ``pid`` (and its children) while the block runs, if profiling is on."""
    if not enabled or PROFILE_DIR is None or (shutil.which("py-spy") is None and not _venv_pyspy()):
        yield
        return
    PROFILE_DIR.mkdir(parents=True, exist_ok=True)
    out = PROFILE_DIR / f"{name}.txt"
    argv = [_venv_pyspy() or "py-spy", "record", "--pid", str(pid), "--rate", "100", "--subprocesses",
            "--format", "raw", "--duration", str(duration_s), "--output", str(out), "--nonblocking"]
    if os.environ.get("CORRAL_PROFILE_GIL"):  # only samples holding the GIL: on-CPU Python, no waits
        argv.append("--gil")
    proc = farm.spawn(argv, {}, PROFILE_DIR / f"{name}.log")
    try:
        yield
    finally:
        farm.stop(proc, sig=2, grace_s=20)  # SIGINT: py-spy writes what it has


def _venv_pyspy() -> str | None:
    path = farm.ROOT / ".venv" / "bin" / "py-spy"
    return str(path) if path.exists() else None


PROJECT = ("dispatcher/", "api_gateway/", "common/", "agent/", "corral/")


def _frames(raw: Path) -> Iterator[tuple[list[str], int]]:
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            # "func (file:line)" without the line; the first entry names the process.
            frames = [frame.rsplit(":", 1)[0] + ")" for frame in stack.split(";")[1:]]
            yield frames, int(n)


def top_frames(raw: Path, count: int = 12) -> list[tuple[float, str]]:
    """(percent of samples, function) for Corral's functions most often on the stack."""
    totals: collections.Counter[str] = collections.Counter()
    samples = 0
    for frames, n in _frames(raw):
        samples += n
        for frame in set(frames):
            if any(f"({p}" in frame for p in PROJECT):
                totals[frame] += n
    return [(100 * n / samples, name) for name, n in totals.most_common(count)] if samples else []


def top_leaves(raw: Path, count: int = 8) -> list[tuple[float, str]]:
    """(percent of samples, function) where the time is spent itself (the innermost frame)."""
    totals: collections.Counter[str] = collections.Counter()
    samples = 0
    for frames, n in _frames(raw):
        samples += n
        if frames:
            totals[frames[-1]] += n
    return [(100 * n / samples, name) for name, n in totals.most_common(count)] if samples else []
