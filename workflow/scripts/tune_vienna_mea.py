import json

from genesis_rna.atomic import write_json
from genesis_rna.rule_log import rule_log
from genesis_rna.thermo import ThermoStore, tune_mea_threshold

with rule_log(snakemake.log[0]):
    result = tune_mea_threshold(snakemake.input.val, ThermoStore(snakemake.input.thermo))
    write_json(snakemake.output[0], result)
    print(json.dumps(result))
