"""Freeze-tuning: train only the top layers (and the head) of a pretrained model.

Taught in chapter 03 (full fine-tuning vs freeze-tuning); count what is left trainable with
`course_lib.measure.count_parameters(model, trainable_only=True)`.
"""

from __future__ import annotations

import torch


def layer_stack(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The list of transformer blocks: `.layers` (Llama) or `.encoder.layer` (BERT, MiniLM)."""
    body = getattr(model, "base_model", model)
    for path in ("layers", "encoder.layer", "h", "transformer.h"):
        module = body
        for name in path.split("."):
            module = getattr(module, name, None)
        if isinstance(module, torch.nn.ModuleList):
            return module
    raise TypeError(
        f"cannot find the transformer blocks of {type(model).__name__}: expected a "
        "ModuleList at .layers, .encoder.layer or .h of model.base_model"
    )


def freeze_all_but_top(model: torch.nn.Module, n_layers: int) -> torch.nn.Module:
    """Freeze everything except the top `n_layers` blocks, the final norm and the task head (in place).

    The head is every parameter outside `model.base_model` (e.g. `score`, `classifier`) plus the
    output embeddings of a language model (`lm_head`; when tied, that is also the input embedding
    table); the final norm is `base_model.norm` when the model has one (Llama). n_layers=0: head only.
    """
    layers = layer_stack(model)
    if not isinstance(n_layers, int) or not 0 <= n_layers <= len(layers):
        raise ValueError(
            f"n_layers must be an int in [0, {len(layers)}] (the model has "
            f"{len(layers)} blocks), got {n_layers!r}"
        )
    body = model.base_model
    if body is model:
        raise TypeError(
            "freeze_all_but_top needs a model with a task head on top of base_model "
            "(e.g. AutoModelForSequenceClassification), not a bare backbone"
        )
    body_ids = {id(p) for p in body.parameters()}
    keep = [p for layer in list(layers)[len(layers) - n_layers :] for p in layer.parameters()]
    norm = getattr(body, "norm", None)
    keep += list(norm.parameters()) if isinstance(norm, torch.nn.Module) else []
    keep += [p for p in model.parameters() if id(p) not in body_ids]  # the head
    out_emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    keep += (
        list(out_emb.parameters()) if isinstance(out_emb, torch.nn.Module) else []
    )  # lm_head, even if tied
    keep_ids = {id(p) for p in keep}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep_ids)
    return model
