"""The pipeline catalogue, the variants' profiles, and the parameters derived from them."""

from ipa.pipelines.catalogue import (Catalogue, PipelineSpec, Stage, StageInput, Variant,
                                     load_catalogue)
from ipa.pipelines.pipeline import Pipeline, StageProfile, load_pipeline
from ipa.pipelines.profiles import ProfileRow, ProfileTable, load_profiles

__all__ = [
    "Catalogue", "PipelineSpec", "Stage", "StageInput", "Variant", "load_catalogue",
    "Pipeline", "StageProfile", "load_pipeline", "ProfileRow", "ProfileTable", "load_profiles",
]
