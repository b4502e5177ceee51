from pathlib import Path

from genesis_rna.plot_metrics import plot_metrics
from genesis_rna.rule_log import rule_log

with rule_log(snakemake.log[0]):
    written = plot_metrics(
        snakemake.input.metrics,
        Path(snakemake.output[0]).parent,
        run_config=snakemake.input.run_config,
    )
    print("\n".join(map(str, written)))
