"""Thermodynamic features: the stage's tables, packing, batches, the model's input channels,
fine-tuning from a model without them, prediction and the ViennaRNA MEA baseline."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import RNA
import torch

from genesis_rna.data import (
    RNADataset,
    collate,
    load_split,
    model_inputs,
    subset_batch,
    thermo_maps,
)
from genesis_rna.errors import ConfigError, InputFileError
from genesis_rna.folding import BPP_FLOOR, PARAMETER_SETS, thermo_features
from genesis_rna.inference import predict_structures
from genesis_rna.model import GenesisRNA, model_config_for, thermo_channels
from genesis_rna.packed import PackedSplit, pack_table
from genesis_rna.structures import parse_dot_bracket
from genesis_rna.thermo import (
    ThermoStore,
    admit,
    compute_shard,
    features_for,
    tune_mea_threshold,
)
from tests.helpers import random_rna
from tests.train_fixtures import TINY_ARGS, make_splits, run_cli


@pytest.fixture(scope="module")
def seqs() -> list[str]:
    rng = random.Random(11)
    return [random_rna(rng, n) for n in (25, 48, 77, 120)]


def test_features_equal_viennarna_bpp_and_mfe(seqs):
    for seq in seqs:
        f = thermo_features(seq)
        fc = RNA.fold_compound(seq)
        structure, mfe = fc.mfe()
        fc.pf()
        bpp = np.array(fc.bpp())  # 1-based, upper triangle
        i, j = np.nonzero(bpp >= BPP_FLOOR)
        assert sorted(zip(f.bpp_i.tolist(), f.bpp_j.tolist(), strict=True)) == sorted(
            zip((i - 1).tolist(), (j - 1).tolist(), strict=True))
        np.testing.assert_allclose(f.bpp_p, bpp[f.bpp_i + 1, f.bpp_j + 1], rtol=1e-5, atol=1e-7)
        assert sorted(map(tuple, f.mfe.tolist())) == parse_dot_bracket(structure)
        assert f.mfe_energy == pytest.approx(mfe, abs=1e-4)
        assert (f.bpp_i < f.bpp_j).all()


def test_crop_keeps_pairs_inside_the_window(seqs):
    f = thermo_features(seqs[3])
    c = f.crop(30, 50)
    inside = (f.bpp_i >= 30) & (f.bpp_j < 80)
    assert len(c.bpp_i) == inside.sum() and (c.bpp_i >= 0).all() and (c.bpp_j < 50).all()
    np.testing.assert_array_equal(c.bpp_p, f.bpp_p[inside])


def test_stage_shards_partition_rows_and_list_what_is_not_folded(tmp_path, seqs):
    csv = tmp_path / "bench.csv"
    rows = [("a", seqs[0]), ("bad_letters", "ACGUXZACGUACGU"), ("b", seqs[1]),
            ("too_long", seqs[3]), ("c", seqs[2].replace("U", "T"))]
    csv.write_text("id,sequence,structure,base_pairs\n" + "".join(
        f"{rid},{s},{'.' * len(s)},[]\n" for rid, s in rows))
    stored, rejected = {}, {}
    for shard in range(2):
        out, rej = tmp_path / f"{shard}.parquet", tmp_path / f"{shard}.rejected.parquet"
        counts = compute_shard(csv, out, rej, kind="benchmark", shard=shard, shards=2,
                               max_length=100)
        assert counts["folded"] + counts["rejected"] == counts["rows"] == (3, 2)[shard]
        for r in pq.read_table(out).to_pylist():
            stored[r["id"]] = r
        for r in pq.read_table(rej).to_pylist():
            rejected[r["id"]] = r["reason"]
    assert set(stored) == {"a", "b", "c"}
    assert stored["c"]["sequence"] == seqs[2]  # DNA letters read as RNA, as the model reads them
    assert "cannot be read" in rejected["bad_letters"] and "'X'" in rejected["bad_letters"]
    assert "longer than" in rejected["too_long"] and "max_length 100" in rejected["too_long"]
    assert admit("", None) == (None, "empty sequence")
    store = ThermoStore(tmp_path.glob("[01].parquet"))
    f = store.get(seqs[1])
    np.testing.assert_array_equal(f.bpp_p, thermo_features(seqs[1]).bpp_p)
    assert store.get("ACGU") is None
    # features_for: stored ones read, the rest computed, all in order
    got = features_for([seqs[3], seqs[0]], store)
    np.testing.assert_array_equal(got[0].bpp_p, thermo_features(seqs[3]).bpp_p)
    with pytest.raises(InputFileError, match="not found"):
        ThermoStore([tmp_path / "none.parquet"])


def _stored(tmp_path: Path, table: Path, parameter_sets: int = 1) -> ThermoStore:
    out = tmp_path / f"{table.stem}.{parameter_sets}.features.parquet"
    compute_shard(table, out, tmp_path / f"{table.stem}.rejected.parquet", kind="split",
                  parameter_sets=parameter_sets)
    return ThermoStore([out])


def test_packed_thermo_round_trips_and_a_missing_row_is_named(tmp_path):
    splits = make_splits(tmp_path / "s", n_train=12, n_val=4)
    store = _stored(tmp_path, splits / "train.parquet")
    meta = pack_table(splits / "train.parquet", tmp_path / "p", thermo=store)
    plain = pack_table(splits / "train.parquet", tmp_path / "plain")
    assert meta["thermo"] and meta["fingerprint"] == plain["fingerprint"]
    assert meta["fingerprint"] == load_split(splits / "train.parquet").fingerprint()
    packed, table = PackedSplit(tmp_path / "p"), load_split(splits / "train.parquet")
    assert PackedSplit(tmp_path / "plain").thermo_at(0) is None
    for k, seq in enumerate(table.sequences):
        want, got = store.get(seq), packed.thermo_at(k)
        np.testing.assert_array_equal(got.bpp_p, want.bpp_p)
        np.testing.assert_array_equal(got.bpp_i, want.bpp_i)
        np.testing.assert_array_equal(got.mfe, want.mfe)
    partial = ThermoStore()
    with pytest.raises(InputFileError, match="no thermodynamic features"):
        pack_table(splits / "train.parquet", tmp_path / "q", thermo=partial)


def test_batches_carry_features_through_subsets(tmp_path):
    splits = make_splits(tmp_path / "s", n_train=6, n_val=2)
    data = load_split(splits / "train.parquet")
    data.thermo = [thermo_features(s) for s in data.sequences]
    ds = RNADataset(data, max_len=64, mask_prob=0.15, seed=0, train=True)
    batch = collate([ds[(0, k)] for k in range(6)], 64, 8)
    maps = thermo_maps(batch)
    assert torch.equal(maps, maps.transpose(-1, -2))
    for k in range(6):
        f = data.thermo[k]
        assert torch.allclose(maps[k, 0, f.bpp_i + 1, f.bpp_j + 1], torch.from_numpy(f.bpp_p))
        assert int(maps[k, 1].sum()) == 2 * len(f.mfe)
        assert float(maps[k, 0].sum()) == pytest.approx(2 * float(f.bpp_p.sum()), rel=1e-5)
    rows = torch.tensor([4, 1])
    sub = subset_batch(batch, rows, 8)
    sub_maps = thermo_maps(sub)
    w = sub["tokens"].shape[1]
    assert torch.equal(sub_maps, maps[rows][:, :, :w, :w])
    cfg = model_config_for("tiny", thermo_features=True)
    assert "thermo" in model_inputs(batch, cfg)
    plain = {k: v for k, v in batch.items() if not k.startswith(("bpp", "mfe"))}
    with pytest.raises(ConfigError, match="thermo_features"):
        model_inputs(plain, cfg)


def test_model_without_features_loads_unchanged_into_one_with_them(seqs):
    torch.manual_seed(0)
    plain = GenesisRNA(model_config_for("tiny"))
    thermo = GenesisRNA(model_config_for("tiny", thermo_features=True))
    fresh = thermo.load_pretrained(plain.state_dict())
    assert fresh and all(k.startswith("pair_head.thermo_") for k in fresh)
    a = predict_structures(plain, seqs, 0.3, keep_pair_probs=True, prob_floor=0.0)
    b = predict_structures(thermo, seqs, 0.3, keep_pair_probs=True, prob_floor=0.0)
    for x, y in zip(a, b, strict=True):
        assert x.pairs == y.pairs
        np.testing.assert_allclose(x.pair_probs[2], y.pair_probs[2], atol=1e-6)
    # the features reach the logits once the new layers move
    with torch.no_grad():
        thermo.pair_head.thermo_out.weight.fill_(1.0)
    c = predict_structures(thermo, seqs, 0.3, keep_pair_probs=True, prob_floor=0.0)
    assert any(not np.allclose(x.pair_probs[2], z.pair_probs[2]) for x, z in zip(a, c,
                                                                                 strict=True))
    with pytest.raises(ConfigError, match="init_from"):
        plain.load_pretrained(thermo.state_dict())
    with pytest.raises(ValueError, match="thermo"):
        thermo(torch.ones(1, 10, dtype=torch.long), torch.ones(1, 10, dtype=torch.bool))


def test_finetune_with_features_from_a_model_without_them(tmp_path):
    """Reading all three parameter sets (the demo workflow test fine-tunes with one)."""
    splits = make_splits(tmp_path / "s", n_train=24, n_val=8)
    pre = run_cli(["--data_path", str(splits), "--output_dir", str(tmp_path / "pre"),
                   "--num_epochs", "1", *TINY_ARGS])
    assert pre.returncode == 0, pre.stderr
    packed = tmp_path / "packed"
    for split in ("train", "val"):
        pack_table(splits / f"{split}.parquet", packed / split,
                   thermo=_stored(tmp_path, splits / f"{split}.parquet", 3))
    args = ["--data_path", str(packed), "--output_dir", str(tmp_path / "ft"), "--num_epochs", "1",
            "--init_from", str(tmp_path / "pre" / "model.pt"), *TINY_ARGS]
    r = run_cli([*args, "--thermo_features", "--thermo_parameter_sets", "3"])
    assert r.returncode == 0, r.stderr
    assert "new at zero: pair_head.thermo_in.weight" in r.stdout + r.stderr
    state = torch.load(tmp_path / "ft" / "model.pt", map_location="cpu", weights_only=True)
    assert state["model_config"]["thermo_features"] is True
    assert state["model_config"]["thermo_parameter_sets"] == 3
    assert state["model"]["pair_head.thermo_in.weight"].shape[1] == 7
    assert float(state["model"]["pair_head.thermo_out.weight"].abs().sum()) > 0  # it trained
    # evaluated on a test split (pairs and MLM), the features read from the stage's table
    from genesis_rna.evaluate import evaluate

    test_store = tmp_path / "test.features.parquet"
    compute_shard(splits / "test.parquet", test_store, tmp_path / "test.rejected.parquet",
                  kind="split", parameter_sets=3)
    summary = evaluate(tmp_path / "ft" / "model.pt", splits / "test.parquet", None,
                       tmp_path / "eval", device="cpu", thermo=[test_store], progress=False)
    assert summary["thermo_features"] and summary["thermo_features_computed"] == 0
    assert summary["datasets"]["test"]["mlm"]["model"]["n_masked"] > 0
    assert 0 <= summary["datasets"]["test"]["all"]["vienna_mea"]["f1"] <= 1
    assert 0 <= summary["datasets"]["test"]["all"]["vienna_mea_langdon2018"]["f1"] <= 1
    # a model with features cannot start from unpacked tables that lack them
    r = run_cli(["--data_path", str(splits), "--output_dir", str(tmp_path / "ft2"),
                 "--num_epochs", "1", "--thermo_features", *TINY_ARGS])
    assert r.returncode != 0 and "thermo_features" in r.stderr


def test_mea_threshold_tuned_on_a_table_is_the_best_of_the_grid(tmp_path):
    from genesis_rna.decoding import decode_candidates, sparse_candidates
    from genesis_rna.pair_metrics import pair_counts, prf

    splits = make_splits(tmp_path / "s", n_train=4, n_val=20, min_len=40, max_len=90)
    store = _stored(tmp_path, splits / "val.parquet")
    tuned = tune_mea_threshold(splits / "val.parquet", store)
    data = load_split(splits / "val.parquet")

    def mean_f1(t):
        scores = []
        for seq, pairs in zip(data.sequences, data.pairs, strict=True):
            f = store.get(seq)
            pred = decode_candidates(sparse_candidates(seq, f.bpp_i, f.bpp_j, f.bpp_p), t)
            scores.append(prf(*pair_counts(pred, [tuple(p) for p in pairs.tolist()]))[2])
        return float(np.mean(scores))

    assert tuned["n"] == 20 and tuned["threshold"] in tuned["thresholds"]
    assert tuned["val_f1"] == pytest.approx(mean_f1(tuned["threshold"]))
    assert all(mean_f1(t) <= tuned["val_f1"] + 1e-12 for t in tuned["thresholds"])
    # the labels are ViennaRNA's MFE folds here, so its MFE scores 1
    assert tuned["val_mfe_f1"] == pytest.approx(1.0)


def test_predict_cli_computes_features_for_a_thermo_model(tmp_path):
    from genesis_rna.checkpoint import load_model
    from genesis_rna.predict import main as predict_main

    splits = make_splits(tmp_path / "s", n_train=16, n_val=8)
    packed = tmp_path / "packed"
    for split in ("train", "val"):
        pack_table(splits / f"{split}.parquet", packed / split,
                   thermo=_stored(tmp_path, splits / f"{split}.parquet"))
    r = run_cli(["--data_path", str(packed), "--output_dir", str(tmp_path / "m"),
                 "--num_epochs", "1", "--thermo_features", *TINY_ARGS])
    assert r.returncode == 0, r.stderr
    # a model whose logits follow ViennaRNA's pair probabilities (the direct layer set by
    # hand): its structures come from the features, so they show whether predict computed them
    from genesis_rna.checkpoint import save_checkpoint

    ckpt = tmp_path / "m" / "model.pt"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    state["model"]["pair_head.thermo_out.weight"][0, 0] = 1.0
    save_checkpoint(ckpt, state)
    rng = random.Random(5)
    seqs = [random_rna(rng, n) for n in (30, 70, 150)]  # 150 nt: windowed (max_len 64)
    fasta = tmp_path / "in.fa"
    fasta.write_text("".join(f">s{k}\n{s}\n" for k, s in enumerate(seqs)))
    out = tmp_path / "out.fa"
    assert predict_main(["--checkpoint", str(tmp_path / "m" / "model.pt"), "--input", str(fasta),
                         "--output", str(out), "--no-progress", "--device", "cpu",
                         "--threshold", "0.05"]) == 0
    lines = out.read_text().splitlines()
    model, _, _, _, dec = load_model(tmp_path / "m" / "model.pt", device="cpu")
    want = predict_structures(model, seqs, 0.05, decoder=dec,
                              thermo=[thermo_features(s) for s in seqs])
    from genesis_rna.structures import pairs_to_dot_bracket
    got = [line.split(" ")[0] for line in lines[2::3]]  # structure, then its energy
    assert got == [pairs_to_dot_bracket(p.pairs, len(s)) for p, s in zip(want, seqs, strict=True)]
    assert any("(" in g for g in got)


def test_thermo_store_refuses_a_table_of_another_schema(tmp_path):
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"id": ["a"], "x": [1]}), bad)
    with pytest.raises(InputFileError, match="not a thermodynamic feature table"):
        ThermoStore([bad])


LOADERS = {"turner2004": RNA.params_load_RNA_Turner2004,
           "andronescu2007": RNA.params_load_RNA_Andronescu2007,
           "langdon2018": RNA.params_load_RNA_Langdon2018}


def test_further_parameter_sets_equal_viennarna_bpp_under_that_file(seqs):
    feats = [thermo_features(s, parameter_sets=3) for s in seqs]
    for f, seq in zip(feats, seqs, strict=True):  # the default set is unchanged by the others
        one = thermo_features(seq)
        keep = f.bpp_p >= BPP_FLOOR
        np.testing.assert_array_equal(f.bpp_i[keep], one.bpp_i)
        np.testing.assert_array_equal(f.bpp_p[keep], one.bpp_p)
        np.testing.assert_array_equal(f.mfe, one.mfe)
        assert f.parameter_sets == 3 and f.bpp_x.shape == (len(f.bpp_p), 2)
    try:
        for s, name in enumerate(PARAMETER_SETS):
            LOADERS[name]()  # ViennaRNA's own way: the parameter file as the global default
            for f, seq in zip(feats, seqs, strict=True):
                fc = RNA.fold_compound(seq)
                fc.pf()
                bpp = np.array(fc.bpp())
                p = f.bpp_p if s == 0 else f.bpp_x[:, s - 1]
                i, j = np.nonzero(bpp >= BPP_FLOOR)
                cells = set(zip(f.bpp_i.tolist(), f.bpp_j.tolist(), strict=True))
                assert set(zip((i - 1).tolist(), (j - 1).tolist(), strict=True)) <= cells
                want = bpp[f.bpp_i + 1, f.bpp_j + 1]
                np.testing.assert_allclose(p, np.where(want >= BPP_FLOOR, want, 0), rtol=1e-5,
                                           atol=1e-7)
    finally:
        RNA.params_load_RNA_Turner2004()
    # computing the features leaves ViennaRNA's defaults at Turner 2004
    assert RNA.fold_compound(seqs[-1]).mfe() == RNA.fold(seqs[-1])
    cropped = feats[-1].crop(10, 60)
    assert cropped.bpp_x.shape == (len(cropped.bpp_p), 2)


def test_parameter_sets_round_trip_through_the_stage_and_the_pack(tmp_path):
    splits = make_splits(tmp_path / "s", n_train=8, n_val=2)
    table = splits / "train.parquet"
    out = tmp_path / "f3.parquet"
    counts = compute_shard(table, out, tmp_path / "r.parquet", kind="split", parameter_sets=3)
    assert counts["parameter_sets"] == list(PARAMETER_SETS)
    store = ThermoStore([out])
    assert store.parameter_sets == 3
    data = load_split(table)
    for seq in data.sequences:
        want = thermo_features(seq, parameter_sets=3)
        got = store.get(seq)
        np.testing.assert_array_equal(got.bpp_x, want.bpp_x)
        np.testing.assert_array_equal(got.bpp_p, want.bpp_p)
    pack_table(table, tmp_path / "p", thermo=store)
    packed = PackedSplit(tmp_path / "p")
    for k, seq in enumerate(data.sequences):
        np.testing.assert_array_equal(packed.thermo_at(k).bpp_x, store.get(seq).bpp_x)
    # a table written before parameter sets (no bpp_x column) reads as Turner only
    old = tmp_path / "old.parquet"
    pq.write_table(pq.read_table(out).drop(["bpp_x"]), old)
    legacy = ThermoStore([old])
    assert legacy.parameter_sets == 1
    assert legacy.get(data.sequences[0]).parameter_sets == 1
    # features_for recomputes what has fewer sets than asked for
    more = features_for(data.sequences[:2], legacy, parameter_sets=2)
    assert [f.parameter_sets for f in more] == [2, 2]
    with pytest.raises(ConfigError, match="thermo.parameter_sets"):
        compute_shard(table, tmp_path / "x.parquet", tmp_path / "xr.parquet", kind="split",
                      parameter_sets=4)


def test_a_model_reads_the_parameter_sets_it_was_built_for(tmp_path):
    splits = make_splits(tmp_path / "s", n_train=6, n_val=2)
    data = load_split(splits / "train.parquet")
    data.thermo = [thermo_features(s, parameter_sets=3) for s in data.sequences]
    ds = RNADataset(data, max_len=64, mask_prob=0.15, seed=0, train=True)
    batch = collate([ds[(0, k)] for k in range(6)], 64, 8)
    maps = thermo_maps(batch, 3)
    assert maps.shape[1] == 4 and torch.equal(maps, maps.transpose(-1, -2))
    for k in range(6):
        f = data.thermo[k]
        assert torch.equal(maps[k, 0, f.bpp_i + 1, f.bpp_j + 1], torch.from_numpy(f.bpp_p))
        for s in range(2):
            assert torch.equal(maps[k, 2 + s, f.bpp_i + 1, f.bpp_j + 1],
                               torch.from_numpy(f.bpp_x[:, s]))
    assert torch.equal(thermo_maps(batch, 1), maps[:, :2])
    sub = subset_batch(batch, torch.tensor([5, 2]), 8)
    w = sub["tokens"].shape[1]
    assert torch.equal(thermo_maps(sub, 3), maps[[5, 2]][:, :, :w, :w])
    # channels: (p, log p, MFE) as for one set, then (p', log p') per further set
    ch = thermo_channels(maps)
    assert ch.shape[1] == 7 and torch.equal(ch[:, :3], thermo_channels(maps[:, :2]))
    assert torch.equal(ch[:, 3], maps[:, 2]) and torch.equal(ch[:, 5], maps[:, 3])
    cfg = model_config_for("tiny", thermo_features=True, thermo_parameter_sets=3)
    model = GenesisRNA(cfg)
    out = model(**model_inputs(batch, cfg))
    assert out["pair_logits"].shape == batch["tokens"].shape + batch["tokens"].shape[1:]
    data.thermo = [thermo_features(s) for s in data.sequences]
    turner_only = collate([RNADataset(data, max_len=64, mask_prob=0.15, seed=0,
                                      train=True)[(0, k)] for k in range(2)], 64, 8)
    with pytest.raises(ConfigError, match="thermo_parameter_sets"):
        model_inputs(turner_only, cfg)
    with pytest.raises(ConfigError, match="thermo_parameter_sets"):
        model_config_for("tiny", thermo_parameter_sets=4)


def test_further_parameter_sets_are_baselines_tuned_on_validation(tmp_path):
    from genesis_rna.decoding import decode_candidates, sparse_candidates
    from genesis_rna.evaluate import EvalRecord, vienna_baselines

    splits = make_splits(tmp_path / "s", n_train=4, n_val=12, min_len=40, max_len=90)
    out = tmp_path / "v3.parquet"
    compute_shard(splits / "val.parquet", out, tmp_path / "r.parquet", kind="split",
                  parameter_sets=3)
    store = ThermoStore([out])
    tuned = tune_mea_threshold(splits / "val.parquet", store)
    assert set(tuned["parameter_sets"]) == set(PARAMETER_SETS[1:])
    # the default set's tuning is the one a Turner-only table gives
    one = tune_mea_threshold(splits / "val.parquet", _stored(tmp_path, splits / "val.parquet"))
    assert (tuned["threshold"], tuned["val_f1"]) == (one["threshold"], one["val_f1"])
    data = load_split(splits / "val.parquet")
    records = [EvalRecord(f"r{k}", s, [tuple(p) for p in ps.tolist()], None)
               for k, (s, ps) in enumerate(zip(data.sequences, data.pairs, strict=True))]
    feats = [store.get(r.sequence) for r in records]
    thresholds = {k: v["threshold"] for k, v in tuned["parameter_sets"].items()}
    base = vienna_baselines(records, feats, tuned["threshold"], 4, thresholds)
    assert set(base) == {"vienna", "vienna_mea", *(f"vienna_mea_{n}" for n in PARAMETER_SETS[1:])}
    for r, f, got in zip(records, feats, base["vienna_mea_langdon2018"], strict=True):
        want = decode_candidates(sparse_candidates(r.sequence, f.bpp_i, f.bpp_j, f.bpp_x[:, 1]),
                                 thresholds["langdon2018"], "mea")
        assert got == want
    # Turner-only features: MFE and MEA only
    assert set(vienna_baselines(records, [thermo_features(r.sequence) for r in records],
                                0.5)) == {"vienna", "vienna_mea"}
