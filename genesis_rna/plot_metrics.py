"""Training curves from ``training_metrics.csv``: four PNGs a person can read at a glance.

Outputs (in ``output_dir``):
- ``losses.png``: total loss and its components (one per task: MLM, structure, pair), train vs
  val.
- ``accuracies.png``: MLM accuracy, structure accuracy, pair precision / recall / F1.
- ``lr_activation.png``: learning rate, AST activation rate against its target, samples skipped.
- ``summary.png``: a one-page dashboard titled with the run (model size, epochs, best val F1).

The AST target line is read from the run's ``run_config.yaml`` (by default the one the trainer
writes next to the metrics file), never assumed: a plot that shows a target the run did not use
would mislead. The CSV is validated before anything is drawn, so a truncated or hand-edited
file fails with its name and line instead of producing a plausible-looking wrong figure.

Both our CSVs and the replaced project's are read (ours begin with its 14 columns, see
``metrics_logger``; our earlier column names are mapped by ``metrics_logger.RENAMED``). Only
``epoch`` and ``phase`` are required: a panel whose column the file lacks (the old project
wrote no ``samples_skipped``, for one) is left out, its place saying which column is missing,
and ``plot_metrics`` lists those columns in ``Metrics.absent``.

Figures are built with the object API on an Agg canvas (no pyplot, no display, no global
backend switch) so importing this module never changes a caller's matplotlib state.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, MaxNLocator

from genesis_rna.atomic import atomic_path
from genesis_rna.errors import ConfigError, GenesisError, InputFileError
from genesis_rna.metrics_logger import COLUMNS, RENAMED
from genesis_rna.tasks import TASKS

DPI = 120
PHASES = ("train", "val")
INT_COLUMNS = frozenset({"epoch", "step", "samples_skipped", "nonfinite_steps"})
NUMERIC_COLUMNS = tuple(c for c in COLUMNS if c != "phase")
REQUIRED_COLUMNS = ("epoch", "phase")
OUTPUT_NAMES = ("losses.png", "accuracies.png", "lr_activation.png", "summary.png")

STYLE = {
    "train": {"color": "#1f77b4", "linestyle": "-", "marker": "o", "label": "train"},
    "val": {"color": "#d62728", "linestyle": "--", "marker": "s", "label": "val"},
}
TARGET_COLOR = "#2ca02c"
SKIPPED_COLOR = "#7f7f7f"


# --------------------------------------------------------------------------- reading input


@dataclass
class Metrics:
    """Per-phase columns of one run, each an array ordered by epoch.

    ``train`` always has rows; ``val`` may lack the last epoch when a run was stopped between
    its train and val rows (that epoch is then plotted for train only). Columns the file lacks
    are in neither and are listed in ``absent``.
    """

    path: Path
    train: dict[str, np.ndarray]
    val: dict[str, np.ndarray]
    absent: tuple[str, ...] = ()

    def has(self, column: str) -> bool:
        return column in self.train

    def phase(self, name: str) -> dict[str, np.ndarray]:
        return self.train if name == "train" else self.val

    @property
    def n_epochs(self) -> int:
        return len(self.train["epoch"])


def _parse_number(path: Path, line: int, column: str, text: str) -> float:
    """One CSV cell as a number; ``nan`` / ``inf`` are values the trainer may log."""
    stripped = text.strip()
    if stripped == "":
        raise InputFileError(path, f"empty value in column '{column}'", line=line)
    try:
        value = float(stripped)
    except ValueError:
        raise InputFileError(path, f"column '{column}': {text!r} is not a number",
                             line=line) from None
    if column in INT_COLUMNS and not (math.isfinite(value) and value == int(value)):
        raise InputFileError(path, f"column '{column}': {text!r} is not a whole number",
                             line=line)
    return value


def read_metrics(metrics_file: str | Path) -> Metrics:
    """Read and validate a ``training_metrics.csv`` (column contract in ``metrics_logger``),
    ours or the replaced project's.

    Raises InputFileError naming the file (and line) for: a missing or empty file, no
    ``epoch`` or ``phase`` column or no metric column at all, a file with a header but no rows,
    a row with the wrong number of fields, an empty or non-numeric cell, an unknown phase, or
    an (epoch, phase) given twice. Other columns may be absent (``Metrics.absent``).
    """
    path = Path(metrics_file)
    if not path.is_file():
        raise InputFileError(path, "metrics file not found")
    rows: dict[str, dict[int, dict[str, float]]] = {p: {} for p in PHASES}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or not any(h.strip() for h in header):
            raise InputFileError(path, "empty file: no header; expected columns: "
                                 + ", ".join(COLUMNS))
        header = [RENAMED.get(h.strip(), h.strip()) for h in header]
        present = [c for c in NUMERIC_COLUMNS if c in header]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing or present == ["epoch"]:
            raise InputFileError(path, "missing column(s): "
                                 + ", ".join(missing or ["any metric"])
                                 + f" (header has: {', '.join(header)}; expected: "
                                 + ", ".join(COLUMNS) + ")", line=1)
        index = {c: header.index(c) for c in (*present, "phase")}
        for fields in reader:
            line = reader.line_num
            if not fields or all(not f.strip() for f in fields):
                continue  # a trailing blank line is not a row
            if len(fields) != len(header):
                raise InputFileError(path, f"row has {len(fields)} fields, header has "
                                     f"{len(header)}", line=line)
            phase = fields[index["phase"]].strip()
            if phase not in PHASES:
                raise InputFileError(path, f"column 'phase': {phase!r} is not one of {PHASES}",
                                     line=line)
            values = {c: _parse_number(path, line, c, fields[index[c]]) for c in present}
            epoch = int(values["epoch"])
            if epoch in rows[phase]:
                raise InputFileError(path, f"second {phase} row for epoch {epoch}", line=line)
            rows[phase][epoch] = values
    if not rows["train"]:
        raise InputFileError(path, "no train rows (the run finished no epoch)")
    orphan_val = sorted(set(rows["val"]) - set(rows["train"]))
    if orphan_val:
        raise InputFileError(path, f"val rows without a train row for epoch(s) {orphan_val}")

    def columns(by_epoch: dict[int, dict[str, float]]) -> dict[str, np.ndarray]:
        epochs = sorted(by_epoch)
        return {c: np.array([by_epoch[e][c] for e in epochs], dtype=float) for c in present}

    absent = tuple(c for c in NUMERIC_COLUMNS if c not in present)
    return Metrics(path=path, train=columns(rows["train"]), val=columns(rows["val"]),
                   absent=absent)


def load_run_config(path: str | Path) -> dict[str, Any]:
    """The run's resolved config (a YAML mapping); unreadable input raises InputFileError."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "run config file not found")
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise InputFileError(path, f"not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputFileError(path, "must hold a mapping of keys to values")
    return data


def find_key(config: Mapping[str, Any] | None, key: str) -> Any | None:
    """Value of ``key`` at the shallowest depth of nested mappings (breadth-first), or None.

    Breadth-first so a top-level setting wins over a same-named key in a nested record.
    """
    if config is None:
        return None
    level: list[Mapping[str, Any]] = [config]
    while level:
        for mapping in level:
            if key in mapping:
                return mapping[key]
        level = [v for m in level for v in m.values() if isinstance(v, Mapping)]
    return None


def activation_target(run_config: Mapping[str, Any] | None) -> float | None:
    """The AST target activation rate the run used, or None when it is unknown or AST was off.

    ``use_ast`` absent counts as on (the trainer's default), so a config that gives only
    ``ast_target_activation`` still yields its target.
    """
    if run_config is None:
        return None
    use_ast = find_key(run_config, "use_ast")
    if use_ast is not None and not isinstance(use_ast, bool):
        raise ConfigError("use_ast", f"expected true or false, got {use_ast!r}")
    if use_ast is False:
        return None
    target = find_key(run_config, "ast_target_activation")
    if target is None:
        return None
    if isinstance(target, bool) or not isinstance(target, int | float) or not 0 < target <= 1:
        raise ConfigError("ast_target_activation", f"expected a number in (0, 1], got {target!r}")
    return float(target)


def _target_note(run_config: Mapping[str, Any] | None) -> str:
    """Why no target line is drawn (shown in the legend instead of a line)."""
    if run_config is None:
        return "target unknown (no run_config.yaml)"
    if find_key(run_config, "use_ast") is False:
        return "AST off: every sample trained"
    return "target not in run_config"


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def schedule_label(run_config: Mapping[str, Any] | None) -> str:
    """e.g. 'cosine, peak 0.0002, warmup 500 steps, min 0.1x peak' (parts that are known)."""
    if run_config is None:
        return "schedule unknown (no run_config.yaml)"
    parts = []
    scheduler = find_key(run_config, "scheduler")
    if scheduler is not None:
        parts.append(str(scheduler))
    for key, fmt in (("learning_rate", "peak {}"), ("warmup_steps", "warmup {} steps"),
                     ("min_lr_ratio", "min {}x peak")):
        value = find_key(run_config, key)
        if value is not None:
            parts.append(fmt.format(_fmt_value(value)))
    return ", ".join(parts) if parts else "schedule not in run_config"


def best_val_f1(metrics: Metrics) -> tuple[float, int] | None:
    """(best val pair F1, its epoch), or None when there is no finite val F1."""
    if not metrics.has("pair_f1"):
        return None
    f1 = metrics.val["pair_f1"]
    if f1.size == 0 or not np.isfinite(f1).any():
        return None
    i = int(np.nanargmax(np.where(np.isfinite(f1), f1, np.nan)))
    return float(f1[i]), int(metrics.val["epoch"][i])


def run_title(metrics: Metrics, run_config: Mapping[str, Any] | None) -> str:
    """One line naming the run: stage, model size, epochs, best val pair F1 and its epoch, and
    which model file holds which epoch (model.pt the last, model_best.pt the best)."""
    size = find_key(run_config, "model_size")
    stage = "fine-tuning" if find_key(run_config, "init_from") else "pretraining"
    parts = [f"Genesis RNA {stage}, model {size if size is not None else '?'}",
             f"{metrics.n_epochs} epoch{'s' if metrics.n_epochs != 1 else ''}"]
    best = best_val_f1(metrics)
    parts.append(f"best val pair F1 {best[0]:.3f} (epoch {best[1]}) = model_best.pt; model.pt "
                 f"= epoch {metrics.n_epochs}" if best else "no val pair F1")
    return " | ".join(parts)


# --------------------------------------------------------------------------- drawing


def _finite(values: np.ndarray) -> np.ndarray:
    """Non-finite values become gaps (NaN) rather than wrecking the axis limits (inf)."""
    return np.where(np.isfinite(values), values, np.nan)


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _epoch_axis(ax: Axes, metrics: Metrics) -> None:
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    epochs = metrics.train["epoch"]
    if len(epochs) == 1:  # a lone point would otherwise sit on a degenerate x range
        ax.set_xlim(epochs[0] - 0.5, epochs[0] + 0.5)
        ax.set_xticks([epochs[0]])  # the integer locator falls back to fractions on so short a span
    ax.grid(True, alpha=0.3)


def _absent_panel(ax: Axes, title: str, column: str) -> None:
    """The place of a panel whose column the CSV lacks: left empty, saying why."""
    ax.set_axis_off()
    ax.set_title(title, color="grey")
    ax.text(0.5, 0.5, f"not drawn: the metrics file has\nno '{column}' column",
            ha="center", va="center", color="grey", transform=ax.transAxes)


def _plot_phases(ax: Axes, metrics: Metrics, column: str, phases: Sequence[str] = PHASES,
                 **style: Any) -> None:
    marker_size = 5 if metrics.n_epochs <= 40 else 0
    for name in phases:
        data = metrics.phase(name)
        if data["epoch"].size == 0:
            continue
        kwargs = {**STYLE[name], "markersize": marker_size, "linewidth": 1.6, **style}
        ax.plot(data["epoch"], _finite(data[column]), **kwargs)


def _metric_panel(ax: Axes, metrics: Metrics, column: str, title: str, ylabel: str,
                  unit_range: bool = False) -> None:
    if not metrics.has(column):
        _absent_panel(ax, title, column)
        return
    _plot_phases(ax, metrics, column)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    if unit_range:
        # A hair of room either side so points at exactly 0 or 1 are not cut in half.
        ax.set_ylim(-0.03, 1.03)
    _epoch_axis(ax, metrics)
    ax.legend(loc="best", fontsize="small")


def _mark_best_f1(ax: Axes, metrics: Metrics) -> None:
    best = best_val_f1(metrics)
    if best is None:
        return
    f1, epoch = best
    ax.plot([epoch], [f1], marker="*", markersize=14, color="#ff7f0e", linestyle="none",
            label=f"best val {f1:.3f} (epoch {epoch})", zorder=5)


def _lr_panel(ax: Axes, metrics: Metrics, run_config: Mapping[str, Any] | None) -> None:
    if not metrics.has("learning_rate"):
        _absent_panel(ax, "Learning rate", "learning_rate")
        return
    _plot_phases(ax, metrics, "learning_rate", phases=("train",), label="train, at epoch end")
    ax.set_title("Learning rate")
    ax.set_ylabel("learning rate")
    ax.set_ylim(bottom=0)
    # Full numbers on each tick: an axis offset like '1e-4' lands on the title and is missed.
    ax.yaxis.set_major_formatter(FormatStrFormatter("%.2e"))
    _epoch_axis(ax, metrics)
    ax.legend(loc="best", fontsize="small", title=schedule_label(run_config),
              title_fontsize="small")


def _activation_panel(ax: Axes, metrics: Metrics, run_config: Mapping[str, Any] | None) -> None:
    if not metrics.has("activation_rate"):
        _absent_panel(ax, "AST activation rate", "activation_rate")
        return
    _plot_phases(ax, metrics, "activation_rate", phases=("train",), label="train")
    target = activation_target(run_config)
    if target is not None:
        ax.axhline(target, color=TARGET_COLOR, linestyle="--", linewidth=1.4,
                   label=f"target {target:g} (run_config)")
        ax.set_title(f"AST activation rate (target {target:g})")
    else:
        note = _target_note(run_config)
        # An empty handle carries the note into the legend without drawing a line.
        ax.plot([], [], linestyle="none", label=note)
        ax.set_title(f"AST activation rate ({note})", fontsize="medium")
    ax.set_ylabel("fraction of samples trained")
    ax.set_ylim(-0.03, 1.05)
    _epoch_axis(ax, metrics)
    ax.legend(loc="lower right", fontsize="small")


def _skipped_panel(ax: Axes, metrics: Metrics) -> None:
    if not metrics.has("samples_skipped"):
        _absent_panel(ax, "Samples skipped by AST", "samples_skipped")
        return
    epochs, skipped = metrics.train["epoch"], _finite(metrics.train["samples_skipped"])
    ax.bar(epochs, skipped, width=0.6, color=SKIPPED_COLOR)
    ax.set_title(f"Samples skipped by AST (total {int(np.nansum(skipped)):,})")
    ax.set_ylabel("samples skipped per epoch (train)")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    _epoch_axis(ax, metrics)


def _save(fig: Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        # The temp name ends in .tmp, so the format cannot be inferred from it.
        fig.savefig(tmp, format="png", dpi=DPI)
    return path


def plot_losses(metrics: Metrics, path: Path) -> Path:
    panels = (("loss", "Total loss (weighted sum)"), *((t.loss_column, t.title) for t in TASKS))
    rows = math.ceil(len(panels) / 2)
    fig = _new_figure(11, 4 * rows)
    axes = list(fig.subplots(rows, 2).flat)
    for ax, (column, title) in zip(axes, panels, strict=False):
        _metric_panel(ax, metrics, column, title, "loss")
    for ax in axes[len(panels):]:  # an odd number of panels leaves one cell empty
        ax.set_axis_off()
    bad = int(np.nansum(metrics.train.get("nonfinite_steps", 0)))
    suffix = f" | {bad} non-finite step(s) skipped" if bad else ""
    fig.suptitle(f"Losses, train vs val{suffix}", fontweight="bold")
    return _save(fig, path)


def plot_accuracies(metrics: Metrics, path: Path) -> Path:
    fig = _new_figure(14, 8)
    grid = fig.add_gridspec(2, 6)
    top = (("mlm_accuracy", "MLM accuracy (masked positions)"),
           ("structure_accuracy", "Structure accuracy (per nucleotide)"))
    for i, (column, title) in enumerate(top):
        _metric_panel(fig.add_subplot(grid[0, 3 * i:3 * i + 3]), metrics, column, title,
                      "accuracy", unit_range=True)
    bottom = (("pair_precision", "Pair precision", "precision"),
              ("pair_recall", "Pair recall", "recall"), ("pair_f1", "Pair F1", "F1"))
    for i, (column, title, ylabel) in enumerate(bottom):
        ax = fig.add_subplot(grid[1, 2 * i:2 * i + 2])
        _metric_panel(ax, metrics, column, title, ylabel, unit_range=True)
        if column == "pair_f1" and metrics.has(column):
            _mark_best_f1(ax, metrics)
            ax.legend(loc="best", fontsize="small")
    fig.suptitle("Accuracies, train vs val (pair metrics: per-sequence means)",
                 fontweight="bold")
    return _save(fig, path)


def plot_lr_activation(metrics: Metrics, run_config: Mapping[str, Any] | None,
                       path: Path) -> Path:
    fig = _new_figure(16, 4.8)
    ax_lr, ax_act, ax_skip = fig.subplots(1, 3)
    _lr_panel(ax_lr, metrics, run_config)
    _activation_panel(ax_act, metrics, run_config)
    _skipped_panel(ax_skip, metrics)
    fig.suptitle("Learning rate and Adaptive Sparse Training", fontweight="bold")
    return _save(fig, path)


def plot_summary(metrics: Metrics, run_config: Mapping[str, Any] | None, path: Path) -> Path:
    fig = _new_figure(16, 9)
    axes = fig.subplots(2, 3)
    _metric_panel(axes[0, 0], metrics, "loss", "Total loss", "loss")
    _metric_panel(axes[0, 1], metrics, "pair_f1", "Pair F1", "F1", unit_range=True)
    if metrics.has("pair_f1"):
        _mark_best_f1(axes[0, 1], metrics)
        axes[0, 1].legend(loc="best", fontsize="small")
    _metric_panel(axes[0, 2], metrics, "structure_accuracy", "Structure accuracy", "accuracy",
                  unit_range=True)
    _metric_panel(axes[1, 0], metrics, "mlm_accuracy", "MLM accuracy", "accuracy",
                  unit_range=True)
    _lr_panel(axes[1, 1], metrics, run_config)
    _activation_panel(axes[1, 2], metrics, run_config)
    fig.suptitle(run_title(metrics, run_config), fontweight="bold", fontsize="x-large")
    return _save(fig, path)


# --------------------------------------------------------------------------- entry points


def plot_metrics(metrics_file: str | Path, output_dir: str | Path,
                 run_config: str | Path | None = None) -> list[Path]:
    """Write losses.png, accuracies.png, lr_activation.png and summary.png; return their paths.

    ``run_config`` defaults to ``run_config.yaml`` next to the metrics file when that exists;
    without one the plots say the AST target and schedule are unknown. Columns the file lacks
    are named on stderr (their panels are left out).
    """
    metrics = read_metrics(metrics_file)
    if metrics.absent:
        print(f"note: {metrics.path} has no column(s) {', '.join(metrics.absent)}; their "
              "panels are left out", file=sys.stderr)
    if run_config is None:
        default = metrics.path.parent / "run_config.yaml"
        run_config = default if default.is_file() else None
    config = load_run_config(run_config) if run_config is not None else None
    out = Path(output_dir)
    paths = dict(zip(OUTPUT_NAMES, (out / n for n in OUTPUT_NAMES), strict=True))
    return [
        plot_losses(metrics, paths["losses.png"]),
        plot_accuracies(metrics, paths["accuracies.png"]),
        plot_lr_activation(metrics, config, paths["lr_activation.png"]),
        plot_summary(metrics, config, paths["summary.png"]),
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m genesis_rna.plot_metrics",
        description="Plot training curves from a training_metrics.csv into PNG files.",
    )
    parser.add_argument("--metrics_file", required=True, help="training_metrics.csv")
    parser.add_argument("--output_dir", required=True, help="folder that receives the PNGs")
    parser.add_argument("--run_config", default=None,
                        help="run_config.yaml of the run (default: the one next to "
                             "--metrics_file, if present)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        paths = plot_metrics(args.metrics_file, args.output_dir, args.run_config)
    except GenesisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
