"""Logging for the workflow's rule scripts: stderr/stdout into the rule's log file.

Errors a user can act on (GenesisError) are written as one clear line to the log and to the
terminal, and the job exits non-zero without a traceback; anything else keeps its traceback.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

from genesis_rna.errors import GenesisError


@contextlib.contextmanager
def rule_log(path: str | Path) -> Iterator[None]:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        with contextlib.redirect_stderr(fh), contextlib.redirect_stdout(fh):
            try:
                yield
            except GenesisError as exc:
                message = f"ERROR: {exc}"
                print(message, file=fh, flush=True)
                print(message, file=sys.__stderr__, flush=True)
                raise SystemExit(1) from None
