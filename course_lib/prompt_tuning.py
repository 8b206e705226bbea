"""Soft prompts from scratch: trainable virtual-token embeddings prepended to a frozen model's input.

Taught in chapter 07 (prompt tuning, prefix tuning, P-tuning). A soft prompt is a matrix
P of shape [n_virtual, hidden]; for every batch it is put IN FRONT of the token embeddings,
the attention mask gets n_virtual ones in front, and the labels get n_virtual -100s in front
(the virtual tokens are never predicted). This is what peft's `PromptTuningConfig` does
(`PeftModelForCausalLM.forward`), so with the same P both give the same logits and loss.
Prefix tuning instead injects a trainable key and value per virtual token into EVERY layer;
`prefix_param_count` counts them.

prepend_soft_prompt and SoftPromptLM, between the export markers, are the lesson's
`#| export course_lib.prompt_tuning` cells, copied verbatim (`make lib`); the input checks,
text_init, the peft copy helpers and the prefix counts live only here.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from course_lib.formats import IGNORE_INDEX


def check_prepend_args(
    prompt: torch.Tensor,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor | None,
    labels: torch.Tensor | None,
) -> None:
    """Raise a clear error unless prompt is [n, d], inputs_embeds [b, L, d], mask and labels [b, L]."""
    if not isinstance(prompt, torch.Tensor) or not isinstance(inputs_embeds, torch.Tensor):
        raise TypeError("prompt and inputs_embeds must be torch tensors")
    if prompt.ndim != 2:
        raise ValueError(f"prompt must be 2-D [n_virtual, hidden], got shape {tuple(prompt.shape)}")
    if inputs_embeds.ndim != 3 or inputs_embeds.shape[-1] != prompt.shape[-1]:
        raise ValueError(
            f"inputs_embeds must be [batch, seq, {prompt.shape[-1]}] (the prompt's hidden size), "
            f"got shape {tuple(inputs_embeds.shape)}"
        )
    for name, t in (("attention_mask", attention_mask), ("labels", labels)):
        if t is not None and tuple(t.shape) != tuple(inputs_embeds.shape[:2]):
            raise ValueError(
                f"{name} must have shape [batch, seq] = {tuple(inputs_embeds.shape[:2])}, "
                f"got {tuple(t.shape)}"
            )


def check_soft_prompt_args(model: nn.Module, n_virtual: int, init: torch.Tensor | None) -> int:
    """The model's embedding size, after checking the model, n_virtual and the init's shape."""
    if not hasattr(model, "get_input_embeddings"):
        raise TypeError(f"model must be a Hugging Face causal LM, got {type(model).__name__}")
    if isinstance(n_virtual, bool) or not isinstance(n_virtual, int) or n_virtual < 1:
        raise ValueError(f"n_virtual must be a positive integer, got {n_virtual!r}")
    hidden = model.get_input_embeddings().embedding_dim
    if init is not None and tuple(init.shape) != (n_virtual, hidden):
        raise ValueError(
            f"init must have shape [n_virtual, hidden] = {(n_virtual, hidden)}, "
            f"got {tuple(init.shape)}"
        )
    return hidden


# --- begin export: notebooks/07_prompt_tuning ---
def prepend_soft_prompt(
    prompt: torch.Tensor,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
):
    """Put prompt [n, d] before inputs_embeds [b, L, d]; mask gets n ones, labels n -100s in front."""
    check_prepend_args(prompt, inputs_embeds, attention_mask, labels)
    batch, n = inputs_embeds.shape[0], prompt.shape[0]
    prompts = prompt.to(inputs_embeds.dtype).unsqueeze(0).expand(batch, -1, -1)  # [b, n, d]
    embeds = torch.cat([prompts, inputs_embeds], dim=1)  # the prompt in FRONT: [b, n + L, d]
    if attention_mask is not None:  # every real token may attend to the prompt
        attention_mask = torch.cat([attention_mask.new_ones(batch, n), attention_mask], dim=1)
    if labels is not None:  # a virtual token has nothing to predict
        labels = torch.cat([labels.new_full((batch, n), IGNORE_INDEX), labels], dim=1)
    return embeds, attention_mask, labels


class SoftPromptLM(nn.Module):
    """A frozen causal LM with n_virtual trainable embeddings prepended to every input."""

    def __init__(self, model: nn.Module, n_virtual: int, init: torch.Tensor | None = None, std=1.0):
        super().__init__()
        hidden = check_soft_prompt_args(model, n_virtual, init)  # the embedding size
        if init is None:  # peft's RANDOM init, N(0, 1)
            init = torch.randn(n_virtual, hidden) * std
        self.model, self.n_virtual = model.requires_grad_(False), n_virtual
        device = model.get_input_embeddings().weight.device
        self.prompt = nn.Parameter(init.detach().clone().float().to(device))

    def forward(self, input_ids, attention_mask=None, labels=None, **kwargs):
        """The model's output on [P; E(x)]: logits with n_virtual extra positions in front."""
        embeds = self.model.get_input_embeddings()(input_ids)
        embeds, attention_mask, labels = prepend_soft_prompt(
            self.prompt, embeds, attention_mask, labels
        )
        return self.model(
            inputs_embeds=embeds, attention_mask=attention_mask, labels=labels, **kwargs
        )


# --- end export ---


def text_init(embedding: nn.Embedding, token_ids: Sequence[int], n_virtual: int) -> torch.Tensor:
    """The embeddings of token_ids, repeated or cut to n_virtual rows (peft's TEXT init), detached."""
    if not isinstance(embedding, nn.Embedding):
        raise TypeError(
            f"embedding must be an nn.Embedding (model.get_input_embeddings()), "
            f"got {type(embedding).__name__}"
        )
    ids = list(token_ids.tolist() if isinstance(token_ids, torch.Tensor) else token_ids)
    if not ids:
        raise ValueError("token_ids is empty: tokenize a non-empty init text")
    if not isinstance(n_virtual, int) or n_virtual < 1:
        raise ValueError(f"n_virtual must be a positive integer, got {n_virtual!r}")
    ids = (ids * (n_virtual // len(ids) + 1))[:n_virtual]
    index = torch.tensor(ids, device=embedding.weight.device)
    return embedding.weight[index].detach().clone().float()


def _peft_prompt_weight(peft_model: nn.Module, adapter: str) -> torch.Tensor:
    encoders = getattr(peft_model, "prompt_encoder", None)
    if encoders is None or adapter not in encoders:
        raise ValueError(
            f"no prompt-learning adapter {adapter!r}: pass a peft model made with PromptTuningConfig"
        )
    return encoders[adapter].embedding.weight


def _matching_peft_weight(soft: SoftPromptLM, peft_model: nn.Module, adapter: str) -> torch.Tensor:
    """peft's virtual-token embedding matrix, checked to have the shape of soft.prompt."""
    if not isinstance(getattr(soft, "prompt", None), nn.Parameter):
        raise TypeError(
            f"soft must be a SoftPromptLM (a module with a .prompt parameter), got {type(soft).__name__}"
        )
    weight = _peft_prompt_weight(peft_model, adapter)
    if weight.shape != soft.prompt.shape:
        raise ValueError(
            f"peft's prompt is {tuple(weight.shape)}, ours {tuple(soft.prompt.shape)}: "
            "use the same num_virtual_tokens"
        )
    return weight


@torch.no_grad()
def copy_prompt_from_peft(
    soft: SoftPromptLM, peft_model: nn.Module, adapter: str = "default"
) -> None:
    """Copy peft's virtual-token embeddings into soft.prompt (same n_virtual and hidden size)."""
    soft.prompt.copy_(_matching_peft_weight(soft, peft_model, adapter))


@torch.no_grad()
def copy_prompt_to_peft(
    soft: SoftPromptLM, peft_model: nn.Module, adapter: str = "default"
) -> None:
    """Copy soft.prompt into peft's virtual-token embeddings."""
    _matching_peft_weight(soft, peft_model, adapter).copy_(soft.prompt)


def prefix_param_count(n_virtual: int, n_layers: int, n_kv_heads: int, head_dim: int) -> int:
    """Prefix tuning without projection: one key and one value per virtual token, per layer."""
    for name, value in (
        ("n_virtual", n_virtual),
        ("n_layers", n_layers),
        ("n_kv_heads", n_kv_heads),
        ("head_dim", head_dim),
    ):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return n_virtual * n_layers * 2 * n_kv_heads * head_dim


def prefix_projection_param_count(
    n_virtual: int, n_layers: int, kv_dim: int, encoder_hidden: int
) -> int:
    """Prefix tuning with peft's MLP: an [n, kv_dim] embedding, then kv_dim→hidden→n_layers·2·kv_dim."""
    for name, value in (
        ("n_virtual", n_virtual),
        ("n_layers", n_layers),
        ("kv_dim", kv_dim),
        ("encoder_hidden", encoder_hidden),
    ):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    out = n_layers * 2 * kv_dim
    return n_virtual * kv_dim + (kv_dim + 1) * encoder_hidden + (encoder_hidden + 1) * out
