"""The run folder: running one experiment (experiment.py), the tables computed from a backend's
records (tables.py), writing them atomically (folder.py) and checking them (invariants.py).
The format is specified in docs/architecture.md."""
from ipa.runs.experiment import DEFAULT_PREDICTOR, RunSpec, execute, run_params
from ipa.runs.folder import RUN_FILES, check_out_dir, read_summary, write_run_folder
from ipa.runs.invariants import check_run_folder
from ipa.runs.tables import WALL_CLOCK_SUMMARY_KEYS, build_tables

__all__ = ["DEFAULT_PREDICTOR", "RUN_FILES", "RunSpec", "WALL_CLOCK_SUMMARY_KEYS", "build_tables",
           "check_out_dir", "check_run_folder", "execute", "read_summary", "run_params", "write_run_folder"]
