import json

from genesis_rna.atomic import write_json
from genesis_rna.rule_log import rule_log
from genesis_rna.thermo import compute_shard

# The guard matters: the worker processes are spawned and re-import this file as __mp_main__
# (where the `snakemake` object does not exist).
if __name__ == "__main__":
    with rule_log(snakemake.log[0]):
        counts = compute_shard(
            snakemake.input.table,
            snakemake.output.features,
            snakemake.output.rejected,
            kind=snakemake.params.kind,
            shard=int(snakemake.wildcards.shard),
            shards=int(snakemake.wildcards.shards),
            max_length=snakemake.params.max_length,
            threads=snakemake.threads,
            parameter_sets=snakemake.params.parameter_sets,
            progress=True,
        )
        counts["data"] = snakemake.wildcards.data
        write_json(snakemake.output.counts, counts)
        print(json.dumps(counts))
