# %% [markdown]
# # 14 · Reasoning with verifiable rewards and the preference family — Solutions
#
# **Measured runtime:** 5 s on a 2-core CPU (`make execute`; your machine may differ).
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
# `rlvr_reasoning.json`, `preference_family.json`); the cell prints them.

# %%
for name in ("rlvr_reward", "rlvr_reasoning", "preference_family"):
    rec = sweeps.load(name)
    print(name)
    print(sweeps.table(rec, [m for m in ("correct", "gold", "kl", "words") if m in
                             rec["results"][rec["arms"][0]][str(rec["seeds"][0])]]))

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
# Reinforcement learning from verifiable rewards: the reward is a program that checks the answer (an exact number, unit tests, a proof checker), so there is no reward model to hack and no annotators. It works when the policy already produces a right answer some of the time, pass@k well above pass@1, and RL moves probability onto those answers. In the lesson the SFT policy answered fact questions right on about half of its samples and nearly always within 8, but arithmetic almost never. With chapter 09's budget (20 steps of 32 answers) the verifier and the learned reward both raised greedy correctness from 0.060 to about 0.31 (3 seeds, far beyond the spread), mostly by flipping the greedy answer from a truncated template to a short one; sampled correctness rose +0.046 with the verifier (within noise of 3 seeds) and +0.051 with the learned reward (beyond it). The learned reward also raised KL (1.03 vs 0.32 nats) and politeness (0.68 vs 0.52): a style effect the verifier does not have. What a verifier cannot fix: a policy that cannot do the task (on chained arithmetic the format-trained 2 M model had 0 % valid working and GRPO did not raise correctness; greedy correctness even fell from 0.110 to 0.030), and wasted batches, 72 % of the verifier's groups were all-equal and taught nothing. A final-answer verifier also rewards lucky guesses with wrong working.
# <!-- END SOLUTION -->
#
# **Q3. What do Dr. GRPO and DAPO change in GRPO's loss, and why?**
#
# <!-- BEGIN SOLUTION -->
# The original GRPO loss averages each answer's per-token losses over its own length and then over answers, so every answer gets the same total weight and a token of a long answer counts less: long wrong answers are punished less per token, which lets answers grow long. DAPO (`loss_type="dapo"`, TRL's default) averages over all tokens of the batch, so every token counts the same; it also clips the ratio higher (`epsilon_high`, 0.28) and drops groups whose rewards are all equal (dynamic sampling). Dr. GRPO divides by a constant (answers × `max_completion_length`) and stops dividing advantages by the group's std, because the std gives near-uniform groups (questions that are too easy or too hard) as much weight as informative ones. The lesson read the per-token weights off the gradient on a TRL batch: under `grpo` the short answer's tokens weighed several times the long one's, under DAPO and Dr. GRPO the same. A training comparison of the variants over seeds is declared in `course_lib/build/sweeps_rlvr.py` (PLANNED) but not shipped yet.
# <!-- END SOLUTION -->
#
# **Q4. Compare DPO, IPO, KTO, ORPO and SimPO: what does each need and what does it change?**
#
# <!-- BEGIN SOLUTION -->
# TODO-Q4
# <!-- END SOLUTION -->
#
# **Q5. What is likelihood displacement in DPO, and why does it matter?**
#
# <!-- BEGIN SOLUTION -->
# TODO-Q5
# <!-- END SOLUTION -->
