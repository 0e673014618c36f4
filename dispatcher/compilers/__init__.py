"""The one job compiler: a job type's declaration and a task's settings in, the exact chunk list out.

Pure (no I/O), so tests assert the chunk list; a generator, so the list is
never in memory (``dispatcher.tasks`` inserts it a window at a time). Each step that runs (its
``when`` holds) becomes chunks over the task's frames (``chunk_size`` frames
each, or ``chunk_min`` for an adaptive step, which ``dispatcher.adaptive``
re-sizes as chunks finish) or one chunk. A step's chunks wait for every chunk
of the steps named in its ``after``.

A chunk's ``params`` is what the agent needs to run it (docs/protocol.md):
``args`` (the argv after the agent's executable), ``env``, the ``paths`` it
reads or writes, ``done_on_exit``, and for a regex parser ``parser_spec``.
"""
from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any, NamedTuple

from common.errors import CorralError
from common.frames import Ranges, split_chunks
from common.jobtypes import JobType, Step, env_matches, task_type
from common.jobtypes.render import Scope, TemplateError, render_args, resolve_paths
from common.jobtypes.schema import CHUNK_TOKENS, CONDITIONS, Arg, Group, walk_args
from common.jobtypes.tokens import tokens_of


class CompileError(CorralError):
    """The task's settings cannot be turned into commands (a value would break an argument)."""


class ChunkSpec(NamedTuple):
    """One chunk as the compiler describes it: a named tuple, immutable and cheap to make (a
    million-frame task makes a million).

    ``params`` may be one dict shared by every chunk of a step whose arguments
    name no chunk token: read it, never change it.
    """

    index: int
    command: str
    frames: Ranges
    params: dict[str, Any]
    parser: str | None = None  # None: the task's parser
    depends_on: tuple[int, ...] = ()
    step: str = ""


def compile_task(jobtype: JobType | str, settings: dict[str, Any],
                 directory: str = "") -> Iterator[ChunkSpec]:
    """Every chunk of a task whose settings ``common.jobtypes.validate`` normalised, in index order.

    A generator: a million-chunk task is compiled and inserted a window at a
    time, never held as a list. The same settings always give the same chunks,
    which is what lets an interrupted compile resume at any index.
    """
    jt = task_type(jobtype, directory) if isinstance(jobtype, str) else jobtype
    values = resolve_paths(jt, settings)
    index = 0
    indices: dict[str, range] = {}
    for step in jt.steps:
        scope = Scope(jt, values, [])
        if not all(scope.holds(c) for c in step.when):
            continue
        depends = tuple(i for name in step.after for i in indices.get(name, ()))
        first = index
        index += yield from step_chunks(jt, step, values, scope, first, depends)
        indices[step.name] = range(first, index)


def step_chunks(jt: JobType, step: Step, values: dict[str, Any], scope: Scope, first: int,
                depends: tuple[int, ...]) -> Generator[ChunkSpec, None, int]:
    """The chunks of one step, numbered from ``first``; returns how many there were.

    Arguments that name no chunk token are the same for every chunk: they are
    rendered once and every chunk shares one ``params``.
    """
    shared = step_params(jt, step, values)
    constant = None if args_vary(step.args) else {"args": chunk_args(step, scope), **shared}
    index = first
    for frames in plan_frames(step, values):
        params = constant if constant is not None else {
            "args": chunk_args(step, scope.for_chunk(frames)), **shared}
        yield ChunkSpec(index, step.command, frames, params, step.parser, depends, step.name)
        index += 1
    return index - first


def args_vary(args: tuple[Arg, ...]) -> bool:
    """Whether an argument list renders differently from chunk to chunk (names a chunk token)."""
    for arg in args:
        if isinstance(arg, Group):
            if any(c.removeprefix("not ").strip() in CONDITIONS for c in arg.when) or args_vary(arg.args):
                return True
        elif any(t.name in CHUNK_TOKENS for t in tokens_of(arg)):
            return True
    return False


def plan_frames(step: Step, values: dict[str, Any]) -> Iterator[Ranges]:
    """The frames of each chunk of a step: one chunk without frames for a single-chunk step."""
    if step.chunks == "single":
        return iter([[]])
    return split_frames(values["frames"], initial_size(step, values), step.contiguous)


def split_frames(ranges: Ranges, size: int, contiguous: bool) -> Iterator[Ranges]:
    if not contiguous:
        return split_chunks(ranges, size)
    return (chunk for run in ranges for chunk in split_chunks([run], size))


def initial_size(step: Step, values: dict[str, Any]) -> int:
    if step.chunk_target_s is not None:
        return step.chunk_min  # small first; dispatcher.adaptive sizes the rest from measured frame times
    size = values[step.chunk_size] if isinstance(step.chunk_size, str) else step.chunk_size
    return int(size)


def chunk_params(jt: JobType, step: Step, values: dict[str, Any], frames: Ranges) -> dict[str, Any]:
    """What the agent gets for one chunk of ``step`` over ``frames`` (``values``: paths resolved)."""
    return {"args": chunk_args(step, Scope(jt, values, frames)), **step_params(jt, step, values)}


def chunk_args(step: Step, scope: Scope) -> list[str]:
    try:
        return render_args(step.args, scope)
    except TemplateError as exc:
        raise CompileError(f"step {step.name}: {exc}") from None


def step_params(jt: JobType, step: Step, values: dict[str, Any]) -> dict[str, Any]:
    """The params every chunk of a step shares (all but ``args``)."""
    params: dict[str, Any] = {"env": step_env(jt, step, values), "paths": step_paths(jt, step, values),
                              "done_on_exit": step.done_on_exit}
    if step.regex is not None:
        params["parser_spec"] = step.regex.as_dict()
    if step.stall_timeout_s is not None:
        params["stall_timeout_s"] = step.stall_timeout_s
    return params


def step_env(jt: JobType, step: Step, values: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for s in jt.settings:
        if s.type == "environment" and isinstance(values.get(s.name), dict):
            env.update({k: v for k, v in values[s.name].items() if env_matches(k, step.env_allow)})
    return env


def step_paths(jt: JobType, step: Step, values: dict[str, Any]) -> list[dict[str, str]]:
    """The path settings the step's arguments name, for the agent's storage and preflight checks."""
    names = dict.fromkeys(t.name for template, _ in walk_args(step.args) for t in tokens_of(template))
    out = []
    for name in names:
        s = jt.setting(name)
        if s is not None and s.type == "path" and isinstance(values.get(name), str):
            out.append({"setting": name, "path": values[name], "access": s.access})
    return out


__all__ = ["ChunkSpec", "CompileError", "args_vary", "chunk_params", "compile_task", "plan_frames",
           "split_frames", "step_chunks"]
