# Plots of the training metrics. The plotting module is an input, so editing it reruns this
# rule (and what consumes the plots) but nothing upstream.


rule plot_metrics:
    input:
        metrics=rules.train_model.output.metrics,
        run_config=rules.train_model.output.run_config,
        code=package_source("genesis_rna.plot_metrics"),
    output:
        report(
            expand(
                f"{RESULTS}/plots/{{name}}.png",
                name=["losses", "accuracies", "lr_activation", "summary"],
            ),
            category="Training",
            caption="../report/training_plots.rst",
        ),
    log:
        f"{RESULTS}/logs/plot_metrics.log",
    conda:
        "../../environment.yml"
    script:
        "../scripts/plot_metrics.py"
