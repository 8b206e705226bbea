# %% [markdown]
# # 17 · Synthetic data, distillation and model merging — Solutions
#
# **Measured runtime:** 12 s on a 2-core CPU (`make execute`; your machine may differ).
#
# Exercises for [the lesson](../notebooks/17_synthetic_distillation_merging.ipynb). Each exercise says
# its level: ★ warm-up, ★★ core, ★★★ stretch. Write your code where it says so, then run the check
# cell below it: it tells you what is wrong, not only that something is.

# %%
import re

import torch
import torch.nn.functional as F

import course_lib
from course_lib import sweeps
from course_lib.course.checkers import ch17

device = course_lib.setup(seed=0)


# %% [markdown]
# ## Exercise 1 ★ — the temperature-scaled KL of distillation
#
# Write `temperature_kl(student_logits, teacher_logits, T)`: logits of shape `[batch, seq, vocab]`,
# one number out,
#
# $$T^2 \cdot \frac{1}{\#\text{positions}} \sum_{\text{positions}} \mathrm{KL}\big(\operatorname{softmax}(t/T) \,\|\, \operatorname{softmax}(s/T)\big).$$
#
# Use `log_softmax` for both (numerically safe). The check tries several temperatures and names the
# usual mistakes: the KL's direction, a missing $T^2$, a temperature on one side only, a sum instead
# of a mean.

# %%
def temperature_kl(student_logits, teacher_logits, T: float) -> torch.Tensor:
    ### BEGIN SOLUTION
    log_s = F.log_softmax(student_logits / T, dim=-1)
    log_t = F.log_softmax(teacher_logits / T, dim=-1)
    kl = (log_t.exp() * (log_t - log_s)).sum(-1)  # per position
    return T**2 * kl.mean()
    ### END SOLUTION


# %%
ch17.check_temperature_kl(temperature_kl)
s, t = ch17.kl_case()
for T in (1.0, 2.0, 8.0):
    x = s.clone().requires_grad_()
    temperature_kl(x, t, T).backward()
    print(f"T = {T}: loss {temperature_kl(s, t, T):.4f}, gradient norm {x.grad.norm():.4f}")

# %% [markdown]
# **What do the numbers say?** *(a sentence or two)* How does the gradient norm change with $T$, and
# what would it do without the $T^2$?
#
# <!-- BEGIN SOLUTION -->
# With the $T^2$ factor the gradient norm stays of the same order as $T$ grows (the cell above prints it for T = 1, 2, 8); it tends to a limit, $(s - t)/V$ up to a shift, because the gradient is $T(q_s - q_t)$ and $q_s - q_t$ shrinks like $1/T$. Without the factor the norm would fall by $T^2$: 64 times smaller at T = 8, as if the learning rate had been divided by 64.
# <!-- END SOLUTION -->

# %% [markdown]
# ## Exercise 2 ★★ — TIES merging
#
# Write `ties_merge(tensors, weights, density)` for a list of same-shaped task vectors and one weight
# each, as peft's `merge_utils.ties` does it with `majority_sign_method="total"`:
#
# 1. **trim** each task vector: keep its `int(density · numel)` entries of largest absolute value,
#    zero the rest (`torch.topk` on `abs()`);
# 2. **elect** a sign per entry: the sign of the sum of the trimmed (unweighted) vectors, `+` on a tie;
# 3. **disjoint merge**: multiply each trimmed vector by its weight; per entry, average only the values
#    whose sign equals the elected one (divide by how many agree, at least 1).

# %%
def ties_merge(tensors: list[torch.Tensor], weights: list[float], density: float) -> torch.Tensor:
    ### BEGIN SOLUTION
    trimmed = []
    for tv in tensors:
        k = int(density * tv.numel())
        keep = torch.zeros(tv.numel())
        keep[tv.abs().flatten().topk(k).indices] = 1
        trimmed.append(tv * keep.view_as(tv))
    stacked = torch.stack(trimmed)
    elected = torch.where(stacked.sum(0) >= 0, 1.0, -1.0)
    agree = stacked.sign() == elected
    weighted = stacked * torch.tensor(weights).view(-1, *[1] * (stacked.dim() - 1))
    return (weighted * agree).sum(0) / agree.sum(0).clamp(min=1)
    ### END SOLUTION


# %%
ch17.check_ties_merge(ties_merge)
tensors, weights = ch17.ties_case()
conflict = (torch.stack(tensors).sign().sum(0).abs() < len(tensors)).float().mean()
print(f"entries where the three task vectors disagree in sign: {conflict:.0%}")
for density in (0.2, 0.5, 1.0):
    m = ties_merge(tensors, weights, density)
    print(f"density {density}: merged norm {m.norm():.2f}, zero entries {(m == 0).float().mean():.0%}")

# %% [markdown]
# ## Exercise 3 ★ — n-gram decontamination
#
# Write `contaminated(texts, eval_texts, n)`: for each training text, `True` if it shares a word
# n-gram with any evaluation text. Normalize first: lower case, keep only runs of letters and digits
# (`re.findall(r"[a-z0-9]+", text.lower())`). A text with at most n words counts as one gram: its
# whole word sequence (so an exact copy of a short prompt is caught).

# %%
def contaminated(texts: list[str], eval_texts: list[str], n: int) -> list[bool]:
    ### BEGIN SOLUTION
    def grams(text):
        words = re.findall(r"[a-z0-9]+", text.lower())
        if len(words) <= n:
            return {tuple(words)} if words else set()
        return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}

    seen = set().union(*(grams(e) for e in eval_texts))
    return [bool(grams(t) & seen) for t in texts]
    ### END SOLUTION


# %%
ch17.check_contaminated(contaminated)
texts, evals = ch17.contamination_case()
for text, flag in zip(texts, contaminated(texts, evals, ch17.N_GRAM)):
    print(f"{'LEAK ' if flag else 'clean'}  {text}")

# %% [markdown]
# ## Interview questions
#
# The answers quote the chapter's shipped sweeps; the next cell prints their numbers.

# %%
star_rec, dist_rec, merge_rec = (sweeps.load(n) for n in ("ch17_star", "ch17_distill", "ch17_merging"))
print(sweeps.table(star_rec, ["heldout_accuracy", "test_accuracy", "accepted", "pass_at_n"]))
print(sweeps.table(dist_rec, ["test_em_all", "agreement_with_teacher", "response_ce"]))
print(sweeps.table(merge_rec, ["ce_rewrite", "ce_classify", "ce_arithmetic"]))

# %% [markdown]
# **Q1. What is rejection-sampling fine-tuning (STaR), and when does it beat SFT on gold data?**
#
# <!-- BEGIN SOLUTION -->
# Sample several answers per prompt from the model, keep those a verifier (or a reward) accepts, fine-tune the model on them, and repeat (Zelikman et al. 2022; Yuan et al. 2023). It needs a reliable checker and a model that is sometimes right. Chapter 09's SFT policy answered 1.6 % ± 0.1 % of its arithmetic samples correctly at temperature 1, yet 11.4 % ± 0.5 % of 400 questions had a correct answer among 8 samples (pass@8, mean ± sd over 3 seeds): 46 ± 2 verified examples. One round on them (30 steps) took its greedy accuracy on 200 unseen questions from 0 % to 1.8 % ± 1.5 %, within noise (95 % CI −2.0 to +5.6 points), and not distinguishable from unfiltered samples; SFT on the same number of gold examples from the world's generator gave 3.3 % ± 0.8 %, the only arm above the untrained policy beyond noise (+3.3 points, CI 1.4 to 5.2). So with a weak model and few accepted samples, one round of STaR is worth little: its data are the questions the model already solves, few and easy. It pays when gold data are scarce or costly, the verifier is exact, and the model solves a fair share of prompts, over several rounds.
# <!-- END SOLUTION -->
#
# **Q2. How do you detect benchmark contamination, and how much can it inflate a score?**
#
# <!-- BEGIN SOLUTION -->
# Check every training example against the evaluation set for shared word n-grams after normalizing case and punctuation (GPT-3 used 13-grams, several model reports 8-grams), count a short prompt as one gram of its whole text, report the overlap, and measure the score on a set that is guaranteed unseen. In the chapter's sweep, the generator's gold data with the test questions swapped in scored 26.7 % ± 9.5 % on the 50 arithmetic test questions but 2.8 % ± 0.3 % on 200 unseen ones; the clean gold set's test − held-out gap was −1.3 points, so the leak inflated the test score by 25 points (95 % CI 3 to 47, 3 seeds), about eight times the real gain of gold data. The 8-gram filter removed exactly the leaked records (44–48 per seed) and none from the clean sets. The lesson's overlap count on the course's own instruction splits shows the other side: every rewrite and classify test prompt (50 of 50 each) shares an 8-gram with a training prompt because they all begin with the same instruction sentence, while their answers depend on the input; no arithmetic test question occurs in training. An overlap check measures shared text, so someone has to look at what it flags.
# <!-- END SOLUTION -->
#
# **Q3. Why the T² in knowledge distillation, and does logit distillation beat SFT on teacher samples?**
#
# <!-- BEGIN SOLUTION -->
# The loss is T²·KL(softmax(t/T) ‖ softmax(s/T)). Its gradient with respect to the student's logits is T·(q_s − q_t), and for large T the probabilities differ by about (s − t)/(V·T), so without the factor the gradient would shrink like 1/T²; the lesson printed gradient norms that stay of the same order from T = 1 to 64 with the factor (without it they fall 4096-fold by T = 64). T² keeps the effective learning rate, and the balance with a hard-label term, independent of T; the temperature itself flattens both distributions so the student also learns the teacher's ranking of wrong tokens. Our generalized JSD equals TRL's GKDTrainer.generalized_jsd_loss to 1e-6 for β = 0, 0.5, 1. Measured on a 2-layer student cut from the base model (1.15 M parameters, the teacher 2.04 M), 80 steps on the same batches, 3 seeds: logit KD at T = 1 gave a response CE of 1.363 ± 0.023 against 1.409 ± 0.053 for SFT on gold (−0.05, 95 % CI −0.16 to +0.07) and the same exact match (0.081); SFT on the teacher's samples (sequence-level KD) gave 1.315 ± 0.073 (−0.09, CI −0.25 to +0.06) but varied much more between seeds (exact match 0.057 ± 0.046); all within noise. T = 2 was worse: response CE +0.19 (CI +0.06 to +0.32) and lower agreement with the teacher. So for a student this small, trained this briefly, soft targets gave no gain beyond the seed spread, and a higher temperature hurt: at T = 2 more of the loss goes to the teacher's tail of unlikely tokens, which a small student cannot match and which the scores (the likelihood of the right answer) do not reward.
# <!-- END SOLUTION -->
#
# **Q4. How do TIES and DARE merge task vectors, and how does a merge compare with a multi-task run?**
#
# <!-- BEGIN SOLUTION -->
# Task arithmetic adds the task vectors τ_t = θ_t − θ_0 with weights. TIES trims each τ_t to its largest-magnitude entries, elects a sign per entry (the sign of the sum of the trimmed vectors), and averages only the values that agree with it; DARE drops entries at random with probability 1 − density and rescales the survivors by 1/density before adding or TIES-merging. Our versions equal peft's add_weighted_adapter (cat/svd for task arithmetic, ties_svd, dare_ties_svd with peft's own masks) to 1e-6; peft's 'linear' merges the LoRA A and B factors separately and is a different merge. Measured on three LoRA adapters trained from the base model (rewrite, classify, arithmetic; 3 seeds, weights 1, density 0.5, untuned): every merge lost rewrite completely (response CE 8.7–8.9 vs 2.17 for the rewrite adapter and 8.75 for the base) and kept part of classify (6.0–6.1 vs 5.16 single, 11.5 base) and arithmetic (4.9–5.0 vs 4.07 single, 12.0 base); TIES and DARE were within noise of plain task arithmetic on every task. The multi-task adapter with the summed steps matched the single adapters (rewrite, arithmetic within noise; classify better by 0.57 nats, CI 0.14 to 0.99). Merging costs no training and keeps adapters separable, but when adapters interfere, a multi-task run is the stronger baseline.
# <!-- END SOLUTION -->
#
# **Q5. What is WiSE-FT, and why can weight interpolation cure forgetting?**
#
# <!-- BEGIN SOLUTION -->
# WiSE-FT (Wortsman et al. 2022) interpolates the weights of a fine-tuned model and its pretrained start, θ(α) = (1 − α)·θ_0 + α·θ_ft, and picks α on the trade-off curve between the new skill and what was known before; no training, one evaluation per α. It works because fine-tuning from a pretrained model usually stays in one low-loss basin, so the straight line between the two models has no barrier. In the lesson, between the base model and the chat model (full SFT with replay of general text), the general-text CE on 100 held-out documents went 0.488 (α = 0) → 0.494 (0.5) → 0.505 (0.75) → 0.533 (α = 1, the chat model), while the instruction response CE went 10.83 → 1.21 → 0.425 → 0.345 and exact match 0 → 0.18 → 0.51 → 0.59: α = 0.75 gives back about 60 % of the general-loss rise for 8 points of exact match. The per-α intervals over documents overlap, but the paired question (same documents) is clear: the general CE at α = 0.75 is 0.028 nats/token below the chat model's (bootstrap 95 % CI 0.020 to 0.039), at α = 0.5 0.039 below (0.026 to 0.057). This chat model forgets little (it replays general text during SFT), so the cure has little to cure; on a fine-tune without replay (chapter 03's clinic model) the general loss rises much more and the same curve is the cheap first thing to try, before replay or EWC, which need retraining.
# <!-- END SOLUTION -->
