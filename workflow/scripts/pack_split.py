from genesis_rna.packed import pack_table
from genesis_rna.rule_log import rule_log
from genesis_rna.thermo import ThermoStore

with rule_log(snakemake.log[0]):
    # the thermo stage's shards of this table, when the fine-tune reads them
    thermo = ThermoStore(snakemake.input.thermo) if snakemake.input.thermo else None
    meta = pack_table(snakemake.input.table, snakemake.output.packed, thermo=thermo)
    print(f"packed {meta['n']} sequences ({meta['n_tokens']} nt, {meta['n_pairs']} pairs"
          + (f", {meta['n_bpp']} pair probabilities" if thermo else "")
          + f") from {snakemake.input.table} into {snakemake.output.packed}")
