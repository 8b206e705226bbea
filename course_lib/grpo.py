"""GRPO from scratch: group-relative advantages, the k3 KL estimator, the clipped per-token loss and
its aggregations (GRPO, BNPO, Dr. GRPO, DAPO), plus the verifier and learned rewards TRL's
`GRPOTrainer` calls.

Taught in chapter 14 (reasoning with verifiable rewards). Conventions follow TRL's: per-token
tensors are [B, T] over the completion tokens only, `mask` is 1 on real completion tokens; the B
rows are groups of `group_size` consecutive completions of one prompt. The arithmetic between the
export markers is the lesson's `#| export course_lib.grpo` cells, copied verbatim by `make lib`.
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

import torch

from course_lib.world.preferences import is_correct

SCALES = ("group", "batch", "none")
LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")


def _check_grpo_inputs(logps, old_logps, ref_logps, advantages, mask, beta: float) -> None:
    """Clear errors for `grpo_loss`: one [B, T] shape, advantages [B], ref_logps when beta > 0."""
    tensors = {"logps": logps, "old_logps": old_logps, "ref_logps": ref_logps, "mask": mask}
    shapes = {name: tuple(t.shape) for name, t in tensors.items() if t is not None}
    if len(set(shapes.values())) != 1 or any(len(s) != 2 for s in shapes.values()):
        raise ValueError(f"per-token tensors must all be [B, T] with one shape, got {shapes}")
    if advantages.shape != logps.shape[:1]:
        raise ValueError(
            f"advantages must be [B] = {tuple(logps.shape[:1])}, got {tuple(advantages.shape)}"
        )
    if beta != 0.0 and ref_logps is None:
        raise ValueError("beta > 0 needs ref_logps (the reference model's log-probabilities)")


# --- begin export: notebooks/14_rlvr_preference ---
def group_advantages(
    rewards: torch.Tensor, group_size: int, scale: str = "group", eps: float = 1e-4
) -> torch.Tensor:
    """A_i = (r_i − mean of its group) / (std + eps); rows come in groups of `group_size`.

    scale="group" divides by the group's std (GRPO), "batch" by the whole batch's std,
    "none" not at all (Dr. GRPO). Standard deviations use Bessel's correction, as TRL's.
    """
    if rewards.dim() != 1 or group_size < 2 or rewards.numel() % group_size:
        raise ValueError(
            f"need a 1-D tensor of rewards whose length is a multiple of group_size >= 2, "
            f"got shape {tuple(rewards.shape)} and group_size {group_size}"
        )
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    grouped = rewards.view(-1, group_size)
    centred = (grouped - grouped.mean(dim=1, keepdim=True)).view(-1)
    if scale == "none":
        return centred
    if scale == "group":
        std = grouped.std(dim=1).repeat_interleave(group_size)
    else:
        std = rewards.std().expand_as(rewards)
    return centred / (std + eps)


def frac_zero_std(rewards: torch.Tensor, group_size: int) -> float:
    """Share of groups whose rewards are all equal: their advantages are 0, they teach nothing."""
    grouped = rewards.view(-1, group_size)
    return (grouped.std(dim=1) < 1e-8).float().mean().item()


def k3_kl(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """Per-token KL(π‖π_ref) estimate k3 = e^d − d − 1 with d = log π_ref − log π (Schulman 2020).

    Unbiased for samples of π, never negative, and low-variance where π ≈ π_ref.
    """
    d = ref_logps - logps
    return torch.exp(d) - d - 1


def aggregate(
    per_token: torch.Tensor, mask: torch.Tensor, loss_type: str, max_completion_length: int
) -> torch.Tensor:
    """One number from per-token losses: how GRPO and its variants average over tokens.

    grpo: mean over each sequence's tokens, then over sequences (long answers weigh less per token);
    bnpo / dapo: sum over all tokens of the batch / their count (every token weighs the same);
    dr_grpo: sum over all tokens / (B × max_completion_length), a constant.
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    total = per_token * mask
    if loss_type == "grpo":
        return (total.sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    if loss_type in ("bnpo", "dapo"):
        return total.sum() / mask.sum().clamp(min=1.0)
    return total.sum() / (per_token.size(0) * max_completion_length)


def grpo_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    ref_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    beta: float = 0.0,
    epsilon: float = 0.2,
    epsilon_high: float | None = None,
    loss_type: str = "dapo",
    max_completion_length: int | None = None,
    kl_correction: bool = True,
) -> torch.Tensor:
    """−(clipped GRPO objective) + β·k3 per token, aggregated by `loss_type`; kl_correction
    weighs k3 by π_θ/π_old (TRL's default `use_bias_correction_kl`)."""
    _check_grpo_inputs(logps, old_logps, ref_logps, advantages, mask, beta)
    ratio = torch.exp(logps - old_logps)  # π_θ / π_old per token; 1 on the first update
    clipped = ratio.clamp(1 - epsilon, 1 + (epsilon if epsilon_high is None else epsilon_high))
    adv = advantages.unsqueeze(1)  # one per answer, for all its tokens
    per_token = -torch.min(ratio * adv, clipped * adv)
    if beta != 0.0:
        kl = k3_kl(logps, ref_logps) * (ratio if kl_correction else 1.0)
        per_token = per_token + beta * kl
    return aggregate(per_token, mask, loss_type, max_completion_length or logps.size(1))


# --- end export ---


def completion_logprobs(
    model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, completion_ids: torch.Tensor
) -> torch.Tensor:
    """log π(completion token | everything before it), [B, T], as TRL's GRPOTrainer computes it
    (left-padded prompt, attention mask, no explicit position ids, temperature 1)."""
    if prompt_ids.shape != prompt_mask.shape or prompt_ids.size(0) != completion_ids.size(0):
        raise ValueError("prompt_ids, prompt_mask and completion_ids must share the batch size")
    ids = torch.cat([prompt_ids, completion_ids], dim=1)
    att = torch.cat([prompt_mask, torch.ones_like(completion_ids)], dim=1)
    logits = model(input_ids=ids, attention_mask=att).logits[:, :-1]
    logits = logits[:, -completion_ids.size(1) :].float()
    logp = torch.log_softmax(logits, dim=-1)
    return logp.gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)


def _last_turns(prompts: Sequence, completions: Sequence) -> tuple[list[str], list[str]]:
    """TRL passes chats (lists of messages); reward functions score the last turns' text."""

    def text(x):
        return x[-1]["content"] if isinstance(x, list) else x

    return [text(p) for p in prompts], [text(c) for c in completions]


def verifier_reward(prompts: Sequence, completions: Sequence, **_) -> list[float]:
    """1.0 if the answer is correct (`preferences.is_correct`), else 0.0: a TRL reward function."""
    ps, cs = _last_turns(prompts, completions)
    return [float(is_correct(p, c)) for p, c in zip(ps, cs)]


def learned_reward(reward_model, tokenizer) -> Callable[..., list[float]]:
    """A TRL reward function that scores answers with a trained reward model (chapter 09)."""
    from course_lib.reward_model import score

    def learned(prompts, completions, **_):
        ps, cs = _last_turns(prompts, completions)
        with torch.no_grad():
            return score(reward_model, tokenizer, ps, cs).tolist()

    return learned


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (Chen et al. 2021): 1 − C(n−c, k)/C(n, k)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    prob = 1.0
    for i in range(n - c + 1, n + 1):
        prob *= 1.0 - k / i
    return 1.0 - prob


def word_count(text: str) -> int:
    """Words as the gold reward counts them (letters and digits)."""
    return len(re.findall(r"[a-z0-9]+", text.lower()))


POLITE_MARKERS = ("sure", "happy to help", "glad", "thank")


@torch.no_grad()
def evaluate(
    model,
    ref,
    tokenizer,
    prompts: Sequence[str],
    samples: int = 4,
    seed: int = 0,
    max_new_tokens: int = 20,
) -> dict[str, float]:
    """What a policy does on held-out prompts, judged by the world's verifier and gold reward.

    `samples` answers per prompt at temperature 1: their correctness (pass@1), the gold reward,
    the KL to `ref` (summed over each answer's tokens, averaged), mean words and the share that
    open politely (the style a learned reward can overrate); plus the greedy answers' correctness.
    """
    from course_lib.generation import generate
    from course_lib.ppo import position_ids, rollout, token_logprobs
    from course_lib.world.preferences import gold_reward

    if isinstance(prompts, str) or not prompts:
        raise ValueError("prompts must be a non-empty list of questions")
    model.eval()
    many = [p for p in prompts for _ in range(samples)]
    roll = rollout(model, tokenizer, many, max_new_tokens=max_new_tokens, seed=seed)
    ids, att = roll["input_ids"], roll["attention_mask"]
    pos = position_ids(att)
    logp = [
        token_logprobs(m(input_ids=ids, attention_mask=att, position_ids=pos).logits, ids)
        for m in (model, ref)
    ]
    answers = roll["responses"]
    greedy = generate(model, tokenizer, list(prompts), chat=True, max_new_tokens=max_new_tokens)
    n = len(answers)
    return {
        "correct": sum(is_correct(p, a) for p, a in zip(many, answers)) / n,
        "greedy_correct": sum(is_correct(p, a) for p, a in zip(prompts, greedy)) / len(prompts),
        "gold": sum(gold_reward(p, a) for p, a in zip(many, answers)) / n,
        "kl": ((logp[0] - logp[1]) * roll["mask"]).sum(-1).mean().item(),
        "words": sum(word_count(a) for a in answers) / n,
        "polite": sum(any(m in a.lower() for m in POLITE_MARKERS) for a in answers) / n,
    }


def train_grpo(
    policy,
    tokenizer,
    prompts: Sequence[str],
    reward_funcs: list,
    *,
    steps: int = 20,
    group_size: int = 8,
    prompts_per_step: int = 4,
    loss_type: str = "dapo",
    scale_rewards: str = "group",
    beta: float = 0.1,
    lr: float = 1e-4,
    seed: int = 0,
    max_new_tokens: int = 20,
    reference_state: dict | None = None,
):
    """Train `policy` in place with TRL's GRPOTrainer; returns the trainer (its log in state.log_history).

    With beta > 0 TRL loads its reference model from the policy's `name_or_path` on disk; pass
    `reference_state` (a state dict) when the policy's starting weights differ from that checkpoint
    (chapter 14: otherwise the KL term pulls towards the wrong model).
    """
    import tempfile

    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    if loss_type not in LOSS_TYPES or scale_rewards not in SCALES:
        raise ValueError(
            f"loss_type in {LOSS_TYPES} and scale_rewards in {SCALES}, got "
            f"{loss_type!r}, {scale_rewards!r}"
        )
    if len(prompts) < prompts_per_step:
        raise ValueError(f"need at least {prompts_per_step} prompts, got {len(prompts)}")
    config = GRPOConfig(
        output_dir=tempfile.mkdtemp(),
        use_cpu=True,
        bf16=False,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
        logging_steps=1,
        seed=seed,
        data_seed=seed,
        per_device_train_batch_size=group_size * prompts_per_step,
        num_generations=group_size,
        max_completion_length=max_new_tokens,
        max_steps=steps,
        learning_rate=lr,
        beta=beta,
        loss_type=loss_type,
        scale_rewards=scale_rewards,
        temperature=1.0,
    )
    trainer = GRPOTrainer(
        model=policy,
        reward_funcs=reward_funcs,
        args=config,
        processing_class=tokenizer,
        train_dataset=Dataset.from_list(
            [{"prompt": [{"role": "user", "content": p}]} for p in prompts]
        ),
    )
    if reference_state is not None:
        if trainer.ref_model is None:
            raise ValueError("reference_state needs beta > 0 (with beta = 0 there is no reference)")
        trainer.ref_model.load_state_dict(reference_state)
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # the log stays in trainer.state.log_history
    trainer.train()
    policy.eval()
    return trainer
