# %% [markdown]
# # 05 · QLoRA and quantization — Solutions
#
# **Measured runtime:** 5 s on a 2-core CPU (`make execute`; your machine may differ).
#
# Exercises for [the lesson](../notebooks/05_qlora_quantization.ipynb). Each exercise says
# its level: ★ warm-up, ★★ core, ★★★ stretch. Write your code where it says so, then run the
# check cell below it: it tells you what is wrong, not only that something is.

# %%
import torch
import course_lib
from course_lib.course.checkers import ch05

device = course_lib.setup(seed=0)


# %% [markdown]
# ## Exercise 1 ★ — absmax int8
#
# Write `absmax_int8(x)`: return `(q, scale)` with `scale = max|x| / 127` (a 0-d tensor) and
# `q = round(x / scale)` as an `int8` tensor. Every entry of `x` must be within half a step of `q · scale`.

# %%
def absmax_int8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ### BEGIN SOLUTION
    scale = x.abs().max() / 127
    return torch.round(x / scale).clamp(-127, 127).to(torch.int8), scale
    ### END SOLUTION


# %%
ch05.check_absmax(absmax_int8)

# %% [markdown]
# ## Exercise 2 ★★ — the NF4 table from normal quantiles
#
# Write `nf4_table()`: the 16 NF4 values in ascending order, as float32. Use
# `scipy.stats.norm.ppf` with $\delta = \frac12\left(\left(1-\frac1{30}\right)+\left(1-\frac1{32}\right)\right)$:
# 8 positive values at the quantiles of 8 probabilities evenly spaced from $\delta$ towards
# $\frac12$ (`torch.linspace(delta, 0.5, 9)[:-1]`), 7 negative values the same way with 8 points,
# an exact 0, and finally **normalise** so the table spans $[-1, 1]$.

# %%
from scipy.stats import norm


def nf4_table() -> torch.Tensor:
    ### BEGIN SOLUTION
    delta = 0.5 * ((1 - 1 / 30) + (1 - 1 / 32))
    pos = norm.ppf(torch.linspace(delta, 0.5, 9)[:-1].double().numpy())
    neg = -norm.ppf(torch.linspace(delta, 0.5, 8)[:-1].double().numpy())
    values = torch.tensor(sorted([*neg, 0.0, *pos]), dtype=torch.float64)
    return (values / values.abs().max()).float()
    ### END SOLUTION


# %%
ch05.check_nf4(nf4_table)


# %% [markdown]
# ## Exercise 3 ★★ — blockwise quantization
#
# Write `quantize_blocks(x, values, blocksize)`: flatten `x`, cut it into blocks of `blocksize`
# consecutive entries (assume it divides evenly), give each block its absmax $\max|x|$, and give every
# entry the **index into `values`** of the value nearest to $x / \text{absmax}$. Return
# `(codes, absmax)`: `codes` uint8 with the shape of `x`, `absmax` one float per block. Careful: a
# table need not be sorted (bitsandbytes' FP4 table is not); the code is the index in the table as given.

# %%
def quantize_blocks(x: torch.Tensor, values: torch.Tensor, blocksize: int):
    ### BEGIN SOLUTION
    blocks = x.reshape(-1, blocksize).float()
    absmax = blocks.abs().amax(dim=1)
    scaled = (blocks / absmax.clamp(min=1e-38).unsqueeze(1)).reshape(-1, 1)
    codes = (scaled - values.reshape(1, -1)).abs().argmin(dim=1)
    return codes.to(torch.uint8).reshape(x.shape), absmax
    ### END SOLUTION


# %%
ch05.check_blockwise(quantize_blocks)


# %% [markdown]
# (`argmin` over the distance to all 16 values is the plain way; `course_lib` uses `torch.bucketize`
# on the midpoints, which needs a sorted table and then maps back to the table's own order.)
#
# ## Exercise 4 ★ — two codes per byte
#
# Write `pack(codes)`: a flat uint8 tensor of an even number of 4-bit codes → a uint8 tensor with
# half as many bytes, the **first** code of each pair in the high nibble (bitsandbytes' layout).

# %%
def pack(codes: torch.Tensor) -> torch.Tensor:
    ### BEGIN SOLUTION
    flat = codes.reshape(-1).to(torch.uint8)
    return (flat[0::2] << 4) | flat[1::2]
    ### END SOLUTION


# %%
ch05.check_pack(pack)


# %% [markdown]
# ## Exercise 5 ★ — bits per parameter
#
# Write `bits_per_param(bits, blocksize, double_quant, blocksize2)`: the storage per weight in bits.
# Without double quantization each block of `blocksize` weights stores one fp32 absmax; with it,
# each block stores an 8-bit code instead, and every `blocksize2` of those codes share one fp32 constant.

# %%
def bits_per_param(bits: int, blocksize: int, double_quant: bool, blocksize2: int = 256) -> float:
    ### BEGIN SOLUTION
    if double_quant:
        return bits + 8 / blocksize + 32 / (blocksize * blocksize2)
    return bits + 32 / blocksize
    ### END SOLUTION


# %%
ch05.check_bits(bits_per_param)
print(
    f"65B model: {65e9 * bits_per_param(4, 64, True) / 8 / 1e9:.1f} GB with DQ, "
    f"{65e9 * bits_per_param(4, 64, False) / 8 / 1e9:.1f} GB without"
)


# %% [markdown]
# ## Exercise 6 ★★★ — double quantization
#
# Write `double_quant(absmax, code, blocksize2)`: quantize the fp32 block constants `absmax` to 8 bits
# as bitsandbytes does. Subtract their mean (`offset`), then quantize `absmax - offset` blockwise
# with the 256-entry table `code` (your `quantize_blocks` from exercise 3 works if the length divides
# evenly; here it does). Return `(codes, absmax2, offset)`. The check compares with bitsandbytes'
# `quantize_4bit(..., compress_statistics=True)`.

# %%
def double_quant(absmax: torch.Tensor, code: torch.Tensor, blocksize2: int = 256):
    ### BEGIN SOLUTION
    offset = absmax.mean()
    codes, absmax2 = quantize_blocks(absmax - offset, code, blocksize2)
    return codes, absmax2, offset
    ### END SOLUTION


# %%
ch05.check_double_quant(double_quant)

# %% [markdown]
# Why subtract the mean? All absmax values are positive, so without centring they would use only
# the positive half of the signed 8-bit code: half the levels wasted.
#
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
# embeddings, which stay in fp32. QLoRA learned the 80 new facts as LoRA did (100 % in the trained
# phrasing for both after 150 steps; 85 % vs 91 % on paraphrases), at about 1.45× LoRA's training time.
# <!-- END SOLUTION -->
#
# **Q2. Why NF4 and not Int4 or FP4?**
#
# <!-- BEGIN SOLUTION -->
# Weights are roughly normal; after dividing a block by its absmax most of them lie near zero.
# NF4 puts its 16 levels at normal quantiles, so each code covers an equal share of the probability
# mass (and keeps an exact zero). Measured on the base model's linear weights (block 64): MSE
# NF4 1.63e-5 < FP4 (E2M1) 2.13e-5 < Int4 2.32e-5, and NF4 uses its codes most evenly (code
# entropy 3.87 of 4 bits vs 3.62 for Int4): the QLoRA paper's ordering. Caveats: bitsandbytes'
# own FP4 table (with a gap between 0.005 and 0.167) was worse than Int4 (2.92e-5), and on this
# small model all formats changed validation loss by less than 0.001 nats, so the paper's
# perplexity differences (Int4 34.34, FP4 31.07, NF4+DQ 27.41) need large models to show.
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
# No, it is slower per step. Each 4-bit layer dequantizes its weight in the forward and again in
# the backward pass, then runs the same matmul as LoRA. The lesson measured one forward+backward
# on a 2-core CPU: about 1.6× LoRA's time for one short sequence, 1.4× for 16 short sentences,
# 1.1–1.2× for 16 long clinic notes (the dequantization cost is fixed per step, so it matters less with more
# tokens), and 2.3–2.4× with the gradient checkpointing that `prepare_model_for_kbit_training` turns on
# by default. What QLoRA saves is memory, which can make training possible at all on given hardware
# (65B on one 48 GB GPU), or allow a larger batch; that is where "faster" claims come from, not from the
# 4-bit arithmetic.
# <!-- END SOLUTION -->
