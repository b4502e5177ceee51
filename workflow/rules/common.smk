# Paths and config helpers shared by the rule files.
import os
import re

RESULTS = config["results"]
_URL = re.compile(r"^(https?|ftp)://", re.IGNORECASE)


def corpus_source():
    """The corpus URL or local path the config asks for (rnacentral shortcut included)."""
    corpus = config["corpus"]
    if corpus.get("rnacentral"):
        from genesis_rna.download import rnacentral_url

        rc = corpus["rnacentral"]
        return rnacentral_url(rc["release"], rc["file"])
    if not corpus.get("source"):
        raise ValueError(
            "config key 'corpus.source': set a FASTA path or URL, or corpus.rnacentral"
        )
    return corpus["source"]


def corpus_is_local():
    return not _URL.match(corpus_source())


def corpus_path():
    """results/corpus/corpus.fasta(.gz): the suffix follows the source's compression."""
    gz = corpus_source().lower().endswith(".gz")
    return f"{RESULTS}/corpus/corpus.fasta" + (".gz" if gz else "")


def split_outputs():
    return expand(
        f"{RESULTS}/split/{{name}}.parquet", name=["train", "val", "test", "removed"]
    ) + [f"{RESULTS}/split/split_report.json"]


def train_overrides():
    """Trainer flags for the train.* keys that override the trainer config file."""
    flags = []
    for key in ("num_epochs", "model_size"):
        if config["train"].get(key) is not None:
            flags.append(f"--{key} {config['train'][key]}")
    return " ".join(flags)


def train_launcher():
    """One process, or torchrun with one process per GPU (PyTorch DDP) when train.gpus > 1.

    tcmalloc is preloaded when installed (genesis_rna/allocator.py: glibc malloc fragments on
    the changing batch shapes). Looked up when the job runs, not here, so the rule's params do
    not depend on the machine that planned it.
    """
    preload = "env LD_PRELOAD=$(python -m genesis_rna.allocator) "
    gpus = config["train"]["gpus"]
    if gpus > 1:
        return f"{preload}torchrun --standalone --nproc_per_node {gpus} -m genesis_rna.train_pretrain"
    return f"{preload}python -m genesis_rna.train_pretrain"


def package_source(module):
    """Path of a genesis_rna module's source file, so rules can depend on that code."""
    import importlib.util

    return importlib.util.find_spec(module).origin


def evaluation_sets():
    """Names of the evaluated data sets: the held-out test split, then each benchmark."""
    return ["test", *config["evaluate"]["benchmarks"]]
