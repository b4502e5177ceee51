from genesis_rna.download import fetch_corpus
from genesis_rna.rule_log import rule_log

with rule_log(snakemake.log[0]):
    fetch_corpus(
        snakemake.params.source,
        snakemake.output.corpus,
        snakemake.output.manifest,
        sha256=snakemake.params.sha256,
        size=snakemake.params.size,
        retries=snakemake.params.retries,
        timeout=snakemake.params.timeout,
    )
