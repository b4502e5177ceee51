# Scatter the sequences into annotate.shards tables, label each in its own job, gather.


scattergather:
    annotate=config["annotate"]["shards"],


rule scatter_sequences:
    input:
        sequences=rules.parse_fasta.output.sequences,
    output:
        shards=scatter.annotate(
            f"{RESULTS}/annotate/shards/{{scatteritem}}.sequences.parquet"
        ),
    log:
        f"{RESULTS}/logs/scatter_sequences.log",
    conda:
        "../envs/tables.yaml"
    script:
        "../scripts/scatter_sequences.py"


rule annotate_shard:
    input:
        shard=f"{RESULTS}/annotate/shards/{{scatteritem}}.sequences.parquet",
        provided=lambda wc: (
            [config["structures"]["provided_path"]]
            if config["structures"]["source"] == "provided"
            else []
        ),
    output:
        annotations=f"{RESULTS}/annotate/shards/{{scatteritem}}.annotations.parquet",
        rejected=f"{RESULTS}/annotate/shards/{{scatteritem}}.rejected.parquet",
    log:
        f"{RESULTS}/logs/annotate_shard/{{scatteritem}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/annotate_shard/{{scatteritem}}.tsv"
    conda:
        "../envs/fold.yaml"
    threads: config["annotate"]["threads"]
    params:
        source=config["structures"]["source"],
        provided_path=config["structures"]["provided_path"],
        max_bp_span=config["structures"]["max_bp_span"],
        temperature=config["structures"]["temperature"],
    script:
        "../scripts/annotate_shard.py"


rule gather_annotations:
    input:
        annotations=gather.annotate(
            f"{RESULTS}/annotate/shards/{{scatteritem}}.annotations.parquet"
        ),
        rejected=gather.annotate(
            f"{RESULTS}/annotate/shards/{{scatteritem}}.rejected.parquet"
        ),
    output:
        annotations=f"{RESULTS}/annotate/annotations.parquet",
        rejected=f"{RESULTS}/annotate/rejected.parquet",
    log:
        f"{RESULTS}/logs/gather_annotations.log",
    conda:
        "../envs/tables.yaml"
    script:
        "../scripts/gather_annotations.py"
