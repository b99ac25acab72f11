"""How big the tensors between a pipeline's stages are: FP32 elements per request.

A stage receives what its variants were profiled on (``StageInput``, ipa.profiling.inputs), so
serving overhead (serialisation, copies, the network) is measured on payloads of the size the
models consume:

* image: the model's ``pixel_values`` of one picture, ``3 x H x W`` (a 640 x 640 frame is
  4.9 MB, a 224 x 224 crop 0.6 MB);
* audio: the waveform at 16 kHz, ``16000 x seconds`` samples (feature extraction belongs to the
  model server, as in a Speech2Text or Wav2Vec2 processor);
* text: ``tokens`` token ids (carried as FP32, the pipeline's one wire datatype).

A stage answers with what the next stage consumes (a detector's crop for the classifier, a
transcript for the question answerer); the last stage answers with its generated tokens, or one
value (a label or a score).
"""
from __future__ import annotations

from ipa.pipelines.catalogue import Stage, StageInput

SAMPLE_RATE = 16000


def input_elements(stage_input: StageInput) -> int:
    """FP32 elements of one request into a stage of this input kind."""
    if stage_input.kind == "image":
        return 3 * stage_input.height * stage_input.width
    if stage_input.kind == "audio":
        return int(round(SAMPLE_RATE * stage_input.seconds))
    if stage_input.kind == "text":
        return stage_input.tokens
    raise ValueError(f"unknown stage input kind {stage_input.kind!r}")


def output_elements(stages: list[Stage], index: int) -> int:
    """FP32 elements of one request's answer from ``stages[index]``."""
    if index + 1 < len(stages):
        return input_elements(stages[index + 1].input)
    return max(1, stages[index].input.new_tokens)
