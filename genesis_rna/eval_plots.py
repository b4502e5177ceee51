"""Evaluation plots, drawn from what the evaluate stage wrote (``summary.json`` and the
``per_sequence_<dataset>.tsv`` tables), so editing a plot redraws it without re-evaluating.

Per data set, into the evaluation folder: ``f1_per_family_<dataset>.png`` (model vs ViennaRNA
MFE and MEA, mean F1 per family; per length bin when the data set has no families),
``f1_vs_length_<dataset>.png`` and ``gallery_<dataset>.png`` (the best, median and worst
sequence by the model's F1: its predicted structure beside the reference, drawn on ViennaRNA's
layout by ``drawing``, pairs coloured found / wrong / missed).
``python -m genesis_rna.eval_plots --eval_dir DIR`` redraws them.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from genesis_rna.atomic import atomic_path
from genesis_rna.errors import GenesisError, InputFileError
from genesis_rna.structures import parse_dot_bracket

PLOT_KINDS = ("f1_per_family", "f1_vs_length", "gallery")
# The per-sequence columns the gallery draws (evaluate writes them).
GALLERY_COLUMNS = ("sequence", "true_structure", "model_structure")
# Pair colours of the gallery: in both structures, predicted only, reference only.
_FOUND, _WRONG, _MISSED = "tab:green", "tab:red", "tab:purple"
# Said under the title when the data set's labels are the baseline's own folds.
BASELINE_LABELS_NOTE = "(test labels are ViennaRNA folds: the baseline matches them by construction)"
# Methods drawn, in legend order, with their labels and colours.
_LABELS = {"model": "Genesis RNA model", "vienna": "ViennaRNA MFE", "vienna_mea": "ViennaRNA MEA",
           "vienna_mea_andronescu2007": "ViennaRNA MEA, Andronescu 2007",
           "vienna_mea_langdon2018": "ViennaRNA MEA, Langdon 2018"}
_COLORS = {"model": "tab:blue", "vienna": "tab:orange", "vienna_mea": "tab:green",
           "vienna_mea_andronescu2007": "tab:purple", "vienna_mea_langdon2018": "tab:brown"}


def _save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_f1_per_family(path: Path, dataset: str, block: dict, note: str = "") -> None:
    """Grouped bars: mean F1 (exact) of model and ViennaRNA per family, n under each label.
    A data set without families is shown per length bin instead (and says so)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_family = bool(block["per_family"])
    groups = block["per_family"] if by_family else block["per_length_bin"]
    names = list(groups)
    methods = [m for m in _LABELS if m in block["all"]]
    x = np.arange(len(names))
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(names) + 2), 4.5))
    for k, method in enumerate(methods):
        vals = [groups[g][method]["f1"] for g in names]
        ax.bar(x + (k - (len(methods) - 1) / 2) * width, vals, width, label=_LABELS[method],
               color=_COLORS[method])
    ax.set_xticks(x, [f"{g}\n(n={groups[g]['n']})" for g in names],
                  rotation=30 if len(names) > 5 else 0, ha="right" if len(names) > 5 else "center")
    ax.set_ylim(0, 1)
    ax.set_ylabel("mean per-sequence base-pair F1 (exact)")
    ax.set_xlabel("family" if by_family else "length bin (nt); this data set has no families")
    title = f"{dataset}: base-pair F1 per {'family' if by_family else 'length bin'}, " \
            "model vs ViennaRNA"
    ax.set_title(title + (f"\n{note}" if note else ""), fontsize=11)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    _save_figure(fig, path)


def plot_f1_vs_length(path: Path, dataset: str, frame: pd.DataFrame, block: dict,
                      note: str = "") -> None:
    """Per-sequence F1 against length (log scale) with the mean of each length bin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    methods = [m for m in _LABELS if m in block["all"]]
    labels, colors = _LABELS, _COLORS
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    bins = block["per_length_bin"]
    for method in methods:
        ax.scatter(frame["length"], frame[f"{method}_f1"], s=6, alpha=0.3, color=colors[method],
                   label=f"{labels[method]} (per sequence)")
        centers = [float(frame.loc[frame["length_bin"] == b, "length"].median()) for b in bins]
        ax.plot(centers, [bins[b][method]["f1"] for b in bins], marker="o", lw=2,
                color=colors[method], label=f"{labels[method]} (mean per length bin)")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(ScalarFormatter())
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("sequence length (nt, log scale)")
    ax.set_ylabel("base-pair F1 (exact)")
    ax.set_title(f"{dataset}: base-pair F1 against sequence length"
                 + (f"\n{note}" if note else ""), fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save_figure(fig, path)


def gallery_rows(frame: pd.DataFrame) -> list[tuple[str, int]]:
    """(label, row index) of the best, median and worst sequence by the model's F1 (rows
    without an F1 left out; each row at most once, so fewer on tiny sets)."""
    scored = frame[np.isfinite(frame["model_f1"].astype(float))]
    if scored.empty:
        return []
    order = scored.sort_values(["model_f1", "id"], ascending=[False, True], kind="stable").index
    picks = [("best", order[0]), ("median", order[len(order) // 2]), ("worst", order[-1])]
    seen: set[int] = set()
    out = []
    for label, idx in picks:
        if idx not in seen:
            seen.add(idx)
            out.append((label, int(idx)))
    return out


def plot_gallery(path: Path, dataset: str, frame: pd.DataFrame, note: str = "") -> None:
    """Best, median and worst sequence (model F1): predicted structure left, reference right."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from genesis_rna.drawing import draw_structure_panel

    rows = gallery_rows(frame)
    fig = Figure(figsize=(10, 4.6 * max(len(rows), 1)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(max(len(rows), 1), 2, squeeze=False)
    source = f"per_sequence_{dataset}.tsv"
    for (label, idx), (ax_pred, ax_true) in zip(rows, axes, strict=False):
        row = frame.loc[idx]
        seq = str(row["sequence"])
        pred = parse_dot_bracket(str(row["model_structure"]), source=source)
        true = parse_dot_bracket(str(row["true_structure"]), source=source)
        both = set(pred) & set(true)
        head = f"{label}: {row['id']} ({len(seq)} nt)"
        draw_structure_panel(ax_pred, seq, pred, [_FOUND if p in both else _WRONG for p in pred],
                             f"{head}\nmodel, F1 {float(row['model_f1']):.3f} "
                             f"({len(pred)} pairs, {len(both)} correct)")
        draw_structure_panel(ax_true, seq, true,
                             [_FOUND if p in both else _MISSED for p in true],
                             f"{head}\nreference ({len(true)} pairs, {len(true) - len(both)} "
                             "missed)")
    if not rows:
        axes[0, 0].text(0.5, 0.5, "no sequence with a pair F1", ha="center", va="center")
        for ax in axes[0]:
            ax.set_axis_off()
    handles = [Line2D([], [], color=c, lw=2, label=t) for c, t in (
        (_FOUND, "pair in both"), (_WRONG, "predicted, not in the reference"),
        (_MISSED, "in the reference, not predicted"))]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=9)
    fig.suptitle(f"{dataset}: predicted and reference structures (best, median and worst "
                 "model F1)" + (f"\n{note}" if note else ""), fontsize=11)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def _read_summary(path: Path) -> dict:
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputFileError(path, "not found; run the evaluation first") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputFileError(path, f"not an evaluation summary ({exc})") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("datasets"), dict):
        raise InputFileError(path, "not an evaluation summary (no 'datasets' section)")
    return summary


def _numbers(obj):
    """The summary's nulls (non-finite values written as JSON null) back to NaN for matplotlib."""
    if isinstance(obj, dict):
        return {k: _numbers(v) for k, v in obj.items()}
    return math.nan if obj is None else obj


def plot_evaluation(eval_dir: str | Path) -> list[Path]:
    """Draw both plots of every data set in ``eval_dir/summary.json``; returns the files."""
    eval_dir = Path(eval_dir)
    summary = _read_summary(eval_dir / "summary.json")
    written: list[Path] = []
    for name, block in summary["datasets"].items():
        table = eval_dir / f"per_sequence_{name}.tsv"
        if not table.is_file():
            raise InputFileError(table, f"not found; summary.json lists data set {name!r}")
        frame = pd.read_csv(table, sep="\t", keep_default_na=False, na_values=[""])
        missing = {"length", "length_bin", "model_f1"} - set(frame.columns)
        if missing:
            raise InputFileError(table, f"missing columns {sorted(missing)}")
        try:
            block = {key: _numbers(block[key]) for key in ("all", "per_family", "per_length_bin")}
        except KeyError as exc:
            raise InputFileError(eval_dir / "summary.json",
                                 f"data set {name!r} has no {exc.args[0]!r} block") from None
        note = BASELINE_LABELS_NOTE if summary["datasets"][name].get("labels_from_baseline") else ""
        written.append(eval_dir / f"f1_per_family_{name}.png")
        plot_f1_per_family(written[-1], name, block, note)
        written.append(eval_dir / f"f1_vs_length_{name}.png")
        plot_f1_vs_length(written[-1], name, frame, block, note)
        absent = [c for c in GALLERY_COLUMNS if c not in frame.columns]
        if absent:  # an evaluation written before the gallery existed
            print(f"note: {table} has no column(s) {', '.join(absent)}: no gallery for {name} "
                  "(evaluate again to get one)", file=sys.stderr)
            continue
        written.append(eval_dir / f"gallery_{name}.png")
        plot_gallery(written[-1], name, frame.fillna({c: "" for c in GALLERY_COLUMNS}), note)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m genesis_rna.eval_plots",
                                description="Redraw the plots of an evaluation folder.")
    p.add_argument("--eval_dir", required=True,
                   help="folder with summary.json and per_sequence_<dataset>.tsv")
    args = p.parse_args(argv)
    try:
        written = plot_evaluation(args.eval_dir)
    except GenesisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(map(str, written)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
