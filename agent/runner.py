"""Run one chunk's child process: read its output, report progress, kill it on request.

The child runs in its own session (``start_new_session``), so a kill reaches
the whole process group: SIGTERM first, SIGKILL after ``kill_grace_s``.
Output is read without blocking so progress that is due goes out on time even
while the child is silent; lines end at ``\\n`` or ``\\r`` (ffmpeg's progress).
"""
from __future__ import annotations

import collections
import copy
import dataclasses
import logging
import os
import re
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable

from agent.executors import Command
from agent.parsers import Parser, Progress
from common.config import Config

MAX_LINE_CHARS = 2000
PROGRESS_TAIL_LINES = 5
POLL_S = 0.1
# After the child exits, how long to wait for grandchildren to close the pipe.
DRAIN_AFTER_EXIT_S = 1.0
_LINE_END = re.compile(rb"[\r\n]")

ProgressReport = Callable[[Progress, str], None]


@dataclasses.dataclass(frozen=True)
class Result:
    """How an attempt ended, ready to become a ``ChunkFinished``."""

    outcome: str
    progress: Progress
    exit_code: int | None = None
    reason: str = ""
    log_tail: str = ""


class ChunkRun:
    """One attempt at a chunk: started by ``run`` (blocking), stopped early by ``cancel``.

    ``cancel`` may come before ``run`` (an abort while the command is prepared):
    ``run`` then starts nothing.
    """

    def __init__(self, parser: Parser, config: Config, report: ProgressReport,
                 log: logging.LoggerAdapter | logging.Logger, stall_timeout_s: float = 0) -> None:
        self.command = Command(argv=None)
        self.stall_timeout_s = stall_timeout_s
        self._last_sign_of_life = time.monotonic()
        self.parser = parser
        self.config = config
        self.report = report
        self.log = log
        self.tail: collections.deque[str] = collections.deque(maxlen=max(config.log_tail_lines, 1))
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._cancel: tuple[str, str] | None = None  # (outcome, reason)
        self._term_sent_at: float | None = None
        self._killed = False
        self._reaped = False

    # -- control from other threads ----------------------------------------------

    def cancel(self, outcome: str, reason: str) -> None:
        """End the attempt early with ``outcome`` (canceled, declined or failed); thread-safe."""
        with self._lock:
            if self._cancel is None:
                self._cancel = (outcome, reason)
            if self._proc is not None and self._term_sent_at is None and not self._reaped:
                self._signal_group(signal.SIGTERM)
                self._term_sent_at = time.monotonic()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _signal_group(self, signum: int) -> None:
        assert self._proc is not None
        try:
            os.killpg(self._proc.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass  # the group is already gone

    def _escalate(self) -> None:
        with self._lock:
            if self._term_sent_at is None or self._killed or self._reaped:
                return
            if time.monotonic() - self._term_sent_at >= self.config.kill_grace_s:
                self.log.warning("child ignored SIGTERM for %.1fs: sending SIGKILL", self.config.kill_grace_s)
                self._signal_group(signal.SIGKILL)
                self._killed = True

    # -- the attempt ---------------------------------------------------------------

    def run(self, command: Command) -> Result:
        self.command = command
        if command.argv is None:
            return self._run_in_process()
        env = {**os.environ, **self.command.env}
        with self._lock:
            if self._cancel is not None:
                command.cleanup()
                return self._result(None)
            try:
                self._proc = subprocess.Popen(
                    self.command.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT, start_new_session=True, env=env)
            except OSError as exc:
                command.cleanup()
                return Result("failed", self.parser.progress,
                              reason=f"cannot start {self.command.argv[0]}: {exc.strerror or exc}")
        self.log.info("started pid %s: %s", self._proc.pid, self.command.argv[0])
        try:
            self._pump(self._proc)
            while True:
                try:
                    self._proc.wait(timeout=POLL_S)
                    with self._lock:
                        self._reaped = True
                    break
                except subprocess.TimeoutExpired:
                    self._escalate()
        finally:
            self.command.cleanup()
        return self._result(self._proc.returncode)

    def _run_in_process(self) -> Result:
        if self._cancel is None and self.command.all_done_on_success:
            self.parser.finish_all()
        return self._result(None if self._cancel else 0)

    def _pump(self, proc: subprocess.Popen[bytes]) -> None:
        """Read the child's output until it closes, reporting progress when due."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        pending = b""
        last_report = 0.0
        dirty = False
        exited_at: float | None = None
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                wait = POLL_S
                if dirty:
                    due_in = last_report + self.config.progress_interval_s - time.monotonic()
                    wait = max(0.0, min(wait, due_in))
                if selector.select(wait):
                    data = os.read(fd, 65536)
                    if not data:
                        break
                    self._last_sign_of_life = time.monotonic()
                    *lines, pending = _LINE_END.split(pending + data)
                    dirty = self._feed(lines) or dirty
                elif proc.poll() is not None:
                    exited_at = exited_at or time.monotonic()
                    if time.monotonic() - exited_at > DRAIN_AFTER_EXIT_S:
                        break
                self._check_stall()
                self._escalate()
                if dirty and time.monotonic() - last_report >= self.config.progress_interval_s:
                    self._report()
                    last_report, dirty = time.monotonic(), False
        proc.stdout.close()
        dirty = self._feed([pending]) or dirty
        if dirty:
            self._report()

    def _check_stall(self) -> None:
        """A child with no output and no progress for the task's stall timeout is hung."""
        if not self.stall_timeout_s:
            return
        silent = time.monotonic() - self._last_sign_of_life
        if silent >= self.stall_timeout_s:
            self.cancel("failed", f"stalled: no output or progress for {silent:.0f}s "
                                  f"(stall_timeout {self.stall_timeout_s:g}s)")

    def _feed(self, raw_lines: list[bytes]) -> bool:
        changed = False
        for raw in raw_lines:
            line = raw.decode("utf-8", "replace").rstrip()[:MAX_LINE_CHARS]
            if not line:
                continue
            self.tail.append(line)
            changed = self.parser.feed(line) or changed
        fatal = self.parser.progress.fatal
        if fatal:
            self.cancel("failed", fatal)
        return changed

    def _report(self) -> None:
        tail = "\n".join(list(self.tail)[-PROGRESS_TAIL_LINES:])
        self.report(copy.deepcopy(self.parser.progress), tail)

    def _result(self, returncode: int | None) -> Result:
        progress = self.parser.progress
        tail = "\n".join(self.tail)
        outcome, reason = self._judge(returncode)
        return Result(outcome, copy.deepcopy(progress), returncode, reason, tail)

    def _judge(self, returncode: int | None) -> tuple[str, str]:
        progress = self.parser.progress
        if self._cancel is not None:
            return self._cancel
        if returncode is None:
            return "failed", "the command did not run"
        if returncode < 0:
            return "failed", f"killed by signal {-returncode}"
        if returncode > 0:
            detail = f": {progress.error}" if progress.error else ""
            return "failed", f"exit code {returncode}{detail}"
        if self.command.all_done_on_success:
            self.parser.finish_all()
        expected = self.parser.frames
        done = len(set(expected) & set(progress.frames_done))
        if done < len(expected):
            return "failed", f"wrote {done} of {len(expected)} frames"
        return "completed", ""
