from genesis_rna.packed import pack_table
from genesis_rna.rule_log import rule_log

with rule_log(snakemake.log[0]):
    meta = pack_table(snakemake.input.table, snakemake.output.packed)
    print(f"packed {meta['n']} sequences ({meta['n_tokens']} nt, {meta['n_pairs']} pairs) "
          f"from {snakemake.input.table} into {snakemake.output.packed}")
