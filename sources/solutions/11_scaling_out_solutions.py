# %% [markdown]
# # 11 · Scaling out — Solutions
#
# **Measured runtime:** 6 s on a 2-core CPU (`make execute`; your machine may differ).
#
# Exercises for [the lesson](../notebooks/11_scaling_out.ipynb). Each exercise says its level: ★ warm-up,
# ★★ core, ★★★ stretch. Write your code where it says so, then run the check cell below it: it
# tells you what is wrong, not only that something is.

# %%
import torch
import course_lib
from course_lib import memory
from course_lib.course.checkers import ch11

device = course_lib.setup(seed=0)


# %% [markdown]
# ## Exercise 1 ★ — memory for full fine-tuning
#
# Write `full_mixed_gb(n_params)`: the memory, in **GB** ($10^9$ bytes), of the weights, gradients and
# optimizer state for full fine-tuning with AdamW in mixed precision (bf16 weights and gradients, fp32
# master weights and moments). No activations.

# %%
def full_mixed_gb(n_params: int) -> float:
    ### BEGIN SOLUTION
    weights, grads, master, adam = 2, 2, 4, 4 + 4  # bytes per parameter
    return n_params * (weights + grads + master + adam) / 1e9
    ### END SOLUTION


# %%
ch11.check_full_mixed_gb(full_mixed_gb)


# %% [markdown]
# How many 80 GB GPUs would Llama-2-13B need for its states alone, if nothing were sharded? Explain in a
# sentence why the answer is not simply the total divided by 80.

# %% [markdown]
# <!-- BEGIN SOLUTION -->
# $16 \times 13.0 \times 10^9 = 208$ GB. Without sharding, *no number* of 80 GB GPUs is enough: data
# parallelism replicates all 208 GB on every GPU. Dividing by 80 (3 GPUs) assumes the states are split,
# which is what ZeRO-3/FSDP does (then 3 GPUs hold 69 GB each, before activations, so 4 in practice).
# <!-- END SOLUTION -->

# %% [markdown]
# ## Exercise 2 ★ — LoRA's trainable parameters
#
# Write `lora_trainable(linear_shapes, layers, r, targets)`: `linear_shapes` maps a module name
# (`"q_proj"`, …) to `(d_in, d_out)` for one decoder block (as `memory.LlamaShape.linear_shapes()`
# returns it), `layers` is the number of blocks. Return the number of LoRA parameters when the modules
# in `targets` get rank-`r` adapters in every block. The check uses Llama-2-70B, whose grouped-query
# attention makes `k_proj` and `v_proj` rectangular.

# %%
def lora_trainable(linear_shapes: dict, layers: int, r: int, targets) -> int:
    ### BEGIN SOLUTION
    return layers * sum(r * (linear_shapes[t][0] + linear_shapes[t][1]) for t in targets)
    ### END SOLUTION


# %%
ch11.check_lora_trainable(lora_trainable)
print(
    f"{lora_trainable(memory.KNOWN['Llama-2-7B'].linear_shapes(), 32, 16, memory.ALL_LINEAR):,} "
    "LoRA parameters on Llama-2-7B, r=16, all linear layers"
)


# %% [markdown]
# ## Exercise 3 ★★ — ZeRO memory per GPU
#
# Write `zero_bytes(psi, n_gpus, stage)`: the model-state bytes per GPU for mixed-precision Adam
# (2 bytes of weights, 2 of gradients, $K = 12$ of optimizer state per parameter) under ZeRO stage 0
# (plain data parallelism), 1, 2 or 3. The check reproduces the ZeRO paper's example
# ($\Psi$ = 7.5 B, $N$ = 64: 120 / 31.4 / 16.6 / 1.9 GB).

# %%
def zero_bytes(psi: float, n_gpus: int, stage: int) -> float:
    ### BEGIN SOLUTION
    weights, grads, optim = 2 * psi, 2 * psi, 12 * psi
    if stage >= 1:
        optim /= n_gpus
    if stage >= 2:
        grads /= n_gpus
    if stage >= 3:
        weights /= n_gpus
    return weights + grads + optim
    ### END SOLUTION


# %%
ch11.check_zero_bytes(zero_bytes)

# %% [markdown]
# Use your function: what is the smallest number of 80 GB GPUs on which Llama-2-13B's states take at
# most 64 GB per GPU under stage 2, and under stage 3? Why can stage 2 not go below $2\Psi$ = 26 GB?

# %%
### BEGIN SOLUTION
n13 = memory.KNOWN["Llama-2-13B"].n_params()
fewest = {s: next(g for g in range(1, 257) if zero_bytes(n13, g, s) <= 64e9) for s in (2, 3)}
print(fewest, f"stage-2 floor {2 * n13 / 1e9:.0f} GB")
assert fewest[3] < fewest[2]
### END SOLUTION

# %% [markdown]
# <!-- BEGIN SOLUTION -->
# Stage 2 needs 5 GPUs ($26 + 182/5 = 62.5$ GB; 4 would give 71.6 GB), stage 3 needs 4 ($208/4 = 52$ GB).
# Stage 2 keeps the bf16 weights whole on every GPU, $2\Psi$ = 26 GB, however many GPUs share the rest.
# <!-- END SOLUTION -->

# %% [markdown]
# ## Exercise 4 ★★ — the all-reduce of DDP
#
# `grads` is a list with one gradient tensor per rank, each the gradient of that rank's **mean** loss
# over an equal number of examples. Write `all_reduce_mean(grads)`: the gradient every rank uses after
# DDP's all-reduce. The check compares it with the gradient of the whole batch.

# %%
def all_reduce_mean(grads: list) -> torch.Tensor:
    ### BEGIN SOLUTION
    return torch.stack(grads).sum(dim=0) / len(grads)  # all-reduce (sum), then divide by world size
    ### END SOLUTION


# %%
ch11.check_all_reduce_mean(all_reduce_mean)


# %% [markdown]
# ## Exercise 5 ★★★ — shards of unequal size
#
# The last batch of an epoch often does not split evenly, and with per-token losses the shards of a
# batch of chat examples hold different numbers of tokens. Write `combine(grads, counts)`: rank $k$'s
# gradient is that of its mean loss over `counts[k]` examples; return the gradient of the mean over all
# examples. Then say in a sentence what DDP itself does in this situation.

# %%
def combine(grads: list, counts: list) -> torch.Tensor:
    ### BEGIN SOLUTION
    weights = torch.tensor(counts, dtype=grads[0].dtype) / sum(counts)
    return sum(w * g for w, g in zip(weights, grads))
    ### END SOLUTION


# %%
ch11.check_weighted_combine(combine)

# %% [markdown]
# <!-- BEGIN SOLUTION -->
# DDP always divides the summed gradients by the world size, i.e. it weights every rank equally. With
# unequal shards the result is *not* the full-batch gradient. Remedies: make shards equal (drop or pad
# the last batch, `DistributedSampler(drop_last=True)`), or normalise each rank's loss by the global
# number of tokens (all-reduce the token count first, then use `loss_sum / global_tokens * world_size`),
# which is what recent trainers do for token-level losses.
# <!-- END SOLUTION -->

# %% [markdown]
# ## Interview questions
#
# **Q1. How much memory do you need to fine-tune a 7B model?**

# %% [markdown]
# <!-- BEGIN SOLUTION -->
# Break it down. Llama-2-7B has 6.74 B parameters. Full fine-tuning with mixed-precision AdamW keeps
# 16 B/param (2 weights + 2 gradients + 4 fp32 master + 8 moments) = 108 GB of states, checked byte
# for byte against real tensors in the lesson; plus activations, which for a transformers Llama in bf16
# are about 12.6 GB per 2,048-token sequence (formula exact on the course model). So one 80 GB GPU is
# not enough: shard (ZeRO-3 on 8 GPUs: 13.5 GB of states per GPU), or use LoRA (a bf16 base of 13.5 GB
# plus small adapters) or QLoRA (about 4–5 GB of states). The popular "56 GB" is 8 B/param: it leaves
# out Adam's state (or assumes 16-bit moments) and all activations.
# <!-- END SOLUTION -->

# %% [markdown]
# **Q2. What does ZeRO-3 / FSDP `FULL_SHARD` shard, and what does it cost?**

# %% [markdown]
# <!-- BEGIN SOLUTION -->
# Everything: parameters, gradients and optimizer state, so each of $N$ GPUs holds $16\Psi/N$ bytes of
# states (the lesson ran FSDP2 on 2 CPU processes: each held half of the 16 B/param and the losses
# matched one process to $10^{-6}$). The cost: every layer's weights are all-gathered before its forward
# and again before its backward, and gradients are reduce-scattered, about 1.5× DDP's communication
# volume; you also have to choose the wrapping unit (one decoder block), because one unit's full weights
# must fit on a GPU at a time.
# <!-- END SOLUTION -->

# %% [markdown]
# **Q3. DDP or FSDP: when do you pick which?**

# %% [markdown]
# <!-- BEGIN SOLUTION -->
# DDP when the model, its gradients and optimizer state fit on one GPU (with LoRA/QLoRA they usually
# do): it is simplest and communicates least (one all-reduce of the gradients, overlapped with
# backward). FSDP (or DeepSpeed ZeRO) when they do not: for full fine-tuning of a 7B model with AdamW
# (108 GB of states) or anything larger. `SHARD_GRAD_OP` (≈ ZeRO-2) if the weights themselves still fit,
# `FULL_SHARD` (ZeRO-3) if not: Llama-2-70B fits only with stage 3 (18 GPUs of 80 GB, keeping a fifth
# of each card for activations).
# Both give the same training as one process with the global batch, as the lesson measured.
# <!-- END SOLUTION -->

# %% [markdown]
# **Q4. What does gradient checkpointing cost, and what does it save?**

# %% [markdown]
# <!-- BEGIN SOLUTION -->
# It keeps only each block's input during forward and recomputes the block during backward: one extra
# forward pass, about a third more compute in theory (backward ≈ 2 forwards); the lesson counted every
# block running forward twice per step, and chapter 03 measured the step about ×1.2 slower. It saves most of the activation memory: on the course
# model the saved activations drop more than 6×, and for Llama-2-7B with 8 × 2,048 tokens from about
# 100 GB to about 10 GB (the remaining block inputs plus one recomputed block). Gradients are unchanged.
# <!-- END SOLUTION -->

# %% [markdown]
# **Q5. "QLoRA fine-tunes a 65B model on one 48 GB GPU." Under what conditions is that true?**

# %% [markdown]
# <!-- BEGIN SOLUTION -->
# With NF4 and double quantization (0.516 B/param: 33.4 GB for the linear layers of LLaMA-65B, plus
# 1.1 GB for the embeddings and head, which stay in bf16), LoRA in bf16 ($r = 64$ on all linear layers
# is 800 M parameters at 12 B each for weight, gradient and fp32 AdamW moments: 9.6 GB; 44 GB of states
# in all), short sequences with gradient checkpointing (about 1 GB
# of activations for 512 tokens) and paged optimizers for memory spikes. The lesson's calculator
# confirmed 44 GB + 1 GB < 48 GB, and the paper's "more than 780 GB" for 16-bit full fine-tuning
# (12 B/param). Long sequences or larger batches would not fit.
# <!-- END SOLUTION -->
