# The thermo stage: ViennaRNA pair probabilities and MFE pairs of the fine-tune splits and of
# every evaluated set, computed once (thermo.shards jobs per data set, each with thermo.threads
# ViennaRNA processes) and read by pack_split, the fine-tune, evaluate_model and the MEA
# baseline's tuning. Pretraining never needs them.


rule thermo_features:
    input:
        table=lambda wc: thermo_source(wc.data),
        code=[package_source(f"genesis_rna.{m}") for m in ("thermo", "folding")],
    output:
        features=f"{RESULTS}/thermo/{{data}}/{{shard}}-of-{{shards}}.parquet",
        rejected=f"{RESULTS}/thermo/{{data}}/{{shard}}-of-{{shards}}.rejected.parquet",
        counts=f"{RESULTS}/thermo/{{data}}/{{shard}}-of-{{shards}}.json",
    log:
        f"{RESULTS}/logs/thermo_features/{{data}}_{{shard}}-of-{{shards}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/thermo_features/{{data}}_{{shard}}-of-{{shards}}.tsv"
    wildcard_constraints:
        data=r"split_(train|val|test)|benchmark_[A-Za-z0-9_-]+",
        shard=r"\d+",
        shards=r"\d+",
    conda:
        "../envs/fold.yaml"
    threads: config["thermo"]["threads"]
    params:
        kind=lambda wc: wc.data.partition("_")[0],
        parameter_sets=config["thermo"]["parameter_sets"],
        max_length=lambda wc: (
            config["evaluate"]["max_length"] or config["thermo"]["max_length"]
            if wc.data in ("split_test",) or wc.data.startswith("benchmark_")
            else config["thermo"]["max_length"]
        ),
    script:
        "../scripts/thermo_features.py"


rule tune_vienna_mea:
    input:
        val=f"{RESULTS}/finetune_data/val.parquet",
        thermo=thermo_shards("split_val"),
        code=package_source("genesis_rna.thermo"),
    output:
        f"{RESULTS}/thermo/vienna_mea_threshold.json",
    log:
        f"{RESULTS}/logs/tune_vienna_mea.log",
    conda:
        "../envs/fold.yaml"
    script:
        "../scripts/tune_vienna_mea.py"
