"""A batch of synthetic inputs for a (variant, stage input, batch size) (needs torch).

The shapes, one per kind of stage input (the inputs the paper's pipelines pass between stages):

* image: ``pixel_values [b, 3, H, W]``, standard-normal values;
* audio, Speech2Text: ``input_features [b, frames, 80]`` log-mel-like values, with
  ``frames = 1 + (samples - 400) // 160`` (25 ms window, 10 ms hop at 16 kHz: 998 for 10 s),
  then forced generation of ``new_tokens`` tokens;
* audio, Wav2Vec2 (CTC): ``input_values [b, 16000 * seconds]``, one forward, no generation;
* text: ``input_ids [b, tokens]`` random ids below ``vocab_size`` (avoiding the low special ids)
  and an all-ones ``attention_mask``; forced generation of ``new_tokens`` tokens when > 0.

Generation is forced to its full length (random weights could emit EOS at any step):
``max_new_tokens = min_new_tokens = new_tokens``, greedy (``num_beams=1, do_sample=False``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from ipa.pipelines.catalogue import StageInput
from ipa.pipelines.wire import SAMPLE_RATE  # the rate the waveform on the wire is sampled at

WINDOW = 400  # 25 ms
HOP = 160     # 10 ms


def fbank_frames(seconds: float) -> int:
    samples = int(round(SAMPLE_RATE * seconds))
    return 1 + max(0, samples - WINDOW) // HOP


@dataclass
class Call:
    """One request batch: ``run()`` executes it; ``shape`` describes it for provenance."""

    run: Callable[[], Any]
    shape: dict[str, Any]
    new_tokens: int  # forced generation length; 0 = a single forward pass
    inputs: dict[str, torch.Tensor]
    batch: int


def generated_tokens(model: torch.nn.Module, output: Any, inputs: dict[str, torch.Tensor]) -> int:
    """New tokens in a ``generate`` output (encoder-decoder outputs start with the start token)."""
    seq = output if isinstance(output, torch.Tensor) else output.sequences
    if getattr(model.config, "is_encoder_decoder", False):
        return int(seq.shape[1]) - 1
    return int(seq.shape[1]) - int(inputs["input_ids"].shape[1])


def make_call(model: torch.nn.Module, stage_input: StageInput, batch: int, seed: int = 0) -> Call:
    """Inputs for ``batch`` requests of shape ``stage_input``, and how to run them."""
    g = torch.Generator().manual_seed(seed)
    config = model.config
    main = getattr(model, "main_input_name", "input_ids")
    inputs: dict[str, torch.Tensor]
    batch: int
    if stage_input.kind == "image":
        inputs = {"pixel_values": torch.randn(batch, 3, stage_input.height, stage_input.width, generator=g)}
    elif stage_input.kind == "audio":
        if main == "input_features":
            n_mel = int(getattr(config, "input_feat_per_channel", 80)) * int(getattr(config, "input_channels", 1))
            frames = fbank_frames(stage_input.seconds)
            inputs = {"input_features": torch.randn(batch, frames, n_mel, generator=g),
                      "attention_mask": torch.ones(batch, frames, dtype=torch.long)}
        else:
            inputs = {"input_values": torch.randn(batch, int(round(SAMPLE_RATE * stage_input.seconds)), generator=g)}
    else:
        vocab = int(config.vocab_size)
        low = min(3, vocab - 1)
        ids = torch.randint(low, vocab, (batch, stage_input.tokens), generator=g)
        special = {getattr(config, n, None) for n in ("pad_token_id", "eos_token_id", "decoder_start_token_id")}
        for s in special - {None}:
            ids[ids == s] = low  # no pad/eos inside the text
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    shape = {name: list(t.shape) for name, t in inputs.items()}
    n = int(stage_input.new_tokens)
    generative = n > 0 and hasattr(model, "generate") and getattr(config, "is_encoder_decoder", False)
    if generative:
        def run() -> Any:
            return model.generate(**inputs, max_new_tokens=n, min_new_tokens=n, num_beams=1,
                                  do_sample=False)
        shape["generate"] = {"max_new_tokens": n, "min_new_tokens": n, "num_beams": 1, "do_sample": False}
    else:
        n = 0

        def run() -> Any:
            return model(**inputs)
    return Call(run, shape, n, inputs, batch)
