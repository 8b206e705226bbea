# %% [markdown]
# # 09 · RLHF: reward models, PPO and DPO — Solutions
#
# **Measured runtime:** 4 s on a 2-core CPU (`make execute`; your machine may differ).
#
# Exercises for [the lesson](../notebooks/09_rlhf.ipynb). Each exercise says its level: ★ warm-up,
# ★★ core, ★★★ stretch. Write your code where it says so, then run the check cell below it: it
# tells you what is wrong, not only that something is. The lesson wrote the Bradley–Terry loss, the
# DPO loss, the KL-penalised rewards, GAE and PPO's clipped loss; these exercises ask for the
# variants that practitioners use next to them: a reward margin, IPO, GRPO's KL estimator, RLOO's
# baseline and PPO's dual clip. The lesson's functions are in `course_lib` if you want to build on them.

# %%
import torch
import torch.nn.functional as F
import course_lib
from course_lib.course.checkers import ch09
from course_lib.dpo import dpo_loss
from course_lib.ppo import masked_mean
from course_lib.reward_model import bradley_terry_loss

device = course_lib.setup(seed=0)


# %% [markdown]
# ## Exercise 1 ★ — the Bradley–Terry loss with a margin
#
# Llama 2's reward models (Touvron et al. 2023, §3.2.2) add a **margin** $m \ge 0$ per pair that
# grows with how clearly the annotator preferred the chosen answer:
#
# $$\mathcal{L} = -\,\mathrm{mean}\,\log \sigma\big(r_\text{chosen} - r_\text{rejected} - m\big).$$
#
# TRL's `RewardTrainer` does the same when the data has a `margin` column. Write
# `bt_margin_loss(r_chosen, r_rejected, margin)` (three tensors of shape `[batch]`), as a 0-d tensor
# that keeps the gradient and stays finite for any margin. With $m = 0$ it must equal the lesson's
# `bradley_terry_loss`.

# %%
def bt_margin_loss(r_chosen, r_rejected, margin) -> torch.Tensor:
    ### BEGIN SOLUTION
    return -F.logsigmoid(r_chosen - r_rejected - margin).mean()
    ### END SOLUTION


# %%
ch09.check_margin_bt(bt_margin_loss)

# %% [markdown]
# What the margin changes: a pair the reward model orders correctly by 1 costs little without a
# margin, but as much as a tie when the margin is 1.

# %%
rc, rr = torch.tensor([1.0, 3.0]), torch.tensor([0.0, 0.0])
for m in (0.0, 1.0):
    per_pair = [round(x, 3) for x in (-F.logsigmoid(rc - rr - m)).tolist()]
    print(f"margin {m}: loss of the pairs won by 1 and by 3: {per_pair}")
print("bradley_terry_loss (no margin):", round(bradley_terry_loss(rc, rr).item(), 4))


# %% [markdown]
# ## Exercise 2 ★ — the IPO loss
#
# DPO's loss $-\log\sigma(\beta h)$, with the log-ratio margin
# $h = (\log \pi_w - \log \pi_{\text{ref},w}) - (\log \pi_l - \log \pi_{\text{ref},l})$, keeps falling as
# $h$ grows: with noisy or deterministic preferences it can push $h$ (and the drift from the
# reference) without bound. **IPO** (Azar et al. 2023, eq. 17) regresses $h$ onto a fixed target:
#
# $$\mathcal{L}_\text{IPO} = \mathrm{mean}\,\Big(h - \frac{1}{2\beta}\Big)^2 .$$
#
# Write `ipo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)` from the four
# log-probabilities (each `[batch]`). (TRL's `loss_type="ipo"` uses per-token averages of the
# log-probabilities instead of sums; the formula is the same.)

# %%
def ipo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float):
    ### BEGIN SOLUTION
    h = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return ((h - 1 / (2 * beta)) ** 2).mean()
    ### END SOLUTION


# %%
ch09.check_ipo(ipo_loss)

# %% [markdown]
# The difference in one picture: the gradient of each loss with respect to the margin $h$ of a
# single pair, for β = 0.1 (IPO's target is $1/(2\beta) = 5$).

# %%
for h in (0.0, 5.0, 20.0, 50.0):
    hs = torch.tensor([h], requires_grad=True)
    zero = torch.zeros(1)
    dpo_grad = torch.autograd.grad(dpo_loss(hs, zero, zero, zero, beta=0.1).loss, hs)[0].item()
    ipo_grad = torch.autograd.grad(ipo_loss(hs, zero, zero, zero, 0.1), hs)[0].item()
    print(f"h = {h:5.1f}: d loss / dh  DPO {dpo_grad:+.4f}   IPO {ipo_grad:+.4f}")

# %% [markdown]
# DPO's gradient is negative at every margin (it always pushes $h$ up, ever more weakly); IPO's is
# zero at the target and positive beyond it, so IPO pulls an overshooting pair back.
#
# ## Exercise 3 ★★ — the k3 KL estimator
#
# The lesson's per-token KL is $k_1 = \log \pi(y_t) - \log \pi_\text{ref}(y_t)$ on tokens sampled
# from $\pi$: unbiased, but negative on many tokens and noisy. GRPO (and TRL's `GRPOTrainer`) use
# **k3** (Schulman, "Approximating KL divergence", 2020): with $r = \pi_\text{ref}(y_t) / \pi(y_t)$,
#
# $$k_3 = (r - 1) - \log r ,$$
#
# also unbiased (since $\mathbb{E}_\pi[r] = 1$) and never negative. Write `kl_k3(logp, ref_logp, mask)`
# returning the per-token estimates `[B, T]`, 0 outside the mask.

# %%
def kl_k3(logp, ref_logp, mask) -> torch.Tensor:
    ### BEGIN SOLUTION
    log_r = ref_logp - logp
    return (torch.exp(log_r) - 1 - log_r) * mask
    ### END SOLUTION


# %%
ch09.check_k3(kl_k3)

# %% [markdown]
# Both estimators against the exact KL, with 5,000 tokens sampled from a policy over 8 tokens, once
# with a reference close to the policy (the regime a KL penalty keeps PPO in) and once further away:

# %%
g = torch.Generator().manual_seed(0)
logits, noise = torch.randn(8, generator=g), torch.randn(8, generator=g)
policy = torch.softmax(logits, 0)
for name, distance in [("close", 0.3), ("far", 1.5)]:
    ref = torch.softmax(logits + distance * noise, 0)
    exact = (policy * (policy / ref).log()).sum().item()
    tokens = torch.multinomial(policy, 5000, replacement=True, generator=g)
    logp, ref_logp = policy.log()[tokens], ref.log()[tokens]
    k1, k3 = logp - ref_logp, kl_k3(logp, ref_logp, torch.ones(5000))
    print(f"{name}: exact KL {exact:.4f}")
    for est, k in [("k1", k1), ("k3", k3)]:
        print(f"   {est}: mean {k.mean():.4f}  std {k.std():.4f}  min {k.min():+.4f}")

# %% [markdown]
# Both means estimate the KL. k3 never goes below 0, and here its spread is smaller, by about ten
# times when the reference is close: a batch of samples pins the KL down far more precisely. (When
# the two distributions are much further apart, $r$ gets a heavy tail and k3 can become the noisier
# of the two.)
#
# ## Exercise 4 ★★ — RLOO advantages
#
# GRPO's baseline is the group mean. **RLOO** (Ahmadian et al. 2024; TRL's `RLOOTrainer`) samples $k$
# answers per prompt and gives each the baseline of the **other** $k - 1$:
#
# $$A_i = r_i - \frac{1}{k-1} \sum_{j \ne i} r_j ,$$
#
# so an answer's own reward never enters its baseline. Write `rloo_advantages(rewards, k)`:
# `rewards` is `[n · k]`, the $k$ samples of each prompt consecutive; return one advantage per sample.

# %%
def rloo_advantages(rewards: torch.Tensor, k: int) -> torch.Tensor:
    ### BEGIN SOLUTION
    r = rewards.reshape(-1, k)
    baseline = (r.sum(dim=1, keepdim=True) - r) / (k - 1)
    return (r - baseline).reshape(-1)
    ### END SOLUTION


# %%
ch09.check_rloo(rloo_advantages)
group = torch.tensor([0.9, 0.1, 0.4, 0.2])  # the lesson's GRPO example
print("RLOO:", [round(a, 3) for a in rloo_advantages(group, 4).tolist()])
print("group mean subtracted:", [round(a, 3) for a in (group - group.mean()).tolist()])

# %% [markdown]
# RLOO's advantages are the mean-subtracted ones scaled by $k/(k-1)$: the same direction, with an
# unbiased baseline, and (unlike GRPO) not divided by the group's standard deviation.
#
# ## Exercise 5 ★★★ — PPO's dual clip
#
# With $A < 0$ the lesson's loss $\max(-A\rho, -A\,\mathrm{clip}(\rho))$ grows without bound in
# $\rho$: one token that became far more likely than when it was sampled can dominate the batch.
# **Dual-clip PPO** (Ye et al. 2020; used by LLM RL libraries such as verl) caps the loss of tokens
# with $A < 0$ at $-c\,A$ (with $c > 1$, often 3):
#
# $$L_t = \begin{cases} \min\big(\max(-A_t\rho_t,\, -A_t\,\mathrm{clip}(\rho_t, 1-\epsilon, 1+\epsilon)),\; -c\,A_t\big) & A_t < 0 \\ \max(-A_t\rho_t,\, -A_t\,\mathrm{clip}(\rho_t, 1-\epsilon, 1+\epsilon)) & A_t \ge 0 \end{cases}$$
#
# Write `dual_clip_loss(logp, old_logp, advantages, mask, clip, clip_c)`: the mean of $L_t$ over the
# masked positions, a loss to minimise that keeps the gradient through `logp`.

# %%
def dual_clip_loss(logp, old_logp, advantages, mask, clip: float, clip_c: float) -> torch.Tensor:
    ### BEGIN SOLUTION
    ratio = torch.exp(logp - old_logp)
    standard = torch.maximum(-advantages * ratio, -advantages * ratio.clamp(1 - clip, 1 + clip))
    capped = torch.minimum(standard, -clip_c * advantages)
    return masked_mean(torch.where(advantages < 0, capped, standard), mask)
    ### END SOLUTION


# %%
ch09.check_dual_clip(dual_clip_loss)
adv, one = torch.tensor([[-1.0]]), torch.ones(1, 1)
for rho in (0.5, 1.0, 2.0, 5.0, 20.0):
    logp = torch.log(torch.tensor([[rho]]))
    loss = dual_clip_loss(logp, torch.zeros(1, 1), adv, one, 0.2, 3.0).item()
    print(f"A = -1, ρ = {rho:4.1f}: loss {loss:.2f}")

# %% [markdown]
# Up to $\rho = 3$ the loss is the lesson's clipped loss; beyond, it stays at $3 = -c\,A$ and its
# gradient is 0: a token that has become far more likely since it was sampled cannot blow up the update.
#
# ## Exercise 6 ★★ — read the hacking run
#
# In the lesson's section 5, what rose and what did not? Name two signals that would have warned you
# without access to the gold reward.

# %% [markdown]
# <!-- BEGIN SOLUTION -->
# Read it off the lesson's 2 × 2 table (shipped sweep `rlhf_hacking`, three seeds), not off one run: in the corner that ran away (β = 0 with the 5× learning rate) the learned reward of the samples rose in every seed (Δlearned > 0), the gold reward of the samples rose the least of the four cells and ended lowest, and the KL to the reference grew to tens of nats, an order of magnitude above the other cells. Either change alone did not do it within 30 iterations. Two warnings that need no gold reward: (1) the KL climbing without bound (the policy leaves the region where the reward model was trained); (2) the samples themselves: reading 20 of them shows the repeated style trick. A third: score the samples with a second, independently trained reward model or a small human evaluation and stop when it disagrees with the reward being optimised.
# <!-- END SOLUTION -->

# %% [markdown]
# ## Interview questions
#
# **Q1. What is RLHF?**
#
# <!-- BEGIN SOLUTION -->
# Reinforcement learning from human feedback: (1) SFT on demonstrations gives a policy that answers in the right format; (2) a reward model is trained on comparisons (chosen vs rejected) with the Bradley–Terry loss −log σ(r_w − r_l); (3) the policy is optimised, usually with PPO, to maximise the learned reward minus β·KL to the SFT model. In the lesson the SFT stage imitated every chosen answer (about a fifth of them rude, an eighth evasive), so its favourite answer was a long template; the reward model ordered about two thirds of held-out pairs like the labels (ceiling about 89 % because of label noise); PPO, DPO and GRPO, at matched budgets over three seeds, all raised the gold reward of greedy answers far more than that of sampled answers, because one behavioural flip (dropping the template) moves every greedy answer at once. Report both, with intervals.
# <!-- END SOLUTION -->
#
# **Q2. Why the KL penalty?**
#
# <!-- BEGIN SOLUTION -->
# The reward model is only accurate near the answers it was trained on, and the policy must keep its language ability; the KL penalty −β·(log π − log π_ref), paid on every token, keeps the policy close to the SFT reference. It also keeps the answers diverse (pure reward maximisation collapses onto one answer). The lesson's 2 × 2 (β ∈ {0, 0.1} × lr ∈ {1e-4, 5e-4}, three seeds) separates it from the step size: at our budget only the corner with no penalty *and* the large learning rate ran away (KL at the end 13–59 nats against at most 5.4 in the other cells; learned reward up in every seed, the gold reward of the samples no longer rising); β = 0 at the small learning rate, or the large learning rate with β = 0.1, did not within 30 iterations. Nothing pulls an unpenalised policy back, so with more steps β = 0 alone drifts further.
# <!-- END SOLUTION -->
#
# **Q3. PPO vs DPO: when would you pick which?**
#
# <!-- BEGIN SOLUTION -->
# DPO needs only the pairs and a frozen reference (with LoRA, not even a second copy), no sampling, no reward model, no value head, and few hyperparameters; it is the default for offline preference data. Compare them fairly: the lesson gave both the same data and compute (960 answers, 60 AdamW steps, same lr and β, three seeds) and charged the reward model's training to PPO; the gold rewards are then compared with intervals (where they overlap, neither "wins"), and DPO drifts further from the reference on its own samples (likelihood displacement: the loss only widens the chosen–rejected margin). PPO (or GRPO) is the choice when the reward is a function you can call on new samples (unit tests, a verifier, a strong reward model), because it learns from its own samples and can go beyond the answers in the pairs; it costs sampling, more models in memory and more hyperparameters.
# <!-- END SOLUTION -->
#
# **Q4. What is reward hacking, and how do you detect it?**
#
# <!-- BEGIN SOLUTION -->
# Reward hacking is the policy exploiting errors of the learned reward: the proxy goes up, the true quality does not. It is Goodhart's law; it grows with the KL distance from the reference (Gao et al. 2023). Our reward model judged style better than correctness, and in the run without KL penalty at the large learning rate the learned reward of the samples rose in every seed while their gold reward stopped rising, at a KL of tens of nats. Detect it by plotting the learned reward against an independent judge (human evaluation on a sample, a held-out reward model), by watching the KL, and by reading samples; limit it with the KL penalty, a moderate learning rate, early stopping, better and ensembled reward models, and fresh preference data on the policy's own samples.
# <!-- END SOLUTION -->
#
# **Q5. What does GRPO change relative to PPO, and what do TRL's defaults for it mean?**
#
# <!-- BEGIN SOLUTION -->
# GRPO samples a group of G answers per prompt and gives every token of answer i the
# group-relative advantage (r_i − mean) / std of the group's rewards: the group mean replaces PPO's
# value head as the baseline. It keeps PPO's clipped ratio and moves the KL penalty from the reward
# (PPO's per-token k1) into the loss as the k3 estimator. TRL's defaults change the picture: β = 0,
# so there is no KL term and no reference model at all; num_iterations = 1, so each batch gets one
# step by the policy that sampled it, every ratio is exactly 1 and the clip never acts (the lesson's
# log: zero clipped tokens at one iteration, some at two), i.e. a plain policy gradient with a
# group baseline; `loss_type="dapo"` averages over all tokens of the batch instead of per answer
# (removing the length bias Dr. GRPO pointed out), while `scale_rewards="group"` still divides by
# the group's std (which over-weights prompts whose answers all score alike).
# <!-- END SOLUTION -->
