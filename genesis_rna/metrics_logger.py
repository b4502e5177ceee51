"""training_metrics.csv: one train row and one val row per epoch, every column filled.

Columns (in this order):
epoch, step (optimizer steps so far), phase (train|val), loss (weighted total), loss_<task> per
task of genesis_rna.tasks (loss_mlm, loss_struct, loss_pair), mlm_acc (masked positions), struct_acc (nucleotides), pair_precision,
pair_recall, pair_f1 (per-sequence means after post-processing at the fixed per-epoch
threshold), lr (at epoch end), activation_rate (AST fraction of samples trained; 1.0 without
AST; val rows repeat the epoch's train value), samples_skipped (by AST; 0 on val rows),
tokens_per_s (real nucleotides trained per second of the training loop on train rows, waiting
for the data loader included; evaluated per second on val rows), wall_time_s (training time
since the run began, across resumes), nonfinite_steps (steps skipped for a non-finite loss or
gradient in the epoch; 0 on val rows), epoch_time_s (seconds of the epoch's training loop, data
loading included, on train rows; of the evaluation on val rows).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from genesis_rna.atomic import atomic_open
from genesis_rna.tasks import LOSS_COLUMNS

COLUMNS: tuple[str, ...] = (
    "epoch", "step", "phase", "loss", *LOSS_COLUMNS, "mlm_acc",
    "struct_acc", "pair_precision", "pair_recall", "pair_f1", "lr", "activation_rate",
    "samples_skipped", "tokens_per_s", "wall_time_s", "nonfinite_steps", "epoch_time_s",
)


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
        self.rows: list[dict[str, str]] = [dict(r) for r in rows or []]
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
