import json
from pathlib import Path

from genesis_rna.evaluate import evaluate, format_report
from genesis_rna.rule_log import rule_log

# The guard matters: the ViennaRNA features are computed in spawned worker processes (when the
# thermo stage did not store them), which re-import this file as __mp_main__ (where the
# `snakemake` object does not exist).
if __name__ == "__main__":
    with rule_log(snakemake.log[0]):
        threshold, source, further = snakemake.params.vienna_mea_threshold, None, None
        if threshold is not None:
            source = "set in the config (evaluate.vienna_mea_threshold)"
        elif snakemake.input.vienna_mea:
            tuned = json.loads(Path(snakemake.input.vienna_mea[0]).read_text(encoding="utf-8"))
            threshold = tuned["threshold"]
            further = {k: v["threshold"] for k, v in tuned.get("parameter_sets", {}).items()}
            source = (f"tuned on {tuned['table']} ({tuned['n']} sequences, val F1 "
                      f"{tuned['val_f1']:.3f})")
        summary = evaluate(
            snakemake.input.model,
            snakemake.input.test,
            snakemake.params.benchmarks,
            Path(snakemake.output.summary).parent,
            max_length=snakemake.params.max_length,
            max_sequences=snakemake.params.max_sequences,
            baseline=snakemake.params.baseline,
            threads=snakemake.threads,
            thermo=snakemake.input.thermo,
            vienna_mea_threshold=threshold,
            vienna_mea_source=source,
            vienna_mea_further=further,
            progress=False,
        )
        print(format_report(summary))
