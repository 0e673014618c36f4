"""Checking a job-type file's data field by field and building the ``JobType`` it declares."""
from __future__ import annotations

import re
from typing import Any

from common.jobtypes import tokens
from common.jobtypes.schema import (
    BUILTIN_PARSERS,
    CHUNK_TOKENS,
    CONDITIONS,
    MAX_CHUNK_SIZE,
    NAME_RE,
    SETTING_TYPES,
    Arg,
    Group,
    JobType,
    Path,
    RegexSpec,
    Setting,
    Step,
    _Reader,
    walk_args,
)

TOP = ("name", "label", "version", "description", "settings", "steps")
SETTING_FIELDS = ("type", "label", "description", "required", "default", "min", "max", "min_length",
                  "max_length", "pattern", "choices", "access", "relative_to", "allow_dash")
STEP_FIELDS = ("name", "command", "args", "after", "when", "chunks", "chunk_size", "chunk_target_s",
               "chunk_min", "chunk_max", "contiguous", "parser", "done_on_exit", "env_allow",
               "stall_timeout_s", "retries", "pool")
REGEX_FIELDS = ("progress", "progress_unit", "file_written", "error", "fatal")
POOL_RE = re.compile(r"^[a-z0-9_-]{1,32}$")
ENV_PATTERN_RE = re.compile(r"^[A-Z_][A-Z0-9_]*\*?$|^\*$")


def declare(r: _Reader, data: Any, source: str) -> JobType:
    top = r.mapping(data, (), TOP, required=("name", "version", "settings", "steps"))
    name = r.string(top["name"], ("name",), NAME_RE)
    settings = _settings(r, top["settings"])
    by_name = {s.name: s for s in settings}
    if not isinstance(top["steps"], list) or not top["steps"]:
        raise r.fail(("steps",), "must be a non-empty list")
    steps: list[Step] = []
    for i, raw in enumerate(top["steps"]):
        steps.append(_step(r, raw, ("steps", i), by_name, [s.name for s in steps]))
    return JobType(name=name, label=str(top.get("label") or name),
                   version=r.integer(top["version"], ("version",), 1, 10**6),
                   description=str(top.get("description") or ""), settings=tuple(settings),
                   steps=tuple(steps), source=source)


# ---------------------------------------------------------------- settings


def _settings(r: _Reader, raw: Any) -> list[Setting]:
    r.mapping(raw, ("settings",), tuple(raw) if isinstance(raw, dict) else ())
    out = [_setting(r, key, value, ("settings", key)) for key, value in raw.items()]
    frames = [s for s in out if s.type == "frames"]
    if [s.name for s in frames] != ["frames"]:
        raise r.fail(("settings",), "must declare exactly one setting of type frames, named frames")
    names = {s.name for s in out}
    for s in out:
        if s.relative_to and (s.relative_to not in names or _type_of(out, s.relative_to) != "path"):
            raise r.fail(("settings", s.name, "relative_to"), f"{s.relative_to!r} is not a path setting")
        if s.required and s.default is not None:
            raise r.fail(("settings", s.name, "default"), "a required setting has no default")
    return out


def _type_of(settings: list[Setting], name: str) -> str:
    return next(s.type for s in settings if s.name == name)


def _setting(r: _Reader, name: Any, raw: Any, path: Path) -> Setting:
    _setting_name(r, name, path)
    if name in ("frame_start", "frame_end"):
        raise r.fail(path, "frame_start and frame_end are how the frames setting is also given")
    f = r.mapping(raw, path, SETTING_FIELDS, required=("type",))
    kind = f["type"]
    if kind not in SETTING_TYPES:
        raise r.fail((*path, "type"), f"must be one of {', '.join(SETTING_TYPES)}")
    values: dict[str, Any] = {"name": name, "type": kind}
    for key in ("label", "description"):
        if key in f:
            values[key] = r.string(f[key], (*path, key))
    for key in ("required", "allow_dash"):
        if key in f:
            values[key] = r.boolean(f[key], (*path, key))
    for key in ("min", "max"):
        if key in f:
            _only(r, path, key, kind, ("integer", "float", "frames"))
            values[key] = r.number(f[key], (*path, key))
    for key in ("min_length", "max_length"):
        if key in f:
            _only(r, path, key, kind, ("string", "path"))
            values[key] = r.integer(f[key], (*path, key), 1, 65536)
    values.update(_kind_fields(r, f, path, kind))
    if "default" in f:
        values["default"] = f["default"]
    return Setting(**values)


def _setting_name(r: _Reader, name: Any, path: Path) -> None:
    if isinstance(name, bool):
        raise r.fail(path, "YAML reads on/off/yes/no/true/false as booleans: quote the setting's name")
    r.string(name, path, NAME_RE)
    if name in CHUNK_TOKENS and name != "frames":
        raise r.fail(path, f"{name!r} is the name of a chunk token; choose another")


def _only(r: _Reader, path: Path, key: str, kind: str, kinds: tuple[str, ...]) -> None:
    if kind not in kinds:
        raise r.fail((*path, key), f"applies only to {', '.join(kinds)} settings, not {kind}")


def _kind_fields(r: _Reader, f: dict, path: Path, kind: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if "pattern" in f:
        _only(r, path, "pattern", kind, ("string",))
        values["pattern"] = r.regex(f["pattern"], (*path, "pattern"))
    if kind == "choice":
        values.update(_choices(r, f.get("choices"), (*path, "choices")))
    elif "choices" in f:
        _only(r, path, "choices", kind, ("choice",))
    if kind == "path":
        if f.get("access") not in ("read", "write"):
            raise r.fail((*path, "access"), "a path must say access: read or access: write")
        values["access"] = f["access"]
        if "relative_to" in f:
            values["relative_to"] = r.string(f["relative_to"], (*path, "relative_to"), NAME_RE)
    else:
        for key in ("access", "relative_to"):
            if key in f:
                _only(r, path, key, kind, ("path",))
    return values


def _choices(r: _Reader, raw: Any, path: Path) -> dict[str, Any]:
    if isinstance(raw, list) and raw:
        return {"choices": tuple(r.string(v, (*path, i)) for i, v in enumerate(raw))}
    if isinstance(raw, dict) and raw:
        pairs = tuple((r.string(k, (*path, k)), r.string(v, (*path, k))) for k, v in raw.items())
        return {"choices": tuple(k for k, _ in pairs), "arguments": pairs}
    raise r.fail(path, "a choice setting needs choices: a list, or a mapping of choice to argument")


# ---------------------------------------------------------------- steps


def _step(r: _Reader, raw: Any, path: Path, settings: dict[str, Setting], earlier: list[str]) -> Step:
    f = r.mapping(raw, path, STEP_FIELDS, required=("name", "command", "args"))
    name = r.string(f["name"], (*path, "name"), NAME_RE)
    if name in earlier:
        raise r.fail((*path, "name"), f"step {name!r} is declared twice")
    values: dict[str, Any] = {
        "name": name, "command": r.string(f["command"], (*path, "command"), NAME_RE),
        "args": _args(r, f["args"], (*path, "args"), settings),
    }
    if "after" in f:
        values["after"] = r.names(f["after"], (*path, "after"))
        for i, other in enumerate(values["after"]):
            if other not in earlier:
                raise r.fail((*path, "after", i), f"{other!r} is not a step declared before this one")
    if "when" in f:
        values["when"] = _conditions(r, f["when"], (*path, "when"), settings)
    values.update(_chunking(r, f, path, settings))
    values.update(_parser(r, f.get("parser", "noop"), (*path, "parser")))
    values.update(_limits(r, f, path))
    step = Step(**values)
    _check_tokens(r, step, path, settings)
    return step


def _args(r: _Reader, raw: Any, path: Path, settings: dict[str, Setting]) -> tuple[Arg, ...]:
    if not isinstance(raw, list):
        raise r.fail(path, "must be a list of arguments")
    out: list[Arg] = []
    for i, item in enumerate(raw):
        where = (*path, i)
        if isinstance(item, dict):
            g = r.mapping(item, where, ("when", "when_any", "args"), required=("args",))
            if ("when" in g) == ("when_any" in g):
                raise r.fail(where, "a group needs exactly one of when or when_any")
            key = "when" if "when" in g else "when_any"
            out.append(Group(_conditions(r, g[key], (*where, key), settings),
                             _args(r, g["args"], (*where, "args"), settings), any=key == "when_any"))
        elif isinstance(item, (str, int)) and not isinstance(item, bool):
            out.append(_template(r, str(item), where, settings))
        else:
            raise r.fail(where, "must be a string or a group {when: ..., args: [...]}")
    return tuple(out)


def _template(r: _Reader, text: str, path: Path, settings: dict[str, Setting]) -> str:
    try:
        parts = tokens.tokens_of(text)
    except tokens.TemplateError as exc:
        raise r.fail(path, str(exc)) from None
    for token in parts:
        if token.name not in settings and token.name not in CHUNK_TOKENS:
            raise r.fail(path, f"{{{token.name}}} is neither a setting nor one of {', '.join(CHUNK_TOKENS)}")
        if token.filter and token.filter not in tokens.FILTERS:
            raise r.fail(path, f"filter |{token.filter} is not one of {', '.join(tokens.FILTERS)}")
        if token.spec:
            _check_spec(r, token, path)
    return text


def _check_spec(r: _Reader, token: tokens.Token, path: Path) -> None:
    if token.name in ("frames", "task_frames"):
        if not token.spec or len(token.spec) > 4:
            raise r.fail(path, f"{{{token.name}:...}} takes a range separator such as '..'")
    elif token.name in CHUNK_TOKENS:
        try:
            tokens.format_int(0, token.spec)
        except tokens.TemplateError as exc:
            raise r.fail(path, str(exc)) from None
    else:
        raise r.fail(path, f"{{{token.name}:{token.spec}}}: only frame tokens take a ':' spec")


def _conditions(r: _Reader, raw: Any, path: Path, settings: dict[str, Setting]) -> tuple[str, ...]:
    out = r.names(raw, path)
    for i, cond in enumerate(out):
        subject = cond.removeprefix("not ").strip()
        if subject not in settings and subject not in CONDITIONS:
            raise r.fail((*path, i) if not isinstance(raw, str) else path,
                         f"{subject!r} is neither a setting nor one of {', '.join(CONDITIONS)}")
    return out


def _size(r: _Reader, value: Any, path: Path, settings: dict[str, Setting], kind: str) -> Any:
    if isinstance(value, str):
        if value not in settings or settings[value].type not in (kind, "integer"):
            raise r.fail(path, f"{value!r} is not a numeric setting")
        return value
    if kind == "float":
        if r.number(value, path) <= 0:
            raise r.fail(path, "must be positive")
        return float(value)
    return r.integer(value, path, 1, MAX_CHUNK_SIZE)


def _chunking(r: _Reader, f: dict, path: Path, settings: dict[str, Setting]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    chunks = f.get("chunks", "frames")
    if chunks not in ("frames", "single"):
        raise r.fail((*path, "chunks"), "must be frames (chunks over the task's frames) or single")
    values["chunks"] = chunks
    sizing = [k for k in ("chunk_size", "chunk_target_s", "chunk_min", "chunk_max", "contiguous") if k in f]
    if chunks == "single" and sizing:
        raise r.fail((*path, sizing[0]), "a single-chunk step is not sized")
    if "chunk_size" in f and "chunk_target_s" in f:
        raise r.fail((*path, "chunk_target_s"), "give chunk_size or chunk_target_s, not both")
    if "chunk_size" in f:
        values["chunk_size"] = _size(r, f["chunk_size"], (*path, "chunk_size"), settings, "integer")
    if "chunk_target_s" in f:
        values["chunk_target_s"] = _size(r, f["chunk_target_s"], (*path, "chunk_target_s"), settings, "float")
    for key in ("chunk_min", "chunk_max"):
        if key in f:
            if "chunk_target_s" not in f:
                raise r.fail((*path, key), "applies only with chunk_target_s")
            values[key] = r.integer(f[key], (*path, key), 1, MAX_CHUNK_SIZE)
    if values.get("chunk_min", 1) > values.get("chunk_max", 100):
        raise r.fail((*path, "chunk_max"), "must not be less than chunk_min")
    if "contiguous" in f:
        values["contiguous"] = r.boolean(f["contiguous"], (*path, "contiguous"))
    values["done_on_exit"] = chunks == "single"
    if "done_on_exit" in f:
        values["done_on_exit"] = r.boolean(f["done_on_exit"], (*path, "done_on_exit"))
    return values


def _parser(r: _Reader, raw: Any, path: Path) -> dict[str, Any]:
    if isinstance(raw, str):
        if raw not in BUILTIN_PARSERS:
            raise r.fail(path, f"must be one of {', '.join(BUILTIN_PARSERS)} or {{regex: {{...}}}}")
        return {"parser": raw}
    f = r.mapping(raw, path, ("regex",), required=("regex",))
    g = r.mapping(f["regex"], (*path, "regex"), REGEX_FIELDS)
    where = (*path, "regex")
    unit = g.get("progress_unit", "frame")
    if unit not in ("frame", "percent"):
        raise r.fail((*where, "progress_unit"), "must be frame or percent")
    spec = RegexSpec(
        progress=r.regex(g["progress"], (*where, "progress"), 1) if "progress" in g else "",
        progress_unit=unit,
        file_written=r.regex(g["file_written"], (*where, "file_written"), 1) if "file_written" in g else "",
        error=r.regex(g["error"], (*where, "error")) if "error" in g else "",
        fatal=r.regex(g["fatal"], (*where, "fatal")) if "fatal" in g else "",
    )
    if not (spec.progress or spec.file_written):
        raise r.fail(where, "needs a progress or a file_written pattern")
    return {"parser": "regex", "regex": spec}


def _limits(r: _Reader, f: dict, path: Path) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if "env_allow" in f:
        names = r.names(f["env_allow"], (*path, "env_allow"))
        for i, pattern in enumerate(names):
            if not ENV_PATTERN_RE.match(pattern):
                raise r.fail((*path, "env_allow", i),
                             "must be an UPPER_CASE name, a prefix ending in *, or *")
        values["env_allow"] = names
    if "stall_timeout_s" in f:
        values["stall_timeout_s"] = r.integer(f["stall_timeout_s"], (*path, "stall_timeout_s"), 0, 7 * 86400)
    if "retries" in f:
        values["retries"] = r.integer(f["retries"], (*path, "retries"), 0, 100)
    if "pool" in f:
        values["pool"] = r.string(f["pool"], (*path, "pool"), POOL_RE)
    return values


def _check_tokens(r: _Reader, step: Step, path: Path, settings: dict[str, Setting]) -> None:
    """A token of an optional setting without a default must sit under a condition that names it."""
    guarded = set(step.when)
    for i, (template, conditions) in enumerate(walk_args(step.args)):
        for token in tokens.tokens_of(template):
            s = settings.get(token.name)
            if s is None or s.required or s.default is not None or s.type in ("boolean", "frames"):
                continue
            if token.name not in guarded and token.name not in conditions:
                raise r.fail((*path, "args"), f"{{{token.name}}} (argument {i}) is optional without a "
                                              f"default: put it in a group with when: {token.name}")
        if step.chunks == "single":
            for token in tokens.tokens_of(template):
                if token.name in ("frame_first", "frame_last", "frame_count", "frames"):
                    raise r.fail((*path, "args"), f"{{{token.name}}}: a single-chunk step has no chunk "
                                                  "frames (use task_frames)")
    if step.parser in ("blender_render", "sleep") and step.chunks == "single":
        raise r.fail((*path, "parser"), f"the {step.parser} parser needs frames")
