# Paths and config helpers shared by the rule files.
import os

from genesis_rna.download import is_url

RESULTS = config["results"]


def share_package_with_jobs():
    """Jobs import the genesis_rna this workflow imported (the code package_source() tracks),
    also inside the per-rule conda environments (workflow/envs/, --sdm conda), which carry its
    dependencies only: a source checkout's root goes first on the jobs' PYTHONPATH. An
    installed package (site-packages) is left alone: that path must not leak into other
    Pythons."""
    import genesis_rna

    root = os.path.dirname(os.path.dirname(os.path.abspath(genesis_rna.__file__)))
    if not os.path.isfile(os.path.join(root, "pyproject.toml")):
        return
    # Set, never required, so not an `envvars:` entry (that would make users define it).
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in paths:
        os.environ.update(PYTHONPATH=os.pathsep.join([root, *paths]))


share_package_with_jobs()


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
    return not is_url(corpus_source())


def corpus_path():
    """results/corpus/corpus.fasta(.gz): the suffix follows the source's compression."""
    gz = corpus_source().lower().endswith(".gz")
    return f"{RESULTS}/corpus/corpus.fasta" + (".gz" if gz else "")


def split_outputs():
    return expand(
        f"{RESULTS}/split/{{name}}.parquet", name=["train", "val", "test", "removed"]
    ) + [f"{RESULTS}/split/split_report.json"]


# MB the split_dataset job asks for beyond split.memory_limit: the Python side (the tables'
# ids, the id -> cluster map) and what MMseqs2 holds outside its split databases.
SPLIT_JOB_HEADROOM_MB = 4000
SPLIT_JOB_MEM_MB_UNLIMITED = 16000


def split_job_mem_mb():
    """Memory of the split_dataset job (SLURM mem_mb): split.memory_limit plus headroom, or
    16 GB when MMseqs2 is not limited (it then sizes itself to the node it lands on)."""
    from genesis_rna.split import memory_limit_bytes

    limit = memory_limit_bytes(config["split"]["memory_limit"])
    if limit is None:
        return SPLIT_JOB_MEM_MB_UNLIMITED
    return -(-limit // (1 << 20)) + SPLIT_JOB_HEADROOM_MB


def train_overrides(section="train"):
    """Trainer flags for the <section>.* keys that override the trainer config file."""
    flags = []
    for key in ("num_epochs", "model_size"):
        if config[section].get(key) is not None:
            flags.append(f"--{key} {config[section][key]}")
    return " ".join(flags)


# The trainer's own modules: declared inputs of the training rules, so editing the trainer or
# model code reruns training (shell rules do not track code otherwise).
TRAINER_MODULES = (
    "train_pretrain",
    "train_config",
    "model",
    "losses",
    "data",
    "packed",
    "decoding",
    "ast_controller",
    "schedule",
    "checkpoint",
    "distributed",
    "metrics_logger",
    "tokenization",
    "tasks",
    "epoch_stats",
    "rank_sync",
    "pair_metrics",
    "runtime",
    "sequences",
    "folding",
    "thermo",
)


def trainer_code():
    return [package_source(f"genesis_rna.{m}") for m in TRAINER_MODULES]


def finetune_enabled():
    return bool(config["finetune"]["structures"])


def finetune_thermo():
    """The fine-tune reads the thermo stage's features (finetune.thermo_features)."""
    return finetune_enabled() and bool(config["finetune"]["thermo_features"])


# Every model run name (output folder): rules' wildcard constraint.
RUN_NAMES = (
    "train|finetune|finetune_scratch|finetune_nothermo|finetune_scratch_nothermo"
)


def model_runs():
    """Trained models, by output folder: the pretrained one, then the fine-tuned ones (with
    thermo_ablation also the same fine-tunes without thermodynamic features)."""
    runs = ["train"]
    if finetune_enabled():
        tunes = ["finetune"]
        if config["finetune"]["scratch_baseline"]:
            tunes.append("finetune_scratch")
        runs += tunes
        if finetune_thermo() and config["finetune"]["thermo_ablation"]:
            runs += [f"{run}_nothermo" for run in tunes]
    return runs


def run_reads_thermo(run):
    return (
        finetune_thermo()
        and run.startswith("finetune")
        and not run.endswith("_nothermo")
    )


def thermo_shards(data):
    """The thermo stage's feature tables of a data set (split_<name> or benchmark_<name>)."""
    n = config["thermo"]["shards"]
    return [f"{RESULTS}/thermo/{data}/{k}-of-{n}.parquet" for k in range(n)]


def thermo_source(data):
    """The table a thermo data set is read from: a split table (the fine-tune labelling's
    when fine-tuning, the same sequences) or a configured benchmark."""
    kind, _, name = data.partition("_")
    if kind == "split":
        folder = "finetune_data" if finetune_enabled() else "split"
        return f"{RESULTS}/{folder}/{name}.parquet"
    return config["evaluate"]["benchmarks"][name]


def evaluation_thermo():
    """Feature tables of every evaluated set (baselines, and models that read them)."""
    names = ["split_test"] + [
        f"benchmark_{b}" for b in config["evaluate"]["benchmarks"]
    ]
    return [f for name in names for f in thermo_shards(name)]


def vienna_mea_tuned():
    """ViennaRNA MEA's threshold is tuned on the fine-tune validation labels (rule
    tune_vienna_mea) unless the config fixes it; without fine-tuning labels it is 0.5.
    """
    return finetune_enabled() and config["evaluate"]["vienna_mea_threshold"] is None


def model_file(run):
    """The file evaluated for a run: the last epoch's model.pt or model_best.pt (evaluate.checkpoint)."""
    name = "model_best.pt" if config["evaluate"]["checkpoint"] == "best" else "model.pt"
    return f"{RESULTS}/{run}/{name}"


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


def evaluation_test_split():
    """The held-out test split every model is scored on: with fine-tuning, labelled with the
    provided structures (the fine-tuning labels), else with the pretraining labels."""
    if finetune_enabled():
        return f"{RESULTS}/finetune_data/test.parquet"
    return f"{RESULTS}/split/test.parquet"


def evaluation_sets():
    """Names of the evaluated data sets: the held-out test split, then each benchmark."""
    return ["test", *config["evaluate"]["benchmarks"]]
