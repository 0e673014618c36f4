"""A job type as JSON: what ``GET /jobtypes`` shows and ``corral jobtypes show`` prints.

The settings part is a form description (type, required, default, limits), so
a client such as the dashboard can build a submit form from it.
"""
from __future__ import annotations

from typing import Any

from common.jobtypes.schema import Arg, Group, JobType, Setting, Step


def setting_body(s: Setting) -> dict[str, Any]:
    body: dict[str, Any] = {"type": s.type, "required": s.required}
    optional = {"label": s.label, "description": s.description, "default": s.default, "min": s.min,
                "max": s.max, "pattern": s.pattern, "access": s.access, "relative_to": s.relative_to}
    body.update({k: v for k, v in optional.items() if v not in (None, "")})
    if s.type in ("string", "path"):
        body.update(min_length=s.min_length, max_length=s.max_length, allow_dash=s.allow_dash)
    if s.choices:
        body["choices"] = list(s.choices)
    if s.type == "frames":
        body["also_as"] = ["frame_start", "frame_end"]
    return body


def args_body(args: tuple[Arg, ...]) -> list[Any]:
    out: list[Any] = []
    for arg in args:
        if isinstance(arg, Group):
            out.append({"when_any" if arg.any else "when": list(arg.when), "args": args_body(arg.args)})
        else:
            out.append(arg)
    return out


def step_body(step: Step, full: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"name": step.name, "command": step.command, "after": list(step.after),
                            "chunks": step.chunks, "parser": step.parser}
    if step.chunk_target_s is not None:
        body["chunk_target_s"] = step.chunk_target_s
        body.update(chunk_min=step.chunk_min, chunk_max=step.chunk_max)
    elif step.chunks == "frames":
        body["chunk_size"] = step.chunk_size
    if step.when:
        body["when"] = list(step.when)
    if step.pool:
        body["pool"] = step.pool
    if full:
        body["args"] = args_body(step.args)
        body["env_allow"] = list(step.env_allow)
        if step.regex is not None:
            body["regex"] = step.regex.as_dict()
        for key in ("stall_timeout_s", "retries"):
            if getattr(step, key) is not None:
                body[key] = getattr(step, key)
        body["contiguous"] = step.contiguous
        body["done_on_exit"] = step.done_on_exit
    return body


def jobtype_body(jt: JobType, full: bool = False) -> dict[str, Any]:
    return {
        "name": jt.name, "label": jt.label, "version": jt.version, "description": jt.description,
        "settings": {s.name: setting_body(s) for s in jt.settings},
        "steps": [step_body(step, full) for step in jt.steps],
    }
