"""Typed input errors. Each names the file, line or config key at fault."""

from __future__ import annotations

from pathlib import Path


class GenesisError(Exception):
    """Base class for errors a user can act on (bad input, bad config, failed download)."""


class InputFileError(GenesisError, ValueError):
    """A malformed input file. The message names the file and, where known, the line."""

    def __init__(self, path: str | Path, message: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class ConfigError(GenesisError, ValueError):
    """A bad configuration value. The message names the key."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"config key '{key}': {message}")


class DownloadError(GenesisError, RuntimeError):
    """A download that failed or did not verify; no output is left behind."""
