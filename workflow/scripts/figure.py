"""One figure (PNG + PDF) from results/: which one is params.kind."""
import pandas as pd
from _common import logged

from ipa.analysis import figures
from ipa.analysis.workloads import read_workload_csvs

with logged(snakemake.log[0]):
    kind = snakemake.params.kind
    if kind == "load_patterns":
        fig = figures.load_patterns_figure(
            read_workload_csvs(dict(zip(snakemake.params.workloads, snakemake.input.workloads))))
    elif kind == "decision_time":
        fig = figures.decision_time_figure(pd.read_csv(snakemake.input.bench))
    else:
        summary = pd.read_csv(snakemake.input.summary)
        fig = getattr(figures, f"{kind}_figure")(summary, **snakemake.params.args)
    figures.save(fig, snakemake.output.png, snakemake.output.pdf)
