# %% [markdown]
# # 05 · QLoRA and quantization — Solutions
#
# **Measured runtime:** 10 s on a 2-core CPU (`make execute`; your machine may differ).
#
# Exercises for [the lesson](../notebooks/05_qlora_quantization.ipynb). Each exercise says
# its level: ★ warm-up, ★★ core, ★★★ stretch. Write your code where it says so, then run the
# check cell below it: it tells you what is wrong, not only that something is. The lesson wrote
# absmax, the 4-bit tables, blockwise quantization, packing and double quantization; these
# exercises ask for what it did not: a zero point, another tiny float, the way back from packed
# and double-quantized storage, and the memory bill of a QLoRA run.

# %%
import torch
import course_lib
from course_lib import qlora
from course_lib.course.checkers import ch05
from course_lib.models import load_model
from course_lib.quantization import (
    absmax_dequantize,
    absmax_quantize,
    bits_per_parameter,
    e2m1_values,
    nf4_values,
)

device = course_lib.setup(seed=0)


# %% [markdown]
# ## Exercise 1 ★ — asymmetric int4 with a zero point
#
# Absmax is **symmetric**: the codes $-7 \dots 7$ cover $[-\max|x|, \max|x|]$. When the values are
# far from centred on 0 (activations after a GELU, or the always-positive block constants of
# double quantization), half of that range is empty. **Asymmetric** quantization spans
# $[\min x, \max x]$ with the unsigned codes $0 \dots 2^b - 1$ and a **zero point** $z$, the code
# that stands for 0:
#
# $$s = \frac{\max x - \min x}{2^b - 1}, \qquad z = \operatorname{round}\!\left(\frac{-\min x}{s}\right), \qquad
# q = \operatorname{clamp}\!\left(\operatorname{round}\!\left(\frac{x}{s}\right) + z,\; 0,\; 2^b - 1\right), \qquad \hat x = (q - z)\,s .$$
#
# Write `zero_point_quantize(x, bits)` returning `(q, scale, zero)`: `q` as `uint8`, `scale` and
# `zero` as 0-d tensors. $z$ is rounded to an integer so that $x = 0$ comes back exactly 0.

# %%
def zero_point_quantize(x: torch.Tensor, bits: int = 4):
    ### BEGIN SOLUTION
    top = 2**bits - 1
    scale = (x.max() - x.min()) / top
    zero = torch.round(-x.min() / scale)
    q = (torch.round(x / scale) + zero).clamp(0, top)
    return q.to(torch.uint8), scale, zero
    ### END SOLUTION


# %%
ch05.check_zero_point(zero_point_quantize)

# %% [markdown]
# On values in about $[-0.3, 1.7]$, compare with the lesson's symmetric `absmax_quantize` at the
# same 4 bits:

# %%
x = torch.rand(10_000, generator=torch.Generator().manual_seed(0)) * 2.0 - 0.3
q, scale, zero = zero_point_quantize(x, 4)
mse_asym = ((q.float() - zero) * scale - x).pow(2).mean().item()
mse_sym = (absmax_dequantize(*absmax_quantize(x, bits=4)) - x).pow(2).mean().item()
print(f"MSE: symmetric absmax int4 {mse_sym:.2e}, zero-point int4 {mse_asym:.2e}")

# %% [markdown]
# The zero point uses all 16 codes for the range the values occupy, where symmetric absmax leaves
# the codes for $[-1.7, -0.3)$ unused.
#
# ## Exercise 2 ★★ — the E3M0 table
#
# The lesson built E2M1 (2 exponent bits, 1 mantissa bit). Spend all three bits on the exponent:
# **E3M0** has 1 sign bit and 3 exponent bits $e$, no mantissa. Exponent field $e = 1 \dots 7$
# gives $2^{e-1}$ (any exponent bias cancels when you normalise), $e = 0$ gives 0 (the subnormal
# $m \cdot 2^{\dots}$ with no mantissa bits), and there are no infinities. Write `e3m0_table()`:
# the **distinct** values in ascending order, divided by the largest magnitude so they span
# $[-1, 1]$.

# %%
def e3m0_table() -> torch.Tensor:
    ### BEGIN SOLUTION
    magnitudes = [0.0] + [2.0 ** (e - 1) for e in range(1, 8)]
    values = sorted({s * m for s in (1, -1) for m in magnitudes})
    return torch.tensor(values) / max(magnitudes)
    ### END SOLUTION


# %%
ch05.check_e3m0(e3m0_table)

# %% [markdown]
# Only powers of two: the levels double from $1/64$ to 1. How does it fare on the base model's
# weights, in blocks of 64 (`qlora.format_mse` quantizes every linear weight with a table)?

# %%
model, tok = load_model("causal")
for name, table in [("NF4", nf4_values()), ("E2M1", e2m1_values()), ("E3M0", e3m0_table())]:
    mse = qlora.format_mse(model, table)
    print(f"{name:>5}: {len(table.unique())} levels, weight MSE {mse:.3e}")

# %% [markdown]
# E3M0 comes out worst of the three. Its levels crowd near 0 (six of them below $\frac14$) and
# leave the gaps $(\frac12, 1)$ and $(\frac14, \frac12)$ empty, where many block-normalised
# weights lie; a mantissa bit (E2M1) puts a level in the middle of each gap ($\frac23$ and
# $\frac13$), and NF4 places all 16 levels by the weights' distribution.
#
# ## Exercise 3 ★ — unpack two codes per byte
#
# The lesson's `pack_4bit` puts the first code of each pair in the **high** nibble. Write the way
# back, `unpack(packed)`: a uint8 tensor of bytes (any shape) → a flat uint8 tensor of twice as
# many 4-bit codes, in their original order. The check also unpacks a weight that
# `bitsandbytes.functional.quantize_4bit` packed.

# %%
def unpack(packed: torch.Tensor) -> torch.Tensor:
    ### BEGIN SOLUTION
    flat = packed.reshape(-1)
    return torch.stack([flat >> 4, flat & 15], dim=1).reshape(-1)
    ### END SOLUTION


# %%
ch05.check_unpack(unpack)


# %% [markdown]
# ## Exercise 4 ★★ — undo double quantization
#
# With double quantization a 4-bit layer does not store its fp32 block constants. It stores one
# 8-bit `code` index per constant, one fp32 `absmax2` per block of 256 constants and the `offset`
# (their mean). Write `dequantize_constants(codes, absmax2, offset, code, blocksize2)` returning the
# fp32 constants: the value `code[c]` of each index, times the `absmax2` of its block of
# `blocksize2` consecutive constants, plus the offset (`codes` is uint8: index with `codes.long()`).
# The check compares with `bitsandbytes.functional.dequantize_blockwise` plus the offset.

# %%
def dequantize_constants(codes, absmax2, offset, code, blocksize2: int = 256) -> torch.Tensor:
    ### BEGIN SOLUTION
    scale = absmax2.repeat_interleave(blocksize2)[: codes.numel()]
    return code[codes.reshape(-1).long()] * scale + offset
    ### END SOLUTION


# %%
ch05.check_dequantize_constants(dequantize_constants)

# %% [markdown]
# With the constants back, a whole NF4 + DQ weight dequantizes as in the lesson. Against
# bitsandbytes' own `dequantize_4bit`:

# %%
import bitsandbytes.functional as bnbf

w = model.model.layers[0].mlp.up_proj.weight.detach()
packed, state = bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)
absmax = dequantize_constants(state.absmax, state.state2.absmax, state.offset, state.state2.code)
codes = unpack(packed).reshape(w.shape)
ours = nf4_values()[codes.long()] * absmax.repeat_interleave(64).reshape(w.shape)
diff = (ours - bnbf.dequantize_4bit(packed, state)).abs().max().item()
print(f"max difference from bitsandbytes' dequantize_4bit: {diff:.1e}")

# %% [markdown]
# ## Exercise 5 ★ — the memory of a QLoRA run
#
# Write `qlora_memory_gb(n_base, n_trainable)`: the gigabytes ($10^9$ bytes) of the tensors a
# QLoRA run keeps, leaving out activations. The `n_base` frozen weights are stored in NF4 with
# blocks of 64 and double quantization (the lesson's `bits_per_parameter` gives the bits per
# weight); each of the `n_trainable` adapter parameters has an fp32 weight, an fp32 gradient and
# AdamW's two fp32 moments.

# %%
def qlora_memory_gb(n_base: float, n_trainable: float) -> float:
    ### BEGIN SOLUTION
    base_bytes = n_base * bits_per_parameter(4, 64, double_quant=True) / 8
    return (base_bytes + n_trainable * (4 + 4 + 8)) / 1e9
    ### END SOLUTION


# %%
ch05.check_qlora_memory(qlora_memory_gb)
for n_base, n_tr in [(7e9, 4e7), (65e9, 2e8)]:
    gb = qlora_memory_gb(n_base, n_tr)
    print(f"{n_base / 1e9:.0f}B base + {n_tr / 1e6:.0f}M adapter parameters: {gb:.1f} GB")

# %% [markdown]
# The 65B model's weights and adapter state fit on one 48 GB GPU with room left for activations,
# which is the QLoRA paper's headline; in bf16 the frozen weights alone would take 130 GB.
#
# ## Exercise 6 ★★★ — group-wise zero points against NF4
#
# GPTQ- and AWQ-style int4 checkpoints combine exercise 1 with the lesson's blocks: every **group**
# of consecutive weights gets its own scale and zero point. Write `quantize_groups(x, group_size)`
# returning `(q, scale, zero)`: `q` uint8 with the shape of `x`, `scale` and `zero` one per group of
# `group_size` consecutive entries of the flattened `x` (assume it divides evenly), 4 bits. It is
# exercise 1 applied per group; the model below has about 27,000 groups, so compute all of them at
# once (`amin`/`amax` over `dim=1` of `x.reshape(-1, group_size)`) rather than in a Python loop.

# %%
def quantize_groups(x: torch.Tensor, group_size: int):
    ### BEGIN SOLUTION
    groups = x.reshape(-1, group_size)
    lo, hi = groups.amin(dim=1, keepdim=True), groups.amax(dim=1, keepdim=True)
    scale = ((hi - lo) / 15).clamp(min=1e-12)
    zero = torch.round(-lo / scale)
    q = (torch.round(groups / scale) + zero).clamp(0, 15)
    return q.to(torch.uint8).reshape(x.shape), scale.squeeze(1), zero.squeeze(1)
    ### END SOLUTION


# %%
ch05.check_groups(quantize_groups)


# %% [markdown]
# Which is the better 4-bit format for this model's weights: zero-point int4 with groups of 64, or
# NF4 with blocks of 64? Storage first: NF4 keeps one fp32 absmax per 64 weights (4.5 bits per
# weight); the group format keeps an fp32 scale and a 4-bit zero point (4.5625 bits). Then the error
# over all linear weights:

# %%
def group_mse(model, group_size: int = 64) -> float:
    total, count = 0.0, 0
    for w in qlora.linear_weights(model).values():
        q, scale, zero = quantize_groups(w.detach(), group_size)
        groups = q.reshape(-1, group_size).float()
        restored = (groups - zero.unsqueeze(1)) * scale.unsqueeze(1)
        total += (restored.reshape(w.shape) - w).pow(2).sum().item()
        count += w.numel()
    return total / count


nf4_mse, int4_mse = qlora.format_mse(model, nf4_values()), group_mse(model)
ratio = int4_mse / nf4_mse
print(f"weight MSE: NF4 {nf4_mse:.3e}, zero-point int4 {int4_mse:.3e} ({ratio:.2f}x NF4)")

# %% [markdown]
# On this model the two are a tie (the ratio printed above), although the group format's levels are
# evenly spaced like Int4's, which the lesson measured clearly worse than NF4. Fitting each group's
# actual range $[\min, \max]$ instead of $\pm\max|x|$ recovers about what NF4 gains by placing
# its levels at normal quantiles. That is why int4 checkpoints made by GPTQ or AWQ carry zero points,
# and why the choice between such a format and NF4 is made by measuring the model at hand.

# %% [markdown]
# ## Interview questions
#
# **Q1. What does QLoRA add to LoRA, and what does each piece save?**
#
# <!-- BEGIN SOLUTION -->
# LoRA trains a low-rank update beside a frozen base model; QLoRA stores that frozen base in
# **4-bit NF4** (blocks of 64, one absmax each), **double-quantizes** the block constants, computes
# in bf16 (or fp32) by dequantizing each weight on the fly, and uses **paged optimizers** to survive
# memory spikes. The adapters, their gradients and optimizer states stay in full precision. In the
# lesson the 4-bit base model took 2.02 MB against 8.16 MB in fp32 and 4.08 MB in bf16 (the
# linear layers alone: 4.27 bits/param including code tables, vs 32); the remaining bytes are the
# embeddings, which stay in fp32 (in Llama-3.2-1B, with its 128k vocabulary, the embeddings are
# about a fifth of the parameters, so a "4-bit" model averages well above 6 bits per parameter).
# On the 80 new facts QLoRA scored as LoRA did: one pair of runs gave 85 % vs 91 % on paraphrases,
# but over 5 seeds the difference was within noise (the Welch interval of the difference of the
# means contains 0), which is expected since 4-bit weights changed the base model's loss only in
# the fourth decimal.
# <!-- END SOLUTION -->
#
# **Q2. Why NF4 and not Int4 or FP4?**
#
# <!-- BEGIN SOLUTION -->
# Weights are roughly normal (the lesson's model: kurtosis about 3.9 against 3 for a normal);
# after dividing a block by its absmax most of them lie near zero. NF4 puts its 16 levels at normal
# quantiles (and keeps an exact zero), so each level stands for an equal share of the probability
# mass and the codes are used nearly equally: that is all "information-theoretically optimal"
# means. Measured on the base model's linear weights (block 64): MSE NF4 1.63e-5 < FP4 (E2M1)
# 2.13e-5 < Int4 2.32e-5, the QLoRA paper's ordering. Caveats: (1) the codes carry 3.87, not 4,
# bits (rounding to the nearest level makes bins between midpoints, which do not hold equal mass,
# and an absmax-normalised block always contains an exact ±1); (2) equal use is not least error:
# Lloyd–Max levels fitted to normal samples have about 5 % less MSE than NF4 on normal samples and
# on the weights (Yoshida 2023 makes this point; bitsandbytes ships the alternative `af4`);
# (3) bitsandbytes' FP4 (most likely the paper's FP4) differs from OCP E2M1 in one subnormal level,
# which alone makes it worse than Int4 (2.92e-5); (4) on this small model all formats changed the
# validation loss by less than 0.001 nats, and weight MSE need not rank formats as large-model
# perplexity does (the paper: Int4 34.34, FP4 (E2M1) 31.07, FP4 (E3M0) 29.48, NF4 + DQ 27.41).
# <!-- END SOLUTION -->
#
# **Q3. What is double quantization and what does it save?**
#
# <!-- BEGIN SOLUTION -->
# With blocks of 64, the fp32 absmax costs 32/64 = 0.5 bits per weight. DQ quantizes those
# constants to 8 bits (after subtracting their mean) in blocks of 256, each with one fp32 constant:
# 8/64 + 32/(64·256) = 0.127 bits. Measured on a real layer from the tensors bitsandbytes allocates:
# 4.500 → 4.127 bits/param; the saving, 0.373 bits/param, is about 3 GB on a 65B model. It adds
# almost no error (+0.14 % weight MSE on the layer measured).
# <!-- END SOLUTION -->
#
# **Q4. Is QLoRA faster than LoRA?**
#
# <!-- BEGIN SOLUTION -->
# Not with bitsandbytes' kernels, the ones QLoRA uses: each 4-bit layer dequantizes its weight to
# the compute dtype in the forward and again in the backward pass, then runs the same matmul as
# LoRA. The lesson measured one forward + backward on a 2-core CPU: about 1.5× LoRA's time for one
# short sequence, 1.3× for 16 short sentences, close to 1× for 16 long clinic notes (the
# dequantization cost is fixed per step, so it matters less with more tokens), and about 2.2× with
# the gradient checkpointing that `prepare_model_for_kbit_training` turns on by default. That is a
# property of the dequantize-then-matmul path, not of 4-bit weights: fused kernels dequantize
# inside the matmul and read 4× fewer weight bytes, so in memory-bound work (decoding one token at a
# time) 4-bit inference is often faster than 16-bit on GPUs, and training kernels that fuse the
# dequantization (e.g. Unsloth's) shrink the overhead. What QLoRA always saves is memory, which
# can make training possible at all on given hardware (65B on one 48 GB GPU) or allow a larger
# batch; that is where honest "faster" claims come from.
# <!-- END SOLUTION -->
#
# **Q5. What is the difference between the storage dtype and the compute dtype of a 4-bit layer?**
#
# <!-- BEGIN SOLUTION -->
# The storage dtype is what sits in memory: the 4-bit NF4 codes packed two per byte (a uint8
# tensor), one absmax per block of 64 (itself 8-bit with double quantization) and the 16-entry code
# table. The compute dtype (`bnb_4bit_compute_dtype`) is what the matmul runs in: for every forward
# (and backward) pass the layer dequantizes its weight to that dtype, bf16 on most GPUs or fp32,
# and multiplies the activations, which are never quantized. Nothing is computed in 4 bits. In the
# lesson the loss of one validation batch was 0.40478 with fp32 compute and 0.40480 with bf16
# compute: the storage format decides the weight error, the compute dtype adds only rounding.
# <!-- END SOLUTION -->
#
# **Q6. GPTQ, AWQ, GGUF and NF4: what does each quantize, and which can you fine-tune on top of?**
#
# <!-- BEGIN SOLUTION -->
# All four quantize weights only; activations stay in 16 bits. NF4 (bitsandbytes) rounds each block
# of 64 weights to a 16-level normal-quantile table at load time, with no calibration data, and is
# the base QLoRA trains LoRA on. GPTQ quantizes column by column and compensates each rounding
# error on the columns not yet quantized, using second-order information from calibration data;
# AWQ scales up the salient weight channels (those that meet large activations) before rounding;
# both store int4 groups with a scale and a zero point, and peft can train LoRA on a frozen GPTQ or
# AWQ base. GGUF k-quants (llama.cpp, Ollama) are an inference format with double-quantized block
# scales: fine-tune in PyTorch, merge the adapter, then convert. LLM.int8() also quantizes the
# activations (with its outlier columns kept in 16 bits), and FP8 (Hopper/Blackwell) quantizes
# weights and activations and supports training itself. A trap from the lesson: PyTorch's
# `quantize_dynamic(model, {nn.Linear})` on GPT-2 converts nothing but the tied output head,
# because GPT-2's layers are `Conv1D`; the saved model got bigger, not 4× smaller.
# <!-- END SOLUTION -->
