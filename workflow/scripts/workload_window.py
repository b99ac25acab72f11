"""Write one trace window's per-second rates (`second,rate`)."""
from _common import logged

from ipa.analysis.workloads import write_workload_csv

with logged(snakemake.log[0]):
    write_workload_csv(snakemake.wildcards.workload, snakemake.output[0])
