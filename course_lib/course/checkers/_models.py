"""Tiny randomly initialised Llama models for the checks and the tests (seconds, no files).

One factory instead of a copy per checker or test file: `tiny_llama(layers=2, kv_heads=2)`.
"""

from __future__ import annotations

from typing import Any


def tiny_llama(
    *,
    vocab: int = 40,
    hidden: int = 16,
    intermediate: int | None = None,
    layers: int = 2,
    heads: int = 2,
    kv_heads: int | None = None,
    bias: bool = False,
    num_labels: int | None = None,
    seed: int = 0,
    eval_mode: bool = False,
    **config: Any,
):
    """A seeded tiny Llama: a causal LM, or a sequence classifier when `num_labels` is given.

    `intermediate` defaults to 2 × hidden and `kv_heads` to `heads`; `bias` puts biases on the
    attention projections; other LlamaConfig fields (pad_token_id, tie_word_embeddings,
    max_position_embeddings, ...) pass through `config`.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    kv_heads = heads if kv_heads is None else kv_heads
    if min(vocab, hidden, layers, heads, kv_heads) < 1:
        raise ValueError(
            f"vocab, hidden, layers, heads and kv_heads must be ≥ 1, got {vocab}, {hidden}, "
            f"{layers}, {heads}, {kv_heads}"
        )
    if hidden % heads or heads % kv_heads:
        raise ValueError(
            f"hidden ({hidden}) must be a multiple of heads ({heads}), and heads a multiple of "
            f"kv_heads ({kv_heads})"
        )
    if bias:
        config["attention_bias"] = True
    if num_labels is not None:
        config["num_labels"] = num_labels
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden if intermediate is None else intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        **config,
    )
    torch.manual_seed(seed)
    cls = LlamaForCausalLM if num_labels is None else LlamaForSequenceClassification
    model = cls(cfg)
    return model.eval() if eval_mode else model
