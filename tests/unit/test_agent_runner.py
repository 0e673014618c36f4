"""ChunkRun against small real child processes: outcomes, progress, kills."""
from __future__ import annotations

import logging
import os
import sys
import threading
import time

import psutil

from agent.executors import Command
from agent.halts import HaltSet
from agent.parsers.sleep import SleepParser
from agent.registry import default_registry
from agent.runner import ChunkRun
from common.config import Config
from tests.conftest import missing

CONFIG = Config(progress_interval_s=0.2, kill_grace_s=1.0, log_tail_lines=3)
log = logging.getLogger("test")


def python(code: str) -> Command:
    return Command(argv=[sys.executable, "-c", code])


def runner(frames: list[int], reports: list | None = None, config: Config = CONFIG) -> ChunkRun:
    def report(progress, tail):
        if reports is not None:
            reports.append((time.monotonic(), progress, tail))
    return ChunkRun(SleepParser(frames), config, report, log)


def test_a_child_that_does_every_frame_completes():
    code = "for f in (1, 2): print(f'Frame {f} done', flush=True)"
    result = runner([1, 2]).run(python(code))
    assert (result.outcome, result.exit_code, result.progress.frames_done) == ("completed", 0, [1, 2])


def test_exit_zero_with_frames_missing_fails_with_the_count():
    result = runner([1, 2, 3, 4]).run(python("print('Frame 1 done'); print('Frame 2 done')"))
    assert (result.outcome, result.reason) == ("failed", "wrote 2 of 4 frames")
    assert result.progress.frames_done == [1, 2]


def test_a_non_zero_exit_fails_with_the_exit_code():
    result = runner([1]).run(python("import sys; sys.exit(3)"))
    assert (result.outcome, result.exit_code, result.reason) == ("failed", 3, "exit code 3")


def test_death_by_signal_fails_with_the_signal():
    result = runner([1]).run(python("import os; os.kill(os.getpid(), 9)"))
    assert (result.outcome, result.reason) == ("failed", "killed by signal 9")


def test_a_missing_executable_fails_without_a_traceback():
    result = runner([1]).run(Command(argv=["/nonexistent/blender", "-b"]))
    assert result.outcome == "failed"
    assert result.reason.startswith("cannot start /nonexistent/blender")


def test_log_tail_keeps_the_last_configured_lines():
    result = runner([1]).run(python("for i in range(10): print('line', i)"))
    assert result.log_tail.splitlines() == ["line 7", "line 8", "line 9"]


def test_progress_is_throttled_but_sent_promptly_once_the_interval_passed():
    reports: list = []
    code = ("import time\nfor f in range(1, 6):\n    print(f'Frame {f} done', flush=True)\n"
            "    time.sleep(0.05)\ntime.sleep(0.5)\nprint('bye', flush=True)")
    result = runner([1, 2, 3, 4, 5], reports).run(python(code))
    assert result.outcome == "completed"
    times = [t for t, _, _ in reports]
    assert all(b - a >= 0.19 for a, b in zip(times, times[1:], strict=False))
    assert reports[-1][1].frames_done == [1, 2, 3, 4, 5]
    # the last frames were reported when the interval passed, not only when the child exited
    assert reports[-1][0] < times[0] + 0.45


def test_cancel_kills_the_whole_process_group_and_reports_canceled():
    code = ("import subprocess, sys, time\n"
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            "print('grandchild', p.pid, flush=True)\nprint('Frame 1 done', flush=True)\ntime.sleep(60)")
    reports: list = []
    run = runner([1, 2], reports)
    thread = threading.Thread(target=lambda: reports.append(run.run(python(code))))
    thread.start()
    deadline = time.monotonic() + 10
    while not any(isinstance(r, tuple) and "grandchild" in r[2] for r in reports):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    grandchild = int(next(r for r in reports if isinstance(r, tuple))[2].split()[1])
    child = run.pid
    run.cancel("canceled", "aborted by the dispatcher")
    thread.join(10)
    result = reports[-1]
    assert (result.outcome, result.reason, result.progress.frames_done) == (
        "canceled", "aborted by the dispatcher", [1])
    assert not psutil.pid_exists(child)
    time.sleep(0.2)
    assert not psutil.pid_exists(grandchild) or psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE


def test_a_child_ignoring_sigterm_gets_sigkill_after_the_grace_period():
    code = ("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('ready', flush=True)\ntime.sleep(60)")
    run = runner([1], [])
    results: list = []
    thread = threading.Thread(target=lambda: results.append(run.run(python(code))))
    thread.start()
    while run.pid is None:
        time.sleep(0.02)
    time.sleep(0.3)
    started = time.monotonic()
    run.cancel("declined", "agent stopping")
    thread.join(10)
    assert 0.9 <= time.monotonic() - started < 5
    assert (results[0].outcome, results[0].reason) == ("declined", "agent stopping")


def test_cancel_before_run_starts_nothing():
    run = runner([1])
    run.cancel("canceled", "task 1 canceled")
    result = run.run(python("open('/tmp/should-not-run', 'w')"))
    assert (result.outcome, result.exit_code) == ("canceled", None)
    assert run.pid is None


def test_in_process_command_marks_every_frame_done_without_reports():
    reports: list = []
    result = runner([1, 2, 3], reports).run(Command(argv=None, all_done_on_success=True))
    assert (result.outcome, result.progress.frames_done, reports) == ("completed", [1, 2, 3], [])


def test_child_environment_gets_the_command_env():
    code = "import os; print('Frame 1 done' if os.environ['CORRAL_X'] == 'yes' else 'no')"
    result = runner([1]).run(Command(argv=[sys.executable, "-c", code], env={"CORRAL_X": "yes"}))
    assert result.outcome == "completed"


def test_halt_set_forgets_the_oldest_ids_past_its_limit():
    halted = HaltSet(limit=3)
    for task_id in (1, 2, 3, 4):
        halted.add(task_id)
    assert 1 not in halted and 4 in halted and len(halted) == 3
    halted.discard(4)
    assert 4 not in halted


def test_registry_leaves_out_commands_whose_tool_is_missing():
    registry = default_registry(Config(blender="/nonexistent/blender", ffmpeg="/nonexistent/ffmpeg"))
    assert registry.commands == ["noop", "sleep"]
    assert registry.versions == {}


def test_registry_reads_the_blender_version():
    if not os.path.exists("/usr/bin/blender"):
        missing("Blender at /usr/bin/blender")
    registry = default_registry(Config(blender="/usr/bin/blender", ffmpeg="/nonexistent/ffmpeg"))
    assert "blender_render" in registry.commands
    assert registry.versions["blender"].count(".") == 2
