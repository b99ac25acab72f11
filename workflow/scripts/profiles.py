"""The profile table of this experiment: a copy of the reference table, or a fresh profile."""
import shutil
from pathlib import Path

from _common import ipa, logged

with logged(snakemake.log[0]):
    out = Path(snakemake.output[0])
    if snakemake.params.reprofile:
        argv = ["profile", "--out", str(out.parent / "measurements"), "--csv", str(out)]
        for name in snakemake.params.pipelines:
            argv += ["--pipeline", name]
        ipa(argv)
    else:
        print(f"reusing the reference profiles {snakemake.input.reference}")
        shutil.copyfile(snakemake.input.reference, out)
