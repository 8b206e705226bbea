# %% [markdown]
# # 09 · RLHF: reward models, PPO, DPO and GRPO
#
# **Measured runtime:** 74 s on a 2-core CPU (`make execute`; your machine may differ).
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
# 3. write PPO for a language model from scratch: rollouts, a per-token KL penalty to a frozen reference, advantages from a value baseline, the clipped ratio objective, and a penalty for answers cut before their end;
# 4. detect reward hacking, and separate its causes with a 2 × 2 ablation (KL coefficient × learning rate) over three seeds;
# 5. derive and check the DPO loss against TRL and watch its likelihood displacement; write down GRPO's objective and run TRL's `GRPOTrainer`;
# 6. compare PPO, DPO and GRPO at matched data and compute, on the gold reward of greedy **and** sampled answers, KL and time, with intervals over three seeds.
#
# **Prerequisites:** chapters 02 (intervals), 03 (training loop), 04 (LoRA) and 08 (instruction tuning, response masking).

# %%
import copy
import json
import random
import tempfile
import time
import warnings
from typing import NamedTuple
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
import course_lib
from course_lib import dpo, models, reward_model as rm, sweeps, uncertainty
from course_lib.build import rlhf_models, sweeps_rlhf as rlhf
from course_lib.data import load_jsonl
from course_lib.dpo import response_batch
from course_lib.formats import IGNORE_INDEX, preference_to_conversations
from course_lib.generation import continue_batch
from course_lib.models import load_model
from course_lib.plotting import plot_lines
from course_lib.ppo import PolicyWithValue, position_ids, rollout, token_logprobs
from course_lib.world.preferences import EVASIVE, POLITE, RUDE, gold_reward, is_correct

device = course_lib.setup(seed=0)
base, tok = load_model("causal")
pref_train, pref_test = load_jsonl("preferences_train"), load_jsonl("preferences_test")
warnings.filterwarnings("ignore")  # library deprecation chatter

# %% [markdown]
# The losses and the PPO arithmetic of this chapter are written in cells that start with
# `#| export course_lib.<module>`: they are copied verbatim into `course_lib/reward_model.py`,
# `dpo.py` and `ppo.py` (`make lib`), so the code checked against TRL below, imported by the
# tests, the exercises' checks and the seed sweeps, is the code you read here. Loading, batching and
# sampling stay in those modules (`rm.`, `dpo.`, `ppo.`).
#
# **How the comparisons are made.** Every number that compares methods comes from three seeds, with
# a 95 % interval; a difference is claimed only when the interval of the difference excludes zero
# (`course_lib.uncertainty`). Three seeds of every method do not fit this chapter's time budget, so
# they are shipped as **seed sweeps** (`data/sweeps/rlhf_methods.json` and `rlhf_hacking.json`,
# rebuilt by `make sweep NAME=...` with the code in `course_lib.build.sweeps_rlhf`); this notebook
# runs seed 0 of SFT and PPO live and places them among the shipped seeds (DPO and GRPO run a few
# steps live, to be checked against TRL; their seeds are in the sweeps).

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
# ### What SFT will imitate, and what we evaluate on
#
# The SFT stage below trains on the **chosen** answer of every training pair. "Chosen" means
# "better than the other one", not "good": a rude answer can beat a wrong one. Profile them:

# %%
def style(answer: str) -> str:
    text = answer.lower()
    for name, words in (("rude", RUDE), ("evasive", EVASIVE)):
        if any(w in text for w in words):
            return name
    return "verbose template" if "let me think" in text else "other"


kinds = [style(r["chosen"]) for r in pref_train]
demo_share = {k: kinds.count(k) / len(kinds) for k in ("rude", "evasive", "verbose template")}
negative = sum(r["gold_chosen"] < 0 for r in pref_train) / len(pref_train)
print({k: f"{v:.0%}" for k, v in demo_share.items()}, f"| gold reward < 0: {negative:.0%}")
assert demo_share["rude"] > 0.1 and demo_share["evasive"] > 0.05, "the demonstrations are mixed"

# %% [markdown]
# InstructGPT's demonstrations were written by labellers, not picked from comparisons; the closest
# recipe here would keep only chosen answers with gold ≥ 0 (`rlhf_models.chosen_as_chat(pairs,
# min_gold=0)`). The shipped SFT policy was trained on **all** chosen answers, and we keep it:
# chapters 10 and 12 build on the same checkpoint, and its flaws are what this chapter's RL stage
# visibly repairs. So read the gains below as "RLHF from a mediocre SFT model": part of every gain is
# unlearning demonstrations that should not have been imitated (the verbose template above becomes
# the SFT model's favourite answer, section 2).
#
# The second check is on the evaluation questions. Many test pairs ask a question that also occurs
# among the training pairs (the pairs differ, the question does not): scoring a policy on those would
# measure recall of trained questions. We evaluate on distinct test questions that occur nowhere in
# training (`rlhf.eval_prompts`):

# %%
train_questions = {r["prompt"] for r in pref_train}
overlap = sum(r["prompt"] in train_questions for r in pref_test) / len(pref_test)
eval_prompts = rlhf.eval_prompts()  # the first 100 distinct test questions absent from training
print(f"test pairs whose question occurs in training: {overlap:.0%}")
in_training = len(train_questions & set(eval_prompts))
print(f"evaluation questions: {len(eval_prompts)}, of which in training: {in_training}")
assert overlap > 0.2 and not train_questions & set(eval_prompts)

# %% [markdown]
# ## 2 · Stage 1: the SFT policy
#
# RLHF starts from a model that already answers in the right format: PPO can only reinforce answers
# the policy sometimes samples. Our SFT data are the chosen answers of the training pairs, trained
# exactly as in chapter 08: `sft.sft_batches`, the course loop, 200 steps of 16, learning rate $10^{-3}$.
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

# %% [markdown]
# How good is a policy? We ask the gold reward (real projects cannot; they use human evaluation on a
# sample), in two ways, because they can disagree:
# * **greedy**: the policy's single most likely answer to each question, its *mode*. One change of
#   behaviour (say, dropping a long preamble) can flip the mode of every question at once;
# * **sampled** (temperature 1): one answer drawn from the policy per question, what PPO trains on.
#   Its mean is the expected gold reward of the policy's *distribution*, which moves only when much
#   of the probability moves.
#
# **Truncation.** An answer needs room to end. The longest training answer has 98 tokens (the
# verbose template), so we evaluate with `EVAL_NEW` = 100 new tokens: the template completes and
# pays its length penalty instead of being cut before it (a 20-token budget used to hide exactly
# that). An answer that still has no end-of-turn token is not scored as complete: it loses
# `MISSING_EOS_PENALTY` (as TRL's `missing_eos_penalty` does), here and in training, where samples
# are shorter (`MAX_NEW` = 24 tokens). We also report the share of answers cut. Mind what the short
# training budget does: the verbose template (98 tokens) cannot end within 24, so in PPO's and
# GRPO's training every verbose sample pays the penalty, and part of what they learn is simply to
# end early. The evaluation, at 100 tokens, does not penalise a template that completes; part of
# the gain over SFT measured below is that lesson, not a better answer.

# %%
#| export course_lib.ppo
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


# %%
#| export course_lib.ppo
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


# %%
MAX_NEW, EVAL_NEW = rlhf.MAX_NEW, rlhf.EVAL_NEW  # tokens per training sample, per evaluated answer
live = {"SFT": evaluate_policy(sft, sft, tok, eval_prompts, EVAL_NEW, seed=0, texts=True)}
print({k: round(v, 3) for k, v in live["SFT"].items() if k != "answers"})
print(live["SFT"]["answers"][:2])
methods = sweeps.load("rlhf_methods")  # the shipped seeds (section 8)
print(sweeps.place(live["SFT"]["gold_sampled"], methods, "SFT", "gold_sampled"))

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
# One PPO iteration has two halves. **Experience**: sample answers (`rollout`, temperature 1, at most
# `MAX_NEW` tokens), score them with the **learned** reward model, and compute log-probabilities under
# the policy and the frozen reference, the per-token rewards, values and advantages (whitened, as in
# most implementations). A sample that ran out of tokens before its end-of-turn token is not a
# complete answer, yet the reward model would score it as one (`rm.score` renders it with the chat
# template, which closes the turn): it loses `MISSING_EOS_PENALTY`. We also record the gold reward of
# the same samples (same rule), only to watch.

# %%
#| export course_lib.ppo
def watched_gold(prompts: list[str], roll: dict) -> float:
    """Mean gold reward of a rollout's answers, −MISSING_EOS_PENALTY where cut (only to watch)."""
    gold = torch.tensor([gold_reward(p, y) for p, y in zip(prompts, roll["responses"])])
    return (gold - MISSING_EOS_PENALTY * (~roll["ended"]).float()).mean().item()


# %%
#| export course_lib.ppo
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
#| export course_lib.ppo
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


# %% [markdown]
# The outer loop: each iteration samples fresh prompts, collects experience with the current policy,
# and updates. The reference is a frozen copy of the SFT model; the value head starts at zero.

# %%
#| export course_lib.ppo
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


# %% [markdown]
# We run PPO with $\beta = 0.1$ and learning rate $10^{-4}$ for 30 iterations of 32 sampled answers
# (2 epochs each: 60 AdamW steps), seed 0. Seeds 0, 1 and 2 of the same run are shipped in
# `rlhf_methods`; the live run must land among them.

# %%
train_prompts = [r["prompt"] for r in pref_train]
t0 = time.perf_counter()
ppo_policy, ppo_log = ppo_train(
    sft, reward_model, tok, train_prompts, rlhf.BETA, rlhf.BATCHES, rlhf.LR, 32, MAX_NEW, seed=0
)
seconds = {"PPO": time.perf_counter() - t0}
live["PPO"] = evaluate_policy(ppo_policy.lm, sft, tok, eval_prompts, EVAL_NEW, seed=0, texts=True)
numbers = {k: round(v, 3) for k, v in live["PPO"].items() if k != "answers"}
print(f"PPO: {seconds['PPO']:.1f} s;", numbers)
for key in ("gold_greedy", "gold_sampled"):
    print(sweeps.place(live["PPO"][key], methods, "PPO", key))
print(live["PPO"]["answers"][:3])

# %% [markdown]
# Plots of the rollouts during training (moving average over 5 iterations, to see through the
# sampling noise): the learned reward the policy optimises, the gold reward it does not see, the
# share of samples cut, and the KL to the reference it pays for.

# %%
def smooth(xs, k: int = 5) -> list[float]:
    return [
        sum(xs[max(0, i - k + 1) : i + 1]) / len(xs[max(0, i - k + 1) : i + 1])
        for i in range(len(xs))
    ]


def plot_run(log: dict, title: str):
    steps = list(range(1, len(log["gold"]) + 1))
    curves = {"learned reward": smooth(log["learned"]), "gold reward": smooth(log["gold"])}
    curves["share of samples cut"] = smooth(log["truncated"])
    plot_lines(steps, curves, title, "PPO iteration", "mean over the samples")
    kl_curve = {"KL to reference (sum over tokens)": smooth(log["kl"])}
    plot_lines(steps, kl_curve, title, "PPO iteration", "nats")


plot_run(ppo_log, f"PPO, β = {rlhf.BETA}, lr = {rlhf.LR}")

# %% [markdown]
# Where did the gain come from? The gold rule has two parts: correctness (+2 or −1) and style (polite
# +0.5, evasive −0.5, rude −1.5, −0.1 per word beyond 12). Profile the greedy answers of both policies:
# the share that is correct, polite, in the verbose template, evasive or rude, and the mean length in
# words.

# %%
def profile(answers: list[str]) -> dict:
    def share(words) -> float:
        return sum(any(w in y.lower() for w in words) for y in answers) / len(answers)

    return {
        "correct": sum(is_correct(p, y) for p, y in zip(eval_prompts, answers)) / len(answers),
        "polite": share(POLITE),
        "verbose": share(["let me think"]),
        "evasive": share(EVASIVE),
        "rude": share(RUDE),
        "words": sum(len(y.split()) for y in answers) / len(answers),
    }


prof = {name: profile(live[name]["answers"]) for name in ("SFT", "PPO")}
for name, p in prof.items():
    print(f"{name:>4}: " + ", ".join(f"{k} {v:.2f}" for k, v in p.items()))
assert prof["PPO"]["verbose"] < prof["SFT"]["verbose"] - 0.3, "PPO should have dropped the template"

# %%
print(
    f"SFT: {prof['SFT']['verbose']:.0%} of greedy answers are the verbose template, "
    f"{prof['SFT']['correct']:.0%} correct, {prof['SFT']['words']:.0f} words on average; "
    f"PPO: {prof['PPO']['verbose']:.0%} verbose, {prof['PPO']['correct']:.0%} correct, "
    f"{prof['PPO']['words']:.0f} words"
)

# %% [markdown]
# The SFT model's favourite answer is the verbose template it imitated: polite, long (it pays the
# length penalty in full now that it can finish), and with the fact at the very end. PPO, through
# the reward model, moved the mode to a short polite form ("Sure! It is Oakhollow. Thank you for
# asking."). Whether the policy *knows* more facts cannot be read from this; what it learned is to
# state an answer at once, which the reward model and the gold reward both like. This is one
# behavioural flip, and it moves the greedy answers of almost every question at once: that is why
# the greedy gain is much larger than the sampled gain (compare the two in the table of section 8).

# %% [markdown]
# ## 5 · Reward hacking
#
# The reward model is a proxy. Optimise a proxy hard enough and the optimiser finds where it is wrong:
# **reward hacking** (Goodhart's law; Gao et al. 2023 measure it as a function of the KL distance).
# Two knobs set how hard PPO pushes: the KL coefficient $\beta$ (the leash) and the learning rate
# (the step). To tell their effects apart we change **one at a time** from the run above
# ($\beta = 0.1$, lr $10^{-4}$): $\beta = 0$ alone, lr $5 \times 10^{-4}$ alone, and both; a full
# 2 × 2, three seeds per cell, shipped as `rlhf_hacking` (its $\beta = 0.1$, lr $10^{-4}$ corner is
# `rlhf_methods`' PPO arm). For each cell: the learned and the gold reward of the training samples in
# the last quarter of training minus the first quarter, the KL at the end, and the gold reward of the
# final policy's greedy and sampled answers.

# %%
hack = sweeps.load("rlhf_hacking")
cells = {"β 0.1, lr 1e-4": (methods, "PPO")} | {a: (hack, a) for a in hack["arms"] if a[0] == "β"}


def cell(arm: str, metric: str) -> list[float]:
    record, name = cells[arm]
    if metric.startswith("Δ"):  # last quarter minus first quarter, per seed
        last, first = (sweeps.values(record, name, f"{metric[1:]}_{q}") for q in ("last", "first"))
        return [b - a for a, b in zip(first, last)]
    return sweeps.values(record, name, metric)


columns = ("Δlearned", "Δgold", "kl_last", "gold_greedy", "gold_sampled")
print(f"{'cell':>16} " + " ".join(f"{c:>14}" for c in columns))
for arm in cells:
    row = [uncertainty.spread(cell(arm, c)) for c in columns]
    print(f"{arm:>16} " + " ".join(f"{s.mean:7.2f} ± {s.sd:4.2f}" for s in row))

# %% [markdown]
# Each factor's effect, with the other held fixed, on the gold reward of the final policy's sampled
# answers and on the KL (Welch intervals over the three seeds of each cell):

# %%
effects = {
    "β 0.1 → 0 at lr 1e-4": ("β 0, lr 1e-4", "β 0.1, lr 1e-4"),
    "β 0.1 → 0 at lr 5e-4": ("β 0, lr 5e-4", "β 0.1, lr 5e-4"),
    "lr 1e-4 → 5e-4 at β 0.1": ("β 0.1, lr 5e-4", "β 0.1, lr 1e-4"),
    "lr 1e-4 → 5e-4 at β 0": ("β 0, lr 5e-4", "β 0, lr 1e-4"),
}
for name, (a, b) in effects.items():
    for metric in ("gold_sampled", "kl_last"):
        sentence = uncertainty.verdict(cell(a, metric), cell(b, metric), ("after", "before"))
        print(f"{name:>24}, {metric:>12}: {sentence}")
worst = min(cells, key=lambda a: uncertainty.spread(cell(a, "gold_sampled")).mean)
print("lowest gold of sampled answers:", worst)

# %%
runaway = "β 0, lr 5e-4"
others = [a for a in cells if a != runaway]
kl_others = max(max(cell(a, "kl_last")) for a in others)
kl_runaway = min(cell(runaway, "kl_last"))
print(f"KL at the end: {runaway} ≥ {kl_runaway:.1f} nats in every seed; others ≤ {kl_others:.1f}")
assert kl_runaway > 2 * kl_others, "without a leash and with big steps the KL runs away"
assert all(d > 0 for d in cell(runaway, "Δlearned")), "the learned reward rises in every seed"
gold_rise = {a: uncertainty.spread(cell(a, "Δgold")).mean for a in cells}
assert gold_rise[runaway] < min(gold_rise[a] for a in others) - 0.2, "its samples stop gaining gold"

# %% [markdown]
# What the 2 × 2 shows, read from the printed table and verdicts:
# * Only the corner with **both** changes (β = 0 *and* the 5× learning rate) ran away: its KL to the
#   reference grew to tens of nats in every seed, its learned reward kept rising, and the gold reward
#   of its samples stopped rising (the smallest Δgold of the four cells), ending with the lowest
#   gold of the four policies. That is reward hacking: the policy climbs the proxy where the proxy is
#   wrong.
# * **Either change alone did not produce it within 30 iterations**: β = 0 at the small learning rate
#   drifted further than the penalised run but still improved the gold reward, and the large
#   learning rate with the penalty raised the KL (its verdict above says by how much, beyond the
#   noise) but stayed far below the runaway corner and kept gaining gold. So the earlier sentence "the
#   KL penalty is what kept the penalised run from going there" was not supported: at our budget the
#   runaway needs both the missing leash and the large steps. With more iterations β = 0 alone
#   would drift further (nothing pulls it back), which is why the KL is watched in every RLHF run.
# * Where a verdict above says "within noise", three seeds do not separate the two cells on that
#   metric; the seeds of the runaway cell differ a lot from one another (the KL ranges over a factor
#   of several), which is itself typical of unregularised policy optimisation.

# %% [markdown]
# ### How to detect it without a gold reward
#
# Watch the KL (a fast-growing KL means the policy left
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
# with the adapter switched off, so no second copy of the model is stored. A few steps from the SFT
# model are enough for the check that follows (the policy must differ from its reference).

# %%
from peft import LoraConfig
from trl import DPOConfig, DPOTrainer

dpo_cfg = DPOConfig(
    output_dir=tempfile.mkdtemp(),
    use_cpu=True,
    per_device_train_batch_size=16,
    beta=0.1,
    max_steps=6,
    learning_rate=1e-3,
    lr_scheduler_type="constant",
    max_length=128,
    bf16=False,
    report_to=[],
    save_strategy="no",
    logging_steps=6,
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
    train_dataset=Dataset.from_list([preference_to_conversations(r) for r in pref_train[:96]]),
)
dpo_trainer.train();

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
# ### DPO at the matched budget, and likelihood displacement
#
# For the comparison of section 8, DPO trains like PPO: all weights, AdamW at lr $10^{-4}$, $\beta =
# 0.1$, 60 steps over 30 batches of 32 answers, here 480 pairs (960 offline answers) in batches of 16
# pairs, 2 epochs. The loop logs, per step, the batch's mean $\log \pi_\theta(y|x) - \log
# \pi_{\text{ref}}(y|x)$ of the chosen and of the rejected answers (TRL logs the same, times β, as
# `rewards/chosen` and `rewards/rejected`):

# %%
#| export course_lib.dpo
def dpo_batch_loss(policy, ref, tok, batch: list[dict], beta: float):
    """DPO loss of one batch of preference rows (prompt, chosen, rejected), reference frozen."""
    prompts = [r["prompt"] for r in batch]
    b = [response_batch(tok, prompts, [r[side] for r in batch]) for side in ("chosen", "rejected")]
    with torch.no_grad():
        ref_lp = [sequence_logprobs(ref, x) for x in b]
    return dpo_loss(*[sequence_logprobs(policy, x) for x in b], *ref_lp, beta=beta)


# %%
#| export course_lib.dpo
def train_dpo(sft, tok, pairs, steps: int, batch_size=16, lr=1e-4, beta=0.1, seed=0):
    """DPO from a copy of `sft` (all weights, AdamW, clip 1.0) on shuffled pairs; logs per step
    the loss and the mean log π − log π_ref of chosen and rejected answers."""
    torch.manual_seed(seed)
    policy, ref = copy.deepcopy(sft).train(), copy.deepcopy(sft).eval()
    opt = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=0.0)
    rng, order, log = random.Random(seed), [], {"loss": [], "chosen": [], "rejected": []}
    for _ in range(steps):
        if len(order) < batch_size:  # a new epoch: a new shuffle
            order = rng.sample(range(len(pairs)), len(pairs))
        batch, order = [pairs[j] for j in order[:batch_size]], order[batch_size:]
        out = dpo_batch_loss(policy, ref, tok, batch, beta)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        log["loss"].append(out.loss.item())
        log["chosen"].append(out.chosen_rewards.mean().item() / beta)
        log["rejected"].append(out.rejected_rewards.mean().item() / beta)
    return policy.eval(), log


# %%
demo_policy, demo_log = train_dpo(sft, tok, pref_train[:64], 4, 16, rlhf.LR, rlhf.BETA, seed=0)
print({k: [round(x, 3) for x in v] for k, v in demo_log.items()})

# %% [markdown]
# Four steps show the mechanics: the loss starts at $\log 2$, where policy and reference agree. The
# full run (480 pairs, 60 steps, three seeds) is in the sweep `rlhf_methods`, with the curve of both
# log-ratios averaged over windows of 5 steps; a live run would not fit this notebook's budget next
# to PPO's. Mean over the seeds, ± one sd:

# %%
windows = sorted({k.split("_w")[1] for k in methods["results"]["DPO"]["0"] if "_w" in k})
x = [rlhf.DPO_WINDOW * (int(w) + 1) for w in windows]
fig, ax = plt.subplots(figsize=(6.4, 3.6))
for side in ("chosen", "rejected"):
    spreads = [uncertainty.spread(sweeps.values(methods, "DPO", f"{side}_w{w}")) for w in windows]
    ax.errorbar(x, [p.mean for p in spreads], yerr=[p.sd for p in spreads], capsize=3, label=side)
ax.axhline(0, color="grey", lw=0.5)
ax.set_xlabel("DPO step (end of a 5-step window)")
ax.set_ylabel("log π − log π_ref (nats, batch mean)")
ax.set_title("DPO on the training pairs: 3 seeds, mean ± sd")
ax.legend()
plt.show()
displacement = {
    side: uncertainty.spread(sweeps.values(methods, "DPO", f"{side}_w{windows[-1]}"))
    for side in ("chosen", "rejected")
}
print({k: str(v) for k, v in displacement.items()}, "(the last window)")

# %%
fell = {side: displacement[side].mean < 0 for side in ("chosen", "rejected")}
print(
    f"over training the chosen answers' log-probability {'fell' if fell['chosen'] else 'rose'}, "
    f"the rejected answers' {'fell' if fell['rejected'] else 'rose'}; the margin grew by "
    f"{displacement['chosen'].mean - displacement['rejected'].mean:.1f} nats"
)
assert displacement["chosen"].mean > displacement["rejected"].mean + 1, "the margin must grow"

# %% [markdown]
# The DPO loss only asks the **margin** between chosen and rejected answers to grow; nothing in it
# keeps the chosen answers' own probability up. On these pairs the rejected answers' log-probability
# falls much faster than the chosen ones' moves (printed above), and when the chosen answers fall
# too, the probability mass goes to answers that are in **neither** set. This is DPO's **likelihood
# displacement** (Razin et al. 2025; Pal et al. 2024 propose DPOP, a penalty that keeps the chosen
# log-probability from falling): it is why DPO's policy can drift far from the reference on its
# own samples although β is the same as PPO's (the KL column of section 8), and why "the rewards of
# the chosen answers went down" in a DPO log is not a bug.

# %% [markdown]
# ## 7 · GRPO: PPO without the value head
#
# GRPO (Shao et al. 2024, *DeepSeekMath*) keeps PPO's sampling and clipped ratio, drops the value
# head, and moves the KL term. For each prompt $x$ it samples a **group** of $G$ answers
# $y_1, \dots, y_G$ from the current policy $\pi_{\text{old}}$, scores them, and gives every token of
# answer $i$ the same **group-relative advantage**
#
# $$\hat A_i = \frac{r_i - \operatorname{mean}(r_1, \dots, r_G)}{\operatorname{std}(r_1, \dots, r_G)}.$$
#
# The group mean plays the baseline that the value head played in PPO. The objective, to maximise,
# with the per-token ratio $\rho_{i,t} = \pi_\theta(y_{i,t}|\cdot)/\pi_{\text{old}}(y_{i,t}|\cdot)$:
#
# $$J_{\text{GRPO}}(\theta) = \mathbb{E}\Big[\frac{1}{G}\sum_{i=1}^{G} \frac{1}{|y_i|}\sum_{t=1}^{|y_i|}
# \Big(\min\big(\rho_{i,t}\hat A_i,\; \mathrm{clip}(\rho_{i,t}, 1-\epsilon, 1+\epsilon)\,\hat A_i\big)
# - \beta\, \hat D_{i,t}\Big)\Big], \qquad
# \hat D_{i,t} = \frac{\pi_{\text{ref}}}{\pi_\theta} - \log\frac{\pi_{\text{ref}}}{\pi_\theta} - 1 .$$
#
# Two differences from our PPO matter for reading the comparison:
# * **where the KL goes.** Our PPO (like InstructGPT) puts the one-sample estimate
#   $k_1 = \log\pi_\theta - \log\pi_{\text{ref}}$ into the **reward**, token by token, so it reaches
#   the policy through the advantages. GRPO adds the **k3** estimator $\hat D$ (Schulman's "approximating
#   KL" note) to the **loss**, where it has its own gradient. k3 is never negative and has lower variance
#   than k1; both estimate the same KL on samples from $\pi_\theta$. So "β = 0.1" names two different
#   regularisers in the PPO and GRPO rows below.
# * **how tokens are averaged.** The formula averages each answer over its own length, then over the
#   group. TRL now defaults to other choices (printed below), because of known biases: dividing by
#   $|y_i|$ favours short right answers and long wrong ones, and dividing by the group's std gives
#   questions whose answers all score alike (too easy or too hard) the largest weights (Dr. GRPO,
#   Liu et al. 2025). DAPO (Yu et al. 2025) averages over all tokens of the batch, clips the ratio
#   higher above than below ("clip-higher", $\epsilon_{\text{high}} = 0.28$), drops groups whose rewards
#   are all equal (they carry no signal: TRL logs their share as `frac_reward_zero_std`) and masks or
#   shapes over-long answers.
#
# On one group of four:

# %%
group = torch.tensor([0.9, 0.1, 0.4, 0.2])  # rewards of 4 answers to one prompt
print("advantages:", [f"{a:.3f}" for a in ((group - group.mean()) / group.std()).tolist()])

# %% [markdown]
# The best answer of the group is pushed up, the worst down, whatever the absolute level of the
# reward (chapter 14's exercises 14.1 and 14.2 build the group advantage and GRPO's per-token loss
# with the k3 term). TRL's defaults in the installed version:

# %%
import trl
from trl import GRPOConfig

defaults = GRPOConfig(output_dir=tempfile.mkdtemp(), use_cpu=True)
keys = ("beta", "num_iterations", "epsilon", "epsilon_high", "loss_type", "scale_rewards")
keys += ("mask_truncated_completions", "num_generations", "temperature", "gradient_checkpointing")
print(f"trl {trl.__version__}:", {k: getattr(defaults, k) for k in keys})

# %% [markdown]
# Read two of them closely. `beta = 0.0`: by default TRL's GRPO has **no KL term at all** (and loads
# no reference model); we set β = 0.1 to match PPO. `num_iterations = 1`: each batch of samples gets
# one gradient step, taken by the very policy that sampled it, so $\pi_\theta = \pi_{\text{old}}$,
# every ratio $\rho_{i,t}$ is exactly 1, and **the clip never acts**: GRPO at TRL's defaults is a
# plain policy gradient with a group baseline. The clip matters only when a batch is reused. Two
# short runs show it in TRL's own log (`clip_ratio/region_mean`, the share of clipped tokens):

# %%
def clip_share(num_iterations: int) -> float:
    trainer = rlhf.grpo_trainer(
        sft, reward_model, tok, train_prompts, steps=4, num_iterations=num_iterations
    )
    trainer.train()
    return trainer.state.log_history[-2]["clip_ratio/region_mean"]


clipped = {n: clip_share(n) for n in (1, 2)}
print("share of clipped tokens, by num_iterations:", clipped)
assert clipped[1] == 0.0 and clipped[2] > 0, "ratio 1 at one iteration; clipping only on reuse"

# %% [markdown]
# GRPO's full run at the matched budget (30 rounds of 4 prompts × 8 answers, `num_iterations=2`, β =
# 0.1, lr $10^{-4}$, `gradient_checkpointing=False`, the learned reward with the same missing-EOS
# penalty) is in the sweep only: three seeds of it would not fit this notebook's budget. It runs with
# TRL's default aggregation, `loss_type="dapo"` (per-token losses averaged over all tokens of the
# batch, not the per-answer mean of the formula above) and `scale_rewards="group"` (advantages divided
# by the group's std); chapter 14 measures what these choices change.
#
# Two corrections to claims often made about GRPO. "No value head, so one model fewer in memory" is
# true for InstructGPT-style PPO, whose critic is a separate network as large as the reward model; our
# PPO's value head is one linear layer on the policy's own trunk, so here GRPO saves almost nothing in
# memory. And GRPO is famous for **verifiable** rewards (RLVR: a program checks the answer, as in
# DeepSeek-R1); this chapter stays with a **learned** reward model, the RLHF setting. Chapter 14 runs
# GRPO against the world's own checker of correct answers (`is_correct`), where the reward cannot be
# hacked by style.
#
# ## 8 · PPO, DPO and GRPO side by side
#
# **The matching rule.** Every method starts from the same SFT policy, trains all its weights with
# AdamW at lr $10^{-4}$ with β = 0.1, and sees **30 batches of 32 answers (960 answers), each batch
# used for 2 gradient steps (60 steps)**: PPO 30 × 32 prompts with 2 epochs; GRPO 30 × (4 prompts ×
# 8 answers) with `num_iterations=2`; DPO 480 pairs (960 offline answers) in batches of 16 pairs for 2
# epochs. Time is charged honestly: every method pays the SFT stage, and **PPO and GRPO also pay the
# reward model's training**, which DPO does not need. Three seeds each; 95 % t intervals.
#
# Two imbalances remain, stated rather than hidden. The reward model that PPO and GRPO climb was
# trained on all 2,000 training pairs (`data/rlhf/build_info.json`), so those two methods draw on
# more preference data than DPO's 480 pairs. And every method runs at one β and one learning rate
# (chapter 09's, not tuned per method): DPO at another β could do better or worse, which chapter 14
# measures with a β sweep.

# %%
charged = {"SFT": 0.0, "PPO": info["rm_seconds"], "DPO": 0.0, "GRPO": info["rm_seconds"]}
metrics = ("gold_greedy", "gold_sampled", "cut_sampled", "kl", "train_seconds")
summary = {a: {m: sweeps.summary(methods, a, m) for m in metrics} for a in methods["arms"]}
head = ("gold, greedy", "gold, sampled", "cut", "KL to SFT", "seconds")
print(f"{'':>5} {head[0]:>22} {head[1]:>22} {head[2]:>5} {head[3]:>11} {head[4]:>8}")
for arm, s in summary.items():
    g, smp = s["gold_greedy"], s["gold_sampled"]
    total = s["train_seconds"].mean + info["sft_seconds"] + charged[arm]
    print(
        f"{arm:>5} {g.mean:6.2f} [{g.lo:5.2f}, {g.hi:5.2f}] {smp.mean:6.2f} "
        f"[{smp.lo:5.2f}, {smp.hi:5.2f}] {s['cut_sampled'].mean:5.2f} {s['kl'].mean:5.2f} ± "
        f"{s['kl'].sd:3.1f} {total:8.0f}"
    )
print(
    f"seeds {methods['seeds']}; seconds = training + SFT ({info['sft_seconds']} s) "
    f"+ reward model ({info['rm_seconds']} s) for PPO and GRPO"
)

# %% [markdown]
# The gold reward of all policies with their 95 % intervals, greedy and sampled side by side:

# %%
fig, ax = plt.subplots(figsize=(6.4, 3.6))
for k, mode in enumerate(("gold_greedy", "gold_sampled")):
    xs = [i + 0.2 * (2 * k - 1) for i in range(len(summary))]
    ys = [s[mode].mean for s in summary.values()]
    err = [s[mode].half_width for s in summary.values()]
    ax.bar(xs, ys, width=0.4, yerr=err, capsize=4, label=mode.replace("_", ", "))
ax.set_xticks(range(len(summary)), list(summary))
ax.axhline(0, color="grey", lw=0.5)
ax.set_ylabel("mean gold reward (100 questions)")
ax.set_title("Matched budgets, 3 seeds, 95 % intervals")
ax.legend()
plt.show()

# %% [markdown]
# Which differences are real? Each method against SFT, and the methods against each other, on both
# gold rewards and on the KL:

# %%
def vals(arm: str, metric: str) -> list[float]:
    return sweeps.values(methods, arm, metric)


pairs_to_compare = [("PPO", "SFT"), ("DPO", "SFT"), ("GRPO", "SFT")]
pairs_to_compare += [("PPO", "DPO"), ("PPO", "GRPO"), ("DPO", "GRPO")]
verdicts = {}
for a, b in pairs_to_compare:
    for metric in ("gold_greedy", "gold_sampled", "kl"):
        verdicts[a, b, metric] = uncertainty.differs(vals(a, metric), vals(b, metric))
        print(f"{metric:>12}: " + uncertainty.verdict(vals(a, metric), vals(b, metric), (a, b)))

# %% [markdown]
# How much of each gain is the greedy mode flipping? The gain over SFT of greedy and of sampled
# answers, and the cheapest method once every stage it needs is charged:

# %%
mean = {(a, m): uncertainty.spread(vals(a, m)).mean for a in methods["arms"] for m in metrics}
gain = {
    a: {m: mean[a, m] - mean["SFT", m] for m in ("gold_greedy", "gold_sampled")}
    for a in ("PPO", "DPO", "GRPO")
}
for a, g in gain.items():
    print(f"{a:>4}: greedy gain {g['gold_greedy']:+.2f}, sampled gain {g['gold_sampled']:+.2f}")
total = {a: mean[a, "train_seconds"] + charged[a] for a in ("PPO", "DPO", "GRPO")}
print("cheapest in total seconds (training + reward model where used):", min(total, key=total.get))
assert all(g["gold_greedy"] > 2 * g["gold_sampled"] > 0 for g in gain.values())
assert all(verdicts[a, "SFT", "gold_greedy"] for a in gain), "every method beats SFT, greedy"

# %% [markdown]
# **Reading the table.** Three things hold over the seeds, and each sentence below is one of the
# verdicts printed above.
# * Every method's **greedy** gain over SFT is much larger than its **sampled** gain. The greedy gain
#   is mostly one behavioural flip (section 4: the mode leaves the verbose template for a short polite
#   answer); the sampled gold says how much of the whole distribution improved.
# * Where a verdict says "within noise", the methods are not ranked: three seeds of a 2 M model on
#   100 questions cannot separate them, and the table does not pretend to.
# * The KL column is where the methods differ most. DPO never sees its own samples: its β acts inside
#   a loss on offline pairs, and its likelihood displacement (section 6) moves probability to answers
#   in neither set; PPO pays the k1 KL on every sampled token; GRPO's k3 term is in its loss.
#
# Time, charged honestly, changes the usual story: DPO needs no reward model, so once the reward
# model's training is charged to PPO and GRPO, DPO is the cheapest route here; PPO and GRPO pay
# for sampling during training, and pay the reward model only once if it serves many runs.
#
# | | PPO (RLHF) | DPO | GRPO |
# |---|---|---|---|
# | models in memory | policy + value head, reference, reward model | policy, reference (or LoRA off) | policy, reference (if β > 0), reward model |
# | data | prompts + a reward model trained on pairs | the pairs themselves | prompts + any scorer |
# | sampling during training | yes (one answer per prompt) | no | yes (a group of G per prompt) |
# | baseline for the advantage | learned value head, per token | none needed | group mean (and std) |
# | KL to the reference | k1, in the per-token reward | implicit, through β in the loss | k3, in the loss |
# | can use a reward it did not see as pairs | yes | no (only offline pairs) | yes (e.g. a verifier, chapter 14) |

# %% [markdown]
# ### What changed since the first version of this chapter
#
# An external review found that several comparisons in an earlier version did not hold. Each
# finding, what changed, and the numbers now (printed below from this notebook's variables):
#
# | review finding | change |
# |---|---|
# | 1. GRPO's headline was a flip of the greedy mode; its own log showed no gain in sampled gold | sampled and greedy gold for every method, three seeds, intervals; the clip's inaction at `num_iterations=1` shown |
# | 2. the hacking run changed β and the learning rate together | a 2 × 2, one factor at a time, three seeds per cell |
# | 7. unequal data and compute; reward-model time charged to PPO only | 960 answers and 60 AdamW steps for every method, same lr and β; the reward model charged to PPO and GRPO; DPO's displacement plotted |
# | 8. answers cut at 20 tokens and truncated rollouts scored as complete; 32 % of held-out questions in training | 100-token evaluation; a missing-EOS penalty in training and evaluation; distinct evaluation questions absent from training |
# | 12. thin GRPO theory | objective, k3 vs k1, TRL's defaults printed, Dr. GRPO / DAPO caveats |
# | 13. RLVR missing | pointer to chapter 14; this chapter keeps learned rewards |
# | 21. numbers hard-coded in the prose | numbers printed by code; claims asserted |
# | 23. SFT imitated rude and evasive chosen answers | measured, explained; `chosen_as_chat(min_gold=...)` filter |
# | 24. imprecise wording about DPO and the value head | reworded (sections 7 and the summary) |

# %%
def s(arm: str, metric: str) -> str:
    x = sweeps.summary(methods, arm, metric)
    return f"{x.mean:.2f} [{x.lo:.2f}, {x.hi:.2f}]"


now = {
    "1": f"GRPO greedy {s('GRPO', 'gold_greedy')}, sampled {s('GRPO', 'gold_sampled')}; "
    f"SFT sampled {s('SFT', 'gold_sampled')}; clipped share {clipped}",
    "2": f"lowest sampled gold in the 2 × 2: {worst}",
    "7": "KL to SFT: " + ", ".join(f"{a} {s(a, 'kl')}" for a in ("PPO", "DPO", "GRPO")),
    "8": f"SFT greedy answers cut: {s('SFT', 'cut_greedy')}; test pairs whose question is in "
    f"training: {overlap:.0%}, evaluation questions in training: 0",
    "23": f"rude {demo_share['rude']:.0%}, evasive {demo_share['evasive']:.0%} of demonstrations",
    "DPO": f"last window: chosen {displacement['chosen'].mean:+.1f}, "
    f"rejected {displacement['rejected'].mean:+.1f} nats (log π − log π_ref)",
}
for finding, numbers in now.items():
    print(f"{finding:>4}: {numbers}")

# %% [markdown]
# ## Summary
#
# * RLHF = SFT → reward model (Bradley–Terry on preference pairs) → policy optimisation against the
#   reward model, with a KL penalty to the SFT reference. Our SFT demonstrations were every chosen
#   answer, rude and evasive ones included; part of every RL gain here is repairing that.
# * Our reward model orders held-out pairs like the labels and like the gold reward well above a
#   coin, and judges style better than correctness (section 3).
# * PPO from scratch (rollouts with a missing-EOS penalty, per-token k1 KL in the reward, GAE, clipped
#   ratio, value loss) on the **learned** reward raised the gold reward of greedy answers far more than
#   that of sampled answers: one behavioural flip moves every mode at once.
# * Reward hacking, separated by a 2 × 2 over three seeds: the verdicts of section 5 say which of the
#   KL penalty and the learning rate causes the learned reward to rise while the gold reward falls.
# * DPO reparametrises the reward through the closed-form optimum of the KL-regularised objective and
#   trains by gradient descent on offline pairs; it matches the RLHF optimum only under assumptions
#   (enough coverage of the answers, no sampling from π). Our loss equals TRL's. Its log-ratios show
#   likelihood displacement: the margin grows while the chosen answers' own probability moves too.
# * GRPO replaces the value head by a group baseline, puts a k3 KL in the loss, and at TRL's defaults
#   (`num_iterations=1`, `beta=0`) has neither an active clip nor a KL term.
# * At matched data and compute, with the reward model's time charged to the methods that use it,
#   the comparison of section 8 ranks methods only where the intervals allow it.

# %% [markdown]
# ## Quiz
#
# 1. Why does the Bradley–Terry loss only depend on reward differences, and what does that imply for the scale of a reward model's outputs?
# <details><summary>Answer</summary>σ(r_w − r_l) is unchanged by adding a constant to every reward, so the reward model's offset is arbitrary (often normalised afterwards); only the ordering and the gaps carry information.</details>
#
# 2. On which token does the reward model's score enter the PPO rewards, and what do the other response tokens receive?
# <details><summary>Answer</summary>On the last response token (the end-of-turn token if the answer ended). Every response token gets −β·(log π − log π_ref); padding gets nothing. A sample cut before its end-of-turn token also loses the missing-EOS penalty.</details>
#
# 3. What does the clip in PPO's objective prevent, and why is it inactive in GRPO with `num_iterations=1`?
# <details><summary>Answer</summary>Once the probability ratio leaves [1−ε, 1+ε] in the direction the advantage favours, the gradient is zero, so several epochs on one batch cannot move the policy far from the policy that sampled it. With one gradient step per batch, the policy that takes the step is the one that sampled, so every ratio is exactly 1 and nothing is clipped.</details>
#
# 4. Why does DPO need no reward model, and what is likelihood displacement?
# <details><summary>Answer</summary>The optimum of the KL-regularised objective ties the reward to β·log(π/π_ref) plus a prompt-only term that cancels in the Bradley–Terry difference; the policy's own log-ratios play the reward model. The loss only asks the chosen−rejected margin to grow; it can grow while the chosen answers' own log-probability falls too, the probability going to answers in neither set.</details>
#
# 5. How would you notice reward hacking without a gold reward?
# <details><summary>Answer</summary>The learned reward rises while an independent judge (humans on a sample, a held-out reward model) does not; the KL to the reference grows fast; the samples show a repeated trick (here: a style the reward model overrates).</details>
#
# 6. A policy's greedy gold reward jumps while its sampled gold barely moves. What happened?
# <details><summary>Answer</summary>The mode of the answer distribution flipped (here: from a long template to a short answer) while most of the probability stayed where it was. Report both, with intervals over seeds; the greedy number alone overstates the change.</details>

# %% [markdown]
# ## Interview questions
#
# * What is RLHF, and what does each of its three stages produce?
# * Why is there a KL penalty to the reference model in RLHF? What happens without it?
# * Compare PPO and DPO: data, models in memory, cost, what each can and cannot do.
# * What is reward hacking, and how do you detect and limit it?
# * What does GRPO change relative to PPO, and what do TRL's defaults for it mean?
#
# Answers, with this chapter's numbers, and the exercises are in
# [the exercises notebook](../exercises/09_rlhf_exercises.ipynb).
