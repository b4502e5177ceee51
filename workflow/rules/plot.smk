# Plots of the training metrics. The plotting module is an input, so editing it reruns this
# rule (and what consumes the plots) but nothing upstream.


rule plot_metrics:
    input:
        metrics=f"{RESULTS}/{{run}}/training_metrics.csv",
        run_config=f"{RESULTS}/{{run}}/run_config.yaml",
        code=package_source("genesis_rna.plot_metrics"),
    output:
        report(
            expand(
                f"{RESULTS}/plots/{{{{run}}}}/{{name}}.png",
                name=["losses", "accuracies", "lr_activation", "summary"],
            ),
            category="Training",
            caption="../report/training_plots.rst",
        ),
    log:
        f"{RESULTS}/logs/plot_metrics/{{run}}.log",
    wildcard_constraints:
        run=RUN_NAMES,
    conda:
        "../envs/plot.yaml"
    script:
        "../scripts/plot_metrics.py"
