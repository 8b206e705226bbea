# %% [markdown]
# # 09 · RLHF: reward models, PPO and DPO
#
# **Measured runtime:** 104 s on a 2-core CPU (`make execute`; your machine may differ).
#
# Supervised fine-tuning (chapter 08) teaches a model to imitate good answers. **Reinforcement
# learning from human feedback** (RLHF) goes one step further: people only say which of two answers
# they prefer, a **reward model** learns to predict those preferences, and the policy is then
# optimised to earn a high reward, with a leash that keeps it close to where it started. This chapter
# builds every piece on the course model and measures what each one buys, including the failure that
# makes RLHF hard in practice: **reward hacking**.
#
# Our preference data has one luxury real projects lack: a **gold reward**, the exact rule the
# (simulated) annotators followed. We never train on it; we use it to judge what the learned reward
# and the optimised policies really did.
#
# **You will learn to**
# 1. lay out the pipeline SFT → reward model → policy optimisation, and say what each stage consumes and produces;
# 2. train a reward model with the Bradley–Terry loss from scratch and with TRL's `RewardTrainer`, and measure how well it agrees with the labels and with the gold reward;
# 3. write PPO for a language model from scratch: rollouts, a per-token KL penalty to a frozen reference, advantages from a value baseline, the clipped ratio objective;
# 4. detect reward hacking by plotting the learned reward against the gold reward and the KL;
# 5. derive and check the DPO loss against TRL, train with `DPOTrainer` + LoRA, run GRPO with TRL's `GRPOTrainer`, and compare PPO, DPO and GRPO on gold reward, KL and time.
#
# **Prerequisites:** chapters 03 (training loop), 04 (LoRA) and 08 (instruction tuning, response masking).

# %%
import copy
import json
import random
import tempfile
import time
import warnings
from typing import NamedTuple
import torch
import torch.nn.functional as F
import course_lib
from course_lib import dpo, ppo, reward_model as rm
from course_lib.build import rlhf_models
from course_lib import models
from course_lib.models import load_model
from course_lib.data import load_jsonl
from course_lib.formats import IGNORE_INDEX, preference_to_conversations
from course_lib.plotting import plot_bars, plot_lines
from course_lib.world.preferences import EVASIVE, POLITE, RUDE, gold_reward, is_correct
from course_lib.generation import generate

device = course_lib.setup(seed=0)
base, tok = load_model("causal")
pref_train, pref_test = load_jsonl("preferences_train"), load_jsonl("preferences_test")
warnings.filterwarnings("ignore")  # library deprecation chatter

# %% [markdown]
# The losses and the PPO arithmetic of this chapter are written in cells that start with
# `#| export course_lib.<module>`: they are copied verbatim into `course_lib/reward_model.py`,
# `dpo.py` and `ppo.py` (`make lib`), so the code checked against TRL below, and imported by the
# tests and the exercises' checks, is the code you read here. Loading, batching, sampling and
# scoring stay in those modules (`rm.`, `dpo.`, `ppo.`).

# %% [markdown]
# ## 1 · The pipeline and the data
#
# RLHF as in InstructGPT (Ouyang et al. 2022) has three stages:
#
# | stage | input | output |
# |---|---|---|
# | 1. **SFT** | demonstrations (prompt, good answer) | a policy $\pi_{\text{SFT}}$ that answers in the right format |
# | 2. **Reward model** | comparisons (prompt, chosen, rejected) | a scalar $r_\phi(x, y)$: how much people would like answer $y$ |
# | 3. **Policy optimisation** (PPO) | prompts only, $r_\phi$, and $\pi_{\text{SFT}}$ as a frozen reference | a policy $\pi_\theta$ with high $r_\phi$ and small KL to $\pi_{\text{SFT}}$ |
#
# **DPO** (section 6) merges stages 2 and 3: it trains the policy directly on the comparisons.
#
# Each preference record holds a question, two answers, which one the annotator chose, and the gold
# reward of both (the datasheet's rule: +2 correct, −1 wrong, −0.5 evasive, +0.5 polite, −1.5 rude,
# −0.1 per word beyond 12).

# %%
pair = pref_train[5]
for key, value in pair.items():
    print(f"{key:>13}: {value}")
print("gold of a plain right answer:", gold_reward("What is 40 minus 9?", "It is 31."))
print(
    "gold of a polite wrong answer:",
    gold_reward("What is 40 minus 9?", "Sure, happy to help! It is 33."),
)

# %% [markdown]
# That record is one of the noisy ones: the annotator chose the answer with the *lower* gold reward.
# The generator flips 10 % of the labels on purpose, as real annotators disagree. So no reward model
# can agree with the labels much more than about 90 % of the time. We measure the ceiling on the
# held-out pairs:

# %%
label_vs_gold = sum(r["gold_chosen"] > r["gold_rejected"] for r in pref_test) / len(pref_test)
print(
    f"held-out pairs: {len(pref_test)}; the label agrees with the gold reward on {label_vs_gold:.1%}"
)
assert 0.85 < label_vs_gold < 0.95, "the datasheet promises about 10 % label noise"

# %% [markdown]
# ## 2 · Stage 1: the SFT policy
#
# RLHF starts from a model that already answers in the right format: PPO can only reinforce answers
# the policy sometimes samples. Our SFT data are the **chosen** answers of the training pairs
# (mostly good answers, in every style the data has), trained exactly as in chapter 08: `sft.sft_batches`,
# the course loop, 200 steps of 16, learning rate $10^{-3}$.
#
# That run, and the reward model's in section 3, take about three minutes together on a 2-core CPU, more
# than this chapter's budget. So `make rlhf-models` (`python -m course_lib.build.rlhf_models`) ran them once,
# with the code shown here, into `data/rlhf/`, and recorded what it measured in `build_info.json`. We
# load the results; rebuild them yourself to check.

# %%
print(rlhf_models.chosen_as_chat(pref_train[:1]))  # one SFT record
info = json.loads((models.RLHF_DIR / "build_info.json").read_text())
print({k: v for k, v in info.items() if k != "rm_first_losses"})
sft, _ = load_model("sft_policy")
seconds = {"SFT": info["sft_seconds"], "reward model": info["rm_seconds"]}

# %% [markdown]
# How good is a policy? We ask the gold reward: greedy answers to 100 **held-out** questions, each
# scored by `gold_reward`, averaged. (Real projects cannot do this; they use human evaluation on a
# sample.)

# %%
eval_prompts = [r["prompt"] for r in pref_test[:100]]
MAX_NEW = 20  # tokens per answer, here and in PPO


def gold_score(model) -> float:
    replies = generate(model, tok, eval_prompts, chat=True, max_new_tokens=MAX_NEW)
    return sum(gold_reward(p, y) for p, y in zip(eval_prompts, replies)) / len(replies)


gold = {"base": gold_score(base), "SFT": gold_score(sft)}
print({k: round(v, 2) for k, v in gold.items()})
print(generate(sft, tok, eval_prompts[:4], chat=True, max_new_tokens=MAX_NEW))
assert gold["SFT"] > gold["base"] + 0.2, "SFT should beat the base model on the gold reward"

# %% [markdown]
# ## 3 · Stage 2: a reward model with the Bradley–Terry loss
#
# The Bradley–Terry model (1952) says the probability that answer $y_w$ beats $y_l$ is a logistic
# function of a score difference:
#
# $$P(y_w \succ y_l \mid x) = \sigma\big(r_\phi(x, y_w) - r_\phi(x, y_l)\big), \qquad \sigma(z) = \frac{1}{1 + e^{-z}}.$$
#
# Maximising the likelihood of the annotators' choices means minimising
#
# $$\mathcal{L}_{\text{BT}}(\phi) = -\,\mathbb{E}_{(x, y_w, y_l)} \log \sigma\big(r_\phi(x, y_w) - r_\phi(x, y_l)\big).$$
#
# Only differences matter: adding a constant to every reward changes nothing. The reward model is the
# language model with its vocabulary head replaced by a one-output linear head read at the last
# token of "prompt + answer" (`AutoModelForSequenceClassification` with `num_labels=1`).
#
# In code, with `F.logsigmoid` rather than `log(sigmoid(...))`, which underflows to $\log 0$ for
# large negative margins:

# %%
#| export course_lib.reward_model
def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """−log σ(r_chosen − r_rejected), averaged: the negative log-likelihood of the choices."""
    if r_chosen.shape != r_rejected.shape:
        raise ValueError(
            f"chosen and rejected rewards must have the same shape, got "
            f"{tuple(r_chosen.shape)} and {tuple(r_rejected.shape)}"
        )
    return -F.logsigmoid(r_chosen - r_rejected).mean()


# %%
rc, rr = torch.tensor([2.0, 0.0, -1.0]), torch.tensor([0.0, 0.0, 1.0])
print("loss per pair:", (-F.logsigmoid(rc - rr)).tolist())
print("mean:", bradley_terry_loss(rc, rr).item(), "  log 2 =", torch.log(torch.tensor(2.0)).item())

# %% [markdown]
# A right order by a margin of 2 costs 0.13, a tie costs $\log 2 = 0.69$, a wrong order by 2 costs
# 2.13. A training step scores a batch of chosen and a batch of rejected answers (`rm.pair_batches`
# renders each pair with the chat template) and takes the loss of the two score vectors:

# %%
#| export course_lib.reward_model
def pair_loss(model, batch: dict) -> torch.Tensor:
    """The Bradley–Terry loss of a reward model on one batch from `pair_batches`."""
    device = next(model.parameters()).device
    r = {
        side: model(**{k: v.to(device) for k, v in batch[side].items()}).logits.squeeze(-1)
        for side in ("chosen", "rejected")
    }  # one score per answer: the head read at its last token
    return bradley_terry_loss(r["chosen"], r["rejected"])


# %% [markdown]
# `rm.train_reward_model` minimises `pair_loss` over shuffled pair batches with chapter 03's loop,
# `training.train` (AdamW, gradient clipping; here no weight decay and a constant learning rate).
#
# We start the reward model from the SFT weights (it has already read answers like these), as InstructGPT
# did: `load_model("reward", folder)` puts a fresh one-output head on them. Eight steps live, to see the loop run:
# their losses must be the ones the build recorded, or the shipped model did not come from this code and
# data.

# %%
demo_rm, _ = load_model("reward", models.RLHF_DIR / "sft_policy")
t0 = time.perf_counter()
demo_losses = rm.train_reward_model(demo_rm, tok, pref_train, steps=8)
print(f"8 steps in {time.perf_counter() - t0:.1f} s; losses", [round(x, 4) for x in demo_losses])
assert torch.allclose(
    torch.tensor(demo_losses), torch.tensor(info["rm_first_losses"]), atol=2e-3
), "the live steps should reproduce the build's first losses"
reward_model, _ = load_model("trained_reward")  # the same loop, 150 steps
print(f"shipped reward model: {info['rm_steps']} steps, final loss {info['rm_final_loss']:.3f}")

# %% [markdown]
# Two accuracies on the 500 held-out pairs: how often the reward model orders a pair like the
# **label** (what it was trained to predict, capped near 90 % by the noise) and like the **gold
# reward** (what we actually want); `rm.pair_accuracy` computes the same two numbers. A coin scores 50 %; with 500 pairs one standard deviation of a coin
# is 2.2 points.

# %%
prompts_t = [r["prompt"] for r in pref_test]
r_chosen = rm.score(reward_model, tok, prompts_t, [r["chosen"] for r in pref_test])
r_rejected = rm.score(reward_model, tok, prompts_t, [r["rejected"] for r in pref_test])
gold_order = torch.tensor([r["gold_chosen"] > r["gold_rejected"] for r in pref_test])
agrees = (r_chosen > r_rejected) == gold_order  # ordered like the gold reward
rm_acc = {
    "labels": (r_chosen > r_rejected).float().mean().item(),
    "gold": agrees.float().mean().item(),
}
print({k: round(v, 3) for k, v in rm_acc.items()})
assert rm_acc["labels"] > 0.56 and rm_acc["gold"] > 0.58, (
    "the reward model should beat a coin by > 2.5 std"
)

# %% [markdown]
# Where does it succeed? We split the held-out pairs by what makes the gold rewards differ:
# **correctness** (one answer is right, the other wrong) or **style only** (both right or both wrong;
# they differ in politeness, rudeness, length or evasion).

# %%
by_fact = torch.tensor(
    [
        is_correct(r["prompt"], r["chosen"]) != is_correct(r["prompt"], r["rejected"])
        for r in pref_test
    ]
)
split_acc = {
    "correctness pairs": agrees[by_fact].float().mean().item(),
    "style-only pairs": agrees[~by_fact].float().mean().item(),
}
print(
    {k: round(v, 3) for k, v in split_acc.items()},
    f"({by_fact.sum().item()} / {(~by_fact).sum().item()} pairs)",
)
assert split_acc["style-only pairs"] > split_acc["correctness pairs"] + 0.05, (
    "style should be the easier part"
)

# %% [markdown]
# Keep this in mind for the rest of the chapter. The reward model judges **style** (polite good, rude
# bad, evasive meh) better than **correctness**: judging correctness needs knowledge about each person
# in the world and some arithmetic, which a 2 M-parameter model trained on 2,000 comparisons has only in
# part. It is a useful reward (right far more often than a coin on both kinds of pairs) and an imperfect
# one: wrong on about one pair in three. The gold reward is dominated by correctness (+2 vs −1). An
# optimiser pushed hard against this reward model will find whatever the reward model likes, whether or
# not the gold reward agrees (section 5).

# %% [markdown]
# ### The same loss in TRL
#
# TRL's `RewardTrainer` takes the conversational preference format (`prompt`, `chosen`, `rejected`
# as message lists), stacks the chosen and rejected sequences in one batch, and in `compute_loss`
# splits the logits in two halves and takes `-logsigmoid(r_chosen - r_rejected).mean()`. We run a
# few TRL steps and check, on one of TRL's own batches, that its loss equals ours.

# %%
from datasets import Dataset
from trl import RewardConfig, RewardTrainer

trl_rm, _ = load_model("reward", models.RLHF_DIR / "sft_policy")
trl_cfg = RewardConfig(
    output_dir=tempfile.mkdtemp(),
    use_cpu=True,
    per_device_train_batch_size=32,
    max_steps=2,
    learning_rate=1e-3,
    lr_scheduler_type="constant",
    report_to=[],
    bf16=False,
    save_strategy="no",
    logging_steps=2,
    disable_tqdm=True,
)
rm_trainer = RewardTrainer(
    model=trl_rm,
    args=trl_cfg,
    processing_class=tok,
    train_dataset=Dataset.from_list([preference_to_conversations(r) for r in pref_train[:256]]),
)
t0 = time.perf_counter()
rm_trainer.train()
print(f"TRL RewardTrainer: {2} steps in {time.perf_counter() - t0:.1f} s")

# %% [markdown]
# The check: TRL's `compute_loss` on one TRL batch, and ours on the rewards of the same model for the same batch.

# %%
batch = next(iter(rm_trainer.get_train_dataloader()))
with torch.no_grad():
    theirs = rm_trainer.compute_loss(rm_trainer.model, dict(batch)).item()
    rewards = trl_rm(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
    ).logits.squeeze(-1)
    ours = bradley_terry_loss(*rewards.chunk(2)).item()  # TRL stacks [chosen; rejected]
print(f"TRL loss {theirs:.6f}, ours {ours:.6f}")
assert abs(theirs - ours) < 1e-5, "our Bradley–Terry loss should equal TRL's on TRL's batch"

# %% [markdown]
# ## 4 · Stage 3: PPO from scratch
#
# The policy $\pi_\theta$ (initialised from $\pi_{\text{SFT}}$) should maximise
#
# $$J(\theta) = \mathbb{E}_{x,\; y \sim \pi_\theta(\cdot|x)}\Big[\, r_\phi(x, y) \;-\; \beta \,\mathrm{KL}\big(\pi_\theta(\cdot|x)\,\|\,\pi_{\text{ref}}(\cdot|x)\big) \Big], \qquad \pi_{\text{ref}} = \pi_{\text{SFT}} \text{ (frozen)}.$$
#
# The KL term is the leash: the reward model was trained on answers like the SFT model's, so far
# from them its scores mean little. An answer is a sequence of actions (tokens), so PPO works per
# token $t$ of the response. With $k_t = \log \pi_\theta(y_t|\cdot) - \log \pi_{\text{ref}}(y_t|\cdot)$
# (a one-sample estimate of the KL at that token), the **per-token reward** is
#
# $$R_t = -\beta\, k_t \;+\; \mathbb{1}[t = \text{last}]\; r_\phi(x, y).$$
#
# A **value head** $V_\psi$ predicts, at each token, the reward still to come. **Generalised advantage
# estimation** (GAE, Schulman et al. 2016) turns rewards and values into advantages:
#
# $$\delta_t = R_t + \gamma V_{t+1} - V_t, \qquad A_t = \delta_t + \gamma\lambda A_{t+1}, \qquad \text{returns } G_t = A_t + V_t.$$
#
# We use $\gamma = 1$ (an answer is short) and $\lambda = 0.95$. Finally the **clipped surrogate**
# (Schulman et al. 2017) with the probability ratio $\rho_t = \pi_\theta(y_t|\cdot)/\pi_{\theta_\text{old}}(y_t|\cdot)$:
#
# $$\mathcal{L}_{\text{policy}} = \mathbb{E}_t\big[\max\big(-A_t\,\rho_t,\; -A_t\,\mathrm{clip}(\rho_t, 1-\epsilon, 1+\epsilon)\big)\big],$$
#
# so one batch of samples can be reused for a few gradient steps without moving the policy far.
#
# Now each piece in code. The per-token tensors are in the **shifted frame** `[B, T-1]`: position
# $t$ holds the token `input_ids[:, t+1]`, predicted from the tokens before it, and `mask` is 1 on
# the response tokens the policy generated (prompt and padding 0). Two helpers average and whiten
# over the response tokens only:

# %%
#| export course_lib.ppo
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


# %% [markdown]
# The per-token rewards $R_t$: the KL penalty on every response token, the score on the last one.

# %%
#| export course_lib.ppo
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


# %% [markdown]
# GAE runs backwards over the tokens. Values outside the response count as 0 (there is no reward to
# come after the answer ends), and prompt and padding positions get advantage 0:

# %%
#| export course_lib.ppo
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


# %% [markdown]
# On toy numbers, two answers of three and two tokens after a one-token prompt:

# %%
mask = torch.tensor([[0.0, 1.0, 1.0, 1.0], [0.0, 1.0, 1.0, 0.0]])  # row 2 is one token shorter
logp, ref_logp = torch.full((2, 4), -1.0), torch.full((2, 4), -1.5)
rewards, kl = kl_penalized_rewards(torch.tensor([2.0, -1.0]), logp, ref_logp, mask, kl_coef=0.1)
print("per-token rewards:\n", rewards)
advantages, returns = gae(rewards, torch.zeros(2, 4), mask, gamma=1.0, lam=0.95)
print("advantages (values 0):\n", advantages)


# %% [markdown]
# Each response token pays $0.1 \times 0.5 = 0.05$ for being more likely under the policy than
# under the reference; the score (2 or −1) arrives on the **last** response token (position 3 in row
# 1, position 2 in row 2), never on padding. With zero values, each advantage is the sum of the rewards
# from that token on, discounted by $\lambda$ per step.
#
# One PPO iteration has two halves. **Experience**: sample answers (`rollout`, temperature 1),
# score them with the **learned** reward model, and compute log-probabilities under the policy and
# the frozen reference, the per-token rewards, values and advantages (whitened, as in most
# implementations). We also record the gold reward of the same samples, only to watch.

# %%
@torch.no_grad()
def experience(policy, ref, reward_model, prompts, kl_coef: float, seed: int) -> dict:
    roll = ppo.rollout(policy, tok, prompts, max_new_tokens=MAX_NEW, seed=seed)
    ids, att, mask = roll["input_ids"], roll["attention_mask"], roll["mask"]
    scores = rm.score(reward_model, tok, prompts, roll["responses"])
    logits, values = policy(ids, att)
    logp, values = ppo.token_logprobs(logits, ids), values[:, :-1]
    ref_logits = ref(input_ids=ids, attention_mask=att, position_ids=ppo.position_ids(att)).logits
    ref_logp = ppo.token_logprobs(ref_logits, ids)
    rewards, kl = kl_penalized_rewards(scores, logp, ref_logp, mask, kl_coef)
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=0.95)
    gold_mean = sum(gold_reward(p, y) for p, y in zip(prompts, roll["responses"])) / len(prompts)
    return {
        "ids": ids,
        "att": att,
        "mask": mask,
        "old_logp": logp,
        "old_values": values,
        "adv": whiten(advantages, mask),
        "returns": returns,
        "responses": roll["responses"],
        "learned": scores.mean().item(),
        "gold": gold_mean,
        "kl": kl.sum(-1).mean().item(),
    }


# %% [markdown]
# **Update**: a few epochs over that batch, minimising the clipped policy loss plus a value loss
# that teaches the value head to predict the returns $G_t$. The value loss is clipped the same way:
# with $V^{\text{clip}}_t = V^{\text{old}}_t + \mathrm{clip}(V_t - V^{\text{old}}_t, -\epsilon, \epsilon)$,
# $\mathcal{L}_V = \tfrac12\, \mathbb{E}_t \max\big((V_t - G_t)^2, (V^{\text{clip}}_t - G_t)^2\big)$.

# %%
#| export course_lib.ppo
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


# %%
def ppo_update(policy, opt, b: dict, epochs: int = 2, vf_coef: float = 0.1) -> float:
    policy.train()
    for _ in range(epochs):
        logits, values = policy(b["ids"], b["att"])
        logp = ppo.token_logprobs(logits, b["ids"])
        pg_loss, clip_frac = policy_loss(logp, b["old_logp"], b["adv"], b["mask"], clip=0.2)
        v_loss = value_loss(values[:, :-1], b["old_values"], b["returns"], b["mask"])
        (pg_loss + vf_coef * v_loss).backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
    return clip_frac


# %% [markdown]
# The outer loop: each iteration samples fresh prompts, collects experience with the current policy, and updates. The reference is a frozen copy of the SFT model; the value head starts at zero.

# %%
train_prompts = [r["prompt"] for r in pref_train]


def ppo_train(
    kl_coef: float, iterations: int, lr: float = 1e-4, n_prompts: int = 32, seed: int = 0
):
    policy, ref = ppo.PolicyWithValue(copy.deepcopy(sft)), copy.deepcopy(sft).eval()
    opt = torch.optim.AdamW(policy.parameters(), lr=lr)
    rng, log = random.Random(seed), {"learned": [], "gold": [], "kl": []}
    for it in range(iterations):
        batch = experience(
            policy, ref, reward_model, rng.sample(train_prompts, n_prompts), kl_coef, seed=it
        )
        ppo_update(policy, opt, batch)
        for key in log:
            log[key].append(batch[key])
    return policy, log


# %% [markdown]
# We run PPO with $\beta = $ 0.1 for 30 iterations of 32 sampled answers each.

# %%
t0 = time.perf_counter()
ppo_policy, ppo_log = ppo_train(kl_coef=0.1, iterations=30)
seconds["PPO"] = time.perf_counter() - t0
gold["PPO"] = gold_score(ppo_policy.lm)
print(
    f"PPO: {seconds['PPO']:.1f} s; greedy gold on held-out questions {gold['SFT']:.2f} (SFT) → "
    f"{gold['PPO']:.2f}"
)
print(generate(ppo_policy.lm, tok, eval_prompts[:4], chat=True, max_new_tokens=MAX_NEW))
assert gold["PPO"] > gold["SFT"] + 0.3, "PPO on the learned reward should raise the gold reward"


# %% [markdown]
# Plots of the rollouts during training (moving average over 5 iterations, to see through the
# sampling noise): the learned reward the policy optimises, the gold reward it does not see, and the
# KL to the reference it pays for.

# %%
def smooth(xs, k: int = 5) -> list[float]:
    return [
        sum(xs[max(0, i - k + 1) : i + 1]) / len(xs[max(0, i - k + 1) : i + 1])
        for i in range(len(xs))
    ]


def plot_run(log: dict, title: str):
    steps = list(range(1, len(log["gold"]) + 1))
    plot_lines(
        steps,
        {"learned reward": smooth(log["learned"]), "gold reward": smooth(log["gold"])},
        title,
        "PPO iteration",
        "mean reward of the samples",
    )
    plot_lines(
        steps,
        {"KL to reference (sum over tokens)": smooth(log["kl"])},
        title,
        "PPO iteration",
        "nats",
    )


plot_run(ppo_log, f"PPO, β = {0.1}")


# %% [markdown]
# Where did the gain come from? The gold rule has two parts: correctness (+2 or −1) and style (polite
# +0.5, evasive −0.5, rude −1.5, −0.1 per word beyond 12). Profile the greedy answers of both policies:
# the share that is correct, polite, in the verbose template of the data ("Let me think about this
# question very carefully, step by step, …"), evasive or rude, and the mean length in words.

# %%
def profile(model) -> dict:
    ys = generate(model, tok, eval_prompts, chat=True, max_new_tokens=MAX_NEW)
    share = lambda words: sum(any(w in y.lower() for w in words) for y in ys) / len(ys)  # noqa: E731
    return {
        "correct": sum(is_correct(p, y) for p, y in zip(eval_prompts, ys)) / len(ys),
        "polite": share(POLITE),
        "verbose": share(["let me think"]),
        "evasive": share(EVASIVE),
        "rude": share(RUDE),
        "words": sum(len(y.split()) for y in ys) / len(ys),
    }


prof = {"SFT": profile(sft), "PPO": profile(ppo_policy.lm)}
for name, p in prof.items():
    print(f"{name:>4}: " + ", ".join(f"{k} {v:.2f}" for k, v in p.items()))
assert prof["PPO"]["verbose"] < prof["SFT"]["verbose"] - 0.3, (
    "PPO should have dropped the long template"
)
assert prof["PPO"]["correct"] > prof["SFT"]["correct"] + 0.15, (
    "answering at once should state more right answers"
)

# %% [markdown]
# The SFT policy is already polite (100 %), but its greedy answers are mostly the verbose template (90 %), whose answer would come only after some 25 words: with 20 new tokens it is cut before the answer, and even in full it pays the length penalty. Only 8 % of its answers are right. PPO, through the reward model, found the short polite form ("Sure! It is Oakhollow. Thank you for asking."): verbose 0 %, and 36 % of the answers right. Whether it *knows* more facts cannot be read from this (the SFT answers were cut before the fact); what it learned is to *state* an answer at once, which the reward model rewards (it prefers short, polite answers) and the gold reward too. The gain is a change of behaviour, which is what RLHF is good at.

# %% [markdown]
# ## 5 · Reward hacking
#
# The reward model is a proxy. Optimise a proxy hard enough and the optimiser finds where it is wrong:
# **reward hacking** (Goodhart's law; Gao et al. 2023 measure it as a function of the KL distance).
# The KL penalty is one of the brakes. We remove it ($\beta$ = 0.0) and push harder (learning rate
# 5e-4 instead of 1e-4, 30 iterations), then compare the first and the last quarter of the run.

# %%
t0 = time.perf_counter()
hack_policy, hack_log = ppo_train(kl_coef=0.0, iterations=30, lr=5e-4)
seconds["PPO, weak KL"] = time.perf_counter() - t0
plot_run(hack_log, f"PPO, β = {0.0}")
quarter = 30 // 4
mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
change = {
    k: mean(hack_log[k][-quarter:]) - mean(hack_log[k][:quarter]) for k in ("learned", "gold", "kl")
}
print({k: round(v, 2) for k, v in change.items()}, "(last quarter − first quarter)")

# %% [markdown]
# What did the gold reward of greedy answers do, and what do the answers look like now?

# %%
gold["PPO, weak KL"] = gold_score(hack_policy.lm)
peak = max(smooth(hack_log["gold"]))
print(
    f"greedy gold: {gold['PPO, weak KL']:.2f}; smoothed gold of the samples: peak {peak:.2f}, "
    f"end {smooth(hack_log['gold'])[-1]:.2f}"
)
for p, y in zip(
    eval_prompts[:4],
    generate(hack_policy.lm, tok, eval_prompts[:4], chat=True, max_new_tokens=MAX_NEW),
):
    print(f"{p!r} → {y!r}  gold {gold_reward(p, y)}")

# %% [markdown]
# The assertions of this section: the learned reward went **up** clearly (by more than half the spread
# of the reward model's scores on held-out answers, measured in section 3), the gold reward went **down**,
# and the policy drifted far from the reference.

# %%
rm_spread = r_chosen.std().item()  # spread of the reward model's scores (section 3)
kl_penalised = mean(ppo_log["kl"][-quarter:])  # the β > 0 run's KL at its end
print(
    f"learned +{change['learned']:.2f} vs threshold {0.5 * rm_spread:.2f}; gold {change['gold']:+.2f}; "
    f"KL +{change['kl']:.1f} vs threshold {2 * max(kl_penalised, 0.1):.1f}"
)
assert change["learned"] > 0.5 * rm_spread, (
    f"the learned reward should rise clearly (spread {rm_spread:.2f})"
)
assert change["gold"] < 0, "the gold reward should fall while the learned reward rises"
assert change["kl"] > 2 * max(kl_penalised, 0.1), "without the penalty the KL should run away"

# %% [markdown]
# What happened: over the run the learned reward of the samples rose by 0.45 (last quarter minus first quarter) while their gold reward fell by 0.69; the KL to the reference grew by 10.39 nats. The smoothed gold reward of the samples first rose (peak 0.30) and then fell to -0.47: early on, the unpenalised policy improved in the same direction as the penalised one; then it kept climbing the learned reward past the point where the reward model is right. The greedy answers of this policy score -0.50 on the gold reward, against 0.58 for PPO with the penalty, and read the printed answers: one string for every question, "Sure, happy to helpet The answer is 30.", polite, short, and wrong. The reward model scores this string above the policy's earlier answers (that is what the rising learned reward says), yet it is right for almost no question; the KL penalty is what kept the penalised run from going there.
#
# **How to detect it without a gold reward:** watch the KL (a fast-growing KL means the policy left
# the region the reward model knows), read samples, hold out a second reward model or a human
# evaluation on a sample, and stop when the learned reward rises but the independent judge does not.

# %% [markdown]
# ## 6 · DPO: the policy is its own reward model
#
# Rafailov et al. (2023) observed that the KL-regularised objective of section 4 has a closed-form
# optimum, $\pi^*(y|x) \propto \pi_{\text{ref}}(y|x)\, e^{r(x,y)/\beta}$. Solved for the reward:
# $r(x, y) = \beta \log \frac{\pi^*(y|x)}{\pi_{\text{ref}}(y|x)} + \beta \log Z(x)$. Put this into the
# Bradley–Terry loss: $\log Z(x)$ cancels in the difference, and what is left is a loss on the
# policy alone,
#
# $$\mathcal{L}_{\text{DPO}}(\theta) = -\,\mathbb{E}\,\log \sigma\Big(\beta \log \frac{\pi_\theta(y_w|x)}{\pi_{\text{ref}}(y_w|x)} - \beta \log \frac{\pi_\theta(y_l|x)}{\pi_{\text{ref}}(y_l|x)}\Big),$$
#
# where $\log \pi(y|x)$ sums the log-probabilities of the answer's tokens. No reward model, no
# sampling, no value head: a classification-like loss on the preference pairs. $\beta \log
# \frac{\pi_\theta}{\pi_{\text{ref}}}$ is the **implicit reward**.
#
# First $\log \pi(y|x)$. `dpo.response_batch` renders (prompt, answer) pairs with the chat template
# and labels only the answer's tokens (the rest is `IGNORE_INDEX`, as in chapter 08); the sum runs
# over the labelled tokens:

# %%
#| export course_lib.dpo
def sequence_logprobs(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """log π(response | prompt) per row: the sum of the log-probabilities of the labelled tokens."""
    missing = {"input_ids", "attention_mask", "labels"} - set(batch)
    if missing:
        raise ValueError(f"the batch lacks {sorted(missing)}; build it with response_batch()")
    device = next(model.parameters()).device
    logits = model(
        input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)
    ).logits
    labels = batch["labels"].to(device)[:, 1:]  # token t is predicted from positions < t
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    keep = labels != IGNORE_INDEX  # the answer's tokens
    token_logp = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (token_logp * keep).sum(-1)


# %% [markdown]
# Then the loss. It also returns the implicit rewards of both answers (TRL logs them too):

# %%
#| export course_lib.dpo
class DPOOutput(NamedTuple):
    """The mean DPO loss and the implicit rewards β·log(π/π_ref) of the chosen and rejected answers."""

    loss: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor


# %%
#| export course_lib.dpo
def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float = 0.1,
) -> DPOOutput:
    """The DPO loss from the four sequence log-probabilities (Rafailov et al. 2023, eq. 7)."""
    shapes = {tuple(t.shape) for t in (policy_chosen, policy_rejected, ref_chosen, ref_rejected)}
    if len(shapes) != 1:
        raise ValueError(
            f"the four log-probability tensors must have one shape, got {sorted(shapes)}"
        )
    if not beta > 0:
        raise ValueError(f"beta must be > 0 (it scales the log-ratios; typical 0.1), got {beta}")
    chosen_rewards = beta * (policy_chosen - ref_chosen)
    rejected_rewards = beta * (policy_rejected - ref_rejected)
    loss = -F.logsigmoid(chosen_rewards - rejected_rewards).mean()
    return DPOOutput(loss, chosen_rewards.detach(), rejected_rewards.detach())


# %%
few = pref_train[:4]
chosen_b = dpo.response_batch(tok, [r["prompt"] for r in few], [r["chosen"] for r in few])
rejected_b = dpo.response_batch(tok, [r["prompt"] for r in few], [r["rejected"] for r in few])
with torch.no_grad():
    lp = {
        name: (sequence_logprobs(m, chosen_b), sequence_logprobs(m, rejected_b))
        for name, m in [("policy", ppo_policy.lm), ("ref", sft)]
    }
out = dpo_loss(*lp["policy"], *lp["ref"], beta=0.1)
print(f"DPO loss of the PPO policy against the SFT reference on 4 pairs: {out.loss:.4f}")
print("implicit rewards, chosen:", out.chosen_rewards.round(decimals=3).tolist())

# %% [markdown]
# ### DPO with TRL and LoRA
#
# `DPOTrainer` with a `peft_config` trains only a LoRA adapter; the reference is the same network
# with the adapter switched off, so no second copy of the model is stored. We train from the SFT
# model on the same preference pairs.

# %%
from peft import LoraConfig
from trl import DPOConfig, DPOTrainer

dpo_cfg = DPOConfig(
    output_dir=tempfile.mkdtemp(),
    use_cpu=True,
    per_device_train_batch_size=16,
    beta=0.1,
    max_steps=30,
    learning_rate=1e-3,
    lr_scheduler_type="constant",
    max_length=128,
    bf16=False,
    report_to=[],
    save_strategy="no",
    logging_steps=30,
    disable_tqdm=True,
)
lora = LoraConfig(
    r=8,
    lora_alpha=16,
    lora_dropout=0.0,
    target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
)
dpo_trainer = DPOTrainer(
    model=copy.deepcopy(sft),
    args=dpo_cfg,
    processing_class=tok,
    peft_config=lora,
    train_dataset=Dataset.from_list([preference_to_conversations(r) for r in pref_train[:480]]),
)
t0 = time.perf_counter()
dpo_trainer.train()
seconds["DPO"] = time.perf_counter() - t0
print(f"DPO: {30} steps in {seconds['DPO']:.1f} s")

# %% [markdown]
# Now the numeric check, after training (so the policy and the reference differ): on one of TRL's
# batches, our `dpo_loss` on our own sequence log-probabilities must equal TRL's loss. TRL marks the
# answer tokens with `completion_mask`; we turn it into labels, and get the reference by disabling the
# adapter.

# %%
model = dpo_trainer.model
batch = next(iter(dpo_trainer.get_train_dataloader()))
labelled = {
    "input_ids": batch["input_ids"],
    "attention_mask": batch["attention_mask"],
    "labels": batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100),
}
with torch.no_grad():
    theirs = dpo_trainer._compute_loss(model, batch, False).item()
    policy_lp = sequence_logprobs(model, labelled)
    with model.disable_adapter():
        ref_lp = sequence_logprobs(model, labelled)
n = len(policy_lp) // 2  # TRL stacks [chosen; rejected]
ours = dpo_loss(policy_lp[:n], policy_lp[n:], ref_lp[:n], ref_lp[n:], beta=0.1).loss.item()
print(f"TRL {theirs:.6f}, ours {ours:.6f}")
assert abs(theirs - ours) < 1e-4 and abs(ours - 0.6931) > 1e-3, (
    "equal to TRL's, and not the trivial log 2"
)

# %% [markdown]
# (A detail that differs: TRL's completion mask also covers the "\n" the chat template puts after
# `<|end|>`, ours stops at `<|end|>`. On TRL's batch we use TRL's mask, so both sum the same tokens.)
#
# ## 7 · GRPO: PPO without the value head
#
# GRPO (Shao et al. 2024, *DeepSeekMath*) keeps PPO's sampling, the clipped ratio and a KL term, and
# drops the value head. For each prompt it samples a **group** of $G$ answers and uses each answer's
# reward relative to its group as the advantage of all its tokens:
#
# $$A_i = \frac{r_i - \operatorname{mean}(r_1, \dots, r_G)}{\operatorname{std}(r_1, \dots, r_G)}.$$
#
# The group mean plays the baseline that the value head played in PPO. On one group of four:

# %%
group = torch.tensor([0.9, 0.1, 0.4, 0.2])  # rewards of 4 answers to one prompt
print("advantages:", [f"{a:.3f}" for a in ((group - group.mean()) / group.std()).tolist()])

# %% [markdown]
# The best answer of the group is pushed up, the worst down, whatever the absolute level of the reward.
# TRL's `GRPOTrainer` takes reward *functions*: ours wraps the learned reward model. A second function,
# the gold reward with weight 0, is only logged, to watch (as in section 4). 10 steps of 4 prompts
# × 8 answers, β = 0.1, the learning rate of PPO, full fine-tuning of the SFT policy:

# %%
from trl import GRPOConfig, GRPOTrainer


def learned(prompts, completions, **_):  # TRL passes chats; score the last turns
    return rm.score(
        reward_model,
        tok,
        [p[-1]["content"] for p in prompts],
        [c[-1]["content"] for c in completions],
    ).tolist()


def gold_watch(prompts, completions, **_):
    return [gold_reward(p[-1]["content"], c[-1]["content"]) for p, c in zip(prompts, completions)]


grpo_cfg = GRPOConfig(
    output_dir=tempfile.mkdtemp(),
    use_cpu=True,
    bf16=False,
    per_device_train_batch_size=32,
    num_generations=8,
    max_completion_length=MAX_NEW,
    max_steps=10,
    learning_rate=1e-4,
    beta=0.1,
    reward_weights=[1.0, 0.0],
    logging_steps=5,
    report_to=[],
    save_strategy="no",
    disable_tqdm=True,
    seed=0,
)
grpo_trainer = GRPOTrainer(
    model=copy.deepcopy(sft),
    reward_funcs=[learned, gold_watch],
    args=grpo_cfg,
    processing_class=tok,
    train_dataset=Dataset.from_list(
        [{"prompt": [{"role": "user", "content": p}]} for p in train_prompts[:400]]
    ),
)

# %%
t0 = time.perf_counter()
grpo_trainer.train()
seconds["GRPO"] = time.perf_counter() - t0
grpo_policy = grpo_trainer.model.eval()
gold["GRPO"] = gold_score(grpo_policy)
print(
    f"GRPO: {10} steps in {seconds['GRPO']:.1f} s; greedy gold {gold['SFT']:.2f} (SFT) → {gold['GRPO']:.2f}"
)
print(generate(grpo_policy, tok, eval_prompts[:3], chat=True, max_new_tokens=MAX_NEW))
assert gold["GRPO"] > gold["SFT"] + 0.3, (
    "GRPO on the learned reward should raise the gold reward too"
)

# %% [markdown]
# GRPO reached a gold reward of 0.61 (PPO: 0.58) at a KL of 0.44 nats (PPO: 2.19) in 5 s, with 10 updates on 32 sampled answers each, where our PPO made 30 iterations of 32 answers and two epochs; the answers took the same short polite form. Without a value head there is one model fewer to train and to hold in memory, and no value estimate to get wrong; the price is several samples per prompt. With a reward that can be computed, such as a verifier of answers, this is the method DeepSeek used for reasoning (Shao et al. 2024; DeepSeek-R1, 2025). One seed here; with a second seed GRPO reached 0.67 in the maintainer's run.
#
# ## 8 · PPO, DPO and GRPO side by side
#
# Besides the gold reward we measure how far each policy moved from the SFT reference: the KL
# $\mathbb{E}_{y \sim \pi}\big[\sum_t \log \pi(y_t|\cdot) - \log \pi_{\text{ref}}(y_t|\cdot)\big]$, estimated on
# answers sampled from the policy for the 100 held-out questions.

# %%
dpo_policy = dpo_trainer.model.merge_and_unload().eval()
gold["DPO"] = gold_score(dpo_policy)


@torch.no_grad()
def kl_to_sft(model) -> float:
    roll = ppo.rollout(model, tok, eval_prompts, max_new_tokens=MAX_NEW, seed=123)
    ids, att, mask = roll["input_ids"], roll["attention_mask"], roll["mask"]
    logps = [
        ppo.token_logprobs(
            m(input_ids=ids, attention_mask=att, position_ids=ppo.position_ids(att)).logits, ids
        )
        for m in (model, sft)
    ]
    return (((logps[0] - logps[1]) * mask).sum(-1)).mean().item()


kl = {
    "PPO": kl_to_sft(ppo_policy.lm),
    "PPO, weak KL": kl_to_sft(hack_policy.lm),
    "DPO": kl_to_sft(dpo_policy),
    "GRPO": kl_to_sft(grpo_policy),
}

# %% [markdown]
# The table, and the gold reward of all policies in one plot:

# %%
print(f"{'':>14} {'gold':>6} {'KL':>6} {'seconds':>8}")
for name in ("SFT", "PPO", "PPO, weak KL", "DPO", "GRPO"):
    print(f"{name:>14} {gold[name]:6.2f} {kl.get(name, 0.0):6.2f} {seconds.get(name, 0.0):8.1f}")
plot_bars(
    {k: gold[k] for k in ("base", "SFT", "PPO", "PPO, weak KL", "DPO", "GRPO")},
    "Gold reward of greedy answers to 100 held-out questions",
    "mean gold reward",
)
assert gold["DPO"] > gold["SFT"] + 0.2, "DPO should raise the gold reward too"

# %% [markdown]
# Measured here: PPO (β = 0.1) reached a gold reward of 0.58 at a KL of 2.19 nats in 21 s, plus 114 s to train the reward model; DPO reached 0.67, a higher gold reward, at a KL of 13.24 nats in 27 s, with no reward model at all. So on this task DPO is the cheaper way to a similar gold reward, but it moved much further from the reference: its only leash is β inside the loss, on the pairs, and nothing measures the drift on the policy's own answers during training, where PPO pays the KL on every sample. (One run each, one seed: the gold rewards are not significantly different; the KL gap is large.) PPO's strengths show when the reward is a function that can score new samples, such as unit tests or a verifier, better than the pairs can.
#
# | | PPO (RLHF) | DPO |
# |---|---|---|
# | models in memory | policy, value head, reference, reward model | policy, reference (or LoRA off) |
# | data | prompts + a reward model trained on pairs | the pairs themselves |
# | sampling during training | yes (slow, most of PPO's time) | no |
# | hyperparameters | many (β, clip, λ, γ, epochs, batch, value coef) | β, lr |
# | can use a reward it did not see as pairs | yes (any scorer, e.g. unit tests, a verifier) | no (only offline pairs) |
# | explores beyond the data | yes (on-policy samples) | no (offline) |

# %% [markdown]
# ## Summary
#
# * RLHF = SFT → reward model (Bradley–Terry on preference pairs) → policy optimisation against the
#   reward model, with a KL penalty to the SFT reference.
# * Our reward model orders 66 % of held-out pairs like the labels and 71 % like the gold
#   reward; it judges style (77 % of style-only pairs) better than correctness (66 % of correctness pairs).
# * PPO from scratch (rollouts, per-token KL-penalised rewards, GAE, clipped ratio, value loss) on the
#   **learned** reward raised the gold reward of greedy answers from -0.26 to 0.58.
# * Without the KL penalty and with a larger learning rate, the learned reward kept rising while the gold
#   reward fell: reward hacking, visible in the plots, in the KL and in the answers (every question answered "Sure, happy to helpet The answer is 30.").
# * DPO optimises the same objective in closed form from the pairs; our loss equals TRL's; with LoRA it
#   reached 0.67 in 27 s without sampling, at a much larger KL than PPO.
# * GRPO (TRL's `GRPOTrainer`: group-relative advantages, no value head) on the same learned reward reached
#   0.61 in 5 s.

# %% [markdown]
# ## Quiz
#
# 1. Why does the Bradley–Terry loss only depend on reward differences, and what does that imply for the scale of a reward model's outputs?
# <details><summary>Answer</summary>σ(r_w − r_l) is unchanged by adding a constant to every reward, so the reward model's offset is arbitrary (often normalised afterwards); only the ordering and the gaps carry information.</details>
#
# 2. On which token does the reward model's score enter the PPO rewards, and what do the other response tokens receive?
# <details><summary>Answer</summary>On the last response token (the end-of-turn token if the answer ended). Every response token gets −β·(log π − log π_ref); padding gets nothing.</details>
#
# 3. What does the clip in PPO's objective prevent?
# <details><summary>Answer</summary>Once the probability ratio leaves [1−ε, 1+ε] in the direction the advantage favours, the gradient is zero, so several epochs on one batch of samples cannot move the policy far from the policy that generated them.</details>
#
# 4. Why does DPO need no reward model?
# <details><summary>Answer</summary>The optimum of the KL-regularised objective ties the reward to β·log(π/π_ref) plus a prompt-only term that cancels in the Bradley–Terry difference; the policy's own log-ratios play the reward model.</details>
#
# 5. How would you notice reward hacking without a gold reward?
# <details><summary>Answer</summary>The learned reward rises while an independent judge (humans on a sample, a held-out reward model) does not; the KL to the reference grows fast; the samples show a repeated trick (here: a style the reward model overrates).</details>

# %% [markdown]
# ## Interview questions
#
# * What is RLHF, and what does each of its three stages produce?
# * Why is there a KL penalty to the reference model in RLHF? What happens without it?
# * Compare PPO and DPO: data, models in memory, cost, what each can and cannot do.
# * What is reward hacking, and how do you detect and limit it?
#
# Answers, with this chapter's numbers, and the exercises are in
# [the exercises notebook](../exercises/09_rlhf_exercises.ipynb).
