"""training_metrics.csv: one train row and one val row per epoch, every column filled.

The first 14 columns are those of the project this one replaces, with the same names and
meaning, so its users' notebooks and plots read our CSV unchanged (``OLD_PROJECT_COLUMNS``):
epoch, step (optimizer steps so far), phase (train|val), loss (weighted total), one loss per
task of genesis_rna.tasks (mlm_loss, structure_loss, pair_loss), mlm_accuracy (masked
positions), structure_accuracy (nucleotides), pair_precision, pair_recall, pair_f1
(per-sequence means after post-processing at the fixed per-epoch threshold), learning_rate (at
epoch end), activation_rate (AST fraction of samples trained; 1.0 without AST; val rows repeat
the epoch's train value). Ours follow: samples_skipped (by AST; 0 on val rows), tokens_per_s
(real nucleotides trained per second of the training loop on train rows, waiting for the data
loader included; evaluated per second on val rows), wall_time_s (training time since the run
began, across resumes), nonfinite_steps (steps skipped for a non-finite loss or gradient in the
epoch; 0 on val rows), epoch_time_s (seconds of the epoch's training loop, data loading
included, on train rows; of the evaluation on val rows).

Our CSVs written before the columns took the old project's names (``loss_mlm``, ``struct_acc``,
``lr``, ...) are read through ``RENAMED``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path

from genesis_rna.atomic import atomic_open
from genesis_rna.tasks import LOSS_COLUMNS

OLD_PROJECT_COLUMNS: tuple[str, ...] = (
    "epoch", "step", "phase", "loss", *LOSS_COLUMNS, "mlm_accuracy", "structure_accuracy",
    "pair_precision", "pair_recall", "pair_f1", "learning_rate", "activation_rate",
)
COLUMNS: tuple[str, ...] = (
    *OLD_PROJECT_COLUMNS,
    "samples_skipped", "tokens_per_s", "wall_time_s", "nonfinite_steps", "epoch_time_s",
)
# Our earlier column names -> the current ones.
RENAMED: dict[str, str] = {
    "loss_mlm": "mlm_loss", "loss_struct": "structure_loss", "loss_pair": "pair_loss",
    "mlm_acc": "mlm_accuracy", "struct_acc": "structure_accuracy", "lr": "learning_rate",
}


def renamed(row: Mapping[str, object]) -> dict:
    """``row`` with our earlier column names replaced by the current ones."""
    return {RENAMED.get(k, k): v for k, v in row.items()}


def _fmt(value) -> str:
    if isinstance(value, float):
        return repr(value)  # shortest exact round-trip: resumed runs compare equal
    return str(value)


class MetricsLogger:
    """Appends rows and flushes each one, so a killed run keeps the epochs it finished.

    ``rows``: on resume, the rows recorded in the checkpoint (``self.rows`` of the run that
    wrote it). The file is rewritten from them, so it ends up as an uninterrupted run would
    leave it even when the old file is gone (Snakemake deletes a failed job's declared
    outputs before rerunning it) or holds rows of the part of the run being redone.
    ``None`` starts a fresh file.
    """

    def __init__(self, path: str | Path, rows: list[dict] | None = None):
        self.path = Path(path)
        # rows of a checkpoint written before the rename carry the earlier column names
        self.rows: list[dict[str, str]] = [renamed(r) for r in rows or []]
        with atomic_open(self.path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(self.rows)

    def log(self, row: dict) -> None:
        missing = [c for c in COLUMNS if c not in row]
        extra = [c for c in row if c not in COLUMNS]
        assert not missing and not extra, f"metrics row: missing {missing}, unexpected {extra}"
        empty = [c for c in COLUMNS if row[c] is None or row[c] == ""]
        assert not empty, f"metrics columns left empty: {empty}"  # NaN is a value; None is not
        formatted = {c: _fmt(row[c]) for c in COLUMNS}
        self.rows.append(formatted)
        with open(self.path, "a", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerow([formatted[c] for c in COLUMNS])
            fh.flush()
            os.fsync(fh.fileno())
