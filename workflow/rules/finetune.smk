# Stage 2: fine-tune the pretrained model on provided (curated or comparative) structures of the
# same split, weights only (fresh optimizer, schedule, AST). With finetune.scratch_baseline the
# same fine-tune also runs from random weights: the ablation that says what pretraining buys.
# With finetune.thermo_features the fine-tuned models read the thermo stage's features; with
# finetune.thermo_ablation each also runs without them (<run>_nothermo), same budget.


rule label_finetune:
    input:
        train=rules.split_dataset.output.train,
        val=rules.split_dataset.output.val,
        test=rules.split_dataset.output.test,
        structures=config["finetune"]["structures"] or [],
    output:
        train=f"{RESULTS}/finetune_data/train.parquet",
        val=f"{RESULTS}/finetune_data/val.parquet",
        test=f"{RESULTS}/finetune_data/test.parquet",
        rejected=f"{RESULTS}/finetune_data/rejected.parquet",
        counts=f"{RESULTS}/finetune_data/counts.json",
    log:
        f"{RESULTS}/logs/label_finetune.log",
    conda:
        "../envs/tables.yaml"
    script:
        "../scripts/label_finetune.py"


rule finetune_model:
    input:
        # label_finetune's tables as packed arrays (pack_split)
        train=f"{RESULTS}/packed/finetune_data/train",
        val=f"{RESULTS}/packed/finetune_data/val",
        train_config=config["finetune"]["config"],
        # the pretrained weights; the scratch baseline starts from random weights instead
        init=lambda wc: (
            [] if "scratch" in wc.run else [rules.train_model.output.model]
        ),
        code=trainer_code(),
    output:
        model=f"{RESULTS}/{{run}}/model.pt",
        model_best=f"{RESULTS}/{{run}}/model_best.pt",
        metrics=f"{RESULTS}/{{run}}/training_metrics.csv",
        run_config=f"{RESULTS}/{{run}}/run_config.yaml",
    log:
        f"{RESULTS}/logs/{{run}}_model.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{run}}_model.tsv"
    wildcard_constraints:
        run="finetune|finetune_scratch|finetune_nothermo|finetune_scratch_nothermo",
    conda:
        "../envs/train.yaml"
    threads: config["train"]["threads"]
    resources:
        gpu=config["train"]["gpus"],
    params:
        data_path=lambda wc, input: os.path.dirname(input.train),
        output_dir=lambda wc, output: os.path.dirname(output.model),
        checkpoint_dir=lambda wc: f"{RESULTS}/{wc.run}_checkpoints",
        init=lambda wc, input: f"--init_from {input.init[0]}" if input.init else "",
        overrides=lambda wc: train_overrides("finetune")
        + (
            f" --thermo_features --thermo_parameter_sets {config['thermo']['parameter_sets']}"
            if run_reads_thermo(wc.run)
            else " --no-thermo_features"
        ),
        launcher=train_launcher(),
        threads_per_process=lambda wc, threads: max(
            1, threads // max(1, config["train"]["gpus"])
        ),
    message:
        "Fine-tuning ({wildcards.run}) with {input.train_config}; progress lines every minute: tail -f {log}"
    shell:
        "{params.launcher} --config {input.train_config} {params.init}"
        " --data_path {params.data_path} --output_dir {params.output_dir}"
        " --checkpoint_dir {params.checkpoint_dir} --threads {params.threads_per_process}"
        " --no-progress {params.overrides} > {log} 2>&1"
