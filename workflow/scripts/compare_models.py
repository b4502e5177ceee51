from genesis_rna.compare_models import write_comparison
from genesis_rna.rule_log import rule_log

with rule_log(snakemake.log[0]):
    frame = write_comparison(
        dict(zip(snakemake.params.runs, snakemake.input.summaries, strict=True)),
        snakemake.output.table,
    )
    print(frame.to_string(index=False))
