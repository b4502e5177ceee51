"""The model's training tasks, declared once: one per head, in the order of the metrics columns.

A task's name ties its parts together: the model's ``<name>_head`` and ``<name>_logits`` output,
its term in ``losses.TERMS`` and the config key ``loss_weight_<name>``. Its metrics column keeps
the name the replaced project's CSV gives that loss (``mlm_loss``, ``structure_loss``,
``pair_loss``), so notebooks written for either read both. Everything that handles loss terms (statistics, DDP reduction, progress lines,
the CSV and its plots) loops over this list. No torch here: the plotting code reads it too.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    name: str
    title: str  # what its loss is, for plots
    loss_column: str  # its loss in training_metrics.csv (the replaced project's name)

    @property
    def weight_key(self) -> str:
        return f"loss_weight_{self.name}"

    @property
    def head(self) -> str:
        return f"{self.name}_head"


TASKS: tuple[Task, ...] = (
    Task("mlm", "MLM loss (cross-entropy)", "mlm_loss"),
    Task("struct", "Structure loss (cross-entropy)", "structure_loss"),
    Task("pair", "Pair loss (focal)", "pair_loss"),
)
TASK_NAMES: tuple[str, ...] = tuple(t.name for t in TASKS)
LOSS_COLUMNS: tuple[str, ...] = tuple(t.loss_column for t in TASKS)
LOSS_COLUMN: dict[str, str] = {t.name: t.loss_column for t in TASKS}  # task name -> column
