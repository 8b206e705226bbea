# %% [markdown]
# # 03 · Full fine-tuning — Solutions
#
# **Measured runtime:** 10 s on a 2-core CPU (`make execute`; your machine may differ).
#
# Exercises for [the lesson](../notebooks/03_full_finetuning.ipynb). Each exercise says its level:
# ★ warm-up, ★★ core, ★★★ stretch. Write your code where it says so, then run the check cell below
# it: it tells you what is wrong, not only that something is.

# %%
import math
import torch
import course_lib
from course_lib.course.checkers import ch03

device = course_lib.setup(seed=0)


# %% [markdown]
# ## Exercise 1 ★ — the warm-up + cosine multiplier
#
# Write `lr_multiplier(step, warmup, total, min_ratio)`, the factor the peak learning rate is
# multiplied by at optimizer step `step` (counted from 0): linear warm-up from a small value up to
# 1 over the first `warmup` steps, then a cosine from 1 down to `min_ratio` at step `total`:
# $\text{min\_ratio} + (1-\text{min\_ratio})\,\tfrac12\,(1+\cos(\pi p))$ with $p = \frac{\text{step}-\text{warmup}}{\text{total}-\text{warmup}}$.


# %%
def lr_multiplier(step: int, warmup: int, total: int, min_ratio: float) -> float:
    ### BEGIN SOLUTION
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    ### END SOLUTION


# %% [markdown]
# Run the check. It knows the usual mistakes: a warm-up that starts at the full learning rate, a
# cosine measured over `total` instead of the steps after warm-up, a decay to 0 instead of `min_ratio`.

# %%
ch03.check_warmup_cosine(lr_multiplier)


# %% [markdown]
# ## Exercise 2 ★ — weight decay on the right parameters
#
# Write `param_groups(model, weight_decay)` returning the two parameter groups for
# `torch.optim.AdamW`: `{"params": [...], "weight_decay": weight_decay}` with every trainable weight
# **matrix** (2 or more dimensions), and `{"params": [...], "weight_decay": 0.0}` with every trainable
# bias and norm weight (vectors). Frozen parameters (`requires_grad=False`) go in neither.


# %%
def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    ### BEGIN SOLUTION
    trainable = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in trainable if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0},
    ]
    ### END SOLUTION


# %% [markdown]
# The check builds a tiny Llama with attention biases and a frozen first block.

# %%
ch03.check_param_groups(param_groups)


# %% [markdown]
# ## Exercise 3 ★ — where the scheduler step goes
#
# Write `run_schedule(optimizer, scheduler, n_epochs, steps_per_epoch)`: the skeleton of a training
# loop without the model. For every optimizer step of every epoch, record the learning rate the step
# uses (`optimizer.param_groups[0]["lr"]`), call `optimizer.step()`, and advance the scheduler where it
# belongs. Return the list of recorded learning rates (one per optimizer step).


# %%
def run_schedule(optimizer, scheduler, n_epochs: int, steps_per_epoch: int) -> list[float]:
    ### BEGIN SOLUTION
    lrs = []
    for _ in range(n_epochs):
        for _ in range(steps_per_epoch):
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()  # once per optimizer step
    return lrs
    ### END SOLUTION


# %% [markdown]
# The check runs your loop for 3 epochs of 4 steps with a 3-step warm-up and a cosine over 12 steps.

# %%
ch03.check_schedule_loop(run_schedule)


# %% [markdown]
# ## Exercise 4 ★★ — gradient accumulation
#
# Write `accumulate(model, micro_batches)`: zero the gradients, then run forward and backward on each
# micro-batch so that afterwards every parameter's `.grad` holds the gradient of the **large** batch
# (all micro-batches together). The micro-batches are packed (no padding, all of the same size).
# Return the large batch's loss as a float. Do not call an optimizer.


# %%
def accumulate(model, micro_batches: list[dict]) -> float:
    ### BEGIN SOLUTION
    model.zero_grad(set_to_none=True)
    total = 0.0
    for batch in micro_batches:
        loss = model(**batch).loss / len(micro_batches)
        loss.backward()
        total += loss.item()
    return total
    ### END SOLUTION


# %% [markdown]
# The check compares your gradients with one backward pass over the whole batch, and recognises the
# classic bugs: a loss that is not divided, gradients zeroed inside the loop.

# %%
ch03.check_accumulation(accumulate)


# %% [markdown]
# ## Exercise 5 ★★ — early stopping
#
# Write `stop(eval_losses, patience, min_delta)`: given the validation losses so far (one per
# evaluation, oldest first), return `True` when each of the last `patience` losses failed to beat the
# best loss **before** them by more than `min_delta`. With `patience` or fewer evaluations, return `False`.


# %%
def stop(eval_losses: list[float], patience: int, min_delta: float = 0.0) -> bool:
    ### BEGIN SOLUTION
    if len(eval_losses) <= patience:
        return False
    best_before = min(eval_losses[:-patience])
    return all(x > best_before - min_delta for x in eval_losses[-patience:])
    ### END SOLUTION


# %% [markdown]
# The check runs your function on seven short histories (a new best, a plateau, tiny gains below `min_delta`, …).

# %%
ch03.check_should_stop(stop)


# %% [markdown]
# ## Exercise 6 ★★★ — accumulation with padding
#
# Padded micro-batches predict different numbers of tokens, and the model's loss is a mean over each
# micro-batch's own tokens. Write `accumulate_tokens(model, micro_batches)` so that `.grad` holds the
# gradient of the mean loss over **all** predicted tokens of all micro-batches. A token is predicted
# when its label is not `-100`, after the shift: the first position of each row is never a target.


# %%
def accumulate_tokens(model, micro_batches: list[dict]) -> None:
    ### BEGIN SOLUTION
    model.zero_grad(set_to_none=True)
    counts = [int((b["labels"][:, 1:] != -100).sum()) for b in micro_batches]
    total = sum(counts)
    for batch, n in zip(micro_batches, counts):
        (model(**batch).loss * n / total).backward()
    ### END SOLUTION


# %% [markdown]
# The check uses four micro-batches of 2 rows padded to different lengths.

# %%
ch03.check_token_accumulation(accumulate_tokens)


# %% [markdown]
# ## Exercise 7 ★★ — fp16 mixed precision with accumulation, in the right order
#
# Write `amp_step(model, micro_batches, optimizer, scaler, scheduler, max_norm)`: one optimizer step
# of fp16 mixed precision over `k` packed micro-batches (all the same size) with a
# `torch.amp.GradScaler`. For every micro-batch: the forward pass under
# `torch.autocast(device_type, dtype=torch.float16)`, the loss divided by `k`, and backward on the
# **scaled** loss. Then, once: unscale, clip the gradient to `max_norm`, step through the scaler,
# update the scale, step the scheduler, and clear the gradients. Return the gradient norm that
# `torch.nn.utils.clip_grad_norm_` returns (the true norm, before clipping).


# %%
def amp_step(model, micro_batches, optimizer, scaler, scheduler, max_norm: float) -> float:
    ### BEGIN SOLUTION
    device_type, k = next(model.parameters()).device.type, len(micro_batches)
    for batch in micro_batches:
        with torch.autocast(device_type, dtype=torch.float16):
            loss = model(**batch).loss / k
        scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return float(norm)
    ### END SOLUTION


# %% [markdown]
# The check runs your step on a tiny Llama with spies on the scaler, optimizer and scheduler, once
# with a threshold above the gradient norm, once with clipping active, and once with a scale so large
# that the gradients overflow. It names the popular mistakes: clipping before `unscale_`, `zero_grad`
# or `scheduler.step` per micro-batch, a loss not divided by `k`, a second `unscale_`, stepping the
# optimizer directly.

# %%
ch03.check_amp_step(amp_step)

# %% [markdown]
# ## Interview questions
#
# **Q1. Full fine-tuning vs parameter-efficient fine-tuning (PEFT): when is each right?**
#
# <!-- BEGIN SOLUTION -->
# Full fine-tuning updates every weight: the most capacity, but optimizer state for every parameter
# (AdamW: 2 extra fp32 copies, ~16 bytes/parameter with gradients and weights), one full model copy per
# task, and the most forgetting. Compare methods fairly: tune the full fine-tune's learning rate on a
# held-out split first (the lesson's sweep picks it on clinic_val[200:300]), run ≥ 3 seeds, and read each
# cheaper method as a point on the clinic-loss / general-loss trade-off curve that lowering the learning
# rate already traces. Choose full fine-tuning when the task/domain shift is large, data is plentiful and
# compute is available; PEFT (LoRA, adapters) when memory is tight, many tasks share one base, or the
# base model's general abilities must be preserved.
# <!-- END SOLUTION -->
#
# **Q2. How do you prevent overfitting when fine-tuning on a small dataset?**
#
# <!-- BEGIN SOLUTION -->
# Hold out a validation set and evaluate often; stop early and keep the best checkpoint (the lesson
# fine-tunes on 8 clinic notes: the training loss keeps falling while the validation loss turns up, and
# `EarlyStoppingCallback` stops and reloads the best step). Also: fewer steps / a lower lr, weight decay,
# dropout, more or more varied data (augmentation, paraphrases), and training fewer parameters
# (freeze-tuning, LoRA). Start from a pretrained model: on 256 reviews pretrained MiniLM learns the task
# far better than the same network from random init, which stays near chance.
# <!-- END SOLUTION -->
#
# **Q3. Why does the learning rate need warm-up?**
#
# <!-- BEGIN SOLUTION -->
# At the start Adam's second-moment estimate rests on one or two gradients, so the normalised update has
# full size in noisy directions, and the first gradients of a new task are the largest of the run (in the
# lesson the first gradient norm is about 140, two orders of magnitude above the clipping threshold). A
# short linear warm-up lets the moment estimates settle and the loss leave the steep region before the
# full lr is used. (Clipping does not make Adam's first step smaller: that step is lr · sign(g) per
# coordinate anyway; it keeps huge early gradients from dominating Adam's moment estimates.) Fine-tuning also uses a lower peak lr than pretraining, because
# large steps destroy pretrained features.
# <!-- END SOLUTION -->
#
# **Q4. What does gradient checkpointing trade?**
#
# <!-- BEGIN SOLUTION -->
# Memory for compute: it keeps only each block's input and recomputes the rest in backward (Chen et al.
# 2016; O(sqrt n) memory with sqrt n segments). In the lesson the saved activations fell from 140 MiB to
# 21.5 MiB (6.5x less), every block ran forward twice, the gradients were bit-identical, and the step took
# longer (expected ~+20-35 %, one extra forward; the measured ratio depends on the machine's load).
# <!-- END SOLUTION -->
#
# **Q5. What is gradient accumulation, and what is the classic bug? How does it combine with fp16 loss scaling?**
#
# <!-- BEGIN SOLUTION -->
# Accumulation runs k micro-batches forward and backward and steps once: `backward()` adds into `.grad`,
# so with each micro-batch loss divided by k (equal token counts) the sum is exactly the large batch's
# gradient (the lesson measures a difference at float rounding). Classic bugs: no division by k (gradient k
# times too large), 1/k with padded micro-batches (weight by tokens instead), `zero_grad` or
# `scheduler.step` inside the micro-batch loop, and a schedule whose length is counted in micro-batches
# (warm-up k times too long, the cosine never decays). With fp16: backward on `scaler.scale(loss)` for
# every micro-batch; then once per optimizer step `scaler.unscale_(opt)` → `clip_grad_norm_` →
# `scaler.step(opt)` (skipped after an inf/NaN) → `scaler.update()` → `scheduler.step()` →
# `zero_grad()`. Clipping before `unscale_` clips S-times-too-large gradients; a second `unscale_`
# raises RuntimeError; clipping inside the loop clips partial sums and changes the direction.
# <!-- END SOLUTION -->
#
# **Q6. What is catastrophic forgetting and how do you measure and reduce it?**
#
# <!-- BEGIN SOLUTION -->
# Fine-tuning on a new domain raises the loss on the old one because nothing in the new loss keeps
# the old behaviour. Measure it as a trade-off, not a number: the new-task loss against the old-domain
# loss over a learning-rate sweep and ≥ 3 seeds, with a knowledge probe beside perplexity (the lesson's
# fact recall, raw and calibrated against a content-free prompt, separates a shifted output prior from
# facts that are really gone). Reduce it with a lower learning rate or fewer steps (the baseline curve),
# replay of old data, EWC (a Fisher-weighted pull towards the old weights; its λ must be tuned with the
# Fisher's batch size), freezing or PEFT (fewer weights move), and weight averaging between the base and
# the fine-tuned model (WiSE-FT). A cure counts only if it beats the learning-rate curve beyond the noise.
# <!-- END SOLUTION -->
