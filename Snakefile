# IPA-bench: `snakemake --cores 2` reproduces every experiment and figure of config.yaml.
# Presets: `--configfile workflow/presets/ci.yaml` (tiny) or `workflow/presets/paper.yaml`.
# The rules live in workflow/rules/, their logic in the `ipa` package (docs/workflow.md).


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/inputs.smk"
include: "workflow/rules/runs.smk"
include: "workflow/rules/solver.smk"
include: "workflow/rules/analysis.smk"


rule all:
    default_target: True
    input:
        all_targets(),
