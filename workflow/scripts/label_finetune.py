from pathlib import Path

from genesis_rna.annotate import relabel_split
from genesis_rna.atomic import write_json
from genesis_rna.rule_log import rule_log

with rule_log(snakemake.log[0]):
    counts = relabel_split(
        Path(snakemake.input.train).parent,
        snakemake.input.structures,
        Path(snakemake.output.train).parent,
    )
    write_json(snakemake.output.counts, counts)
    print(counts)
