"""results/summary.csv from the run folders."""
from _common import logged

from ipa.analysis import write_summary

with logged(snakemake.log[0]):
    table = write_summary(snakemake.input, snakemake.output[0])
    print(f"{len(table)} runs -> {snakemake.output[0]}")
