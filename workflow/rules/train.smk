# Training: GPU-tagged. Intermediate checkpoints live in a folder that is NOT a declared output,
# so Snakemake does not delete them when a killed job reruns; the trainer resumes from them.


rule train_model:
    input:
        # the split's tables as packed arrays (pack_split)
        train=f"{RESULTS}/packed/split/train",
        val=f"{RESULTS}/packed/split/val",
        train_config=config["train"]["config"],
        code=trainer_code(),
    output:
        model=f"{RESULTS}/train/model.pt",
        model_best=f"{RESULTS}/train/model_best.pt",
        metrics=f"{RESULTS}/train/training_metrics.csv",
        run_config=f"{RESULTS}/train/run_config.yaml",
    log:
        f"{RESULTS}/logs/train_model.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_model.tsv"
    conda:
        "../envs/train.yaml"
    threads: config["train"]["threads"]
    resources:
        gpu=config["train"]["gpus"],
    params:
        data_path=lambda wc, input: os.path.dirname(input.train),
        output_dir=lambda wc, output: os.path.dirname(output.model),
        checkpoint_dir=f"{RESULTS}/train_checkpoints",
        overrides=train_overrides(),
        launcher=train_launcher(),
        threads_per_process=lambda wc, threads: max(
            1, threads // max(1, config["train"]["gpus"])
        ),
    message:
        "Training (stage 1) with {input.train_config}; progress lines every minute: tail -f {log}"
    shell:
        "{params.launcher} --config {input.train_config}"
        " --data_path {params.data_path} --output_dir {params.output_dir}"
        " --checkpoint_dir {params.checkpoint_dir} --threads {params.threads_per_process}"
        " --no-progress {params.overrides} > {log} 2>&1"
