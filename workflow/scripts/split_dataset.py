from pathlib import Path

from genesis_rna.rule_log import rule_log
from genesis_rna.split import split_dataset

with rule_log(snakemake.log[0]):
    split_dataset(
        snakemake.input.annotations,
        Path(snakemake.output.train).parent,
        snakemake.output.report,
        method=snakemake.params.method,
        mode=snakemake.params.mode,
        min_seq_id=snakemake.params.min_seq_id,
        coverage=snakemake.params.coverage,
        val_fraction=snakemake.params.val_fraction,
        test_fraction=snakemake.params.test_fraction,
        seed=snakemake.params.seed,
        decontaminate=list(snakemake.input.benchmarks),
        decontaminate_min_seq_id=snakemake.params.decontaminate_min_seq_id,
        decontaminate_coverage=snakemake.params.decontaminate_coverage,
        decontaminate_level=snakemake.params.decontaminate_level,
        decontaminate_evalue=snakemake.params.decontaminate_evalue,
        family_table=(snakemake.input.family_table[0] if snakemake.input.family_table else None),
        threads=snakemake.threads,
        memory_limit=snakemake.params.memory_limit,
    )
