from genesis_rna.annotate import scatter_sequences
from genesis_rna.rule_log import rule_log

with rule_log(snakemake.log[0]):
    counts = scatter_sequences(snakemake.input.sequences, list(snakemake.output.shards))
    print(f"rows per shard: {counts}")
