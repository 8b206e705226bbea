# %% [markdown]
# # 14 · Reasoning with verifiable rewards and the preference family — Solutions
#
# **Measured runtime:** 7 s on a 2-core CPU (`make execute`; your machine may differ).
#
# Exercises for [the lesson](../notebooks/14_rlvr_preference.ipynb). Each exercise says its level:
# ★ warm-up, ★★ core, ★★★ stretch. Write your code where it says so, then run the check cell below
# it: it tells you what is wrong, not only that something is. The lesson's functions are in
# `course_lib.grpo` and `course_lib.preference` if you want to compare.

# %%
import torch
import torch.nn.functional as F
import course_lib
from course_lib import sweeps
from course_lib.course.checkers import ch14

device = course_lib.setup(seed=0)


# %% [markdown]
# ## Exercise 1 ★ — group-relative advantages
#
# Write `advantages(rewards, group_size)`: `rewards` holds $N \cdot G$ rewards, the $G$ answers to
# one prompt next to each other. Return one advantage per answer,
# $A_i = (r_i - \operatorname{mean}_{\text{group}}) / (\operatorname{std}_{\text{group}} + 10^{-4})$,
# with the sample standard deviation (Bessel's correction, as `torch.std`). Do not change `rewards`.

# %%
def advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    ### BEGIN SOLUTION
    grouped = rewards.view(-1, group_size)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    return (centred / (grouped.std(dim=1, keepdim=True) + 1e-4)).view(-1)
    ### END SOLUTION


# %%
ch14.check_group_advantages(advantages)
rewards, g = ch14.advantage_case()
print("rewards   ", rewards.tolist())
print("advantages", advantages(rewards, g).round(decimals=2).tolist())

# %% [markdown]
# ## Exercise 2 ★★ — GRPO's per-token loss with the k3 KL term
#
# Write `grpo_token_loss(logps, old_logps, ref_logps, advantages, mask, beta, epsilon)` for answers
# of different lengths ([B, T] tensors, `mask` 1 on each answer's tokens, 0 on padding):
#
# * the ratio $\rho = e^{\log\pi - \log\pi_{\text{old}}}$ per token and the clipped surrogate
#   $-\min(\rho A, \operatorname{clip}(\rho, 1-\epsilon, 1+\epsilon) A)$, one advantage per answer;
# * plus $\beta\,k_3$ with $k_3 = e^{d} - d - 1$, $d = \log\pi_{\text{ref}} - \log\pi$ (no ratio
#   correction);
# * aggregated the original GRPO way: the mean over each answer's own tokens, then over answers.

# %%
def grpo_token_loss(logps, old_logps, ref_logps, advantages, mask, beta, epsilon):
    ### BEGIN SOLUTION
    ratio = torch.exp(logps - old_logps)
    a = advantages.unsqueeze(1)
    surrogate = torch.min(ratio * a, ratio.clamp(1 - epsilon, 1 + epsilon) * a)
    d = ref_logps - logps
    per_token = -surrogate + beta * (torch.exp(d) - d - 1)
    return ((per_token * mask).sum(-1) / mask.sum(-1)).mean()
    ### END SOLUTION


# %%
ch14.check_grpo_token_loss(grpo_token_loss)
case = ch14.loss_case()
args = [case[k] for k in ("logps", "old_logps", "ref_logps", "advantages", "mask")]
for beta in (0.0, 0.1, 1.0):
    print(f"β = {beta}: loss {grpo_token_loss(*args, beta, 0.2):+.4f}")

# %% [markdown]
# ## Exercise 3 ★★ — SimPO from per-token log-probabilities
#
# Write `simpo(chosen, chosen_mask, rejected, rejected_mask, beta, gamma)`: per-token
# log-probabilities of the chosen and rejected answers ([B, T], padded, with masks). Average each
# answer's log-probabilities over its own tokens, then return the mean of
# $-\log\sigma\big(\beta(\bar p_w - \bar p_l) - \gamma\big)$.

# %%
def simpo(chosen, chosen_mask, rejected, rejected_mask, beta, gamma):
    ### BEGIN SOLUTION
    mean_w = (chosen * chosen_mask).sum(-1) / chosen_mask.sum(-1)
    mean_l = (rejected * rejected_mask).sum(-1) / rejected_mask.sum(-1)
    return -F.logsigmoid(beta * (mean_w - mean_l) - gamma).mean()
    ### END SOLUTION


# %%
ch14.check_simpo(simpo)
c = ch14.simpo_case()
for gamma in (0.0, 0.5, 1.0):
    loss = simpo(c["chosen"], c["chosen_mask"], c["rejected"], c["rejected_mask"], 2.0, gamma)
    print(f"γ = {gamma}: SimPO loss {loss:.4f}")

# %% [markdown]
# **What do the numbers say?** *(a sentence or two)* In the checker's case the chosen answers are
# shorter than the rejected ones. What would a loss on summed log-probabilities prefer, and why does
# SimPO divide by the length?
#
# <!-- BEGIN SOLUTION -->
# Summed log-probabilities are more negative for longer answers, so a loss on sums sees a margin in
# favour of the short chosen answers that is partly just their length; trained on it, a policy can
# raise the margin by shortening or lengthening answers instead of by preferring better content.
# The per-token mean removes that: SimPO compares how likely each answer is per token, and γ asks for
# a fixed margin on that scale.
# <!-- END SOLUTION -->

# %% [markdown]
# ## Interview questions
#
# The numbers below come from the lesson's shipped sweeps (`data/sweeps/rlvr_reward.json`,
# `rlvr_variants.json`, `rlvr_reasoning.json`, `preference_family.json`,
# `preference_ipo_beta.json`); the cell prints them.

# %%
shown = ("correct", "greedy_correct", "gold", "kl", "words", "frac_zero_std", "valid_working",
         "fully_correct", "lucky", "correct_cool", "chosen_logp_change", "rejected_logp_change")
for name in ("rlvr_reward", "rlvr_variants", "rlvr_reasoning", "preference_family",
             "preference_ipo_beta"):
    rec = sweeps.load(name)
    print(name)
    everywhere = [m for m in shown if all(m in rec["results"][a]["0"] for a in rec["arms"])]
    print(sweeps.table(rec, everywhere))

# %% [markdown]
# **Q1. How does GRPO differ from PPO, and what replaces the value function?**
#
# <!-- BEGIN SOLUTION -->
# GRPO keeps PPO's sampled answers, the clipped ratio and a KL leash to a reference, and drops the value head: for each prompt it samples a group of G answers and uses each answer's reward minus the group mean, divided by the group's std, as the advantage of all its tokens. The group mean is a Monte-Carlo baseline for that prompt, so there is no second network to train, store or get wrong; the price is G samples per prompt. Two details matter in practice: the KL is added to the loss per token with the k3 estimator e^d − d − 1 (unbiased, never negative; in the lesson's 6-token check its sd was a fraction of k1's), not folded into the reward as PPO does; and with TRL's default of one update per batch the ratio is 1, so the clip never acts. The lesson's from-scratch loss equals TRL's `GRPOTrainer._compute_loss` on its own batch for the grpo, bnpo, dr_grpo and dapo aggregations (max difference printed there, below 1e-5, with the clip and the KL term active).
# <!-- END SOLUTION -->
#
# **Q2. What is RLVR, and why did it work for reasoning models? What can a verifier not fix?**
#
# <!-- BEGIN SOLUTION -->
# Reinforcement learning from verifiable rewards: the reward is a program that checks the answer (an exact number, unit tests, a proof checker), so there is no reward model to hack and no annotators. It works when the policy already produces a right answer some of the time, pass@k well above pass@1, and RL moves probability onto those answers. In the lesson the SFT policy answered fact questions right on about half of its samples and nearly always within 8, but arithmetic almost never. GRPO on the verifier (80 steps of 32 answers, 5 seeds) raised sampled correctness from 0.148 ± 0.013 to 0.249 ± 0.022 (+0.102, 95 % CI +0.074 to +0.129) and greedy correctness from 0.060 to 0.346, the latter mostly by flipping the greedy answer from a truncated template to a short one. The learned reward model reached the same correctness (−0.024, within noise) but a KL of 2.27 nats against 0.48 and 0.906 polite answers against 0.473: a style drift the verifier does not cause. What a verifier cannot fix: wasted batches (0.74 of the verifier's groups had equal rewards and taught nothing), and answers that are right for the wrong reasons, unless it checks the reasons too. On chained arithmetic with the working shown (format taught by SFT; 150 GRPO steps, 3 seeds, one factor changed: the reward), the final-answer verifier left the working no better (valid working −0.017, within noise) and the share of correct answers with wrong steps at 0.440 against 0.357, because it pays a lucky guess as much as right working; a step-checking verifier (answer and every step right) raised full correctness from 0.229 to 0.271 (+0.042, 95 % CI +0.008 to +0.076). Neither raised the final answer beyond noise (0.357 → 0.380 with either), and sampling the SFT policy at temperature 0.7 gave 0.409 with no training: RL sharpened what the policy could already do (pass@4 stayed at 0.79), it did not teach it arithmetic. (Two practical traps found on the way: TRL's GRPOTrainer loads its reference model from the policy's checkpoint on disk, so a policy changed in memory gets a KL leash to the wrong model unless you set the reference yourself; and chapter 09's learning rate of 1e-4 lowered greedy correctness on validation questions: tune RL's learning rate like any other.)
# <!-- END SOLUTION -->
#
# **Q3. What do Dr. GRPO and DAPO change in GRPO's loss, and why?**
#
# <!-- BEGIN SOLUTION -->
# The original GRPO loss averages each answer's per-token losses over its own length and then over answers, so every answer gets the same total weight and a token of a long answer counts less: long wrong answers are punished less per token, which lets answers grow long. DAPO (`loss_type="dapo"`, TRL's default) averages over all tokens of the batch, so every token counts the same; it also clips the ratio higher (`epsilon_high`, 0.28) and drops groups whose rewards are all equal (dynamic sampling). Dr. GRPO divides by a constant (answers × `max_completion_length`) and stops dividing advantages by the group's std, because the std gives near-uniform groups (questions that are too easy or too hard) as much weight as informative ones. The lesson read the per-token weights off the gradient on a TRL batch: under `grpo` the short answer's tokens weighed several times the long one's, under DAPO and Dr. GRPO the same. In training (the shipped `rlvr_variants` sweep, 20 steps on the verifier, 3 seeds each against the recipe's 5) none of the loss changes moved correctness, length or KL beyond the seed spread: no std scaling, the per-answer mean and Dr. GRPO each changed sampled correctness by about −0.02, within noise, because these answers are about 15 tokens long and capped at 20, so the averaging barely matters. Only the group size moved something measurable: with G = 2 the share of groups with equal rewards rose from 0.740 to 0.888, almost nine batches in ten teaching nothing. The length bias is a problem of long, variable reasoning chains, which this run cannot show.
# <!-- END SOLUTION -->
#
# **Q4. Compare DPO, IPO, KTO, ORPO and SimPO: what does each need and what does it change?**
#
# <!-- BEGIN SOLUTION -->
# DPO needs pairs and a frozen reference model: −log σ(β h), h the chosen log-ratio minus the rejected one, so it keeps pushing the margin up. IPO replaces the sigmoid by a squared distance to a target margin 1/(2β) (per token in TRL), so the margin stops growing; it needs the same data. KTO needs only answers labelled good or bad one at a time, and a reference: each answer's log-ratio is pushed above or below a reference point (an estimate of the KL). ORPO needs no reference: the SFT loss on the chosen answer plus β times a log-odds-ratio term. SimPO needs no reference either: it compares per-token mean log-probabilities with a margin γ, so length is not rewarded. In the lesson's sweep (the same pairs, 40 steps of 8, learning rate 1e-4, each paper's β, 3 seeds) DPO raised gold from −0.565 to −0.142 ± 0.033 and correctness from 0.155 to 0.242 at KL 4.10 nats; KTO, from unpaired labels, was within noise of DPO on gold, correctness and KL; ORPO stayed near the reference (KL 0.41) with correctness +0.078 but gold within noise of the SFT policy; SimPO shortened the answers to 2.8 words and raised neither gold nor correctness; IPO at β = 0.1 (a target of 5 nats per token) went three different ways in three seeds (KL 1.7 to 11.8). So: DPO by default when you have pairs and memory for a reference; KTO for thumbs-up/down data; ORPO or SimPO when a reference does not fit (ORPO also does the SFT), with their β and learning rate tuned on held-out data; IPO only with a β chosen on its own scale: at β = 1 (a target of 0.5 nats per token instead of 5) its seeds agreed (KL 1.25 ± 0.35), it raised gold (+0.269) and correctness (+0.070) beyond noise, and it was within noise of DPO on both at a KL 2.85 nats lower.
# <!-- END SOLUTION -->
#
# **Q5. What is likelihood displacement in DPO, and why does it matter?**
#
# <!-- BEGIN SOLUTION -->
# DPO's loss depends only on the margin between the chosen and rejected log-ratios, so it falls whenever the rejected answer's log-probability falls faster than the chosen one's, even if both fall. The probability mass then goes to answers that are in neither set. The lesson measured it on 32 held-out pairs: over 40 DPO steps the chosen answers lost 9.5 ± 2.7 nats and the rejected 11.3 ± 3.2 (3 seeds; the chosen fell in every seed), while gold still rose. A smaller β displaced far more (−38.8 nats at β = 0.03 against −2.8 at β = 0.3). It matters because the chosen answer is usually the best answer you have, and the freed mass can land on answers nobody checked (here SimPO's went to 2-3 word answers); it also shows up as KL (4.1 nats for DPO at β = 0.1). Remedies: a larger β, an SFT term on the chosen answers (ORPO's chosen answers lost only 0.43 nats, KL 0.41; RPO adds the same term to DPO), fewer steps with the held-out log-probabilities watched, and judging the result with a gold or held-out metric, not the training margin.
# <!-- END SOLUTION -->
