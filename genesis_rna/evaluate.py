"""evaluate_model stage: score a trained model on the held-out test split and on curated
structure benchmarks, side by side with ViennaRNA on the very same sequences: its MFE structure
(``vienna``) and its maximum-expected-accuracy structure (``vienna_mea``: ``decoding``'s nested
MEA on ViennaRNA's pair probabilities, at a threshold tuned on validation, never on test).
Both come from the thermo stage's features (``genesis_rna.thermo``), which a model with
thermodynamic input channels also reads; features the stage did not store are computed here.

Per data set (``test`` for the split, else the benchmark's name) it writes, into ``out_dir``:
- ``per_sequence_<dataset>.tsv``: one row per evaluated sequence (id, family, length, length
  bin, windowed flag, true pair count, and for the model and ViennaRNA: predicted pair count,
  P/R/F1 exact and with a one-position shift, MCC, the counts behind pooling, element accuracy;
  the sequence, its true and the model's structure in dot-bracket, for the gallery);
and, over all data sets: ``summary.json`` (everything, nested), ``summary.tsv`` (one row per
data set x breakdown group, model and baseline columns side by side) and
``not_evaluated.tsv`` (dataset, id, length, reason for every record left out). The F1 plots are
drawn from these files by ``genesis_rna.eval_plots`` (the CLI does it too, unless ``--no-plots``).

Scoring follows the field (see ``eval_metrics``): every curated pair counts, non-canonical and
pseudoknotted ones included, while predictions are decoded (``genesis_rna.decoding``: the
checkpoint's decoder and tuned threshold; canonical, |i-j| >= 4, one partner per base). Element
labels are scored against ``element_labels`` of the true pairs; the model's reported element
labels are its structure head's (measured better than ``element_labels`` of its decoded pairs,
which are reported beside them as ``model_pairs_element_*``). On the test split, MLM accuracy and perplexity use the
fixed, seeded validation masks of ``data.RNADataset``. Trivial baselines: the data set's own
majority element class, and the test set's own unigram nucleotide frequencies for MLM (both
read off the data they are scored on, so they are optimistic).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from tqdm import tqdm

from genesis_rna.atomic import atomic_open
from genesis_rna.benchmarks import iter_benchmark_records
from genesis_rna.data import (
    IGNORE_INDEX,
    RNADataset,
    SplitData,
    collate,
    load_split,
    model_inputs,
)
from genesis_rna.decoding import decode_candidates, sparse_candidates
from genesis_rna.errors import ConfigError, GenesisError
from genesis_rna.eval_metrics import (
    LENGTH_BIN_EDGES,
    aggregate,
    element_scores,
    group_indices,
    length_bin,
    length_bin_labels,
    majority_class_scores,
    mlm_summary,
    score_pairs,
    unigram_scores,
)
from genesis_rna.eval_plots import plot_evaluation
from genesis_rna.folding import PARAMETER_SETS, ThermoFeatures, vienna_version
from genesis_rna.inference import (
    default_batch_cells,
    length_batches,
    load_for_inference,
    predict_structures,
)
from genesis_rna.pair_metrics import Pair
from genesis_rna.runtime import add_inference_arguments, autocast_for
from genesis_rna.sequences import MODEL_INPUT, normalize_sequence
from genesis_rna.structures import element_labels, pairs_to_dot_bracket
from genesis_rna.tables import write_table
from genesis_rna.thermo import THERMO, ThermoStore, features_for, to_row
from genesis_rna.tokenization import A_ID, N_ID, VOCAB

TEST_NAME = "test"
METHODS = ("model", "vienna", "vienna_mea")
# ViennaRNA's MEA structure under the further parameter sets, when the features carry them
FURTHER_MEA = tuple(f"vienna_mea_{name}" for name in PARAMETER_SETS[1:])
# ViennaRNA MEA threshold when none is given: gamma = 1 (t = 1 / (gamma + 1)), the
# gamma-centroid default of CentroidFold and of RNAfold --MEA's gamma
DEFAULT_MEA_THRESHOLD = 0.5
# Pair metrics copied into summary.tsv for each method (per-sequence means, then pooled).
TSV_METRICS = ("f1", "f1_shift", "precision", "recall", "mcc",
               "pooled_f1", "pooled_f1_shift", "pooled_precision", "pooled_recall")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class EvalRecord:
    id: str
    sequence: str  # normalized (A/C/G/U/N)
    pairs: list[Pair]  # curated / labelled pairs, 0-based, i < j
    family: str | None = None


# --------------------------------------------------------------------------------------------
# Loading


def _admit(records: Iterable[tuple[str, str, list[Pair], str | None]], dataset: str,
           max_length: int | None, max_sequences: int | None
           ) -> tuple[list[EvalRecord], list[dict]]:
    """Normalize and filter records; everything left out is returned with its reason."""
    kept: list[EvalRecord] = []
    skipped: list[dict] = []
    for rid, seq, pairs, family in records:
        def skip(reason: str, rid=rid, seq=seq) -> None:
            skipped.append({"dataset": dataset, "id": rid, "length": len(seq), "reason": reason})

        try:
            norm = normalize_sequence(seq, MODEL_INPUT).sequence
        except ValueError as exc:
            skip(f"sequence cannot be read by the model: {exc}")
            continue
        if not norm:
            skip("empty sequence")
        elif max_length is not None and len(norm) > max_length:
            skip(f"longer than max_length {max_length}")
        elif max_sequences is not None and len(kept) >= max_sequences:
            skip(f"beyond max_sequences {max_sequences}")
        else:
            kept.append(EvalRecord(rid, norm, [(int(i), int(j)) for i, j in pairs], family))
    return kept, skipped


def load_benchmark(name: str, path: str | Path, *, max_length: int | None = None,
                   max_sequences: int | None = None) -> tuple[list[EvalRecord], list[dict]]:
    """Records of a curated benchmark (any format ``benchmarks.iter_benchmark_records``
    reads) plus the not-evaluated rows."""
    recs = ((r.id, r.sequence, r.pairs, r.family) for r in iter_benchmark_records(path))
    return _admit(recs, name, max_length, max_sequences)


def load_test_split(path: str | Path, *, max_length: int | None = None,
                    max_sequences: int | None = None
                    ) -> tuple[list[EvalRecord], list[dict], SplitData, list[str]]:
    """Records of the held-out split, the not-evaluated rows, the admitted rows as
    ``SplitData`` (for MLM) and the distinct label sources."""
    data = load_split(path)
    recs = ((rid, seq, [tuple(p) for p in pairs.tolist()], None)
            for rid, seq, pairs in zip(data.ids, data.sequences, data.pairs, strict=True))
    kept, skipped = _admit(recs, TEST_NAME, max_length, max_sequences)
    keep_ids = {r.id for r in kept}
    rows = [k for k, rid in enumerate(data.ids) if rid in keep_ids]
    sub = SplitData([data.ids[k] for k in rows], [data.tokens[k] for k in rows],
                    [data.elements[k] for k in rows], [data.pairs[k] for k in rows],
                    data.lengths[rows])
    sources = sorted(set(pq.read_table(path, columns=["label_source"])
                         .column("label_source").to_pylist()) - {None})
    return kept, skipped, sub, sources


# --------------------------------------------------------------------------------------------
# Masked-nucleotide modelling on the test split


@torch.no_grad()
def masked_lm_eval(model: torch.nn.Module, data: SplitData, *, seed: int, mask_prob: float,
                   device: torch.device, precision: str, bucket_multiple: int,
                   batch_cells: int | None = None, progress: bool = False) -> dict:
    """MLM accuracy and perplexity at masked positions with the fixed validation masks
    (``RNADataset(train=False)``: seeded per sequence id, first window of long sequences),
    plus the unigram baseline from the same sequences' nucleotide frequencies.
    ``bucket_multiple``: batch widths are rounded up to it (the training config's)."""
    if len(data) == 0:
        nan = mlm_summary(0.0, 0, 0)
        return {"model": nan, "unigram": nan}
    max_len = model.config.max_len
    ds = RNADataset(data, max_len=max_len, mask_prob=mask_prob, seed=seed, train=False)
    lengths = [min(int(n), max_len - 2) for n in data.lengths]
    nll, correct, total = 0.0, 0, 0
    targets: list[np.ndarray] = []
    was_training = model.training
    model.eval()
    try:
        cells = batch_cells or default_batch_cells(device)
        for batch in tqdm(length_batches(lengths, max_len, cells, 256, bucket_multiple),
                          desc="MLM test", unit="batch", disable=not progress, file=sys.stderr):
            b = {k: v.to(device) for k, v in
                 collate([ds[(0, k)] for k in batch], max_len, bucket_multiple).items()}
            with autocast_for(device, precision):  # a thermo model gets its feature maps too
                logits = model(**model_inputs(b, model.config))["mlm_logits"]
            labels = b["mlm_labels"].to(device)
            sel = labels != IGNORE_INDEX
            logp = F.log_softmax(logits.float()[sel], dim=-1)
            tgt = labels[sel]
            nll += float(-logp.gather(1, tgt[:, None]).sum())
            correct += int((logp.argmax(-1) == tgt).sum())
            total += int(sel.sum())
            targets.append(tgt.cpu().numpy())
    finally:
        model.train(was_training)
    freq = np.bincount(np.concatenate(data.tokens).astype(np.int64), minlength=len(VOCAB))
    freq[: A_ID] = 0  # special tokens never occur inside sequences
    freq[N_ID + 1 :] = 0
    return {"model": mlm_summary(nll, correct, total),
            "unigram": {**unigram_scores(freq, np.concatenate(targets)),
                        "note": "frequencies of the test sequences themselves"}}


# --------------------------------------------------------------------------------------------
# Scoring one data set


def _group_block(scores: Mapping[str, list[dict]], elements: Mapping[str, list[str]],
                 idx: Sequence[int]) -> dict:
    """Pair and element metrics of each method over rows ``idx``."""
    out: dict = {"n": len(idx)}
    true = [elements["true"][k] for k in idx]
    for method, rows in scores.items():
        out[method] = aggregate([rows[k] for k in idx])
        out[method]["element"] = element_scores([elements[method][k] for k in idx], true)
    out["model"]["element_from_pairs"] = element_scores([elements["model_pairs"][k] for k in idx],
                                                        true)
    return out


def vienna_baselines(records: Sequence[EvalRecord], features: Sequence[ThermoFeatures],
                     mea_threshold: float, min_sep: int = 4,
                     further_thresholds: Mapping[str, float] | None = None
                     ) -> dict[str, list[list[Pair]]]:
    """ViennaRNA's MFE pairs and its MEA structure (nested, ``mea_threshold``) per record, and
    the MEA structure under each further parameter set all ``features`` carry
    (``vienna_mea_<set>``, threshold from ``further_thresholds`` or ``DEFAULT_MEA_THRESHOLD``)."""
    def mea(s: int, t: float) -> list[list[Pair]]:
        return [decode_candidates(sparse_candidates(
                    r.sequence, f.bpp_i, f.bpp_j, f.probabilities(s), min_sep), t, "mea") for r, f in zip(records, features, strict=True)]

    out = {"vienna": [sorted(map(tuple, f.mfe.tolist())) for f in features],
           "vienna_mea": mea(0, mea_threshold)}
    sets = min((f.parameter_sets for f in features), default=1)
    for s in range(1, sets):
        name = PARAMETER_SETS[s]
        out[f"vienna_mea_{name}"] = mea(s, (further_thresholds or {}).get(
            name, DEFAULT_MEA_THRESHOLD))
    return out


def _dot_bracket(pairs: list[Pair], length: int) -> str:
    """Dot-bracket of curated pairs; empty when they need more bracket pages than exist."""
    try:
        return pairs_to_dot_bracket(pairs, length)
    except ValueError:
        return ""


def score_dataset(records: Sequence[EvalRecord], predictions: Sequence,
                  baselines: Mapping[str, Sequence[list[Pair]]] | None = None
                  ) -> tuple[pd.DataFrame, dict]:
    """Per-sequence table and summary block (overall, per family, per length bin);
    ``baselines``: method name (``vienna``, ``vienna_mea``) -> its pairs per record."""
    n = len(records)
    lengths = [len(r.sequence) for r in records]
    # The model's reported elements are its structure head's; the bpRNA labels of its decoded
    # structure (the annotate stage's labeller) are kept beside them. Measured on held-out
    # comparative structures, ArchiveII and VL0, the head was the better of the two.
    elements = {"true": [element_labels(r.pairs, len(r.sequence)) for r in records],
                "model": [p.elements for p in predictions],
                "model_pairs": [element_labels(p.pairs, len(r.sequence))
                                for p, r in zip(predictions, records, strict=True)]}
    scores = {"model": [score_pairs(p.pairs, r.pairs, len(r.sequence))
                        for p, r in zip(predictions, records, strict=True)]}
    for method, pairs in (baselines or {}).items():
        scores[method] = [score_pairs(v, r.pairs, len(r.sequence))
                          for v, r in zip(pairs, records, strict=True)]
        elements[method] = [element_labels(v, len(r.sequence))
                            for v, r in zip(pairs, records, strict=True)]
    table: dict[str, list] = {
        "id": [r.id for r in records],
        "family": [r.family or "" for r in records],
        "length": lengths,
        "length_bin": [length_bin(L) for L in lengths],
        "windowed": [bool(p.windowed) for p in predictions],
        "n_true_pairs": [len(set(r.pairs)) for r in records],
    }
    for method, rows in scores.items():
        for key in ("n_pred_pairs", "precision", "recall", "f1", "precision_shift",
                    "recall_shift", "f1_shift", "mcc", "tp", "tp_shift_pred", "tp_shift_true"):
            table[f"{method}_{key}"] = [row[key] for row in rows]
    for method in (*scores, "model_pairs"):
        table[f"{method}_element_acc"] = [
            float(np.mean(np.frombuffer(a.encode(), np.uint8) == np.frombuffer(b.encode(), np.uint8)))
            for a, b in zip(elements[method], elements["true"], strict=True)]
    # what eval_plots' gallery draws side by side
    table["sequence"] = [r.sequence for r in records]
    table["true_structure"] = [_dot_bracket(r.pairs, len(r.sequence)) for r in records]
    table["model_structure"] = [pairs_to_dot_bracket(p.pairs, len(r.sequence))
                                for p, r in zip(predictions, records, strict=True)]
    frame = pd.DataFrame(table)

    overall = _group_block(scores, elements, range(n))
    overall["majority_class"] = majority_class_scores(elements["true"])
    families = [r.family for r in records]
    summary = {
        "n_evaluated": n,
        "n_windowed": int(sum(p.windowed for p in predictions)),
        "all": overall,
        "per_family": ({str(f): _group_block(scores, elements, idx)
                        for f, idx in group_indices(families).items()}
                       if any(f is not None for f in families) else {}),
        "per_length_bin": {b: _group_block(scores, elements, idx) for b, idx in group_indices(
            table["length_bin"], length_bin_labels(LENGTH_BIN_EDGES)).items()},
    }
    return frame, summary


# --------------------------------------------------------------------------------------------
# Output


def _write_tsv(path: Path, frame: pd.DataFrame) -> None:
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        frame.to_csv(fh, sep="\t", index=False, float_format="%.6g", lineterminator="\n")


def _clean(obj):
    """NaN/inf -> None so the JSON is standard; numpy scalars -> Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def summary_rows(dataset: str, block: dict) -> list[dict]:
    """summary.tsv rows of one data set: all, then families, then length bins."""
    groups = [("all", "all", block["all"])]
    groups += [("family", f, b) for f, b in block["per_family"].items()]
    groups += [("length_bin", k, b) for k, b in block["per_length_bin"].items()]
    rows = []
    for breakdown, name, b in groups:
        row: dict = {"dataset": dataset, "breakdown": breakdown, "group": name, "n": b["n"]}
        for metric in TSV_METRICS:
            for method in (*METHODS, *FURTHER_MEA):
                if method in b:
                    row[f"{method}_{metric}"] = b[method][metric]
        for method in (*METHODS, *FURTHER_MEA):
            if method in b:
                row[f"{method}_element_accuracy"] = b[method]["element"]["accuracy"]
                row[f"{method}_element_macro_f1"] = b[method]["element"]["macro_f1"]
        row["model_pairs_element_accuracy"] = b["model"]["element_from_pairs"]["accuracy"]
        row["model_pairs_element_macro_f1"] = b["model"]["element_from_pairs"]["macro_f1"]
        if breakdown == "all":
            maj = b["majority_class"]
            row["majority_element_accuracy"] = maj["accuracy"]
            row["majority_element_macro_f1"] = maj["macro_f1"]
            if "mlm" in block:
                for who in ("model", "unigram"):
                    row[f"{who}_mlm_accuracy"] = block["mlm"][who]["accuracy"]
                    row[f"{who}_mlm_perplexity"] = block["mlm"][who]["perplexity"]
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------
# Driver


def _check_name(name: str) -> None:
    if not _NAME_RE.match(name):
        raise ConfigError("benchmark", f"name {name!r} must be letters, digits, '_', '-', '.' "
                          "(it becomes part of file names)")
    if name == TEST_NAME:
        raise ConfigError("benchmark", f"name {TEST_NAME!r} is reserved for the test split")


def evaluate(
    checkpoint: str | Path,
    test_split_parquet: str | Path | None = None,
    benchmarks: Mapping[str, str | Path] | None = None,
    out_dir: str | Path = "evaluation",
    *,
    device: str = "auto",
    max_sequences: int | None = None,
    max_length: int | None = None,
    baseline: bool = True,
    threads: int | None = None,
    precision: str | None = None,
    window: int | None = None,
    batch_cells: int | None = None,
    baseline_cache: str | Path | None = None,
    thermo: Sequence[str | Path] = (),
    vienna_mea_threshold: float | None = None,
    vienna_mea_source: str | None = None,
    vienna_mea_further: Mapping[str, float] | None = None,
    progress: bool = True,
) -> dict:
    """Evaluate ``checkpoint`` on the test split and each benchmark; write the outputs listed
    in the module docstring into ``out_dir`` and return the summary dict.

    ``max_sequences`` / ``max_length`` cap each data set (what they leave out is listed in
    ``not_evaluated.tsv``). ``threads``: torch threads and ViennaRNA processes (default: the
    CPUs available). ``precision``: autocast dtype, default the training one.
    ``thermo``: the thermo stage's feature tables of these data sets; ``baseline_cache``: a
    feature table read when present and rewritten with what was computed here (reruns reuse
    it). ``vienna_mea_threshold``: ViennaRNA MEA's threshold (default ``DEFAULT_MEA_THRESHOLD``),
    ``vienna_mea_source``: where it was tuned (said in the summary); ``vienna_mea_further``:
    thresholds of the MEA baselines under further parameter sets (``vienna_mea_<set>``, when
    the features carry them).
    """
    t_start = time.perf_counter()
    benchmarks = dict(benchmarks or {})
    for name in benchmarks:
        _check_name(name)
    if test_split_parquet is None and not benchmarks:
        raise ConfigError("evaluate", "nothing to evaluate: give a test split and/or benchmarks")
    for key, val in (("max_sequences", max_sequences), ("max_length", max_length),
                     ("threads", threads), ("batch_cells", batch_cells)):
        if val is not None and val < 1:
            raise ConfigError(key, f"must be at least 1, got {val}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = threads or n_cpus or 1
    if threads:
        torch.set_num_threads(threads)
    loaded = load_for_inference(checkpoint, device=device, precision=precision, window=window)
    model, tokenizer, config, threshold = (loaded.model, loaded.tokenizer, loaded.config,
                                           loaded.threshold)
    decoder = loaded.decoder
    dev, prec = loaded.device, loaded.precision
    min_sep = int(config.get("pair_min_sep", 4))
    mea_t = DEFAULT_MEA_THRESHOLD if vienna_mea_threshold is None else float(vienna_mea_threshold)
    if not 0 <= mea_t < 1:
        raise ConfigError("vienna_mea_threshold", f"must be in [0, 1), got {mea_t}")
    reads_thermo = bool(model.config.thermo_features)
    store = ThermoStore(thermo)
    cache = Path(baseline_cache) if baseline_cache else None
    if cache is not None and cache.exists():
        store.add(cache)
    n_stored = len(store)
    computed: list[tuple[str, ThermoFeatures]] = []

    summary: dict = {
        "checkpoint": str(checkpoint), "pair_threshold": threshold, "pair_min_sep": min_sep,
        "pair_decoder": decoder,
        "elements": "model element labels are the structure head's; model_pairs_element_* are "
                    "the bpRNA labels of the model's decoded structure",
        "device": str(dev), "precision": prec, "threads": torch.get_num_threads(),
        "model_max_len": model.config.max_len,
        "window": window or model.config.max_len - 2,
        "baseline": (f"ViennaRNA {vienna_version()} default parameters: MFE (vienna) and MEA "
                     f"(vienna_mea: nested MEA on its pair probabilities, threshold {mea_t}, "
                     f"{vienna_mea_source or 'gamma = 1, not tuned'})") if baseline else None,
        "vienna_mea_threshold": mea_t if baseline else None,
        "vienna_mea_source": vienna_mea_source if baseline else None,
        "vienna_mea_further_thresholds": dict(vienna_mea_further or {}) if baseline else None,
        "thermo_features": reads_thermo,
        "length_bins": length_bin_labels(LENGTH_BIN_EDGES),
        "max_sequences": max_sequences, "max_length": max_length, "datasets": {},
    }
    not_evaluated: list[dict] = []
    tsv_rows: list[dict] = []
    sources: list[tuple[str, str | Path]] = []
    if test_split_parquet is not None:
        sources.append((TEST_NAME, test_split_parquet))
    sources += list(benchmarks.items())

    for name, path in sources:
        t0 = time.perf_counter()
        block: dict = {"source": str(path)}
        split_data = None
        if name == TEST_NAME:
            records, skipped, split_data, label_sources = load_test_split(
                path, max_length=max_length, max_sequences=max_sequences)
            block["label_source"] = label_sources
        else:
            records, skipped = load_benchmark(name, path, max_length=max_length,
                                              max_sequences=max_sequences)
        not_evaluated += skipped
        block["n_records"] = len(records) + len(skipped)
        block["n_not_evaluated"] = len(skipped)
        seqs = [r.sequence for r in records]
        feats = None
        if baseline or reads_thermo:
            sets = model.config.thermo_parameter_sets if reads_thermo else 1
            stored = [store.get(s) for s in seqs]
            missing = {s for s, f in zip(seqs, stored, strict=True)
                       if f is None or f.parameter_sets < sets}
            feats = features_for(seqs, store, threads=workers, progress=progress,
                                 desc=f"ViennaRNA {name}", parameter_sets=sets,
                                 log=lambda m: print(m, file=sys.stderr))
            computed += [(s, f) for s, f in zip(seqs, feats, strict=True) if s in missing]
        t1 = time.perf_counter()
        preds = predict_structures(model, seqs, threshold,
                                   tokenizer=tokenizer, device=dev, precision=prec,
                                   window=window, min_sep=min_sep, decoder=decoder,
                                   batch_cells=batch_cells, thermo=feats if reads_thermo else None,
                                   progress=progress, desc=f"model {name}")
        t2 = time.perf_counter()
        baselines = (vienna_baselines(records, feats, mea_t, min_sep, vienna_mea_further)
                     if baseline else None)
        t3 = time.perf_counter()
        frame, scored = score_dataset(records, preds, baselines)
        block.update(scored)
        if split_data is not None:
            if reads_thermo:
                split_data.thermo = feats
            block["mlm"] = masked_lm_eval(
                model, split_data, seed=int(config.get("seed", 0)),
                mask_prob=float(config.get("mask_prob", 0.15)), device=dev, precision=prec,
                bucket_multiple=int(config["bucket_multiple"]), batch_cells=batch_cells,
                progress=progress)
        _write_tsv(out / f"per_sequence_{name}.tsv", frame)
        block["labels_from_baseline"] = baseline and any(
            "ViennaRNA" in src for src in block.get("label_source", []))
        if block["labels_from_baseline"]:
            block["note"] = ("labels of this split come from ViennaRNA folding, so the ViennaRNA "
                             "baseline scores ~1 here by construction; curated benchmarks are "
                             "the fair comparison")
        block["wall_time_s"] = {"load_and_features": t1 - t0, "model": t2 - t1,
                                "vienna_mea": t3 - t2, "total": time.perf_counter() - t0}
        summary["datasets"][name] = block
        tsv_rows += summary_rows(name, block)
        if block["n_windowed"]:
            print(f"{name}: {block['n_windowed']} sequences longer than the window were "
                  "predicted in sliding windows", file=sys.stderr)

    if cache is not None and computed:
        _write_cache(cache, computed)
    summary["thermo_features_stored"] = n_stored
    summary["thermo_features_computed"] = len(computed)
    _write_tsv(out / "not_evaluated.tsv",
               pd.DataFrame(not_evaluated, columns=["dataset", "id", "length", "reason"]))
    _write_tsv(out / "summary.tsv", pd.DataFrame(tsv_rows))
    summary["wall_time_s"] = time.perf_counter() - t_start
    summary = _clean(summary)
    # Not atomic.write_json: that sorts keys, which would scramble the length bins and the
    # data-set order that readers (and the report) expect.
    with atomic_open(out / "summary.json", "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=2, allow_nan=False)
        fh.write("\n")
    return summary


def _write_cache(cache: Path, computed: Sequence[tuple[str, ThermoFeatures]]) -> None:
    """The cache's rows plus the features computed in this evaluation (one row per sequence)."""
    done = dict(computed)
    new = pa.Table.from_pylist([to_row("", s, f) for s, f in done.items()], schema=THERMO)
    if cache.exists():  # recomputed rows (more parameter sets) replace the old ones
        store = ThermoStore([cache])
        old = [to_row("", s, f) for s in store.sequences() if s not in done
               for f in [store.get(s)]]
        new = pa.concat_tables([pa.Table.from_pylist(old, schema=THERMO), new])
    write_table(cache, new)


def format_report(summary: Mapping) -> str:
    """A few lines for the terminal: F1 of model and baselines per data set."""
    lines = [f"{'dataset':<14}{'n':>7}{'model F1':>10}{'Vienna MFE':>12}{'Vienna MEA':>12}"
             f"{'windowed':>10}{'not eval.':>11}{'time s':>8}"]
    for name, b in summary["datasets"].items():
        vf = b["all"].get("vienna", {}).get("f1")
        mf = b["all"].get("vienna_mea", {}).get("f1")
        lines.append(
            f"{name:<14}{b['n_evaluated']:>7}{_fmt(b['all']['model']['f1']):>10}"
            f"{_fmt(vf):>12}{_fmt(mf):>12}{b['n_windowed']:>10}{b['n_not_evaluated']:>11}"
            f"{b['wall_time_s']['total']:>8.1f}")
    return "\n".join(lines)


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def _benchmark_arg(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m genesis_rna.evaluate",
        description="Evaluate a trained model on the held-out split and curated benchmarks, "
                    "side by side with ViennaRNA MFE and MEA.")
    p.add_argument("--checkpoint", required=True, help="final model.pt of a training run")
    p.add_argument("--test", help="held-out split table (test.parquet)")
    p.add_argument("--benchmark", action="append", default=[], type=_benchmark_arg,
                   metavar="NAME=PATH", help="curated benchmark (repeatable): folder/tarball of "
                   ".bpseq, .ct, dot-bracket FASTA, or CSV id,sequence,structure,base_pairs")
    p.add_argument("--out_dir", required=True)
    add_inference_arguments(p)
    p.add_argument("--max_sequences", type=int, help="evaluate at most N sequences per data set")
    p.add_argument("--max_length", type=int,
                   help="leave out (and list) sequences longer than N nt")
    p.add_argument("--threads", type=int, help="torch threads and ViennaRNA processes")
    p.add_argument("--window", type=int,
                   help="nt per sliding window for long sequences (default max_len - 2)")
    p.add_argument("--batch_cells", type=int,
                   help="batch x T x T pair-map cells per forward pass (default: 2^18 on CPU, "
                   "2^23 on CUDA)")
    p.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                   help="fold the same sequences with ViennaRNA for comparison")
    p.add_argument("--baseline_cache", help="Parquet table of ViennaRNA features (the thermo "
                   "stage's format), read when present and rewritten with new ones (reruns reuse it)")
    p.add_argument("--thermo", action="append", default=[], metavar="PARQUET",
                   help="the thermo stage's feature table(s) of these data sets (repeatable); "
                   "features not found are computed")
    p.add_argument("--vienna_mea_threshold", type=float,
                   help=f"threshold of ViennaRNA's MEA baseline (default {DEFAULT_MEA_THRESHOLD}: "
                   "gamma = 1); tune it on validation (python -m genesis_rna.thermo tune), never "
                   "on the test sets")
    p.add_argument("--plots", action=argparse.BooleanOptionalAction, default=True,
                   help="also draw the F1 plots (genesis_rna.eval_plots; the workflow draws them "
                   "in their own rule)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    benchmarks: dict[str, str] = {}
    for name, path in args.benchmark:
        if name in benchmarks:
            print(f"error: --benchmark name {name!r} given twice", file=sys.stderr)
            return 2
        benchmarks[name] = path
    try:
        summary = evaluate(
            args.checkpoint, args.test, benchmarks, args.out_dir, device=args.device,
            max_sequences=args.max_sequences, max_length=args.max_length,
            baseline=args.baseline, threads=args.threads, precision=args.precision,
            window=args.window, batch_cells=args.batch_cells,
            baseline_cache=args.baseline_cache, thermo=args.thermo,
            vienna_mea_threshold=args.vienna_mea_threshold,
            vienna_mea_source="given on the command line" if args.vienna_mea_threshold is not None
            else None, progress=args.progress)
        if args.plots:
            plot_evaluation(args.out_dir)
    except GenesisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_report(summary))
    print(f"wrote {args.out_dir}/summary.json, summary.tsv, not_evaluated.tsv, per-sequence "
          "tables" + (" and plots" if args.plots else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["EvalRecord", "evaluate", "load_benchmark", "load_test_split", "main",
           "masked_lm_eval", "score_dataset"]
