# Held-out evaluation on the test split and every curated benchmark in config, with the
# ViennaRNA baseline on the very same sequences and the same scoring.


rule evaluate_model:
    input:
        model=rules.train_model.output.model,
        test=rules.split_dataset.output.test,
        benchmarks=list(config["evaluate"]["benchmarks"].values()),
        code=[
            package_source(f"genesis_rna.{m}")
            for m in ("evaluate", "inference", "eval_metrics", "pair_metrics")
        ],
    output:
        summary=report(
            f"{RESULTS}/evaluation/summary.tsv",
            category="Evaluation",
            caption="../report/evaluation_summary.rst",
        ),
        summary_json=f"{RESULTS}/evaluation/summary.json",
        not_evaluated=f"{RESULTS}/evaluation/not_evaluated.tsv",
        per_sequence=expand(
            f"{RESULTS}/evaluation/per_sequence_{{name}}.tsv", name=evaluation_sets()
        ),
        plots=report(
            expand(
                f"{RESULTS}/evaluation/{{kind}}_{{name}}.png",
                kind=["f1_per_family", "f1_vs_length"],
                name=evaluation_sets(),
            ),
            category="Evaluation",
            caption="../report/evaluation_plots.rst",
        ),
    log:
        f"{RESULTS}/logs/evaluate_model.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate_model.tsv"
    conda:
        "../../environment.yml"
    threads: config["evaluate"]["threads"]
    params:
        benchmarks=config["evaluate"]["benchmarks"],
        max_length=config["evaluate"]["max_length"],
        max_sequences=config["evaluate"]["max_sequences"],
        baseline=config["evaluate"]["baseline"],
        # ViennaRNA folds do not depend on the model: cached outside the declared outputs
        baseline_cache=f"{RESULTS}/evaluation_cache/vienna_folds.parquet",
    script:
        "../scripts/evaluate_model.py"


rule export_config:
    output:
        report(
            f"{RESULTS}/run_config.yaml",
            category="Configuration",
            caption="../report/config.rst",
        ),
    log:
        f"{RESULTS}/logs/export_config.log",
    conda:
        "../../environment.yml"
    params:
        config=config,
    script:
        "../scripts/export_config.py"
