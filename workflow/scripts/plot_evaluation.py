from pathlib import Path

from genesis_rna.eval_plots import plot_evaluation
from genesis_rna.rule_log import rule_log

with rule_log(snakemake.log[0]):
    written = plot_evaluation(Path(snakemake.input.summary_json).parent)
    print("\n".join(map(str, written)))
