rule fetch_corpus:
    input:
        # A local source is an input, so editing that file reruns everything downstream.
        local=lambda wc: [corpus_source()] if corpus_is_local() else [],
    output:
        corpus=corpus_path(),
        manifest=f"{RESULTS}/corpus/manifest.json",
    log:
        f"{RESULTS}/logs/fetch_corpus.log",
    retries: 0
    conda:
        "../envs/tables.yaml"
    params:
        source=corpus_source(),
        sha256=config["corpus"]["sha256"],
        size=config["corpus"]["size"],
        retries=config["corpus"]["retries"],
        timeout=config["corpus"]["timeout"],
    script:
        "../scripts/fetch_corpus.py"
