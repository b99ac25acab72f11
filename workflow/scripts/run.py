"""One run: `ipa run` with the run's wildcards, the experiment's profile table and the
catalogue carrying the run's weights and SLA factor."""
from pathlib import Path

from _common import ipa, logged

w, p = snakemake.wildcards, snakemake.params
argv = [
    "run", "--backend", p.backend, "--pipeline", w.pipeline, "--workload", w.workload,
    "--duration", w.duration, "--policy", w.policy, "--predictor", w.predictor, "--seed", w.seed,
    "--interval", str(p.interval_s), "--solver", p.solver,
    "--profiles-file", snakemake.input.profiles, "--pipelines-file", snakemake.input.catalogue,
    "--variants-file", snakemake.input.variants,
    "--out", str(Path(snakemake.output[0]).parent), "--quiet",
]
if p.requests:
    argv.append("--requests")

with logged(snakemake.log[0]):
    ipa(argv)
