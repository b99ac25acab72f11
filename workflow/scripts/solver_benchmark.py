"""The solver benchmark's synthetic sweep (benchmarks/solver), small: one row per solve."""
from _common import logged

with logged(snakemake.log[0]):
    raise SystemExit("solver benchmark: benchmarks/solver has not landed yet")
