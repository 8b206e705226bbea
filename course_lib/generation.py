"""Text generation: the course's one batched `generate` (greedy or sampled), the low-level
`continue_batch` it and PPO's rollouts share, and the decoding maths from scratch (temperature,
nucleus top-p filtering) with how varied the answers are.

`generate` is used from chapter 00 on; the maths is taught in chapter 08 (instruction tuning).
`transformers` does the same in `TemperatureLogitsWarper` and `TopPLogitsWarper`; the lesson checks
that ours equal them, and sampling passes exactly these settings to `model.generate` (top_k=0).
"""

from __future__ import annotations

from typing import Sequence

import torch


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Logits with -inf outside the nucleus: the most likely tokens whose mass before them is < top_p."""
    if not isinstance(logits, torch.Tensor) or logits.dim() < 1:
        raise TypeError("logits must be a tensor [..., vocab]")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1] (1 keeps every token), got {top_p}")
    probs, order = logits.softmax(-1).sort(dim=-1, descending=True)
    mass_before = probs.cumsum(-1) - probs  # the top token always has 0 before it: never dropped
    drop_sorted = mass_before >= top_p
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sampling_probs(
    logits: torch.Tensor, temperature: float = 1.0, top_p: float = 1.0
) -> torch.Tensor:
    """The distribution a sampler draws from: logits / temperature, then the nucleus, renormalised."""
    if temperature <= 0:
        raise ValueError(
            f"temperature must be > 0 (use argmax for greedy decoding), got {temperature}"
        )
    return top_p_filter(logits / temperature, top_p).softmax(-1)


def entropy_bits(probs: torch.Tensor) -> torch.Tensor:
    """Entropy in bits of distributions along the last axis (0 · log 0 counts as 0)."""
    if not isinstance(probs, torch.Tensor):
        raise TypeError("probs must be a tensor of probabilities")
    logs = torch.where(probs > 0, probs.log2(), torch.zeros_like(probs))
    return -(probs * logs).sum(-1)


def distinct_share(samples: Sequence[Sequence[str]]) -> float:
    """Mean share of distinct answers among the samples drawn for each prompt (1/n = always the same)."""
    if not samples or any(isinstance(s, str) or not s for s in samples):
        raise ValueError(
            "samples must be a non-empty list with one non-empty list of answers per prompt"
        )
    return sum(len(set(s)) / len(s) for s in samples) / len(samples)


def _prompt_texts(tokenizer, prompts: Sequence[str], chat: bool) -> list[str]:
    """The texts to continue: each prompt as a user turn of the chat template (chat=True) or as is."""
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of strings, not one string (wrap it: [prompt])")
    prompts = list(prompts)
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError("prompts must be a non-empty list of strings")
    if not chat:
        return prompts
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
        )
        for p in prompts
    ]


def _check_decoding(temperature: float, top_p: float, max_new_tokens: int) -> None:
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError(
            f"need temperature >= 0 (0 = greedy) and 0 < top_p <= 1, got {temperature}, {top_p}"
        )
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")


@torch.no_grad()
def continue_batch(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    chat: bool,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Continue one batch of prompts (left padding): (token ids [B, P + N], prompt attention mask [B, P]).

    Greedy at temperature 0; otherwise every token is drawn from `sampling_probs(logits, temperature,
    top_p)` (no top-k cut), after `torch.manual_seed(seed)` unless seed is None. Chat prompts go
    through the chat template as user turns; plain prompts get the tokenizer's <bos>. Rows are
    left-padded, so the new tokens start at column P in every row; they end at <eos> (then padding).
    """
    _check_decoding(temperature, top_p, max_new_tokens)
    texts = _prompt_texts(tokenizer, prompts, chat)
    device = next(model.parameters()).device
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        enc = tokenizer(texts, add_special_tokens=not chat, return_tensors="pt", padding=True)
    finally:
        tokenizer.padding_side = side
    if seed is not None:
        torch.manual_seed(seed)
    decoding = (
        dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)
        if temperature > 0
        else dict(do_sample=False)
    )
    ids, prompt_mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
    out = model.generate(
        input_ids=ids,
        attention_mask=prompt_mask,
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **decoding,
    )
    return out, prompt_mask


def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    chat: bool,
    max_new_tokens: int = 32,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int = 64,
) -> list[str]:
    """The model's continuation of each prompt, as text (batched); greedy by default.

    chat=True sends each prompt as a user turn through the chat template and returns the reply,
    stripped; chat=False continues the raw text and returns only the new text, as is (a leading
    space included). temperature > 0 samples (nucleus filtering at `top_p`), seeded once by `seed`.
    """
    _check_decoding(temperature, top_p, max_new_tokens)
    prompts = _prompt_texts(tokenizer, prompts, chat=False)  # validates; the template comes later
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    model.eval()
    if temperature > 0:
        torch.manual_seed(seed)
    replies: list[str] = []
    for i in range(0, len(prompts), batch_size):
        out, prompt_mask = continue_batch(
            model,
            tokenizer,
            prompts[i : i + batch_size],
            chat=chat,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
        )
        texts = tokenizer.batch_decode(out[:, prompt_mask.shape[1] :], skip_special_tokens=True)
        replies += [t.strip() for t in texts] if chat else texts
    return replies
