# Held-out evaluation of each trained model (train = pretrained, finetune, finetune_scratch) on
# the test split and every curated benchmark in config, with the ViennaRNA baseline on the very
# same sequences and the same scoring; plot_evaluation draws its plots from those files and
# compare_models puts the models side by side.


rule evaluate_model:
    input:
        model=lambda wc: model_file(wc.run),
        test=evaluation_test_split(),
        benchmarks=list(config["evaluate"]["benchmarks"].values()),
        # ViennaRNA's features of every evaluated sequence: the baselines (MFE, MEA) and the
        # input of models that read them
        thermo=evaluation_thermo(),
        vienna_mea=([rules.tune_vienna_mea.output[0]] if vienna_mea_tuned() else []),
        code=[
            package_source(f"genesis_rna.{m}")
            for m in (
                "evaluate",
                "inference",
                "runtime",
                "folding",
                "thermo",
                "decoding",
                "eval_metrics",
                "pair_metrics",
            )
        ],
    output:
        summary=report(
            f"{RESULTS}/evaluation/{{run}}/summary.tsv",
            category="Evaluation",
            caption="../report/evaluation_summary.rst",
        ),
        summary_json=f"{RESULTS}/evaluation/{{run}}/summary.json",
        not_evaluated=f"{RESULTS}/evaluation/{{run}}/not_evaluated.tsv",
        per_sequence=expand(
            f"{RESULTS}/evaluation/{{{{run}}}}/per_sequence_{{name}}.tsv",
            name=evaluation_sets(),
        ),
    log:
        f"{RESULTS}/logs/evaluate_model/{{run}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate_model/{{run}}.tsv"
    wildcard_constraints:
        run=RUN_NAMES,
    conda:
        "../envs/evaluate.yaml"
    threads: config["evaluate"]["threads"]
    params:
        benchmarks=config["evaluate"]["benchmarks"],
        max_length=config["evaluate"]["max_length"],
        max_sequences=config["evaluate"]["max_sequences"],
        baseline=config["evaluate"]["baseline"],
        vienna_mea_threshold=config["evaluate"]["vienna_mea_threshold"],
    script:
        "../scripts/evaluate_model.py"


# Drawn from the evaluation's files, so editing the plotting module reruns only this rule.
rule plot_evaluation:
    input:
        summary_json=f"{RESULTS}/evaluation/{{run}}/summary.json",
        per_sequence=expand(
            f"{RESULTS}/evaluation/{{{{run}}}}/per_sequence_{{name}}.tsv",
            name=evaluation_sets(),
        ),
        code=[package_source(f"genesis_rna.{m}") for m in ("eval_plots", "drawing")],
    output:
        plots=report(
            expand(
                f"{RESULTS}/evaluation/{{{{run}}}}/{{kind}}_{{name}}.png",
                kind=["f1_per_family", "f1_vs_length", "gallery"],
                name=evaluation_sets(),
            ),
            category="Evaluation",
            caption="../report/evaluation_plots.rst",
        ),
    log:
        f"{RESULTS}/logs/plot_evaluation/{{run}}.log",
    wildcard_constraints:
        run=RUN_NAMES,
    conda:
        "../envs/plot.yaml"
    script:
        "../scripts/plot_evaluation.py"


rule compare_models:
    input:
        summaries=expand(f"{RESULTS}/evaluation/{{run}}/summary.json", run=model_runs()),
        code=package_source("genesis_rna.compare_models"),
    output:
        table=report(
            f"{RESULTS}/evaluation/models.tsv",
            category="Evaluation",
            caption="../report/models.rst",
        ),
    log:
        f"{RESULTS}/logs/compare_models.log",
    conda:
        "../envs/tables.yaml"
    params:
        runs=model_runs(),
    script:
        "../scripts/compare_models.py"


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
        "../envs/tables.yaml"
    params:
        config=config,
    script:
        "../scripts/export_config.py"
