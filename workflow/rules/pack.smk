# Pack the train/val tables of the split (and of the fine-tune labelling) into flat arrays
# read by offset (genesis_rna.packed): every training rank and loader worker reads the same
# read-only files through the page cache, so per-process memory does not grow with the corpus.


rule pack_split:
    input:
        table=f"{RESULTS}/{{data}}/{{split}}.parquet",
        # the fine-tune's thermodynamic features, packed beside the labels when it reads them
        thermo=lambda wc: (
            thermo_shards(f"split_{wc.split}")
            if wc.data == "finetune_data" and finetune_thermo()
            else []
        ),
        # the array layout is this module's: a format change repacks
        code=[package_source(f"genesis_rna.{m}") for m in ("packed", "thermo")],
    output:
        packed=directory(f"{RESULTS}/packed/{{data}}/{{split}}"),
    log:
        f"{RESULTS}/logs/pack_split_{{data}}_{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/pack_split_{{data}}_{{split}}.tsv"
    wildcard_constraints:
        data="split|finetune_data",
        split="train|val",
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/pack_split.py"
