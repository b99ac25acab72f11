"""Tiny configurations of the same model families, for tests (``ipa profile --quick``).

Each catalogue variant keeps its config class, head class and structure (block type, number
of stages, token ids, generation), but widths, depths and vocabularies shrink so a forward
pass takes milliseconds. Inputs shrink too (``quick_input``). Quick numbers say nothing about
real latency: their measurement files carry ``provenance.quick = true``.
"""
from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any, Mapping

from ipa.pipelines.catalogue import StageInput

QUICK_VOCAB = 512
QUICK_IMAGE = 64        # pixels per side (RT-DETR needs a multiple of 32)
QUICK_SECONDS = 1.0     # audio
QUICK_TOKENS = 16       # text input length
QUICK_NEW_TOKENS = 4    # forced generation length

_ENCODER = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}
_DISTILBERT = {"dim": 16, "n_layers": 1, "n_heads": 2, "hidden_dim": 32}
_SEQ2SEQ = {"d_model": 16, "encoder_layers": 1, "decoder_layers": 1, "encoder_attention_heads": 2,
            "decoder_attention_heads": 2, "encoder_ffn_dim": 32, "decoder_ffn_dim": 32}
FAMILY = {
    "BertConfig": _ENCODER, "RobertaConfig": _ENCODER, "XLMRobertaConfig": _ENCODER, "YolosConfig": _ENCODER,
    "DistilBertConfig": _DISTILBERT,
    "BartConfig": _SEQ2SEQ, "MarianConfig": _SEQ2SEQ, "Speech2TextConfig": _SEQ2SEQ,
}


def _shrink_vocab(kw: dict[str, Any]) -> None:
    """Shrink the vocabulary and move every special token id that falls outside it inside."""
    for name in ("vocab_size", "decoder_vocab_size"):
        if name in kw:
            kw[name] = min(int(kw[name]), QUICK_VOCAB)
    if "vocab_size" not in kw:
        return
    ids = sorted({v for k, v in kw.items() if k.endswith("_token_id") and isinstance(v, int) and v >= QUICK_VOCAB},
                 reverse=True)
    remap = {old: QUICK_VOCAB - 1 - i for i, old in enumerate(ids)}
    for k, v in list(kw.items()):
        if k.endswith("_token_id") and v in remap:
            kw[k] = remap[v]


def quick_kwargs(config_class: str, config_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``config_kwargs`` of a tiny model of the same family."""
    kw = copy.deepcopy(dict(config_kwargs))
    if config_class == "ResNetConfig":
        n = len(kw.get("depths", [3, 4, 6, 3]))
        kw.update(embedding_size=8, hidden_sizes=[8 * 2 ** i for i in range(n)], depths=[1] * n)
        return kw
    if config_class == "RTDetrConfig":
        bb = dict(kw.get("backbone_config") or {"model_type": "rt_detr_resnet"})
        n = len(bb.get("depths", [3, 4, 6, 3]))
        bb.update(embedding_size=8, hidden_sizes=[8 * 2 ** i for i in range(n)], depths=[1] * n)
        bb.setdefault("out_features", ["stage2", "stage3", "stage4"])
        kw["backbone_config"] = bb
        kw.update(encoder_in_channels=[16, 32, 64], encoder_hidden_dim=16, encoder_ffn_dim=32,
                  encoder_attention_heads=2, d_model=16, decoder_in_channels=[16, 16, 16],
                  decoder_ffn_dim=32, decoder_attention_heads=2, decoder_layers=1, num_queries=10,
                  num_denoising=0)
        return kw
    if config_class == "Wav2Vec2Config":
        kw.update(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                  conv_dim=[16] * len(kw.get("conv_dim", [512] * 7)), num_conv_pos_embeddings=16,
                  num_conv_pos_embedding_groups=2)
        return kw
    if config_class == "Speech2TextConfig":
        kw.update(conv_channels=16, max_source_positions=512, max_target_positions=64)
    if config_class in FAMILY:
        kw.update(FAMILY[config_class])
    else:  # an unknown family: shrink whatever size names it uses
        for table in (_ENCODER, _DISTILBERT, _SEQ2SEQ):
            kw.update({k: v for k, v in table.items() if k in kw})
    _shrink_vocab(kw)
    return kw


def quick_input(stage_input: StageInput) -> StageInput:
    """A small request of the same kind (and with generation when the original has it)."""
    if stage_input.kind == "image":
        return replace(stage_input, height=min(stage_input.height, QUICK_IMAGE),
                       width=min(stage_input.width, QUICK_IMAGE))
    if stage_input.kind == "audio":
        return replace(stage_input, seconds=min(stage_input.seconds, QUICK_SECONDS),
                       new_tokens=min(stage_input.new_tokens, QUICK_NEW_TOKENS))
    return replace(stage_input, tokens=min(stage_input.tokens, QUICK_TOKENS),
                   new_tokens=min(stage_input.new_tokens, QUICK_NEW_TOKENS))
