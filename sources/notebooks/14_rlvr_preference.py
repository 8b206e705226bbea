# %% [markdown]
# # 14 · Reasoning with verifiable rewards (GRPO / RLVR) and the preference family
#
# **Measured runtime:** 50 s on a 2-core CPU (`make execute`; your machine may differ).
#
# Chapter 09 optimised a policy against a **learned** reward model, and watched it find the reward
# model's blind spots. Many tasks need no reward model at all: the answer to an arithmetic question
# can be **checked**. Reinforcement learning from verifiable rewards (RLVR) samples several answers,
# rewards the right ones, and pushes the policy towards them: that is how DeepSeek-R1 and its
# successors learnt to reason, with **GRPO** (group relative policy optimisation) as the algorithm.
# The course world has a perfect verifier, `preferences.is_correct`, so we can measure what RLVR
# buys against the truth, and compare it with the learned reward of chapter 09.
#
# The second half is the **preference family**: DPO's successors IPO, KTO, ORPO and SimPO, which
# practitioners choose among when they have comparisons instead of a checker. Each is a few lines
# of loss; we write them, check them against TRL, and train all of them on the same pairs.
#
# **You will learn to**
# 1. write GRPO's pieces (group-relative advantages, the clipped objective, the k3 KL estimator, the
#    loss aggregations of GRPO, Dr. GRPO and DAPO) and check them against TRL's `GRPOTrainer`;
# 2. train with a verifier as the reward, and compare it with a learned reward on correctness, gold
#    reward, KL and style, over seeds;
# 3. say when a group teaches nothing (`frac_reward_zero_std`), and what group size, std scaling and
#    length normalisation change;
# 4. write IPO, KTO, ORPO and SimPO, check each against TRL, and compare them at a matched budget,
#    including what happens to the chosen answers' probability (likelihood displacement);
# 5. choose among them.
#
# **Prerequisites:** chapter 08 (SFT, sampling) and chapter 09 (PPO, DPO, the SFT policy and reward
# model in `data/rlhf/`).

# %%
import copy
import tempfile
import warnings
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
import course_lib

device = course_lib.setup(seed=0)

# %%
from course_lib import grpo, preference as pf, sweeps
from course_lib.build import sweeps_rlvr
from course_lib.data import load_jsonl
from course_lib.dpo import dpo_loss
from course_lib.formats import preference_to_conversations
from course_lib.generation import generate
from course_lib.models import load_model
from course_lib.plotting import plot_lines
from course_lib.uncertainty import differs, verdict
from course_lib.world import reasoning
from course_lib.world.preferences import is_correct
from course_lib.grpo import LOSS_TYPES, SCALES, _check_grpo_inputs  # used by the exported cells
from course_lib.preference import _positive, _same_shape

warnings.filterwarnings("ignore")  # library deprecation chatter
sft, tok = load_model("sft_policy")  # chapter 09's SFT policy: the start of every run here
test_prompts = sweeps_rlvr.eval_prompts(100)  # held-out questions (preferences_test.jsonl)

# %% [markdown]
# The taught functions are written in cells that start with `#| export course_lib.grpo` or
# `#| export course_lib.preference`; they are copied verbatim into those modules (`make lib`),
# which the tests, the exercises and the shipped sweeps import.
#
# ## 1 · A reward you can compute
#
# `is_correct(prompt, answer)` says whether an answer names the right fact or number and no other
# candidate. A reward of 1 for a correct answer and 0 otherwise is the simplest **verifiable
# reward**: no annotators, no reward model, nothing to hack except the checker itself.

# %%
question = "What is 40 minus 9?"
for answer in ["It is 31.", "Sure! It is 31. Thank you for asking.", "31 or 32.", "It is 33."]:
    print(f"{answer!r:45} correct: {is_correct(question, answer)}")

# %% [markdown]
# RL can only reinforce answers the policy already samples sometimes. So before training we ask: how
# often is a **sampled** answer right (pass@1), and how often is at least one of $k$ samples right
# (pass@k)? If pass@k is far above pass@1, the right answer is within reach and RL has signal. We
# sample 8 answers to each of the 100 held-out questions, at temperature 1, and split by skill.

# %%
many = [p for p in test_prompts for _ in range(8)]
samples = generate(sft, tok, many, chat=True, max_new_tokens=20, temperature=1.0, seed=0)
hits = torch.tensor([is_correct(p, a) for p, a in zip(many, samples)]).view(-1, 8)
skill = ["arithmetic" if p.startswith("What is") else "fact" for p in test_prompts]
for name in ("fact", "arithmetic"):
    rows = hits[[s == name for s in skill]]
    c = rows.sum(1).tolist()
    line = {k: sum(grpo.pass_at_k(8, ci, k) for ci in c) / len(c) for k in (1, 2, 4, 8)}
    print(f"{name:>10} ({len(c)} questions): " + ", ".join(f"pass@{k} {v:.2f}" for k, v in line.items()))

# %% [markdown]
# The SFT policy knows many facts of its world but picks the right one only part of the time: a
# large gap between pass@1 and pass@8, exactly where RLVR helps. Arithmetic is another matter: the
# 2 M-parameter policy almost never gets a sum right even in 8 tries, so a verifier has almost nothing
# to reinforce there. We keep both kinds of question (the training prompts mix them) and report both;
# section 5 gives arithmetic a format the model can learn.
#
# ## 2 · GRPO from scratch
#
# For each prompt, GRPO samples a **group** of $G$ answers with rewards $r_1, \dots, r_G$ and gives
# every token of answer $i$ the advantage
#
# $$A_i = \frac{r_i - \operatorname{mean}(r_1, \dots, r_G)}{\operatorname{std}(r_1, \dots, r_G) + \varepsilon}.$$
#
# The group mean is the baseline that PPO's value head estimated; no value head is trained. With a
# 0/1 verifier, a right answer in a group that is mostly wrong gets a large push. A group whose
# answers are all right, or all wrong, has std 0 and advantages 0: it **teaches nothing**. TRL logs
# the share of such groups as `frac_reward_zero_std`.

# %%
#| export course_lib.grpo
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


# %%
#| export course_lib.grpo
def frac_zero_std(rewards: torch.Tensor, group_size: int) -> float:
    """Share of groups whose rewards are all equal: their advantages are 0, they teach nothing."""
    grouped = rewards.view(-1, group_size)
    return (grouped.std(dim=1) < 1e-8).float().mean().item()


# %% [markdown]
# The SFT policy's own samples show how much of a batch would be wasted. We cut each question's 8
# samples into groups of 2, 4 or 8 and count the groups with equal rewards:

# %%
rewards = hits.float().view(-1)  # 100 questions × 8 samples, in question order
print("advantages of one group of 8:", group_advantages(rewards[:8], 8).round(decimals=2).tolist())
for g in (2, 4, 8):
    print(f"G = {g}: frac_reward_zero_std = {frac_zero_std(rewards, g):.2f}")

# %% [markdown]
# Larger groups are less often uniform, so fewer prompts are wasted, at the price of more samples per
# prompt. DAPO (Yu et al. 2025) goes further and *drops* zero-std groups and samples again
# ("dynamic sampling").
#
# ### The KL term and the k3 estimator
#
# GRPO keeps the policy near a reference $\pi_{\text{ref}}$ with a KL penalty $\beta\,
# \mathrm{KL}(\pi_\theta \| \pi_{\text{ref}})$ added to the loss, estimated per token on the sampled
# answers. With $d = \log \pi_{\text{ref}}(y_t) - \log \pi_\theta(y_t)$ the three estimators of
# Schulman (2020) are $k_1 = -d$, $k_2 = d^2/2$ and
#
# $$k_3 = e^{d} - d - 1 \;\ge 0,$$
#
# whose mean under $\pi_\theta$ is exactly the KL (because $\mathbb{E}[e^{d}] = 1$), like $k_1$'s, but
# it is never negative and varies less. We check this on two distributions over 6 tokens:

# %%
#| export course_lib.grpo
def k3_kl(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """Per-token KL(π‖π_ref) estimate k3 = e^d − d − 1 with d = log π_ref − log π (Schulman 2020).

    Unbiased for samples of π, never negative, and low-variance where π ≈ π_ref.
    """
    d = ref_logps - logps
    return torch.exp(d) - d - 1


# %%
gen = torch.Generator().manual_seed(0)
p = torch.softmax(torch.randn(6, generator=gen), 0)  # the policy
q = torch.softmax(p.log() + 0.3 * torch.randn(6, generator=gen), 0)  # a nearby reference
x = torch.multinomial(p, 20_000, replacement=True, generator=gen)  # tokens sampled from p
d = q.log()[x] - p.log()[x]
true_kl = (p * (p.log() - q.log())).sum().item()
for name, k in [("k1", -d), ("k2", d**2 / 2), ("k3", k3_kl(p.log()[x], q.log()[x]))]:
    print(f"{name}: mean {k.mean():.5f} (true KL {true_kl:.5f}), sd {k.std():.5f}, min {k.min():+.4f}")
k3 = k3_kl(p.log()[x], q.log()[x])
assert abs(k3.mean() - true_kl) < 0.1 * true_kl and k3.std() < (-d).std() and k3.min() >= 0

# %% [markdown]
# k1 has the right mean but a large spread and negative values; k2 is biased; k3 has the right mean,
# a fraction of k1's spread, and is never negative.
#
# ### The clipped objective and how tokens are averaged
#
# The per-token loss is PPO's clipped surrogate with the group advantage, plus the KL term:
#
# $$\ell_{i,t} = -\min\big(\rho_{i,t} A_i,\ \operatorname{clip}(\rho_{i,t}, 1-\varepsilon, 1+\varepsilon) A_i\big)
# + \beta\, k_{3,i,t}, \qquad \rho_{i,t} = \frac{\pi_\theta(y_{i,t})}{\pi_{\text{old}}(y_{i,t})}.$$
#
# With one gradient step per batch of samples (TRL's default `num_iterations=1`) $\pi_{\text{old}} =
# \pi_\theta$, so $\rho = 1$ and **the clip never acts**; it matters only when a batch is reused.
# What differs between the variants is how the $\ell_{i,t}$ become one number:
#
# | `loss_type` | aggregation | effect |
# |---|---|---|
# | `grpo` (the paper) | mean over each answer's tokens, then over answers | a token of a long answer weighs less: long wrong answers are punished less per token |
# | `dapo`, `bnpo` | sum over all tokens of the batch / their number | every token weighs the same |
# | `dr_grpo` | sum over all tokens / (answers × `max_completion_length`) | a constant divisor: no length bias at all |
#
# Dr. GRPO (Liu et al. 2025) also drops the division by the group's std, which favours questions
# whose groups are nearly uniform (too easy or too hard).

# %%
#| export course_lib.grpo
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


# %%
#| export course_lib.grpo
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


# %% [markdown]
# `epsilon_high` is DAPO's "clip higher": a wider upper bound lets unlikely tokens of good answers
# grow faster. TRL's defaults in the installed version: `loss_type="dapo"`, `scale_rewards="group"`,
# `beta=0.0` (no reference model at all), `epsilon=0.2`.
#
# ### The same loss in TRL
#
# We build a `GRPOTrainer` with the verifier as its reward function, let it sample and score one
# batch (16 answers: 4 questions × 4), and compare. To make the clip and the KL term act we move the
# "old" and reference log-probabilities away from the current ones with noise; TRL's loss reads them
# from the batch, ours takes them as arguments.

# %%
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

check_cfg = GRPOConfig(
    output_dir=tempfile.mkdtemp(), use_cpu=True, bf16=False, report_to=[], save_strategy="no",
    per_device_train_batch_size=16, num_generations=4, max_completion_length=20, beta=0.1,
    max_steps=1, seed=0, disable_tqdm=True,
)
chats = Dataset.from_list([{"prompt": [{"role": "user", "content": p}]} for p in test_prompts[:16]])
trainer = GRPOTrainer(model=copy.deepcopy(sft), reward_funcs=[grpo.verifier_reward],
                      args=check_cfg, processing_class=tok, train_dataset=chats)
trainer.current_gradient_accumulation_steps = 1  # set by trainer.train(); we call the loss directly
inputs = next(iter(trainer.get_train_dataloader()))
trainer.model.train()  # the mode TRL trains in
batch = trainer._generate_and_score_completions(inputs)
print({k: tuple(v.shape) for k, v in batch.items() if torch.is_tensor(v) and v.dim()})

# %%
answers = tok.batch_decode(batch["completion_ids"], skip_special_tokens=True)
r = torch.tensor(grpo.verifier_reward([x["prompt"] for x in inputs], [a.strip() for a in answers]))
adv_diff = (group_advantages(r, 4) - batch["advantages"]).abs().max().item()
print(f"rewards {r.tolist()}\nadvantages: max |ours − TRL's| = {adv_diff:.1e}")
with torch.no_grad():
    lp = grpo.completion_logprobs(
        trainer.model, batch["prompt_ids"], batch["prompt_mask"], batch["completion_ids"]
    )
noise = torch.Generator().manual_seed(1)
batch["old_per_token_logps"] = lp + 0.3 * torch.randn(lp.shape, generator=noise)
batch["ref_per_token_logps"] = lp + 0.3 * torch.randn(lp.shape, generator=noise)
assert adv_diff < 1e-6

# %%
diffs = {}
for loss_type in LOSS_TYPES:
    trainer.loss_type = loss_type
    with torch.no_grad():
        theirs = trainer._compute_loss(trainer.model, batch).item()
    ours = grpo_loss(
        lp, batch["old_per_token_logps"], batch["ref_per_token_logps"], batch["advantages"],
        batch["completion_mask"].float(), beta=0.1, loss_type=loss_type, max_completion_length=20,
    ).item()
    diffs[loss_type] = abs(theirs - ours)
    print(f"{loss_type:>8}: TRL {theirs:+.6f}  ours {ours:+.6f}  |diff| {diffs[loss_type]:.1e}")
assert max(diffs.values()) < 1e-5

# %% [markdown]
# Equal for all four aggregations. (Here DAPO equals BNPO: with one process and no gradient
# accumulation, "all tokens of the accumulated batch" is this batch.)
#
# ## 3 · RLVR: the verifier as the reward
#
# Now a real run with TRL's `GRPOTrainer` (`grpo.train_grpo` wraps it): 20 steps, each 4 questions ×
# 8 sampled answers, rewarded by the verifier; β = 0.1 and learning rate $10^{-4}$ as in chapter 09
# (not tuned on the questions we report). Then we judge the policy on the 100 held-out questions: 4
# sampled answers each, their correctness, gold reward, KL to the SFT policy, length and politeness.
# (20 steps fit the lesson's time budget; the shipped sweep below also trains for 80.)

# %%
policy = copy.deepcopy(sft)
torch.manual_seed(0)
run = grpo.train_grpo(policy, tok, sweeps_rlvr.train_prompts(0), [grpo.verifier_reward], seed=0,
                      steps=sweeps_rlvr.SHORT_STEPS,
                      **{k: sweeps_rlvr.RLVR[k] for k in ("group_size", "lr", "beta")})
log = [h for h in run.state.log_history if "reward" in h]
print("reward per step:", [round(h["reward"], 2) for h in log])
print("frac_reward_zero_std:", [round(h["frac_reward_zero_std"], 2) for h in log])
live = grpo.evaluate(policy, sft, tok, test_prompts, samples=4, seed=1000)
print({k: round(v, 3) for k, v in live.items()})

# %% [markdown]
# One run is one draw. The shipped sweep `rlvr_reward` ran the same recipe with seeds 0–4 (the live
# run above is its seed 0 of the arm "verifier 20 steps"), the same recipe for 80 steps, the same 80
# steps with the learned reward model of chapter 09 instead of the verifier, and the SFT policy
# itself (its spread is sampling noise alone):

# %%
rec = sweeps.load("rlvr_reward")
metrics = ["correct", "greedy_correct", "gold", "kl", "words", "polite"]
print(sweeps.place(live["correct"], rec, "verifier 20 steps", "correct"))
sweeps.table(rec, metrics)

# %%
val = {arm: {m: sweeps.values(rec, arm, m) for m in metrics} for arm in rec["arms"]}
for m in metrics:
    print(f"{m:>14}:", verdict(val["verifier"][m], val["sft"][m], ("verifier", "SFT")))
    print(f"{'':>14}  ", verdict(val["learned"][m], val["verifier"][m], ("learned", "verifier")))
print(verdict(val["verifier"]["correct"], val["verifier 20 steps"]["correct"], ("80 steps", "20")))
assert differs(val["verifier"]["correct"], val["sft"]["correct"])  # sampled: +0.10, CI +0.07..
assert differs(val["verifier"]["greedy_correct"], val["sft"]["greedy_correct"])
assert differs(val["learned"]["polite"], val["verifier"]["polite"])
assert min(val["learned"]["kl"]) > max(val["verifier"]["kl"])
assert live["greedy_correct"] > max(val["sft"]["greedy_correct"]) + 0.1

# %% [markdown]
# What the five seeds say (every number is in the table and the verdicts above):
#
# * **The verifier raised correctness, sampled and greedy, beyond the seed spread.** After 80 steps
#   sampled correctness is 0.249 ± 0.022 against the SFT policy's 0.148 ± 0.013: +0.102, 95 % CI
#   +0.074 to +0.129. The 20-step run gains +0.047 (CI +0.014 to +0.079), and 60 more steps add
#   +0.055 (CI +0.019 to +0.091). (With three seeds the 20-step gain was inside the noise: five seeds
#   narrowed the interval.) Greedy correctness went from 0.060 to 0.346 ± 0.026. Much of that is one
#   behavioural flip: the SFT policy's greedy answer is the long "verbose" template, cut off at 20
#   tokens before it names anything, and a few steps make a short answer the mode.
# * **On correctness the learned reward did no better.** Learned − verifier is −0.024 sampled
#   (CI −0.052 to +0.005) and −0.022 greedy: within noise. Both rewards find the right answers the
#   policy already samples sometimes.
# * **What else moved is the difference.** The learned reward pulled the policy almost five times as
#   far from the reference (KL 2.27 ± 0.35 against 0.48 ± 0.10 nats), made 0.906 of the answers open
#   politely (against 0.473) and lengthened them (7.7 words against 6.1): the style its training pairs
#   favoured. This world's gold reward pays +0.5 for politeness, so the learned arm's gold is higher
#   (+0.39, CI +0.28 to +0.50) with no more correct answers; a reward model that overrated length or
#   flattery, against a gold that did not pay for them, would turn the same drift into reward hacking
#   (chapter 09). The verifier rewards only correctness, and politeness stayed where it was (verifier
#   − SFT within noise).
# * **Most verifier groups were wasted** (next section): the training questions mix facts and
#   arithmetic, and many groups are all right or all wrong.
#
# ## 4 · Group size, std scaling and length normalisation
#
# **Wasted groups.** The verifier's 0/1 rewards make most groups uniform: the `frac_zero_std` column
# of the sweep (the mean over the training steps) says which share of each batch taught nothing.
# The learned reward is a real number, different for almost every answer, so its groups are never
# uniform:

# %%
for arm in ("verifier", "learned"):
    print(f"{arm:>9}: frac_reward_zero_std during training {sweeps.summary(rec, arm, 'frac_zero_std')}")

# %% [markdown]
# Two remedies: larger groups (section 2 measured how the share falls with $G$), or DAPO's dynamic
# sampling, which drops uniform groups and samples new prompts until the batch is full.
#
# **Std scaling.** Dividing by the group's std gives a group with one right answer in 8 the same total
# push as a group with 4 in 8: questions the policy almost never or almost always gets right weigh as
# much as the informative ones. Dr. GRPO (`scale_rewards="none"`) keeps the raw differences.
#
# **Length normalisation.** The aggregations weigh a token by $1/(G\,|o_i|)$ (GRPO), $1/\sum_j |o_j|$
# (DAPO) or $1/(G\,L_{\max})$ (Dr. GRPO). We read the weights off the loss's gradient with respect to
# each token's log-probability, on the TRL batch of section 2 with advantages of 1:

# %%
mask = batch["completion_mask"].float()
lengths = mask.sum(-1)
longest, shortest = lengths.argmax().item(), lengths.argmin().item()
for loss_type in LOSS_TYPES:
    x = lp.clone().requires_grad_(True)
    grpo_loss(x, x.detach(), None, torch.ones(len(x)), mask, loss_type=loss_type,
              max_completion_length=20).backward()
    w = -x.grad  # how strongly each token is pushed up
    ratio = (w[longest].sum() / w[shortest].sum()).item()
    print(f"{loss_type:>8}: per-token weight {w[shortest, 0]:.4f} (short answer) "
          f"{w[longest, 0]:.4f} (long); whole answers long/short = {ratio:.2f} "
          f"(lengths {lengths[longest]:.0f} and {lengths[shortest]:.0f} tokens)")

# %% [markdown]
# Under `grpo` a long answer gets the same total push as a short one, so each of its tokens gets less:
# a long wrong answer is punished less per token, which is the length bias Dr. GRPO and DAPO remove
# (there, the whole-answer push grows with the length).
#
# **Measured in training.** The shipped sweep `rlvr_variants` changes one thing at a time in the
# 20-step verifier recipe of section 3 (3 seeds each): no std scaling; the original per-answer mean
# (`grpo`); Dr. GRPO (constant divisor, no std); groups of 2 or 16 answers at the same 32 answers per
# step. Each is compared with the unchanged recipe, the arm "verifier 20 steps" of `rlvr_reward`:

# %%
var = sweeps.load("rlvr_variants")
vm = ["correct", "greedy_correct", "frac_zero_std", "completion_tokens", "kl"]
base = {m: sweeps.values(rec, "verifier 20 steps", m) for m in vm}
print("unchanged recipe (5 seeds):",
      {m: sweeps.summary(rec, "verifier 20 steps", m).fmt(3) for m in vm})
sweeps.table(var, vm)

# %%
for arm in var["arms"]:
    for m in ("correct", "frac_zero_std", "completion_tokens"):
        print(f"{arm:>9} {m:>17}:", verdict(sweeps.values(var, arm, m), base[m], (arm, "recipe")))
assert differs(sweeps.values(var, "G=2", "frac_zero_std"), base["frac_zero_std"])

# %% [markdown]
# Measured, one change at a time, against the unchanged recipe's five seeds: **only the group size
# moved anything beyond the noise, and only the share of wasted groups.** With G = 2 the share of
# groups whose two answers got the same reward rose from 0.740 ± 0.052 to 0.888 ± 0.006 (+0.148,
# CI +0.084 to +0.211): almost nine batches in ten taught nothing. G = 16 lowered it to
# 0.625 ± 0.132, within noise of G = 8 over three seeds. Dropping the std scaling, the original
# per-answer mean and Dr. GRPO changed sampled correctness by −0.018 to −0.019 (all within noise),
# and answer length and KL not at all. That is what the gradient weights above predict for *this*
# task: the answers are 15 tokens on average and capped at 20, so how tokens are averaged barely
# matters. The length bias Dr. GRPO and DAPO remove is a problem of long, variable reasoning chains
# (hundreds to thousands of tokens), which a 20-step run on 20-token answers cannot show; we do not
# claim it from these numbers.
#
# ## 5 · Multi-step arithmetic: working shown, then the answer
#
# Single sums were out of the policy's reach. `course_lib.world.reasoning` generates chained
# questions of small numbers and answers that show their working, one step per sentence:

# %%
for q in reasoning.questions(3, seed=1):
    print(f"{q:32} → {reasoning.worked_answer(q)}")
print(reasoning.is_correct("What is 7 plus 5 minus 3?", "7 plus 5 is 11. 11 minus 3 is 9. The answer is 9."))

# %% [markdown]
# The verifier reads only the final answer, as RLVR verifiers do (the last line above has a wrong
# step and a right answer: it counts as correct). `working_is_valid` checks the steps as well, and
# `fully_correct` asks for both: a **step-checking** verifier, the simplest process reward (a
# program checks every step, where a process reward model would *learn* to score steps, as in
# Lightman et al. 2023, "Let's Verify Step by Step"):

# %%
lucky = "7 plus 5 is 11. 11 minus 3 is 9. The answer is 9."
q = "What is 7 plus 5 minus 3?"
print("final answer right:", reasoning.is_correct(q, lucky),
      "| every step right:", reasoning.fully_correct(q, lucky))

# %% [markdown]
# The sweep `rlvr_reasoning` first teaches chapter 09's SFT policy the format (300 steps on 1000
# worked answers at learning rate $10^{-3}$; the same start for every arm and seed), then runs GRPO
# with **one factor changed**, the reward: the final answer only (`outcome`) or every step
# (`process`), or no RL (`sft`). The RL budget (150 steps of 8 questions × 8 answers, learning rate
# $5\times10^{-5}$, β = 0) was chosen on 100 validation questions that are not reported here; chapter
# 09's recipe (20 steps at $10^{-4}$) lowered greedy correctness there, and every run tried is listed
# in the comment above `REASONING` in `course_lib/build/sweeps_rlvr.py`. All arms are judged on 100
# held-out questions: 4 answers sampled at temperature 1 (pass@1 and pass@4), the same at 0.7, and
# the greedy answer.

# %%
rsn = sweeps.load("rlvr_reasoning")
rm = ["correct", "pass_at_k", "greedy_correct", "valid_working", "fully_correct", "lucky"]
rv = {m: {arm: sweeps.values(rsn, arm, m) for arm in rsn["arms"]} for m in rm + ["correct_cool"]}
for a, b in [("outcome", "sft"), ("process", "sft"), ("process", "outcome")]:
    print(f"{a} against {b}:")
    for m in rm:
        print(f"  {m:>14}:", verdict(rv[m][a], rv[m][b], (a, b)))
sweeps.table(rsn, rm + ["correct_cool"])

# %% [markdown]
# `lucky` is the share of correct answers whose working is wrong. The picture, with one standard
# deviation over the 3 seeds:

# %%
shown = ["correct", "greedy_correct", "fully_correct", "correct_cool"]
fig, ax = plt.subplots(figsize=(7.5, 3.4))
for i, arm in enumerate(rsn["arms"]):
    sp = [sweeps.summary(rsn, arm, m) for m in shown]
    x = [j + 0.27 * (i - 1) for j in range(len(shown))]
    ax.bar(x, [s.mean for s in sp], width=0.27, yerr=[s.sd for s in sp], capsize=3, label=arm)
ax.set_xticks(range(len(shown)),
              ["sampled (T=1)", "greedy", "answer and every step", "sampled (T=0.7)"])
ax.set(ylabel="share of held-out answers",
       title="Chained arithmetic: RL rewarded by the answer or by every step")
ax.legend(fontsize=8)
plt.show()

# %%
assert min(rv["valid_working"]["sft"]) > 0.15  # the format stage taught the worked format
assert differs(rv["fully_correct"]["process"], rv["fully_correct"]["sft"])  # the step check raised it
assert not differs(rv["correct"]["outcome"], rv["correct"]["sft"])  # the answer check did not

# %% [markdown]
# Measured:
#
# * **The step-checking reward raised full correctness beyond noise**: a right answer with every step
#   right went from 0.229 ± 0.013 to 0.271 ± 0.016 of the sampled answers (+0.042, CI +0.008 to
#   +0.076), and valid working by +0.041 (CI +0.007 to +0.075). Against the final-answer reward the
#   gain is +0.059 (CI +0.022 to +0.097).
# * **Neither reward raised the final answer beyond noise**: sampled correctness 0.357 → 0.380 with
#   either (+0.023, CIs −0.027 to +0.074 and −0.036 to +0.082), greedy and pass@4 unchanged. A
#   difference inside the seed spread is not a finding.
# * **The final-answer reward did not make the working better**: valid working −0.017 and full
#   correctness −0.018 (both within noise), while the share of lucky answers went from 0.357 to 0.440
#   (within noise, the seeds disagree: 0.52, 0.37, 0.43). It rewards a lucky guess with wrong steps as
#   much as right working, so it has no reason to improve the steps; the step check rewards only
#   right working, and the working is what improved.
# * **RL here is sharpening, and a fair baseline is a lower temperature**: sampling the SFT policy at
#   0.7 instead of 1 gives 0.409 ± 0.025 with no training at all, at least what either RL run
#   reached at temperature 1 (0.380). RL moves probability onto answers the policy can already
#   produce (pass@4 stayed at about 0.79); it did not teach this 2 M-parameter policy arithmetic it
#   could not do. Yue et al. (2025, "Does Reinforcement Learning Really Incentivize Reasoning
#   Capacity in LLMs Beyond the Base Model?") report the same pattern at scale: RLVR raises pass@1
#   and not pass@k for large k.
#
# Two traps found on the way. (1) TRL's `GRPOTrainer` loads its reference model from the policy's
# `name_or_path` on disk, which here is the SFT policy *before* the format stage, so with β > 0 the
# KL term pulls back to a model that does not know the format (a first build at β = 0.1 logged a KL
# near 5 nats per token); `grpo.train_grpo(..., reference_state=...)` sets the right reference.
# (2) With chapter 09's recipe (20 steps at $10^{-4}$) the final-answer reward lowered greedy
# correctness on the validation questions, and every run at $10^{-4}$ ended lower there (one seed
# each; the comment above `REASONING` lists them). Our reading, not measured further: on a small
# policy, Adam's full-size first steps on a few hundred sampled answers flip many near-tied greedy
# choices at once. Tune RL's learning rate on validation questions like any other.
#
# ## 6 · The preference family
#
# With comparisons instead of a checker, chapter 09's DPO trains on pairs (chosen $y_w$, rejected
# $y_l$) directly. Write $h = \log\frac{\pi(y_w)}{\pi_{\text{ref}}(y_w)} - \log\frac{\pi(y_l)}{\pi_{\text{ref}}(y_l)}$
# and $\bar p(y)$ for the mean log-probability per token of $y$. Its successors change one thing each:
#
# | loss | formula | needs | changes |
# |---|---|---|---|
# | DPO | $-\log\sigma(\beta h)$ | pairs, $\pi_{\text{ref}}$ | — |
# | IPO (Azar et al. 2023) | $(h_{\text{tok}} - \tfrac{1}{2\beta})^2$ | pairs, $\pi_{\text{ref}}$ | a target margin instead of "ever larger" (TRL divides by the answers' lengths: $h_{\text{tok}}$) |
# | KTO (Ethayarajh et al. 2024) | $1 - \sigma(\beta(r - z))$ for good, $1 - \sigma(\beta(z - r))$ for bad answers | **unpaired** good/bad labels, $\pi_{\text{ref}}$ | $r$ = the answer's log-ratio, $z$ = a KL reference point |
# | ORPO (Hong et al. 2024) | $-\log \pi(y_w) - \beta\log\sigma\big(\log\tfrac{\text{odds}(y_w)}{\text{odds}(y_l)}\big)$ | pairs, **no** $\pi_{\text{ref}}$ | SFT and preference in one loss; odds $= \bar p/(1-\bar p)$ |
# | SimPO (Meng et al. 2024) | $-\log\sigma\big(\beta(\bar p(y_w) - \bar p(y_l)) - \gamma\big)$ | pairs, **no** $\pi_{\text{ref}}$ | length-normalised, a margin $\gamma$ |

# %%
#| export course_lib.preference
def ipo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    chosen_tokens: torch.Tensor,
    rejected_tokens: torch.Tensor,
    beta: float = 0.1,
) -> torch.Tensor:
    """IPO (Azar et al. 2023): squared distance of the per-token log-ratio margin from 1/(2β)."""
    _same_shape(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    _positive(beta)
    chosen = (policy_chosen - ref_chosen) / chosen_tokens.clamp(min=1)
    rejected = (policy_rejected - ref_rejected) / rejected_tokens.clamp(min=1)
    return ((chosen - rejected - 1 / (2 * beta)) ** 2).mean()


# %%
#| export course_lib.preference
def kto_loss(
    policy: torch.Tensor,
    ref: torch.Tensor,
    desirable: torch.Tensor,
    kl: torch.Tensor,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> torch.Tensor:
    """KTO (Ethayarajh et al. 2024) on unpaired answers, each labelled desirable or not.

    Each answer's log-ratio is compared with a reference point `kl` (an estimate of KL(π‖π_ref),
    detached): desirable answers are pushed above it, undesirable ones below.
    """
    _same_shape(policy, ref, desirable)
    _positive(beta)
    logratio = policy - ref
    good = desirable.bool()
    losses = torch.cat(
        [
            desirable_weight * (1 - torch.sigmoid(beta * (logratio[good] - kl))),
            undesirable_weight * (1 - torch.sigmoid(beta * (kl - logratio[~good]))),
        ]
    )
    return losses.mean()


# %%
#| export course_lib.preference
def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 − eˣ) for x < 0, computed stably on both sides of −ln 2."""
    return torch.where(
        x < -0.6931471805599453, torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x))
    )


def orpo_loss(
    mean_chosen: torch.Tensor,
    mean_rejected: torch.Tensor,
    nll_chosen: torch.Tensor,
    beta: float = 0.1,
) -> torch.Tensor:
    """ORPO (Hong et al. 2024): SFT loss on the chosen answer − β · log σ(log odds ratio).

    Uses per-token mean log-probabilities p̄; odds(y) = p̄/(1 − p̄) in log space; no reference model.
    """
    _same_shape(mean_chosen, mean_rejected)
    _positive(beta)
    log_odds = (mean_chosen - mean_rejected) - (log1mexp(mean_chosen) - log1mexp(mean_rejected))
    return nll_chosen - beta * F.logsigmoid(log_odds).mean()


# %%
#| export course_lib.preference
def simpo_loss(
    mean_chosen: torch.Tensor,
    mean_rejected: torch.Tensor,
    beta: float = 2.0,
    gamma: float = 0.5,
) -> torch.Tensor:
    """SimPO (Meng et al. 2024): −log σ(β·(p̄_w − p̄_l) − γ) on per-token mean log-probabilities;
    no reference model, a target margin γ."""
    _same_shape(mean_chosen, mean_rejected)
    _positive(beta)
    return -F.logsigmoid(beta * (mean_chosen - mean_rejected) - gamma).mean()


# %% [markdown]
# ### Each equals TRL's
#
# DPO and IPO on a batch of `DPOTrainer` (one trainer, `loss_type` switched), KTO on a batch of
# `KTOTrainer` (each pair split into a desirable and an undesirable answer, and TRL's mismatched
# pairs for the reference point $z$), with a perturbed copy of the SFT policy as the policy and the
# SFT policy as the reference. ORPO and SimPO live in `trl.experimental` (ORPOTrainer, CPOTrainer
# with `loss_type="simpo"`); we call their loss methods on the same log-probabilities.

# %%
from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer

moved = copy.deepcopy(sft)
with torch.no_grad():
    for prm in moved.parameters():
        prm.add_(0.02 * torch.randn(prm.shape, generator=torch.Generator().manual_seed(2)))
few = load_jsonl("preferences_train")[:8]
common = dict(output_dir=tempfile.mkdtemp(), use_cpu=True, bf16=False, report_to=[], max_steps=1,
              save_strategy="no", disable_tqdm=True, beta=0.1, max_length=128)


def labelled(ids, completion_mask, attention_mask):
    return {"input_ids": ids, "attention_mask": attention_mask,
            "labels": ids.masked_fill(completion_mask == 0, -100)}

# %%
dpo_tr = DPOTrainer(model=moved, ref_model=sft, processing_class=tok,
                    args=DPOConfig(per_device_train_batch_size=8, **common),
                    train_dataset=Dataset.from_list([preference_to_conversations(x) for x in few]))
b = next(iter(dpo_tr.get_train_dataloader()))
with torch.no_grad():
    lp, n = pf.sequence_stats(moved, labelled(b["input_ids"], b["completion_mask"], b["attention_mask"]))
    rl, _ = pf.sequence_stats(sft, labelled(b["input_ids"], b["completion_mask"], b["attention_mask"]))
    k = len(lp) // 2  # TRL stacks [chosen; rejected]
    ours = {"sigmoid": dpo_loss(lp[:k], lp[k:], rl[:k], rl[k:], 0.1).loss,
            "ipo": ipo_loss(lp[:k], lp[k:], rl[:k], rl[k:], n[:k], n[k:], 0.1)}
    for loss_type, value in ours.items():
        dpo_tr.loss_types = [loss_type]
        theirs = dpo_tr._compute_loss(moved, b, False)
        theirs = theirs[0] if isinstance(theirs, tuple) else theirs
        diffs[loss_type] = abs(theirs.item() - value.item()) / max(1.0, abs(theirs.item()))
        print(f"{loss_type:>8}: TRL {theirs.item():.6f}  ours {value.item():.6f}")

# %%
unpaired = [{"prompt": [{"role": "user", "content": x["prompt"]}], "label": key == "chosen",
             "completion": [{"role": "assistant", "content": x[key]}]}
            for x in few for key in ("chosen", "rejected")]
kto_tr = KTOTrainer(model=moved, ref_model=sft, processing_class=tok,
                    args=KTOConfig(per_device_train_batch_size=16, **common),
                    train_dataset=Dataset.from_list(unpaired))
b = next(iter(kto_tr.get_train_dataloader()))
with torch.no_grad():
    theirs = kto_tr._compute_loss(moved, b, False)
    theirs = (theirs[0] if isinstance(theirs, tuple) else theirs).item()
    main = labelled(b["input_ids"], b["completion_mask"], b["attention_mask"])
    mis = labelled(b["KL_input_ids"], b["KL_completion_mask"], b["KL_attention_mask"])
    z = (pf.sequence_stats(moved, mis)[0] - pf.sequence_stats(sft, mis)[0]).mean().clamp(min=0)
    value = kto_loss(pf.sequence_stats(moved, main)[0], pf.sequence_stats(sft, main)[0],
                     b["label"], z, 0.1).item()
diffs["kto"] = abs(theirs - value)
print(f"     kto: TRL {theirs:.6f}  ours {value:.6f}  (reference point z = {z:.4f})")

# %%
import types
from trl.experimental.cpo import CPOTrainer
from trl.experimental.orpo import ORPOTrainer

mean_c, mean_r, nll = lp[:k] / n[:k], lp[k:] / n[k:], -(lp[:k].sum() / n[:k].sum())
acc = types.SimpleNamespace(device="cpu")
theirs = nll - ORPOTrainer.odds_ratio_loss(types.SimpleNamespace(beta=0.1, accelerator=acc),
                                           mean_c, mean_r)[0].mean()
diffs["orpo"] = abs(theirs - orpo_loss(mean_c, mean_r, nll, 0.1)).item()
cpo = types.SimpleNamespace(beta=2.0, simpo_gamma=0.5, loss_type="simpo", alpha=0.0,
                            label_smoothing=0.0, accelerator=acc)
theirs = CPOTrainer.cpo_loss(cpo, mean_c, mean_r)[0].mean()
diffs["simpo"] = abs(theirs - simpo_loss(mean_c, mean_r, 2.0, 0.5)).item()
print({name: f"{v:.1e}" for name, v in diffs.items()})
assert max(diffs.values()) < 1e-5

# %% [markdown]
# ### The family on the same pairs, at a matched budget
#
# `pf.train_preference` trains the SFT policy (all weights, AdamW, learning rate $10^{-4}$) for 40
# steps of 8 pairs: the same pairs in the same order for every loss, and the β each paper uses
# (0.1; SimPO's β = 2 with γ = 0.5 on its per-token scale). Every 10 steps it records the mean log-
# probability of 32 held-out pairs' chosen and rejected answers. One seed live, DPO:

# %%
pairs, held = load_jsonl("preferences_train"), load_jsonl("preferences_test")
# fresh copies, as in the sweep: the TRL trainers above wrapped `sft` (as their reference model),
# and a deep copy of it does not train
dpo_policy, _ = load_model("sft_policy")
dpo_ref, _ = load_model("sft_policy")
budget = {k: sweeps_rlvr.PREFERENCE[k] for k in ("steps", "batch_size", "lr")}
hist = pf.train_preference("dpo", dpo_policy, dpo_ref, tok, pairs, held[:32], seed=0, **budget)
plot_lines(hist["step"], {"chosen": hist["chosen"], "rejected": hist["rejected"]},
           "DPO: log π of held-out answers over training", "step", "mean log-probability")
print({k: [round(v, 2) for v in vs] for k, vs in hist.items()})
assert hist["chosen"][-1] < hist["chosen"][0] - 1 and hist["rejected"][-1] < hist["rejected"][0] - 1

# %% [markdown]
# Both lines fall. The cell above prints the held-out pairs' mean log-probabilities every 10 steps:
# the rejected answers lost more than the chosen ones, so the margin grew and the loss fell, but the
# chosen answers became *less* likely than under the SFT policy. This is **likelihood
# displacement** (Razin et al. 2024): DPO's loss sees only the difference of the two log-ratios, so
# it is satisfied when both fall, and the probability mass goes to answers in neither set. The
# shipped sweep `preference_family` (3 seeds; the live run is DPO's seed 0) places it, and runs
# every loss of the family on the same pairs:

# %%
fam = sweeps.load("preference_family")
pm = ["correct", "gold", "kl", "words", "chosen_logp_change", "rejected_logp_change"]
print(sweeps.place(hist["chosen"][-1] - hist["chosen"][0], fam, "dpo", "chosen_logp_change"))
sweeps.table(fam, pm)

# %%
pv = {arm: {m: sweeps.values(fam, arm, m) for m in pm} for arm in fam["arms"]}
for arm in pf.LOSSES:
    for m in ("gold", "correct"):
        print(f"{m:>7}:", verdict(pv[arm][m], pv["sft"][m], (arm, "SFT")))
for arm in ("ipo", "kto", "orpo", "simpo"):
    for m in ("gold", "correct", "kl"):
        print(f"{m:>7}:", verdict(pv[arm][m], pv["dpo"][m], (arm, "dpo")))
assert differs(pv["dpo"]["gold"], pv["sft"]["gold"])
assert max(pv["dpo"]["chosen_logp_change"]) < 0  # displaced in every seed
assert max(pv["orpo"]["kl"]) < min(pv["dpo"]["kl"])

# %% [markdown]
# At the matched budget (40 steps of 8 pairs, learning rate $10^{-4}$, each paper's β), over 3 seeds:
#
# * **DPO**: gold −0.565 → −0.142 ± 0.033 and correctness 0.155 → 0.242 ± 0.015, both beyond the
#   spread; KL 4.10 ± 0.37 nats. Its chosen answers lost 9.5 ± 2.7 nats and the rejected 11.3 ± 3.2:
#   displaced in every seed.
# * **KTO**, which saw each answer alone with a good/bad label, reached the same place: KTO − DPO is
#   within noise on gold, correctness and KL. Pairs were not needed here.
# * **ORPO** (no reference model) stayed closest to the SFT policy (KL 0.41 ± 0.07) and its chosen
#   answers barely moved (−0.43 nats): its SFT term holds them up. Correctness rose beyond noise
#   (+0.078), gold did not (within noise of SFT, and 0.30 below DPO): at this budget it changed less.
# * **SimPO** (no reference, per-token means, β = 2, γ = 0.5) moved the policy as far as DPO (KL
#   within noise of DPO's) but somewhere else: answers of 2.8 ± 0.8 words instead of 6.7, hardly
#   ever polite (0.083), correctness and gold within noise of the SFT policy and below DPO's. Its
#   objective does not pay for length, and nothing anchors it to a reference: short answers were the
#   shortcut it found.
# * **IPO** at β = 0.1 asks for a per-token margin of $1/(2\beta) = 5$ nats, far beyond the margins
#   of these answers, and its three seeds went three ways (KL from 1.7 to 11.8, chosen log-probability
#   from −2.5 to −140): every comparison with it is within noise. IPO's β lives on another scale than
#   DPO's; a larger β (a smaller target) is what it needs: see "IPO's β" below.
#
# So on this world DPO and KTO are the robust defaults; what each loss *needs* (pairs, a reference)
# matters more than small differences in gold, which three seeds cannot resolve.
#
# ### DPO's β
#
# β sets how far the policy may move: a small β makes the same log-ratio margin cost less, so the
# policy moves further before the loss is satisfied.

# %%
betas = {"dpo β=0.03": 0.03, "dpo": 0.1, "dpo β=0.3": 0.3}
for arm, beta in betas.items():
    s_kl, s_gold = sweeps.summary(fam, arm, "kl"), sweeps.summary(fam, arm, "gold")
    print(f"β = {beta:<5} KL {s_kl.fmt(2)}  gold {s_gold.fmt(3)}")
for m in ("kl", "gold", "chosen_logp_change"):
    print(f"{m:>18}:", verdict(pv["dpo"][m], pv["dpo β=0.3"][m], ("β=0.1", "β=0.3")), "|",
          verdict(pv["dpo β=0.03"][m], pv["dpo β=0.3"][m], ("β=0.03", "β=0.3")))
assert differs(pv["dpo"]["kl"], pv["dpo β=0.3"]["kl"])

# %% [markdown]
# The order is the one the theory predicts: KL 9.7 ± 3.8 at β = 0.03, 4.1 ± 0.4 at β = 0.1 and
# 1.7 ± 0.9 at β = 0.3 (0.1 vs 0.3 beyond noise; 0.03's seeds spread too widely to separate it), and
# the smaller β displaced the chosen answers far more (−38.8 against −2.8 nats). Gold is within noise
# across the three: at this budget the extra distance bought nothing the gold reward can see.
#
# ### IPO's β
#
# IPO's β is not DPO's: it sets the target margin $1/(2\beta)$ of the per-token log-ratio, so the
# shared default β = 0.1 asked for 5 nats per token. The sweep `preference_ipo_beta` runs IPO on the
# same pairs, order and budget at β = 0.3 and 1 (targets of 1.67 and 0.5 nats per token), 3 seeds:

# %%
ipo_b = sweeps.load("preference_ipo_beta")
ipo_arms = {"ipo": (fam, 0.1), "ipo β=0.3": (ipo_b, 0.3), "ipo β=1": (ipo_b, 1.0)}
for arm, (rec, beta) in ipo_arms.items():
    s_kl, s_gold = sweeps.summary(rec, arm, "kl"), sweeps.summary(rec, arm, "gold")
    print(f"IPO β = {beta:<4} KL {s_kl.fmt(2):>12}  gold {s_gold.fmt(3)}")
iv = {m: sweeps.values(ipo_b, "ipo β=1", m) for m in ("gold", "correct", "kl")}
for m in ("gold", "correct", "kl"):
    print(f"{m:>7}:", verdict(iv[m], pv["sft"][m], ("IPO β=1", "SFT")), "|",
          verdict(iv[m], pv["dpo"][m], ("IPO β=1", "DPO")))
assert differs(iv["gold"], pv["sft"]["gold"]) and differs(pv["dpo"]["kl"], iv["kl"])

# %% [markdown]
# At β = 1 IPO is stable: KL 1.25 ± 0.35 nats instead of 7.25 ± 5.13, gold and correctness above the
# SFT policy beyond noise (+0.269 and +0.070), gold and correctness within noise of DPO's, at a
# KL 2.85 nats lower than DPO's (beyond noise). At β = 0.3 the seeds still spread (KL 2.34 ± 1.42).
# The comparison of section 6 was fair to IPO only once its β was on its own scale: a method
# compared at a borrowed hyper-parameter is not compared.
#
# ## 7 · When to pick which
#
# | you have | pick | why |
# |---|---|---|
# | a checker (tests, exact answers, a verifier) | GRPO / RLVR | rewards the policy's own samples; nothing to hack but the checker |
# | a checker of every step, and the working matters | GRPO on the step check (process reward) | a final-answer check also pays for lucky guesses with wrong steps |
# | a learned reward model | GRPO or PPO with a KL leash, and a held-out judge | it rewards what the reward model likes, including style |
# | preference pairs, a reference model | DPO (default), IPO if labels are noisy and DPO overfits (tune its β on its own scale) | offline, cheap, no sampling |
# | only thumbs up / thumbs down, unpaired | KTO | needs no pairs |
# | pairs, no memory for a reference, SFT not done yet | ORPO | SFT and preference in one pass |
# | pairs, answers of very different lengths | SimPO | per-token means: length is not rewarded |
#
# ## Summary
#
# * GRPO replaces PPO's value head by the group mean: $A_i = (r_i - \bar r)/(\mathrm{std} + \varepsilon)$;
#   its loss adds β·k3 per token; with one update per batch the clip never acts. Our loss equals
#   TRL's for all four aggregations.
# * With the world's verifier as the reward, GRPO raised sampled correctness from 0.148 to 0.249
#   (80 steps, 5 seeds, CI of the gain +0.074 to +0.129) and greedy correctness from 0.060 to 0.346.
#   The learned reward model reached the same correctness (within noise) but drifted almost five
#   times as far (KL 2.27 against 0.48 nats) and towards its favourite style (0.906 polite answers).
# * A 0/1 verifier wastes most groups (0.74 uniform here); G = 2 wastes more (0.888). Std scaling,
#   the per-answer mean and Dr. GRPO made no measurable difference on 15-token answers.
# * On chained arithmetic with the working shown (format taught by SFT), GRPO rewarded by a
#   step-checking verifier raised full correctness (right answer, every step right) from 0.229 to
#   0.271 (CI of the gain +0.008 to +0.076); rewarded by the final answer only it did not, and
#   neither raised the final answer beyond noise (+0.023 each). RL sharpened what the policy could
#   already do: sampling the SFT policy at temperature 0.7 did as well. Tune RL's learning rate on
#   validation questions, and set TRL's reference model yourself when the policy does not start from
#   its checkpoint on disk.
# * The preference family at a matched budget: DPO and KTO (unpaired) raised gold and correctness
#   equally; ORPO stayed closest to the reference; SimPO shortened the answers and gained nothing;
#   IPO was unstable at the shared β = 0.1 and stable at its own scale (β = 1: DPO's gold within
#   noise, at a lower KL). DPO's chosen answers lost 9.5 nats while the loss fell: likelihood
#   displacement, larger at smaller β.
#
# ## Quiz
#
# 1. Why does a group whose answers are all correct teach GRPO nothing?
# 2. With TRL's default `num_iterations=1`, when does the clip in GRPO's loss act?
# 3. Why is k3 preferred over k1 as a per-token KL estimate?
# 4. Which of DPO, IPO, KTO, ORPO and SimPO need a reference model?
# 5. The chosen answers' log-probability fell during DPO training, yet the loss fell. How?
#
# <details><summary>Answers</summary>
#
# 1. Its rewards are equal, so every advantage is (r − mean)/std = 0 and the loss has no policy
#    gradient from it (only the KL term acts); `frac_reward_zero_std` counts such groups.
# 2. Never: the samples come from the current policy, so the ratio is 1 for the only update. It acts
#    only when a batch is reused (`num_iterations > 1`) or generated by a stale policy.
# 3. Both have the KL as their mean under the policy's samples, but k3 = e^d − d − 1 is never
#    negative and varies much less when the two policies are close.
# 4. DPO, IPO and KTO; ORPO and SimPO do not.
# 5. DPO's loss depends only on the margin between chosen and rejected log-ratios; both can fall as
#    long as the rejected falls faster (likelihood displacement).
# </details>
#
# ## Interview questions
#
# * How does GRPO differ from PPO, and what replaces the value function?
# * What is RLVR, and why did it work for reasoning models? What can a verifier not fix?
# * What do Dr. GRPO and DAPO change in GRPO's loss, and why?
# * Compare DPO, IPO, KTO, ORPO and SimPO: what does each need and what does it change?
# * What is likelihood displacement in DPO, and why does it matter?
#
# Answers, with this chapter's numbers, and the exercises are in
# [the exercises notebook](../exercises/14_rlvr_preference_exercises.ipynb).
