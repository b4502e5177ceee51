import yaml

from genesis_rna.atomic import atomic_open
from genesis_rna.rule_log import rule_log

with rule_log(snakemake.log[0]):
    with atomic_open(snakemake.output[0], "w", encoding="utf-8") as fh:
        fh.write("# The workflow configuration of this run (after schema defaults).\n")
        yaml.safe_dump(dict(snakemake.params.config), fh, sort_keys=False)
