"""Run the real snakemake CLI on a copy of the workflow in a temporary folder."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.helpers import REPO

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def copy_workflow(dest: Path) -> Path:
    """Copy what a user clones (workflow/, config/, resources/, environment.yml) into ``dest``."""
    for name in ("workflow", "config", "resources"):
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "environment.yml", dest / "environment.yml")
    return dest


def write_config(dest: Path, overrides: dict, name: str = "test_config.yaml") -> Path:
    """The default config with ``overrides`` merged in (one level deep per section)."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    path = dest / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def write_fold_structures(fasta: Path, out: Path) -> Path:
    """A provided-structures TSV (id, structure) for a small FASTA: each record's ViennaRNA MFE
    fold, so a test corpus can run the fine-tune stage (finetune.structures)."""
    import RNA

    rows, rid, seq = [], None, []
    for line in [*fasta.read_text().splitlines(), ">"]:
        if line.startswith(">"):
            if rid is not None:
                rows.append((rid, RNA.fold("".join(seq).upper().replace("T", "U"))[0]))
            rid, seq = line[1:].split()[0] if line[1:].strip() else None, []
        else:
            seq.append(line.strip())
    out.write_text("id\tstructure\n" + "".join(f"{i}\t{db}\n" for i, db in rows))
    return out


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: int = 900):
    proc = subprocess.run(
        [*SNAKEMAKE, "--cores", "2", *args], cwd=workdir, capture_output=True, text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def planned_rules(workdir: Path, *args: str) -> set[str]:
    """Rules a dry run would execute (parsed from the summary table)."""
    proc = snakemake(workdir, "-n", "--quiet", "rules", *args)
    rules = set()
    for line in (proc.stdout + proc.stderr).splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("total", "job"):
            rules.add(parts[0])
    return rules
