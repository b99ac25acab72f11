"""Analysis of run folders: the summary table (`results/summary.csv`) and the figures.

Everything here reads what runs wrote (run folders, workload windows, solver benchmark
tables); no number is entered by hand.
"""
from ipa.analysis.runs import RunFolderError, read_run, summary_table, write_summary

__all__ = ["RunFolderError", "read_run", "summary_table", "write_summary"]
