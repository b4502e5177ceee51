"""The checked-in tree itself: what a merge or an edit can leave behind unnoticed."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFLICT = re.compile(r"^(<{7} |={7}$|>{7} )", re.M)


def tracked_text_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.skip(f"not a git checkout: {err}")
    paths = [ROOT / p for p in out.decode().split("\0") if p]
    return [p for p in paths if p.suffix in {".py", ".md", ".yaml", ".yml", ".smk", ".cfg",
                                             ".toml", ".txt"} or p.name == "Snakefile"]


def test_no_merge_conflict_markers_are_committed():
    files = tracked_text_files()
    assert files, "no tracked text files found"
    marked = [f"{p.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}"
              for p in files if p.is_file()
              for text in [p.read_text(errors="replace")]
              for m in CONFLICT.finditer(text)]
    assert not marked, f"merge conflict markers left in: {marked}"
