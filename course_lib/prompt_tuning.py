"""Soft prompts from scratch: trainable virtual-token embeddings prepended to a frozen model's input.

Taught in chapter 07 (prompt tuning, prefix tuning, P-tuning). A soft prompt is a matrix
P of shape [n_virtual, hidden]; for every batch it is put IN FRONT of the token embeddings,
the attention mask gets n_virtual ones in front, and the labels get n_virtual -100s in front
(the virtual tokens are never predicted). This is what peft's `PromptTuningConfig` does
(`PeftModelForCausalLM.forward`), so with the same P both give the same logits and loss.
Prefix tuning instead injects a trainable key and value per virtual token into EVERY layer;
`prefix_param_count` counts them.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

IGNORE_INDEX = -100  # the label value the cross-entropy loss skips


def prepend_soft_prompt(
    prompt: torch.Tensor,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
):
    """Put the prompt [n, d] in front of inputs_embeds [b, L, d]; extend mask (ones) and labels (-100)."""
    if not isinstance(prompt, torch.Tensor) or not isinstance(inputs_embeds, torch.Tensor):
        raise TypeError("prompt and inputs_embeds must be torch tensors")
    if prompt.ndim != 2:
        raise ValueError(f"prompt must be 2-D [n_virtual, hidden], got shape {tuple(prompt.shape)}")
    if inputs_embeds.ndim != 3 or inputs_embeds.shape[-1] != prompt.shape[-1]:
        raise ValueError(
            f"inputs_embeds must be [batch, seq, {prompt.shape[-1]}] (the prompt's hidden size), "
            f"got shape {tuple(inputs_embeds.shape)}"
        )
    batch, n = inputs_embeds.shape[0], prompt.shape[0]
    embeds = torch.cat(
        [prompt.to(inputs_embeds.dtype).unsqueeze(0).expand(batch, -1, -1), inputs_embeds], dim=1
    )
    for name, t in (("attention_mask", attention_mask), ("labels", labels)):
        if t is not None and tuple(t.shape) != tuple(inputs_embeds.shape[:2]):
            raise ValueError(
                f"{name} must have shape [batch, seq] = {tuple(inputs_embeds.shape[:2])}, "
                f"got {tuple(t.shape)}"
            )
    if attention_mask is not None:
        attention_mask = torch.cat([attention_mask.new_ones(batch, n), attention_mask], dim=1)
    if labels is not None:
        labels = torch.cat([labels.new_full((batch, n), IGNORE_INDEX), labels], dim=1)
    return embeds, attention_mask, labels


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


class SoftPromptLM(nn.Module):
    """A frozen causal LM with n_virtual trainable embeddings prepended to every input."""

    def __init__(
        self, model: nn.Module, n_virtual: int, init: torch.Tensor | None = None, std: float = 1.0
    ):
        super().__init__()
        if not hasattr(model, "get_input_embeddings"):
            raise TypeError(f"model must be a Hugging Face causal LM, got {type(model).__name__}")
        if not isinstance(n_virtual, int) or n_virtual < 1:
            raise ValueError(f"n_virtual must be a positive integer, got {n_virtual!r}")
        hidden = model.get_input_embeddings().embedding_dim
        if init is None:  # peft's RANDOM init: nn.Embedding's default N(0, 1)
            init = torch.randn(n_virtual, hidden) * std
        if tuple(init.shape) != (n_virtual, hidden):
            raise ValueError(
                f"init must have shape [n_virtual, hidden] = {(n_virtual, hidden)}, "
                f"got {tuple(init.shape)}"
            )
        self.model = model.requires_grad_(False)
        device = model.get_input_embeddings().weight.device
        self.prompt = nn.Parameter(init.detach().clone().float().to(device))
        self.n_virtual = n_virtual

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ):
        """The model's output on [prompt; tokens]: logits have n_virtual extra positions in front."""
        embeds = self.model.get_input_embeddings()(input_ids)
        embeds, attention_mask, labels = prepend_soft_prompt(
            self.prompt, embeds, attention_mask, labels
        )
        return self.model(
            inputs_embeds=embeds, attention_mask=attention_mask, labels=labels, **kwargs
        )


def _peft_prompt_weight(peft_model: nn.Module, adapter: str) -> torch.Tensor:
    encoders = getattr(peft_model, "prompt_encoder", None)
    if encoders is None or adapter not in encoders:
        raise ValueError(
            f"no prompt-learning adapter {adapter!r}: pass a peft model made with PromptTuningConfig"
        )
    return encoders[adapter].embedding.weight


def _matching_peft_weight(soft: SoftPromptLM, peft_model: nn.Module, adapter: str) -> torch.Tensor:
    """peft's virtual-token embedding matrix, checked to have the shape of soft.prompt."""
    if not isinstance(soft, SoftPromptLM):
        raise TypeError(f"soft must be a SoftPromptLM, got {type(soft).__name__}")
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


@torch.no_grad()
def real_token_cross_entropy(model, tokenizer, texts: Sequence[str], batch_size: int = 32) -> float:
    """Mean next-token loss (nats/token) on the real tokens only, for any model.

    Like `evaluation.cross_entropy`, but it keeps only the last L logits, so it also works for
    prompt-tuned models whose logits carry n_virtual extra positions in front.
    """
    if isinstance(texts, str) or not texts or not all(isinstance(t, str) for t in texts):
        raise TypeError("texts must be a non-empty list of strings (wrap a single text: [text])")
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(
            [t + tokenizer.eos_token for t in texts[i : i + batch_size]],
            return_tensors="pt",
            padding=True,
        ).to(device)
        length = enc["input_ids"].shape[1]
        logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
        logits = logits[:, -length:][:, :-1].float()
        target, mask = enc["input_ids"][:, 1:], enc["attention_mask"][:, 1:].bool()
        nll = nn.functional.cross_entropy(logits.transpose(1, 2), target, reduction="none")
        total += nll[mask].sum().item()
        count += int(mask.sum())
    return total / count
