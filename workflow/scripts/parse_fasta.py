from genesis_rna.fasta import parse_fasta
from genesis_rna.rule_log import rule_log

with rule_log(snakemake.log[0]):
    parse_fasta(
        snakemake.input.corpus,
        snakemake.output.sequences,
        snakemake.output.rejected,
        snakemake.output.stats,
        min_length=snakemake.params.min_length,
        max_length=snakemake.params.max_length,
        max_ambiguous_fraction=snakemake.params.max_ambiguous_fraction,
        iupac=snakemake.params.iupac,
    )
