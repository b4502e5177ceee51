"""The trained models side by side: one row per (model run, data set) from each run's
evaluation ``summary.json`` (pretrained ``train``, ``finetune``, ``finetune_scratch`` and the
``*_nothermo`` ablations), with ViennaRNA MFE and MEA on the same sequences as the reference
columns; ``model_minus_best_vienna`` compares with the best ViennaRNA mode reported
(``best_vienna``: MFE, MEA, or MEA under a further parameter set when the thermo stage computed
them), which is what a user choosing between this model and ``RNAfold`` would compare with.

    python -m genesis_rna.compare_models --summary train=results/evaluation/train/summary.json \
        --summary finetune=results/evaluation/finetune/summary.json --out models.tsv
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from genesis_rna.atomic import atomic_open
from genesis_rna.errors import GenesisError, InputFileError

COLUMNS = ("run", "thermo_features", "dataset", "n", "model_f1", "vienna_f1", "vienna_mea_f1",
           "best_vienna", "best_vienna_f1",
           "model_minus_vienna", "model_minus_best_vienna", "model_f1_shift",
           "model_precision", "model_recall", "model_element_accuracy",
           "model_pairs_element_accuracy", "vienna_element_accuracy", "mlm_accuracy",
           "pair_decoder", "pair_threshold", "vienna_mea_threshold")


def _get(block: Mapping, *keys):
    for k in keys:
        if not isinstance(block, Mapping) or k not in block or block[k] is None:
            return None
        block = block[k]
    return block


def compare(summaries: Mapping[str, str | Path]) -> pd.DataFrame:
    rows = []
    for run, path in summaries.items():
        try:
            summary = json.loads(Path(path).read_text(encoding="utf-8"))
            datasets = summary["datasets"]
        except (OSError, ValueError, KeyError) as exc:
            raise InputFileError(path, f"not an evaluation summary.json ({exc})") from None
        for name, block in datasets.items():
            model_f1, vienna_f1 = _get(block, "all", "model", "f1"), _get(block, "all", "vienna", "f1")
            mea_f1 = _get(block, "all", "vienna_mea", "f1")
            # ViennaRNA at its best: MFE, MEA, and MEA under further parameter sets if reported
            modes = {m: _get(block, "all", m, "f1") for m in block.get("all", {})
                     if m.startswith("vienna")}
            modes = {m: f for m, f in modes.items() if f is not None}
            best_mode = max(modes, key=modes.get, default=None)
            best = modes.get(best_mode)
            rows.append({
                "run": run, "thermo_features": summary.get("thermo_features", False),
                "dataset": name, "n": _get(block, "all", "n"),
                "model_f1": model_f1, "vienna_f1": vienna_f1, "vienna_mea_f1": mea_f1,
                "model_minus_vienna": (model_f1 - vienna_f1 if model_f1 is not None
                                       and vienna_f1 is not None else None),
                "best_vienna": best_mode, "best_vienna_f1": best,
                "model_minus_best_vienna": (model_f1 - best if model_f1 is not None
                                            and best is not None else None),
                "model_f1_shift": _get(block, "all", "model", "f1_shift"),
                "model_precision": _get(block, "all", "model", "precision"),
                "model_recall": _get(block, "all", "model", "recall"),
                "model_element_accuracy": _get(block, "all", "model", "element", "accuracy"),
                "model_pairs_element_accuracy": _get(block, "all", "model",
                                                     "element_from_pairs", "accuracy"),
                "vienna_element_accuracy": _get(block, "all", "vienna", "element", "accuracy"),
                "mlm_accuracy": _get(block, "mlm", "model", "accuracy"),
                "pair_decoder": summary.get("pair_decoder"),
                "pair_threshold": summary.get("pair_threshold"),
                "vienna_mea_threshold": summary.get("vienna_mea_threshold"),
            })
    return pd.DataFrame(rows, columns=list(COLUMNS))


def write_comparison(summaries: Mapping[str, str | Path], out: str | Path) -> pd.DataFrame:
    frame = compare(summaries)
    with atomic_open(out, "w", encoding="utf-8", newline="") as fh:
        frame.to_csv(fh, sep="\t", index=False, float_format="%.4f", lineterminator="\n")
    return frame


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m genesis_rna.compare_models",
                                description="Evaluation summaries of several models side by side.")
    p.add_argument("--summary", action="append", required=True, metavar="RUN=SUMMARY_JSON",
                   help="a run name and its evaluation summary.json (repeat)")
    p.add_argument("--out", required=True, help="TSV to write")
    args = p.parse_args(argv)
    summaries = {}
    for item in args.summary:
        run, sep, path = item.partition("=")
        if not sep or not run or not path:
            p.error(f"--summary {item!r}: expected RUN=PATH")
        summaries[run] = path
    try:
        frame = write_comparison(summaries, args.out)
    except GenesisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(frame.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
