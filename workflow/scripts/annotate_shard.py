from genesis_rna.annotate import annotate_shard
from genesis_rna.rule_log import rule_log

with rule_log(snakemake.log[0]):
    counts = annotate_shard(
        snakemake.input.shard,
        snakemake.output.annotations,
        snakemake.output.rejected,
        source=snakemake.params.source,
        provided_path=snakemake.params.provided_path,
        max_bp_span=snakemake.params.max_bp_span,
        temperature=snakemake.params.temperature,
        threads=snakemake.threads,
    )
    print(counts)
