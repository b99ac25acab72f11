"""One run: `ipa run` with the run's wildcards and the config's shared parameters."""
from pathlib import Path

from _common import ipa, logged

w, p = snakemake.wildcards, snakemake.params
argv = [
    "run", "--backend", p.backend, "--pipeline", w.pipeline, "--workload", w.workload,
    "--duration", w.duration, "--policy", w.policy, "--predictor", w.predictor, "--seed", w.seed,
    "--interval", str(p.interval_s), "--solver", p.solver,
    "--profiles", snakemake.input.profiles,
    "--out", str(Path(snakemake.output[0]).parent),
]
for name, value in sorted(p.weights.items()):
    argv += [f"--{name}", str(value)]
if p.sla_factor is not None:
    argv += ["--sla-factor", str(p.sla_factor)]

with logged(snakemake.log[0]):
    ipa(argv)
