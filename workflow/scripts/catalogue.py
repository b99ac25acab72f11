"""The catalogue a run sees: the packaged pipelines.yaml with the config's overrides applied."""
from pathlib import Path

import yaml
from _common import logged

from ipa.pipelines import load_catalogue

with logged(snakemake.log[0]):
    doc = yaml.safe_load(Path(snakemake.input.reference).read_text())
    overlay, sla_factor = snakemake.params.overlay, snakemake.params.sla_factor
    for name, entry in doc["pipelines"].items():
        if sla_factor is not None:
            entry["sla_factor"] = sla_factor
        if overlay:
            entry.update(overlay.get(name, overlay["default"]))
    out = Path(snakemake.output[0])
    out.write_text(f"# {snakemake.input.reference} with overlay {snakemake.wildcards.weights!r}"
                   f" and sla_factor {sla_factor} (written by the workflow)\n" + yaml.safe_dump(doc, sort_keys=False))
    load_catalogue(out, snakemake.input.variants)  # a bad override fails here, naming the key, not in every run
    print(f"wrote {out}")
