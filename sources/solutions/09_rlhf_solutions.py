# %% [markdown]
# # 09 · RLHF: reward models, PPO and DPO — Solutions
#
# **Measured runtime:** 4 s on a 2-core CPU (`make execute`; your machine may differ).
#
# Exercises for [the lesson](../notebooks/09_rlhf.ipynb). Each exercise says its level: ★ warm-up,
# ★★ core, ★★★ stretch. Write your code where it says so, then run the check cell below it: it
# tells you what is wrong, not only that something is. All five are small tensor functions, the
# pieces the lesson imported from `course_lib`; the checks compare yours with them on cases where the
# usual mistakes give a recognisably wrong answer.

# %%
import torch
import torch.nn.functional as F
import course_lib
from course_lib.course.checkers import ch09

device = course_lib.setup(seed=0)


# %% [markdown]
# ## Exercise 1 ★ — the Bradley–Terry loss
#
# Write `bt_loss(r_chosen, r_rejected)`: the mean over the pairs of $-\log \sigma(r_\text{chosen} - r_\text{rejected})$,
# as a 0-d tensor that keeps the gradient. It must stay finite for a margin of ±200.

# %%
def bt_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    ### BEGIN SOLUTION
    return -F.logsigmoid(r_chosen - r_rejected).mean()
    ### END SOLUTION


# %%
ch09.check_bradley_terry(bt_loss)


# %% [markdown]
# ## Exercise 2 ★ — the DPO loss
#
# Write `dpo(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)` from the four sequence
# log-probabilities (each of shape `[batch]`):
#
# $$\mathcal{L} = -\,\mathrm{mean}\,\log \sigma\big(\beta\,[(\log \pi_w - \log \pi_{\text{ref},w}) - (\log \pi_l - \log \pi_{\text{ref},l})]\big).$$

# %%
def dpo(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float) -> torch.Tensor:
    ### BEGIN SOLUTION
    margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return -F.logsigmoid(beta * margin).mean()
    ### END SOLUTION


# %%
ch09.check_dpo_loss(dpo)


# %% [markdown]
# ## Exercise 3 ★★ — per-token KL-penalised rewards
#
# In the shifted frame of the lesson, `logp`, `ref_logp` and `mask` are `[B, T]`; `mask` is 1 on the
# response tokens (a contiguous block per row; rows have different lengths, the rest is prompt or
# padding); `scores` is `[B]`, the reward model's score of each whole answer. Write
# `kl_rewards(scores, logp, ref_logp, mask, kl_coef)` returning the rewards `[B, T]`:
# $-\beta\,(\log\pi - \log\pi_\text{ref})$ on every response token, 0 elsewhere, plus the score on the
# **last** response token of each row.

# %%
def kl_rewards(scores, logp, ref_logp, mask, kl_coef: float) -> torch.Tensor:
    ### BEGIN SOLUTION
    rewards = -kl_coef * (logp - ref_logp) * mask
    positions = torch.arange(mask.shape[1]).expand_as(mask)
    last = (positions * mask).argmax(-1)  # the largest position where mask is 1
    rewards[torch.arange(len(scores)), last] += scores
    return rewards
    ### END SOLUTION


# %%
ch09.check_kl_rewards(kl_rewards)


# %% [markdown]
# ## Exercise 4 ★★ — generalised advantage estimation
#
# Write `gae(rewards, values, mask, gamma, lam)` returning the advantages `[B, T]`: going backwards
# over $t$, $\delta_t = r_t + \gamma V_{t+1} - V_t$ and $A_t = \delta_t + \gamma\lambda A_{t+1}$, with
# $V_{T} = 0$ after the last position. Positions outside the mask must not contribute (treat their
# values as 0) and get advantage 0. The check passes `values` with garbage outside the mask on purpose.

# %%
def gae(rewards, values, mask, gamma: float, lam: float) -> torch.Tensor:
    ### BEGIN SOLUTION
    values = values * mask
    advantages = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0])
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * mask[:, t]
        advantages[:, t] = running
    return advantages
    ### END SOLUTION


# %%
ch09.check_gae(gae)


# %% [markdown]
# ## Exercise 5 ★★★ — PPO's clipped policy loss
#
# Write `clip_loss(logp, old_logp, advantages, mask, clip)`: with $\rho = e^{\log\pi - \log\pi_\text{old}}$,
# the mean over the masked positions of $\max(-A\rho,\; -A\,\mathrm{clip}(\rho, 1-\epsilon, 1+\epsilon))$,
# a loss to minimise that keeps the gradient through `logp`.

# %%
def clip_loss(logp, old_logp, advantages, mask, clip: float) -> torch.Tensor:
    ### BEGIN SOLUTION
    ratio = torch.exp(logp - old_logp)
    losses = torch.maximum(-advantages * ratio, -advantages * ratio.clamp(1 - clip, 1 + clip))
    return (losses * mask).sum() / mask.sum()
    ### END SOLUTION


# %%
ch09.check_clip_loss(clip_loss)

# %% [markdown]
# Why max and not min? Take a token with $A > 0$ whose ratio already reached $\rho = 1.5$ (ε = 0.2).
# Unclipped, the loss $-A\rho$ keeps falling as $\rho$ grows, so the optimiser keeps pushing. Clipped,
# $-A \cdot 1.2$ is flat. The max picks the flat one: no gradient, the brake works. For $A < 0$ and
# $\rho < 0.8$ it is the same story mirrored. With min, the optimiser would always get the more
# rewarding (unclipped) side and the clip would never act.
#
# ## Exercise 6 ★★ — read the hacking run
#
# In the lesson's section 5, what rose and what did not? Name two signals that would have warned you
# without access to the gold reward.

# %% [markdown]
# <!-- BEGIN SOLUTION -->
# The learned reward of the samples rose by 0.45 between the first and the last quarter of the β = 0 run, the gold reward changed by -0.69, and the KL to the reference grew by 10.39 nats. Two warnings that need no gold reward: (1) the KL climbing without bound (the policy leaves the region where the reward model was trained); (2) the samples themselves: reading 20 of them shows the repeated style trick. A third: score the samples with a second, independently trained reward model or a small human evaluation and stop when it disagrees with the reward being optimised.
# <!-- END SOLUTION -->

# %% [markdown]
# ## Interview questions
#
# **Q1. What is RLHF?**
#
# <!-- BEGIN SOLUTION -->
# Reinforcement learning from human feedback: (1) SFT on demonstrations gives a policy that answers in the right format; (2) a reward model is trained on comparisons (chosen vs rejected) with the Bradley–Terry loss −log σ(r_w − r_l); (3) the policy is optimised, usually with PPO, to maximise the learned reward minus β·KL to the SFT model. In the lesson: SFT on the chosen answers took the gold reward from -0.99 to -0.26; the reward model ordered 66 % of held-out pairs like the labels (ceiling about 89 % because of label noise); PPO on it reached 0.58.
# <!-- END SOLUTION -->
#
# **Q2. Why the KL penalty?**
#
# <!-- BEGIN SOLUTION -->
# The reward model is only accurate near the answers it was trained on, and the policy must keep its language ability; the KL penalty −β·(log π − log π_ref), paid on every token, keeps the policy close to the SFT reference. It also keeps the answers diverse (pure reward maximisation collapses onto one answer). In the lesson, with β = 0 the KL grew by 10.39 nats over the run (vs 2.19 at the end of training for β = 0.1, on held-out prompts) while the learned reward rose by 0.45 and the gold reward changed by -0.69.
# <!-- END SOLUTION -->
#
# **Q3. PPO vs DPO: when would you pick which?**
#
# <!-- BEGIN SOLUTION -->
# DPO needs only the pairs and a frozen reference (with LoRA, not even a second copy), no sampling, no reward model, no value head, and two hyperparameters; it is the default for offline preference data. Lesson: DPO reached gold 0.67 at KL 13.24 in 26 s; PPO 0.58 at KL 2.19 in 21 s plus 114 s of reward-model training. PPO (or GRPO) is the choice when the reward is a function you can call on new samples (unit tests, a verifier, a strong reward model), because it learns from its own samples and can go beyond the answers in the pairs; it costs sampling, four models in memory and many hyperparameters.
# <!-- END SOLUTION -->
#
# **Q4. What is reward hacking, and how do you detect it?**
#
# <!-- BEGIN SOLUTION -->
# Reward hacking is the policy exploiting errors of the learned reward: the proxy goes up, the true quality does not. It is Goodhart's law; it grows with the KL distance from the reference (Gao et al. 2023). Our reward model judged style better than correctness (77 % vs 66 % agreement with the gold reward), so without the KL penalty the learned reward rose by 0.45 while the gold reward changed by -0.69. Detect it by plotting the learned reward against an independent judge (human evaluation on a sample, a held-out reward model), by watching the KL, and by reading samples; limit it with the KL penalty, early stopping, better and ensembled reward models, and fresh preference data on the policy's own samples.
# <!-- END SOLUTION -->
