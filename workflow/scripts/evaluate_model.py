from pathlib import Path

from genesis_rna.evaluate import evaluate, format_report
from genesis_rna.rule_log import rule_log

# The guard matters: the ViennaRNA baseline folds in spawned worker processes, which re-import
# this file as __mp_main__ (where the `snakemake` object does not exist).
if __name__ == "__main__":
    with rule_log(snakemake.log[0]):
        summary = evaluate(
            snakemake.input.model,
            snakemake.input.test,
            snakemake.params.benchmarks,
            Path(snakemake.output.summary).parent,
            max_length=snakemake.params.max_length,
            max_sequences=snakemake.params.max_sequences,
            baseline=snakemake.params.baseline,
            threads=snakemake.threads,
            baseline_cache=snakemake.params.baseline_cache,
            progress=False,
        )
        print(format_report(summary))
