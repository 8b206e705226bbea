"""PPO for a language model, from scratch: rollouts, per-token KL penalty, GAE advantages, clipped objectives.

Taught in chapter 09 (RLHF). Conventions: tensors of per-token quantities are in the *shifted* frame
([B, T-1]: position t is the token input_ids[:, t+1] predicted from input_ids[:, :t+1]); `mask` is 1 on
the response tokens the policy generated (up to and including its end-of-turn token), 0 elsewhere.
The arithmetic between the export markers (masked mean, whitening, KL-penalised rewards, GAE, the
clipped policy and value losses) is the lesson's `#| export course_lib.ppo` cells, copied verbatim
by `make lib`; the model, log-probabilities and rollouts stay outside.
"""

from __future__ import annotations

import copy
import random
from typing import Sequence

import torch
import torch.nn as nn

from course_lib import reward_model as rm
from course_lib.generation import continue_batch
from course_lib.world.preferences import gold_reward


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
    """Sample one response per prompt (chat template, left padding); return ids, masks, response
    texts and `ended` (True where the response reached its end-of-turn token within the budget)."""
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
        "ended": ended.bool().any(-1),
    }


# --- begin export: notebooks/09_rlhf ---
MISSING_EOS_PENALTY = 1.0  # taken off the reward of an answer that never reached its end


@torch.no_grad()
def sampled_kl(model, ref, sampled: dict) -> float:
    """KL of `model` to `ref` on sampled answers: log-ratio summed over tokens, averaged."""
    ids, att = sampled["input_ids"], sampled["attention_mask"]
    pos = position_ids(att)
    logp = [
        token_logprobs(m(input_ids=ids, attention_mask=att, position_ids=pos).logits, ids)
        for m in (model, ref)
    ]
    return ((logp[0] - logp[1]) * sampled["mask"]).sum(-1).mean().item()


@torch.no_grad()
def evaluate_policy(model, ref, tok, prompts, max_new=100, seed=0, texts=False) -> dict:
    """Gold reward of greedy and of sampled answers (−MISSING_EOS_PENALTY where cut), the share
    cut, and the KL to `ref` on the sampled answers (summed over their tokens, averaged)."""
    ids, prompt_mask = continue_batch(model, tok, prompts, chat=True, max_new_tokens=max_new)
    new = ids[:, prompt_mask.shape[1] :]
    answers = [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]
    greedy = {"responses": answers, "ended": (new == tok.eos_token_id).any(-1)}
    sampled = rollout(model, tok, prompts, max_new_tokens=max_new, seed=seed)
    out = {"answers": answers} if texts else {}
    for mode, r in (("greedy", greedy), ("sampled", sampled)):
        cut = (~r["ended"]).float()
        gold = torch.tensor([gold_reward(p, y) for p, y in zip(prompts, r["responses"])])
        out[f"gold_{mode}"] = (gold - MISSING_EOS_PENALTY * cut).mean().item()
        out[f"cut_{mode}"] = cut.mean().item()
    out["kl"] = sampled_kl(model, ref, sampled)
    return out


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


def watched_gold(prompts: list[str], roll: dict) -> float:
    """Mean gold reward of a rollout's answers, −MISSING_EOS_PENALTY where cut (only to watch)."""
    gold = torch.tensor([gold_reward(p, y) for p, y in zip(prompts, roll["responses"])])
    return (gold - MISSING_EOS_PENALTY * (~roll["ended"]).float()).mean().item()


@torch.no_grad()
def experience(policy, ref, reward_model, tok, prompts, kl_coef: float, seed: int, max_new: int):
    """One PPO batch: samples, scores, KL-penalised rewards, GAE advantages."""
    roll = rollout(policy, tok, prompts, max_new_tokens=max_new, seed=seed)
    ids, att, mask = roll["input_ids"], roll["attention_mask"], roll["mask"]
    cut = (~roll["ended"]).float()
    scores = rm.score(reward_model, tok, prompts, roll["responses"]) - MISSING_EOS_PENALTY * cut
    logits, values = policy(ids, att)
    logp, values = token_logprobs(logits, ids), values[:, :-1]
    ref_logits = ref(ids, attention_mask=att, position_ids=position_ids(att)).logits
    rewards, kl = kl_penalized_rewards(scores, logp, token_logprobs(ref_logits, ids), mask, kl_coef)
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=0.95)
    b = dict(ids=ids, att=att, mask=mask, old_logp=logp, old_values=values, returns=returns)
    b["adv"], b["responses"] = whiten(advantages, mask), roll["responses"]
    b["learned"], b["kl"] = scores.mean().item(), kl.sum(-1).mean().item()
    b["gold"], b["truncated"] = watched_gold(prompts, roll), cut.mean().item()
    return b


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


def ppo_update(policy, opt, b: dict, epochs: int = 2, vf_coef: float = 0.1) -> float:
    """`epochs` gradient steps on one batch of experience; returns the last step's clipped share."""
    policy.train()
    for _ in range(epochs):
        logits, values = policy(b["ids"], b["att"])
        logp = token_logprobs(logits, b["ids"])
        pg_loss, clip_frac = policy_loss(logp, b["old_logp"], b["adv"], b["mask"], clip=0.2)
        v_loss = value_loss(values[:, :-1], b["old_values"], b["returns"], b["mask"])
        (pg_loss + vf_coef * v_loss).backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
    return clip_frac


def ppo_train(
    sft, reward_model, tok, prompts, kl_coef, iterations, lr=1e-4, n=32, max_new=24, seed=0
):
    """PPO from a copy of `sft` against a frozen copy of it: `iterations` batches of `n` prompts
    drawn from `prompts`; returns the policy and a per-iteration log of its samples."""
    torch.manual_seed(seed)
    policy, ref = PolicyWithValue(copy.deepcopy(sft)), copy.deepcopy(sft).eval()
    opt = torch.optim.AdamW(policy.parameters(), lr=lr)
    rng, log = random.Random(seed), {"learned": [], "gold": [], "kl": [], "truncated": []}
    for it in range(iterations):
        batch_prompts = rng.sample(prompts, n)
        b = experience(
            policy, ref, reward_model, tok, batch_prompts, kl_coef, 1000 * seed + it, max_new
        )
        ppo_update(policy, opt, b)
        for key in log:
            log[key].append(b[key])
    return policy, log


# --- end export ---
