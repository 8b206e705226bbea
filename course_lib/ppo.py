"""PPO for a language model, from scratch: rollouts, per-token KL penalty, GAE advantages, clipped objectives.

Taught in chapter 09 (RLHF). Conventions: tensors of per-token quantities are in the *shifted* frame
([B, T-1]: position t is the token input_ids[:, t+1] predicted from input_ids[:, :t+1]); `mask` is 1 on
the response tokens the policy generated (up to and including its end-of-turn token), 0 elsewhere.
The arithmetic between the export markers (masked mean, whitening, KL-penalised rewards, GAE, the
clipped policy and value losses) is the lesson's `#| export course_lib.ppo` cells, copied verbatim
by `make lib`; the model, log-probabilities and rollouts stay outside.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from course_lib.generation import continue_batch


class PolicyWithValue(nn.Module):
    """A causal LM and a scalar value head on its last hidden state: (logits, values [B, T])."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm
        self.value_head = nn.Linear(lm.config.hidden_size, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and one value per position (position ids follow the attention mask, so left
        padding is fine)."""
        out = self.lm(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids(attention_mask),
            output_hidden_states=True,
        )
        return out.logits, self.value_head(out.hidden_states[-1]).squeeze(-1)


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """0, 1, 2, … counted over the real tokens only (as generate() does with left padding)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def token_logprobs(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """log p(input_ids[:, t+1] | input_ids[:, :t+1]) for every t: shape [B, T-1]."""
    if logits.shape[:2] != input_ids.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} do not match input_ids {tuple(input_ids.shape)}"
        )
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    return logp.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)


@torch.no_grad()
def rollout(
    model,
    tokenizer,
    prompts: Sequence[str],
    max_new_tokens: int = 16,
    temperature: float = 1.0,
    seed: int = 0,
) -> dict:
    """Sample one response per prompt (chat template, left padding); return ids, masks and response texts."""
    if isinstance(prompts, str) or not prompts:
        raise ValueError("prompts must be a non-empty list of strings")
    if not temperature > 0:
        raise ValueError(f"PPO samples its rollouts: temperature must be > 0, got {temperature}")
    lm = model.lm if isinstance(model, PolicyWithValue) else model
    out, prompt_mask = continue_batch(
        lm,
        tokenizer,
        prompts,
        chat=True,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        seed=seed,
    )
    n_prompt = prompt_mask.shape[1]
    new = out[:, n_prompt:]
    ended = (new == tokenizer.eos_token_id).long()
    after_end = (ended.cumsum(-1) - ended) > 0  # strictly after the first end-of-turn token
    response = (~after_end).long()
    attention_mask = torch.cat([prompt_mask, response], dim=1)
    mask = torch.zeros_like(attention_mask[:, 1:], dtype=torch.float)
    mask[:, n_prompt - 1 :] = response.float()
    texts_out = [
        tokenizer.decode(row[r.bool()], skip_special_tokens=True).strip()
        for row, r in zip(new, response)
    ]
    return {
        "input_ids": out,
        "attention_mask": attention_mask,
        "mask": mask,
        "responses": texts_out,
    }


# --- begin export: notebooks/09_rlhf ---
def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x over the positions where mask is 1."""
    if x.shape != mask.shape:
        raise ValueError(
            f"x and mask must have one shape, got {tuple(x.shape)}, {tuple(mask.shape)}"
        )
    if mask.sum() == 0:
        raise ValueError("mask selects no position: no response tokens in this batch")
    return (x * mask).sum() / mask.sum()


def whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """x shifted to mean 0 and scaled to std 1 over the masked positions (0 elsewhere)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + eps) * mask


def kl_penalized_rewards(
    scores: torch.Tensor,
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards −kl_coef·(log π − log π_ref) on the response tokens, plus each sequence's
    score on its last response token. Returns (rewards, per-token KL estimates), both [B, T]."""
    if kl_coef < 0:
        raise ValueError(f"kl_coef must be >= 0 (the rewards get −kl_coef·KL), got {kl_coef}")
    if not logp.shape == ref_logp.shape == mask.shape or scores.shape != logp.shape[:1]:
        raise ValueError(
            f"need scores [B] and logp, ref_logp, mask [B, T]; got {tuple(scores.shape)}, "
            f"{tuple(logp.shape)}, {tuple(ref_logp.shape)}, {tuple(mask.shape)}"
        )
    kl = (logp - ref_logp) * mask  # k_t, 0 outside the response
    rewards = -kl_coef * kl
    last = (mask * torch.arange(mask.shape[1], device=mask.device)).argmax(-1)  # last 1 in mask
    rewards[torch.arange(len(scores)), last] += scores
    return rewards, kl


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma=1.0, lam=0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates over the response tokens and the returns A + V."""
    if not rewards.shape == values.shape == mask.shape:
        raise ValueError(
            f"rewards, values and mask must share one shape [B, T], got {tuple(rewards.shape)}, "
            f"{tuple(values.shape)}, {tuple(mask.shape)}"
        )
    values = values * mask
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])  # A_{t+1}, 0 after the last position
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]  # δ_t
        running = (delta + gamma * lam * running) * mask[:, t]  # A_t
        advantages[:, t] = running
    return advantages, (advantages + values) * mask


def policy_loss(
    logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask, clip: float = 0.2
) -> tuple[torch.Tensor, float]:
    """PPO's clipped surrogate, to minimise: mean of max(−A·ρ, −A·clip(ρ, 1±ε)); and the clipped share."""
    ratio = torch.exp(logp - old_logp)  # ρ_t = π_θ / π_θ_old
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - clip, 1 + clip)
    clip_fraction = masked_mean((clipped > unclipped).float(), mask).item()
    return masked_mean(torch.maximum(unclipped, clipped), mask), clip_fraction


def value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask, clip: float = 0.2
) -> torch.Tensor:
    """½ · mean of max((V − G)², (V_clip − G)²), V_clip within ±clip of the rollout's values."""
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    return 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask)


# --- end export ---
