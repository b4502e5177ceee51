rule split_dataset:
    input:
        annotations=rules.gather_annotations.output.annotations,
        benchmarks=config["split"]["decontaminate"],
        # An input (when set) so that editing the family table reruns the split.
        family_table=(
            [config["split"]["family_table"]]
            if config["split"]["family_table"]
            else []
        ),
    output:
        train=f"{RESULTS}/split/train.parquet",
        val=f"{RESULTS}/split/val.parquet",
        test=f"{RESULTS}/split/test.parquet",
        removed=f"{RESULTS}/split/removed.parquet",
        report=f"{RESULTS}/split/split_report.json",
    log:
        f"{RESULTS}/logs/split_dataset.log",
    benchmark:
        f"{RESULTS}/benchmarks/split_dataset.tsv"
    conda:
        "../envs/split.yaml"
    threads: config["split"]["threads"]
    resources:
        mem_mb=split_job_mem_mb(),
    params:
        method=config["split"]["method"],
        mode=config["split"]["mmseqs_mode"],
        min_seq_id=config["split"]["min_seq_id"],
        coverage=config["split"]["coverage"],
        val_fraction=config["split"]["val_fraction"],
        test_fraction=config["split"]["test_fraction"],
        seed=config["split"]["seed"],
        decontaminate_min_seq_id=config["split"]["decontaminate_min_seq_id"],
        decontaminate_coverage=config["split"]["decontaminate_coverage"],
        decontaminate_level=config["split"]["decontaminate_level"],
        decontaminate_evalue=config["split"]["decontaminate_evalue"],
        memory_limit=config["split"]["memory_limit"],
    script:
        "../scripts/split_dataset.py"
