from genesis_rna.annotate import gather_tables
from genesis_rna.rule_log import rule_log
from genesis_rna.tables import ANNOTATIONS, REJECTED

with rule_log(snakemake.log[0]):
    n = gather_tables(snakemake.input.annotations, snakemake.output.annotations, ANNOTATIONS)
    r = gather_tables(snakemake.input.rejected, snakemake.output.rejected, REJECTED)
    print(f"gathered {n} annotated and {r} rejected records")
