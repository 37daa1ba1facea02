"""talkie: push-to-talk Gemini Live on a Raspberry Pi.

The version has one source, ``version`` in pyproject.toml: :func:`version` reads it from the
installed distribution's metadata, or from pyproject.toml itself in a source checkout that was
never installed (``talkie.__version__`` is the same, looked up when first asked for).
"""

from __future__ import annotations

import functools


@functools.cache
def version() -> str:
    """talkie's version, e.g. "0.1.0" ("unknown" if neither metadata nor pyproject.toml says)."""
    from importlib import metadata

    try:
        return metadata.version("talkie")
    except metadata.PackageNotFoundError:
        return _checkout_version()


def _checkout_version() -> str:
    import tomllib
    from pathlib import Path

    try:
        with open(Path(__file__).resolve().parents[2] / "pyproject.toml", "rb") as file:
            project = tomllib.load(file).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return "unknown"
    return str(project.get("version", "unknown")) if project.get("name") == "talkie" else "unknown"


def __getattr__(name: str) -> str:
    if name == "__version__":
        return version()
    raise AttributeError(f"module 'talkie' has no attribute {name!r}")
