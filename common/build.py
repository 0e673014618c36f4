"""What build of Corral this is, for ``corral_build_info`` and logs."""
from __future__ import annotations

from importlib import metadata


def version() -> str:
    """The installed package's version, or ``unknown`` when run from a bare source tree."""
    try:
        return metadata.version("corral")
    except metadata.PackageNotFoundError:
        return "unknown"
