"""Job types: what tasks the farm runs, declared in files (docs/jobtypes.md).

The built-in types (``builtin/*.yaml``) and the files in ``CORRAL_JOB_TYPES_DIR``
are loaded the same way. One declaration drives the gateway's validation
(``validate``), the dispatcher's compiler (``dispatcher.compilers``) and
``GET /jobtypes``. A file with a mistake is refused with a message naming the
file, the line and the field; the farm runs on without that type.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from common.errors import ValidationError
from common.jobtypes.schema import (
    BUILTIN_PARSERS,
    Group,
    JobType,
    JobTypeError,
    RegexSpec,
    Setting,
    Step,
    load_text,
)
from common.jobtypes.validate import (
    PROTECTED_ENV,
    PROTECTED_ENV_PREFIXES,
    Validated,
    check_paths,
    env_matches,
    env_name_allowed,
    validate,
)

log = logging.getLogger(__name__)
BUILTIN_DIR = Path(__file__).with_name("builtin")
SUFFIXES = (".yaml", ".yml")
# Every parser an agent may be asked to use ("regex" comes with its patterns).
PARSERS = (*BUILTIN_PARSERS, "regex")


def load_file(path: str | Path) -> JobType:
    """Load one job-type file; raise ``JobTypeError`` for the first mistake."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise JobTypeError(str(path), None, "", f"cannot be read: {exc}") from None
    return load_text(text, str(path))


def load_dir(directory: str | Path) -> tuple[dict[str, JobType], list[JobTypeError]]:
    """Every job type in a directory, and the errors of the files refused."""
    types: dict[str, JobType] = {}
    errors: list[JobTypeError] = []
    for path in sorted(Path(directory).iterdir()):
        if path.suffix not in SUFFIXES or not path.is_file():
            continue
        try:
            jobtype = load_file(path)
        except JobTypeError as exc:
            errors.append(exc)
            continue
        if jobtype.name in types:
            errors.append(JobTypeError(str(path), None, "name",
                                       f"{jobtype.name!r} is also declared in {types[jobtype.name].source}"))
            continue
        types[jobtype.name] = jobtype
    return types, errors


@functools.cache
def registry(directory: str = "") -> Mapping[str, JobType]:
    """The built-in types, then the studio's from ``directory`` (a studio file may replace a built-in)."""
    types, errors = load_dir(BUILTIN_DIR)
    for error in errors:  # pragma: no cover - the built-ins are tested
        raise error
    if directory:
        if not Path(directory).is_dir():
            log.error("CORRAL_JOB_TYPES_DIR %s is not a directory: only the built-in job types are loaded",
                      directory)
        else:
            studio, refused = load_dir(directory)
            for error in refused:
                log.error("job type refused: %s", error)
            for name, jobtype in studio.items():
                if name in types:
                    log.warning("job type %s from %s replaces the built-in one", name, jobtype.source)
            types.update(studio)
    log.info("job types: %s", ", ".join(sorted(types)))
    return types


def task_type(name: Any, directory: str = "") -> JobType:
    """The loaded job type called ``name``, or ``ValidationError("type", ...)``."""
    types = registry(directory)
    if not isinstance(name, str) or name not in types:
        raise ValidationError("type", f"must be one of {', '.join(sorted(types))}")
    return types[name]


def resolve_parser(jobtype: JobType, parser: Any) -> str:
    """The task's parser: the first step's unless the submission names another parser of the type."""
    if parser is None or parser == "":
        return jobtype.steps[0].parser
    if not isinstance(parser, str) or parser not in jobtype.parsers:
        raise ValidationError("parser", f"must be one of {', '.join(jobtype.parsers)} "
                                        f"for type {jobtype.name}")
    return parser


__all__ = [
    "PARSERS", "PROTECTED_ENV", "PROTECTED_ENV_PREFIXES", "Group", "JobType", "JobTypeError", "RegexSpec",
    "Setting", "Step", "Validated", "check_paths", "env_matches", "env_name_allowed", "load_file",
    "load_dir", "load_text", "registry", "resolve_parser", "task_type", "validate",
]
