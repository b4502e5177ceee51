"""The model shipped with the repository: where it lives, how a trained checkpoint becomes it,
and the evaluation table of its model card.

    python -m genesis_rna.shipped_model export --checkpoint results/.../finetune/model.pt \
        [--output resources/models/genesis_rna.pt]
    python -m genesis_rna.shipped_model table --models_tsv results/.../evaluation/models.tsv \
        --run finetune

``export`` keeps what prediction needs (weights, model config, tokenizer, training config,
tuned threshold and its decoder) and drops the training state (optimizer, scheduler, AST,
RNG, metrics). Parameters are stored in half precision (fp16): half the bytes, and
``load_state_dict`` casts them back to the model's fp32 on load. Buffers stay as they are
(they are few, and positional tables lose too much in fp16). The file is still plain data,
read with ``weights_only=True`` like every checkpoint (``genesis_rna.checkpoint``); the training
config's machine-specific paths are cleared. ``predict`` uses ``SHIPPED_MODEL`` when no
``--checkpoint`` is given. ``table`` prints the Markdown rows of the model card's evaluation
table (model against ViennaRNA MFE and MEA per data set) from a workflow run's ``models.tsv``.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import pandas as pd
import torch

from genesis_rna.checkpoint import MODEL_KEYS, NOT_A_MODEL, load_checkpoint, save_checkpoint
from genesis_rna.errors import ConfigError, GenesisError, InputFileError
from genesis_rna.model import GenesisRNA, ModelConfig

REPO = Path(__file__).resolve().parents[1]
SHIPPED_DIR = REPO / "resources" / "models"
SHIPPED_MODEL = SHIPPED_DIR / "genesis_rna.pt"
MODEL_CARD = SHIPPED_DIR / "README.md"
MODEL_CARD_TEMPLATE = SHIPPED_DIR / "MODEL_CARD.template.md"
# training-config keys that hold paths of the machine that trained the model
PATH_KEYS = ("data_path", "output_dir", "checkpoint_dir", "init_from")
EXPORT_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def resolve_checkpoint(checkpoint: str | Path | None) -> Path:
    """``checkpoint``, or the shipped model when None (an error saying how to get one when the
    repository has none)."""
    if checkpoint is not None:
        return Path(checkpoint)
    if not SHIPPED_MODEL.is_file():
        raise InputFileError(SHIPPED_MODEL, "no --checkpoint given and this checkout has no "
                             "shipped model; pass --checkpoint results/<run>/model.pt of a "
                             "trained run, or export one with `python -m "
                             "genesis_rna.shipped_model export --checkpoint ...`")
    return SHIPPED_MODEL


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_model(checkpoint: str | Path, output: str | Path = SHIPPED_MODEL,
                 precision: str = "fp16") -> dict:
    """Write ``checkpoint`` (a finished run's model.pt or model_best.pt) as a weights-only
    file with its parameters in ``precision``; returns what was written (path, bytes,
    parameters, source sha256)."""
    if precision not in EXPORT_DTYPES:
        raise ConfigError("precision", f"{precision!r} not in {tuple(EXPORT_DTYPES)}")
    checkpoint, output = Path(checkpoint), Path(output)
    if not checkpoint.is_file():
        raise InputFileError(checkpoint, "checkpoint not found")
    state = load_checkpoint(checkpoint)
    if not isinstance(state, dict):
        raise InputFileError(checkpoint, NOT_A_MODEL.format(f"it holds a {type(state).__name__}"))
    missing = [k for k in MODEL_KEYS if k not in state]
    if missing:
        raise InputFileError(checkpoint, NOT_A_MODEL.format(f"no {missing[0]!r} entry"))
    params = {name for name, _ in GenesisRNA(ModelConfig(**state["model_config"]))
              .named_parameters()}
    dtype = EXPORT_DTYPES[precision]
    weights = {k: (v.to(dtype) if k in params and v.is_floating_point() else v).contiguous()
               for k, v in state["model"].items()}
    config = {k: (None if k in PATH_KEYS else v) for k, v in state["config"].items()}
    out = {
        "model_config": state["model_config"], "model": weights, "tokenizer": state["tokenizer"],
        "config": config, "pair_threshold": float(state["pair_threshold"]),
        "pair_decoder": str(state.get("pair_decoder", "greedy")),
        "export": {"source": checkpoint.name, "source_sha256": _sha256(checkpoint),
                   "precision": precision},
    }
    save_checkpoint(output, out)
    return {"path": str(output), "bytes": output.stat().st_size,
            "parameters": sum(weights[k].numel() for k in params),
            "source_sha256": out["export"]["source_sha256"], "precision": precision}


def evaluation_table(models_tsv: str | Path, run: str) -> str:
    """Markdown table of one run's rows of a ``models.tsv``: mean per-sequence pair F1 of the
    model, ViennaRNA MFE and MEA on the same sequences, per data set."""
    path = Path(models_tsv)
    try:
        frame = pd.read_csv(path, sep="\t")
    except (OSError, ValueError) as exc:
        raise InputFileError(path, f"cannot read the models table ({exc})") from None
    need = {"run", "dataset", "n", "model_f1", "vienna_f1", "vienna_mea_f1",
            "model_minus_best_vienna"}
    if not need <= set(frame.columns):
        raise InputFileError(path, f"not a models.tsv of compare_models (needs columns "
                             f"{sorted(need)})")
    rows = frame[frame["run"] == run]
    if rows.empty:
        raise ConfigError("run", f"{run!r} is not in {path} (runs: "
                          f"{', '.join(sorted(frame['run'].astype(str).unique()))})")

    def f(x) -> str:
        return "-" if pd.isna(x) else f"{x:.3f}"

    lines = ["| data set | n | model | ViennaRNA MFE | ViennaRNA MEA | model - best ViennaRNA |",
             "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r.dataset} | {'-' if pd.isna(r.n) else int(r.n)} | {f(r.model_f1)} | "
              f"{f(r.vienna_f1)} | {f(r.vienna_mea_f1)} | {f(r.model_minus_best_vienna)} |"
              for r in rows.itertuples()]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m genesis_rna.shipped_model",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="a trained model.pt -> a weights-only half-precision file")
    e.add_argument("--checkpoint", required=True, help="model.pt or model_best.pt of a run")
    e.add_argument("--output", default=str(SHIPPED_MODEL),
                   help=f"file to write (default: the shipped model, {SHIPPED_MODEL.relative_to(REPO)})")
    e.add_argument("--precision", choices=tuple(EXPORT_DTYPES), default="fp16",
                   help="dtype of the stored parameters")
    t = sub.add_parser("table", help="the model card's evaluation table from a models.tsv")
    t.add_argument("--models_tsv", required=True)
    t.add_argument("--run", required=True, help="run name in models.tsv, e.g. finetune")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "export":
            done = export_model(args.checkpoint, args.output, args.precision)
            print(f"wrote {done['path']}: {done['parameters']:,} parameters in "
                  f"{done['precision']}, {done['bytes'] / 1e6:.1f} MB (source sha256 "
                  f"{done['source_sha256'][:12]})")
        else:
            print(evaluation_table(args.models_tsv, args.run))
    except GenesisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
