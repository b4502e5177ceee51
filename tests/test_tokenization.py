import numpy as np
import pytest
import torch

from genesis_rna.data import (
    IGNORE_INDEX,
    BucketBatchSampler,
    RNADataset,
    SplitData,
    bucket_length,
    collate,
    dense_pair_target,
    subset_batch,
)
from genesis_rna.tokenization import (
    CLS_ID,
    MASK_ID,
    PAD_ID,
    SEP_ID,
    STRUCTURE_CLASSES,
    Tokenizer,
)


def test_vocab_layout():
    tok = Tokenizer()
    assert tok.vocab[:4] == ("<pad>", "<mask>", "<cls>", "<sep>") and PAD_ID == 0
    assert tok.vocab[4:] == ("A", "C", "G", "U", "N")
    assert STRUCTURE_CLASSES == "EHSBIM"
    assert Tokenizer.from_dict(tok.to_dict()).vocab == tok.vocab


def test_encode_applies_the_model_policy_and_decode_inverts_it():
    tok = Tokenizer()
    ids = tok.encode("gaT")
    assert ids[0] == CLS_ID and ids[-1] == SEP_ID
    assert tok.decode(ids) == "GAU"
    # already-normalized text (the table fast path) and raw text give the same ids
    assert tok.encode("GAUN", add_special_tokens=False).tolist() == tok.encode(
        "gatr", add_special_tokens=False).tolist() == [6, 4, 7, 8]
    assert tok.decode(tok.encode("ACGUN")) == "ACGUN"


@pytest.mark.parametrize("seq,char,pos", [("ACG-U", "-", 3), ("AC GU", " ", 2), ("X", "X", 0),
                                          ("ACGU1", "1", 4), ("ACé", "é", 2)])
def test_encode_names_the_character_it_cannot_read(seq, char, pos):
    with pytest.raises(ValueError, match=rf"{char!r} at position {pos}"):
        Tokenizer().encode(seq)


def test_encode_rejects_letters_missing_from_a_custom_vocabulary():
    tok = Tokenizer(("<pad>", "<mask>", "<cls>", "<sep>", "A", "C", "G", "U"))
    assert tok.encode("ACGU", add_special_tokens=False).tolist() == [4, 5, 6, 7]
    with pytest.raises(ValueError, match=r"\['N'\] are not in the vocabulary"):
        tok.encode("ACGR")


def _split(lengths, seed=0):
    rng = np.random.default_rng(seed)
    toks = [rng.integers(4, 8, size=n).astype(np.uint8) for n in lengths]
    els = [np.zeros(n, np.uint8) for n in lengths]
    pairs = [np.array([[0, n - 1], [1, n - 2]], np.int32) for n in lengths]
    return SplitData([f"s{k}" for k in range(len(lengths))], toks, els, pairs,
                     np.array(lengths, np.int64))


def test_masking_rates_and_fixed_validation_masks():
    data = _split([200] * 50)
    train = RNADataset(data, max_len=512, mask_prob=0.15, seed=1, train=True)
    masked = sum(int((train[(0, k)]["mlm"] != IGNORE_INDEX).sum()) for k in range(50))
    assert 0.12 < masked / (200 * 50) < 0.18
    as_mask = sum(int((train[(0, k)]["input"] == MASK_ID).sum()) for k in range(50))
    assert 0.75 < as_mask / masked < 0.85
    # training masks change with the epoch; validation masks never do
    assert not np.array_equal(train[(0, 3)]["mlm"], train[(1, 3)]["mlm"])
    val = RNADataset(data, max_len=512, mask_prob=0.15, seed=1, train=False)
    assert np.array_equal(val[(0, 3)]["mlm"], val[(5, 3)]["mlm"])


def test_crop_keeps_pairs_inside_window():
    data = _split([300])
    data.pairs[0] = np.array([[0, 299], [10, 20], [100, 150]], np.int32)
    ds = RNADataset(data, max_len=102, mask_prob=0.15, seed=0, train=False)
    item = ds[(0, 0)]
    assert len(item["seq"]) == 100  # first window in validation
    assert item["pairs"].tolist() == [[10, 20]]
    train = RNADataset(data, max_len=102, mask_prob=0.15, seed=0, train=True)
    starts = set()
    for e in range(20):
        it = train[(e, 0)]
        starts.add(bytes(it["seq"].astype(np.uint8)))
    assert len(starts) > 5  # random windows, not always the start


def test_collate_masks_and_buckets():
    data = _split([10, 40])
    ds = RNADataset(data, max_len=512, mask_prob=0.15, seed=0, train=True)
    batch = collate([ds[(0, 0)], ds[(0, 1)]], max_len=512, bucket_multiple=32)
    assert batch["tokens"].shape == (2, 64)  # 42 tokens round up to 64
    assert batch["nucleotide_mask"][0].sum() == 10 and batch["attention_mask"][0].sum() == 12
    assert batch["tokens"][0, 11] == SEP_ID and batch["tokens"][0, 12] == PAD_ID
    assert (batch["struct_labels"][0, 11:] == IGNORE_INDEX).all()
    assert batch["struct_labels"][0, 0] == IGNORE_INDEX
    pt = dense_pair_target(batch)
    assert pt[0, 1, 10] and pt[0, 10, 1] and pt.sum() == 8
    assert bucket_length(500, 300, 32) == 300


def test_subset_batch_keeps_the_pairs_of_the_chosen_rows():
    data = _split([10, 40, 25, 60])
    ds = RNADataset(data, max_len=512, mask_prob=0.15, seed=0, train=True)
    batch = collate([ds[(0, k)] for k in range(4)], max_len=512, bucket_multiple=32)
    full = dense_pair_target(batch)
    rows = torch.tensor([0, 2])  # 10 and 25 nt: the subset trims to width 32
    sub = subset_batch(batch, rows, bucket_multiple=32)
    assert sub["tokens"].shape == (2, 32)
    assert torch.equal(dense_pair_target(sub), full[rows][:, :32, :32])
    assert set(sub["pair_index"][:, 0].tolist()) == {0, 1}
    assert torch.equal(sub["tokens"], batch["tokens"][rows][:, :32])


def test_bucket_sampler_deterministic_and_complete():
    lengths = np.random.default_rng(0).integers(20, 400, size=1000)
    s = BucketBatchSampler(lengths, 16, seed=3, shuffle=True, chunk_batches=10)
    b0 = s.epoch_batches(0)
    assert b0 == BucketBatchSampler(lengths, 16, seed=3, shuffle=True, chunk_batches=10
                                    ).epoch_batches(0)
    assert b0 != s.epoch_batches(1)
    assert sorted(i for b in b0 for i in b) == list(range(1000))
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in b0])
    assert spread < 40  # similar lengths share a batch
    s.set_epoch(0, start_batch=5)
    assert [[i for _, i in b] for b in s] == b0[5:]
