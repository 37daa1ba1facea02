"""Config files for the config tests: written to a folder, and the error a bad one gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from talkie.config import ConfigError, load


def write(tmp_path: Path, text: str, name: str = "talkie.toml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def error(tmp_path: Path, text: str) -> str:
    """The ConfigError message for a config file holding ``text``."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load(path)
    return str(caught.value)
