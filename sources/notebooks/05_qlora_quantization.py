# %% [markdown]
# # 05 · QLoRA and quantization
#
# **Measured runtime:** 49 s on a 2-core CPU (`make execute`; your machine may differ).
#
# LoRA (chapter 04) shrinks what you *train*; the frozen base model still has to sit in memory
# in 16 or 32 bits. **QLoRA** (Dettmers et al., 2023) stores that frozen base in **4 bits** and
# trains LoRA adapters on top, which is how a 65B-parameter model was fine-tuned on one 48 GB GPU.
# This chapter builds every piece of the 4-bit storage from scratch, checks it against
# `bitsandbytes` bit for bit, and then runs QLoRA for real on the CPU.
#
# **You will learn to**
# 1. quantize a tensor with absmax scaling to int8 and int4, and see why one outlier ruins it;
# 2. build the 4-bit data types FP4 (E2M1) and NF4 (from normal quantiles) and quantize in blocks of 64;
# 3. do the arithmetic of double quantization (bits per parameter) and count a model's bytes;
# 4. run QLoRA (`BitsAndBytesConfig` + `prepare_model_for_kbit_training` + LoRA) and compare it
#    with LoRA on the unquantized model over 5 seeds: score (with its noise), bytes and time per step;
# 5. place bitsandbytes' NF4 among the other formats (GPTQ, AWQ, GGUF k-quants, LLM.int8(), FP8),
#    and measure a popular claim about PyTorch's `quantize_dynamic` on GPT-2.
#
# **Prerequisites:** chapter 04 (LoRA); binary floating point (sign, exponent, mantissa) helps.

# %%
import torch
import matplotlib.pyplot as plt
import course_lib
from course_lib.models import load_model
from course_lib.data import load_jsonl
from course_lib.world.datasets import corpus_documents
from course_lib.evaluation import cross_entropy, choose_many, accuracy
from course_lib.training import TrainConfig, train, text_batches
from course_lib import qlora
from course_lib.measure import train_step_seconds
from course_lib.quantization import check_table

device = course_lib.setup(seed=0)
import warnings

warnings.filterwarnings("ignore", category=FutureWarning)  # transformers' renaming notices
import bitsandbytes.functional as bnbf

# %% [markdown]
# The from-scratch code of this chapter is written in the cells that start with
# `#| export course_lib.quantization`: those cells are copied verbatim into
# `course_lib/quantization.py` (`make lib`), which the tests and later chapters import, so the code
# checked against `bitsandbytes` here is the library's code. (`check_table`, imported above, only
# turns a bad argument into a clear error.) `course_lib.qlora` holds the helpers for counting a
# 4-bit model's bytes, `course_lib.measure` the timer; `bitsandbytes.functional` is the reference
# everything is checked against.

# %% [markdown]
# ## 1 · Why quantize, and absmax int8
#
# A parameter in float32 takes 4 bytes, in bfloat16 2, in 4 bits ½. For a 65B model that is
# 260 GB, 130 GB and 33 GB: only the last fits on one 48 GB GPU with room for activations and adapters.
#
# **Absmax quantization** maps a tensor $x$ to $b$-bit signed integers by scaling its largest
# magnitude to the largest integer $L = 2^{b-1}-1$ (127 for int8):
#
# $$c = \frac{\max_i |x_i|}{L}, \qquad q_i = \operatorname{round}\!\left(\frac{x_i}{c}\right) \in \{-L,\dots,L\}, \qquad \hat x_i = q_i\, c .$$
#
# Storage: $b$ bits per entry plus one float $c$. Rounding to the nearest integer makes every error
# at most half a step: $|x_i-\hat x_i| \le c/2$. The scale can also be taken per row (or any other
# slice): `dim` names the dimension the max runs over.

# %%
#| export course_lib.quantization
def absmax_quantize(
    x: torch.Tensor, bits: int = 8, dim: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric absmax quantization q = round(x / c), c = max|x| / (2^(bits-1) - 1).

    One c for the whole tensor, or one per slice with the max taken over `dim` (kept as size 1):
    dim=1 on a [out, in] weight gives one scale per row, LLM.int8()'s format."""
    if not 2 <= bits <= 8:
        raise ValueError(f"bits must be between 2 and 8 (the codes are int8), got {bits}")
    levels = 2 ** (bits - 1) - 1  # L: 127 for int8, 7 for int4
    absmax = x.abs().max() if dim is None else x.abs().amax(dim=dim, keepdim=True)
    scale = absmax.clamp(min=1e-12) / levels  # c (the clamp spares an all-zero x a division by 0)
    q = torch.round(x / scale).clamp(-levels, levels)  # the nearest integer in [-L, L]
    return q.to(torch.int8), scale


def absmax_dequantize(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x ≈ q · c."""
    return q.float() * scale


# %%
model, tok = load_model("causal", device=device)
w = model.model.layers[0].self_attn.q_proj.weight.detach()  # [192, 192]
q, scale = absmax_quantize(w, bits=8)
err = (absmax_dequantize(q, scale) - w).abs()
print(
    f"max |w| {w.abs().max():.4f}  step c {scale:.2e}  max error {err.max():.2e}  (≤ c/2 = {scale / 2:.2e})"
)
assert err.max() <= scale / 2 + 1e-9, "rounding to nearest keeps every error within half a step"

# %% [markdown]
# `bitsandbytes` does the same per **row** of a weight matrix (`int8_vectorwise_quant`, the
# LLM.int8() format). Our function with the max over `dim=1` must give identical integers and scales:

# %%
q_bnb, row_absmax, _ = bnbf.int8_vectorwise_quant(w.contiguous())
ours, row_scale = absmax_quantize(w, dim=1)
print("rows", len(w), "| same int8 codes:", torch.equal(ours, q_bnb))
assert torch.equal(ours, q_bnb), "absmax int8 from scratch must give bitsandbytes' codes"
assert torch.allclose(row_absmax, 127 * row_scale.squeeze(1)), "bnb stores max|row| per row"


# %% [markdown]
# **The outlier problem.** The step $c$ is set by the single largest entry, so one large value
# coarsens the step for *all* other entries. Put one outlier of 20× the largest weight into the
# matrix and measure, on the *other* weights, two things: the error, and the share of them that
# round to code 0 (i.e. are lost).

# %%
def mse(a, b):
    return (a - b).pow(2).mean().item()


spiked = w.clone()
spiked[0, 0] = 20 * w.abs().max()
rest = torch.ones_like(w, dtype=torch.bool)
rest[0, 0] = False  # every weight except the outlier
outlier = {}
for bits in (8, 4):
    q_clean, q_spiked = absmax_quantize(w, bits)[0], absmax_quantize(spiked, bits)[0]
    clean = mse(absmax_dequantize(*absmax_quantize(w, bits)), w)
    spoilt = mse(absmax_dequantize(*absmax_quantize(spiked, bits))[rest], w[rest])
    zeros = [(q[rest] == 0).float().mean().item() for q in (q_clean, q_spiked)]
    outlier[bits] = dict(inflation=spoilt / clean, zero_before=zeros[0], zero_after=zeros[1])
    print(
        f"int{bits}: MSE {clean:.2e} -> {spoilt:.2e} with the outlier ({spoilt / clean:.0f}x); "
        f"weights coded 0: {zeros[0]:.1%} -> {zeros[1]:.1%}"
    )

# %% [markdown]
# Two different effects, and they point in opposite directions:
#
# * **Relative** to its own clean error, int8 suffers *more*: its clean error is tiny, so the
#   coarser step inflates it by the larger factor (the first ratio printed above, against int4's).
# * **In absolute terms** int4 is the disaster. The step becomes $20\max|w|/7 \approx 2.9\max|w|$;
#   half a step is larger than every other weight, so *all* of them round to 0 (the share printed
#   above): the layer's information is gone. At int8 the step is $20\max|w|/127$, and "only" the
#   share printed above rounds to 0.

# %%
assert outlier[8]["inflation"] > 5 * outlier[4]["inflation"], "relative damage: int8 > int4"
assert outlier[4]["zero_after"] == 1.0, "int4: half a step exceeds every other weight"
assert outlier[8]["zero_after"] < 0.6, "int8 keeps most weights"

# %% [markdown]
# **Weight outliers are not activation outliers.** The famous "outlier features" of LLM.int8()
# (Dettmers et al., 2022) are in the **activations**: a handful of hidden dimensions whose values
# are up to about 20× the others, present in almost every layer of models from about 6.7B
# parameters on. They break int8 quantization of the *activations* (the inputs of each matmul):
# LLM.int8() multiplies those few columns in 16 bits; SmoothQuant moves their scale into the
# weights; AWQ protects the weight channels that meet them. **Weights** are much tamer: roughly
# normal around zero, with an occasional large entry (the rare "super weights" of Yu et al., 2024).
# QLoRA's NF4 is **weight-only**: the activations stay in bf16/fp32 and are never quantized.
# How normal are this model's weights? A normal distribution has kurtosis
# $\mathbb E[z^4] = 3$; heavier tails give more.

# %%
def kurtosis(x):
    z = (x - x.mean()) / x.std()
    return z.pow(4).mean().item()


per_layer = [kurtosis(v.detach()) for v in qlora.linear_weights(model).values()]
all_w = torch.cat([v.detach().reshape(-1) for v in qlora.linear_weights(model).values()])
print(
    f"kurtosis of all linear weights {kurtosis(all_w):.2f} (normal: 3); per layer "
    f"{min(per_layer):.2f} to {max(per_layer):.2f}; largest |w| = {all_w.abs().max() / all_w.std():.1f} sd"
)
assert max(per_layer) < 6, "near-normal weights: no layer with very heavy tails"

# %% [markdown]
# Near-normal, with somewhat heavy tails: that is the distribution the 4-bit formats below are
# designed for. Two fixes for the outlier problem, both in QLoRA: **smaller blocks** (one scale per
# 64 weights, so a large weight spoils only its own block) and **better-placed levels** (more of
# them where the weights are dense). Blocks first need a 4-bit code, so we start with the levels.
#
# ## 2 · Three 4-bit data types
#
# A 4-bit code indexes a table of 16 values in $[-1, 1]$; a block is stored as its codes plus its
# absmax. Everything is in the table:
#
# * **Int4** — evenly spaced: $k/7$ for $k = -7 \dots 7$ (15 distinct values).
# * **FP4, E2M1** — a tiny float: 1 sign bit, 2 exponent bits $e$, 1 mantissa bit $m$.
#   Normal numbers ($e \ge 1$) are $2^{e-1}(1 + m/2)$, subnormals ($e = 0$) are $m/2$:
#   magnitudes $\{0, 0.5, 1, 1.5, 2, 3, 4, 6\}$, then divided by 6. Spacing grows with magnitude,
#   like every float format. This is the OCP E2M1 element of MXFP4.
# * **NF4** — *NormalFloat*: the levels are quantiles of a standard normal distribution.
#
# Int4 is one line (bitsandbytes' table lists 7 down to −7, with a −0 to fill 16 codes):

# %%
#| export course_lib.quantization
def int4_values() -> torch.Tensor:
    """bitsandbytes' Int4 table: the integers 7 … -7 (and -0), divided by 7."""
    return torch.tensor([7, 6, 5, 4, 3, 2, 1, 0, -0.0, -1, -2, -3, -4, -5, -6, -7]) / 7


# %% [markdown]
# E2M1, built from its bits:

# %%
#| export course_lib.quantization
def e2m1_values() -> torch.Tensor:
    """The OCP E2M1 (MXFP4) values built from their bits, ascending, divided by the largest (6)."""
    magnitudes = [
        m / 2 if e == 0 else 2 ** (e - 1) * (1 + m / 2)  # subnormal if e = 0, else normal
        for e in range(4)  # 2 exponent bits
        for m in range(2)  # 1 mantissa bit
    ]
    signed = sorted({s * v for s in (1, -1) for v in magnitudes})  # a set: +0 and -0 are one value
    return torch.tensor(signed) / max(magnitudes)


# %% [markdown]
# The check: the table the OCP Microscaling (MX) specification prints for E2M1, typed in by hand.

# %%
spec = torch.tensor([0, 0.5, 1, 1.5, 2, 3, 4, 6])  # OCP MX v1.0, the E2M1 magnitudes
e2m1 = e2m1_values()
print(f"E2M1 x 6 ({len(e2m1)} distinct values):", (e2m1 * 6).tolist())
assert torch.allclose(e2m1 * 6, torch.cat([-spec.flip(0)[:-1], spec])), "E2M1 from its bits = spec"

# %% [markdown]
# **bitsandbytes' FP4.** `quant_type="fp4"` in bitsandbytes is also 1 sign, 2 exponent and 1
# mantissa bit (its CUDA source calls it "FP4 with bias of 3"), but it lays the exponent field out
# the other way round and has its own subnormal: exponent field $e = 1, 2, 3$ gives
# $2^{4-e}(1 + m/2)$ (8 and 12, 4 and 6, 2 and 3), $e = 0$ gives $m \cdot 0.0625$, and the table is
# divided by its largest value, 12. The table lists the 16 bit patterns 0000 … 1111 in order (sign
# bit first), so it is not sorted.

# %%
#| export course_lib.quantization
def fp4_values() -> torch.Tensor:
    """bitsandbytes' FP4 table in code order (0000 … 1111): 1 sign, 2 exponent, 1 mantissa bit."""
    table = []
    for sign in (1.0, -1.0):  # the first bit
        for e in range(4):  # the exponent field
            for m in range(2):  # the mantissa bit
                magnitude = m * 0.0625 if e == 0 else 2.0 ** (4 - e) * (1 + m / 2)
                table.append(sign * magnitude / 12.0)  # 12 = the largest magnitude (e=1, m=1)
    return torch.tensor(table)


# %%
fp4_bnb = bnbf.get_4bit_type("fp4", device="cpu")
print("bitsandbytes FP4 (code order):", [round(v, 4) for v in fp4_bnb.tolist()])
assert torch.allclose(fp4_values(), fp4_bnb), "fp4_values() must be bitsandbytes' table"

# %% [markdown]
# Normalised, how does it differ from E2M1? Compare the 8 magnitudes of each:

# %%
bnb_mag, e2m1_mag = fp4_values().abs().unique(), e2m1_values().abs().unique()  # ascending
differs_at = (~torch.isclose(bnb_mag, e2m1_mag)).nonzero().flatten().tolist()
print("bnb FP4 magnitudes:", [round(v, 4) for v in bnb_mag.tolist()])
print("E2M1 / 6          :", [round(v, 4) for v in e2m1_mag.tolist()])
print(f"they differ only at level {differs_at}: {bnb_mag[1]:.4f} vs {e2m1_mag[1]:.4f}")
assert differs_at == [1], "the two FP4 tables differ in the smallest nonzero level only"

# %% [markdown]
# The same levels except **one**: bitsandbytes' smallest nonzero level sits at $0.0625/12 \approx
# 0.005$, 16× below E2M1's $0.5/6 \approx 0.083$, which leaves a hole between 0.005 and 0.167.
# Keep that one level in mind for section 4.

# %% [markdown]
# ### NF4 from normal quantiles
#
# Pretrained weights are roughly normally distributed around zero, and after dividing a block by
# its absmax they fill $[-1, 1]$ with most mass near 0. **Quantile quantization** puts the levels
# of a code at **quantiles** $Q_{\mathcal N}(p)$ of the data's distribution, so that each level
# stands for an equal share of the probability mass; every code is then used equally often, and
# the codes carry the most information a 4-bit code can (4 bits). This is the sense in which the
# QLoRA paper calls NF4 "information-theoretically optimal" for normally distributed weights; we
# measure in section 4 how far that holds, and what it does *not* promise. QLoRA (§3) adds two
# requirements: an exact zero (padding and zero weights stay exactly zero) and the range $[-1, 1]$.
# So it takes 8 quantiles for the positive half and 7 for the negative half, plus 0:
#
# $$v^+_i = Q_{\mathcal N}(p_i),\; p_i \text{ evenly spaced from } \delta \text{ down to } \tfrac12 \text{ (8 values)},\qquad
# v^-_j = -Q_{\mathcal N}(p_j) \text{ (7 values)},\qquad \delta = \tfrac12\left(\left(1-\tfrac1{2\cdot15}\right)+\left(1-\tfrac1{2\cdot16}\right)\right)$$
#
# and finally divides all 16 by the largest magnitude, $Q_{\mathcal N}(\delta)$. The offset
# $\delta \approx 0.9677$ avoids $Q_{\mathcal N}(1) = \infty$. `scipy.stats.norm.ppf` is $Q_{\mathcal N}$.
# bitsandbytes writes $\delta$ rounded to 0.9677083 and spaces the probabilities in float32; we do
# the same, so that the table, and every rounding decision made with it, matches bit for bit:

# %%
#| export course_lib.quantization
def nf4_values(delta: float = 0.9677083) -> torch.Tensor:
    """The 16 NF4 values, ascending: 7 negative and 8 positive normal quantiles and 0, in [-1, 1]."""
    from scipy.stats import norm

    if not 0.5 < delta < 1:
        raise ValueError(f"delta must be in (0.5, 1): the quantile of 1 is infinite, got {delta}")
    positive = norm.ppf(torch.linspace(delta, 0.5, 9)[:-1].numpy())  # 8 quantiles > 0
    negative = -norm.ppf(torch.linspace(delta, 0.5, 8)[:-1].numpy())  # 7 quantiles < 0
    raw = torch.tensor(sorted([*negative, 0.0, *positive]), dtype=torch.float64)
    return (raw / raw.abs().max()).float()  # divide by Q_N(delta): the range is [-1, 1]


# %%
from scipy.stats import norm

delta = 0.5 * ((1 - 1 / (2 * 15)) + (1 - 1 / (2 * 16)))
nf4, nf4_bnb = nf4_values(), bnbf.get_4bit_type("nf4", device="cpu")
print(f"delta {delta:.10f}  largest raw quantile Q_N(delta) {norm.ppf(delta):.4f}")
print("NF4:", [round(v, 4) for v in nf4.tolist()])
assert torch.equal(nf4, nf4_bnb), (
    "NF4 from normal quantiles must be bitsandbytes' table, bit for bit"
)
print(f"with the unrounded delta: max difference {(nf4_values(delta) - nf4_bnb).abs().max():.1e}")

# %% [markdown]
# The four tables side by side. NF4 is dense near zero and sparse in the tails; Int4 is even;
# E2M1 is in between; bitsandbytes' FP4 has its hole between 0.005 and 0.167.

# %%
tables = {
    "Int4": int4_values(),
    "FP4 (bnb)": fp4_values(),
    "FP4 (E2M1)": e2m1_values(),
    "NF4": nf4_values(),
}
fig, ax = plt.subplots(figsize=(7, 2.2))
for i, (name, t) in enumerate(tables.items()):
    ax.scatter(t.unique(), [i] * len(t.unique()), marker="|", s=300)
ax.set_yticks(range(len(tables)), list(tables))
ax.set_xlabel("value")
ax.set_title("The 16 codes of each 4-bit type")
plt.tight_layout()

# %% [markdown]
# ## 3 · Blockwise quantization (block 64)
#
# Flatten the weight and cut it into blocks of $B = 64$ consecutive entries. Block $b$ gets its own
# scale $c_b = \max_{i \in b} |x_i|$ and every entry the code of the **nearest** table value:
#
# $$q_i = \arg\min_k \left| \frac{x_i}{c_b} - v_k \right|, \qquad \hat x_i = v_{q_i}\, c_b .$$
#
# The nearest value is found with `torch.bucketize` on the **midpoints** between neighbouring
# values of the sorted table: an entry between two midpoints is nearest to the value between them.
# The position in the sorted table is then mapped back to the table's own code order (bitsandbytes'
# FP4 table is not sorted). A tensor whose size is not a multiple of $B$ gets a last block padded
# with zeros.

# %%
#| export course_lib.quantization
def quantize_blockwise(
    x: torch.Tensor, values: torch.Tensor, blocksize: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes (uint8 indices into `values`, the shape of x) and one absmax per block of `blocksize`
    consecutive entries: each entry divided by its block's max |x| and rounded to the nearest value."""
    check_table(values, blocksize)  # clear errors for a bad table or block size
    flat = x.reshape(-1).float()
    padded = torch.cat([flat, flat.new_zeros((-len(flat)) % blocksize)])  # fill the last block
    absmax = padded.view(-1, blocksize).abs().amax(dim=1)  # c_b, one per block
    scale = absmax.clamp(min=1e-38).repeat_interleave(blocksize)[: len(flat)]
    scaled = (flat / scale).clamp(-1, 1)
    order = torch.argsort(values, stable=True)  # positions of the table's values, ascending
    bounds = (values[order[:-1]] + values[order[1:]]) / 2  # midpoints between neighbours
    codes = order[torch.bucketize(scaled, bounds)]  # nearest value, as an index into `values`
    return codes.to(torch.uint8).reshape(x.shape), absmax


# %% [markdown]
# Dequantizing is a table lookup times the block's absmax. For storage the codes are packed two per
# byte, the first code in the high nibble (bitsandbytes' layout):

# %%
#| export course_lib.quantization
def dequantize_blockwise(
    codes: torch.Tensor, absmax: torch.Tensor, values: torch.Tensor, blocksize: int = 64
) -> torch.Tensor:
    """x ≈ values[code] · absmax of its block."""
    flat = values[codes.reshape(-1).long()]
    scale = absmax.repeat_interleave(blocksize)[: len(flat)]
    if len(scale) != len(flat):
        raise ValueError(
            f"{len(absmax)} absmax values cannot cover {len(flat)} codes with blocksize {blocksize}"
        )
    return (flat * scale).reshape(codes.shape)


def pack_4bit(codes: torch.Tensor) -> torch.Tensor:
    """Two 4-bit codes per byte, the first in the high nibble: a [n/2, 1] uint8 tensor."""
    flat = codes.reshape(-1).to(torch.uint8)
    if flat.max() > 15:
        raise ValueError("4-bit codes must be in 0..15")
    if len(flat) % 2:
        flat = torch.cat([flat, flat.new_zeros(1)])  # an odd count: pad the last byte
    return ((flat[::2] << 4) | flat[1::2]).unsqueeze(1)


# %% [markdown]
# Check all three against `bitsandbytes.functional.quantize_4bit` on a real weight:

# %%
w = model.model.layers[1].mlp.down_proj.weight.detach()  # [192, 512]
for kind, table in [("nf4", nf4_values()), ("fp4", fp4_values())]:
    packed, state = bnbf.quantize_4bit(w, blocksize=64, quant_type=kind)
    codes, absmax = quantize_blockwise(w, table, blocksize=64)
    ours = dequantize_blockwise(codes, absmax, table, blocksize=64)
    same_bytes = torch.equal(pack_4bit(codes), packed)
    max_diff = (ours - bnbf.dequantize_4bit(packed, state)).abs().max().item()
    print(
        f"{kind}: {w.numel()} weights -> {packed.numel()} bytes + {absmax.numel()} absmax | "
        f"same packed bytes: {same_bytes} | max difference after dequantization {max_diff:.1e}"
    )
    assert same_bytes and max_diff < 1e-7, f"{kind}: codes or values differ from bitsandbytes"
    assert torch.allclose(absmax, state.absmax), "one absmax per block of 64"

# %% [markdown]
# Same bytes, same values. How much do blocks help? Quantize the same weight to NF4 with one
# absmax for the whole tensor (block = all 98,304 entries) and with blocks of 256, 64 and 16:

# %%
block_err = {}
for bs in (w.numel(), 256, 64, 16):
    codes, absmax = quantize_blockwise(w, nf4_values(), bs)
    block_err[bs] = mse(dequantize_blockwise(codes, absmax, nf4_values(), bs), w)
    print(
        f"block {bs:>6}: MSE {block_err[bs]:.2e}   constants cost {32 / bs:.3f} bits/weight in fp32"
    )
assert block_err[64] < 0.8 * block_err[w.numel()], "blocks of 64 should beat one absmax per tensor"
assert block_err[16] < block_err[64] < block_err[256], "smaller blocks, smaller error"

# %% [markdown]
# Smaller blocks are more accurate but every block stores a 32-bit constant: 0.5 extra bits per
# weight at $B = 64$, 2 bits at $B = 16$. Section 5 shrinks that overhead.
#
# ## 4 · Which format fits the base model's weights best?
#
# The QLoRA paper (Table 2) measured the mean perplexity of OPT, BLOOM, LLaMA and Pythia models
# (125M–13B) after 4-bit quantization: **Int4 34.34, Float4 (E2M1) 31.07, Float4 (E3M0) 29.48,
# NFloat4 + DQ 27.41**. Its experiments ran on bitsandbytes, whose "FP4" is the table of section 2,
# so the paper's "E2M1" is most likely that table, not the OCP one. We measure the simpler, direct
# quantity on our own model: the mean squared error of all linear weights after blockwise
# quantization (block 64), for each table.

# %%
weights = qlora.linear_weights(model)
print(f"{len(weights)} linear layers, {sum(v.numel() for v in weights.values()):,} weights")
format_mse = {name: qlora.format_mse(model, t) for name, t in tables.items()}
for name, e in sorted(format_mse.items(), key=lambda kv: kv[1]):
    print(f"{name:>11}: weight MSE {e:.3e}   ({e / format_mse['NF4']:.2f}x NF4)")

# %% [markdown]
# Now the ordering, asserted with margins (NF4 at least 10 % below E2M1, E2M1 at least 3 % below Int4),
# and the surprise about bitsandbytes' FP4 table:

# %%
e = format_mse
assert e["NF4"] < 0.9 * e["FP4 (E2M1)"], f"NF4 should beat FP4 (E2M1) by 10 %, got {e}"
assert e["FP4 (E2M1)"] < 0.97 * e["Int4"], f"FP4 (E2M1) should beat Int4 by 3 %, got {e}"
assert e["FP4 (bnb)"] > 1.1 * e["Int4"], (
    "measured: bitsandbytes' FP4 table loses to Int4 on these weights"
)

# %% [markdown]
# Section 2 found that bitsandbytes' FP4 differs from E2M1 in one level. Move that one level
# (0.0052 → 0.0833) and measure again:

# %%
fixed = fp4_values().clone()
smallest = fixed.abs().sub(0.0625 / 12).abs() < 1e-6  # the two codes ±0.0052
fixed[smallest] = fixed[smallest].sign() * 0.5 / 6  # E2M1's smallest nonzero level
mse_fixed = qlora.format_mse(model, fixed)
print(
    f"bnb FP4 {e['FP4 (bnb)']:.3e} -> with one level moved {mse_fixed:.3e} "
    f"(E2M1 {e['FP4 (E2M1)']:.3e})"
)
assert abs(mse_fixed - e["FP4 (E2M1)"]) < 1e-3 * e["FP4 (E2M1)"], "the whole gap is one level"

# %% [markdown]
# **What we find.** With FP4 read as OCP E2M1, the paper's ordering **NF4 < FP4 < Int4** holds for
# the weight error on our model. bitsandbytes' FP4 (most likely the paper's) comes out *worse than
# Int4*, and the whole difference from E2M1 is its one misplaced subnormal level: the hole between
# 0.005 and 0.167 is exactly where many normalised weights lie. Yet in the paper that table beat
# Int4 in perplexity, and E3M0 beat E2M1, while E3M0 has the largest weight error of all on our
# model (exercise 2 measures it). **Weight MSE on a small model and perplexity of large models can
# rank formats differently**; "FP4" is not one format, and which one a library implements matters.
# The histogram: the weights of one layer divided by their block's absmax, with each table's levels.

# %%
flat = w.reshape(-1, 64)
normed = (flat / flat.abs().amax(1, keepdim=True)).reshape(-1)
fig, axes = plt.subplots(1, 4, figsize=(12, 2.6), sharey=True)
for ax, (name, t) in zip(axes, tables.items()):
    ax.hist(normed.numpy(), bins=80, color="lightgrey")
    for v in t.unique():
        ax.axvline(v, color="tab:red", lw=0.8)
    ax.set_title(f"{name}: MSE {format_mse[name]:.2e}", fontsize=9)
axes[0].set_ylabel("weights (block-normalised)")
plt.tight_layout()

# %% [markdown]
# ### Is NF4 optimal? Three measurements
#
# The claim was: quantile levels make every code equally likely for normal data. Three caveats,
# each measured below on normal samples (as many as the model's linear weights, with their sd) and
# on the real weights:
#
# 1. Rounding to the **nearest** level makes bins that end at midpoints between levels, not at the
#    quantiles, so the bins do not hold equal mass.
# 2. A block divided by its absmax is not $\mathcal N(0, 1)$: it always contains an exact ±1.
# 3. Using all codes equally (maximum **entropy** of the codes) is not the same as the smallest
#    **error**. The levels that minimise the MSE are found by the **Lloyd–Max** algorithm (1-D
#    k-means): put each level at the mean of the values rounded to it, re-round, repeat.

# %%
def lloyd_max(x, n=16, iters=60):
    """The n levels with the least MSE for x in [-1, 1] under nearest rounding; ends kept at ±1."""
    levels = torch.linspace(-1, 1, n)
    for _ in range(iters):
        idx = torch.bucketize(x, (levels[:-1] + levels[1:]) / 2)  # nearest level of each value
        sums = torch.zeros(n, dtype=x.dtype).index_add_(0, idx, x)
        levels = sums / torch.bincount(idx, minlength=n).clamp(min=1)  # the mean of its values
        levels[0], levels[-1] = -1.0, 1.0
    return levels


gauss = torch.randn(all_w.numel(), generator=torch.Generator().manual_seed(0)) * all_w.std()
blocks = gauss.reshape(-1, 64)
normed_gauss = (blocks / blocks.abs().amax(1, keepdim=True)).reshape(-1)
lloyd = lloyd_max(normed_gauss[: 2**18])  # fitted on 262,144 of the normal samples
print("Lloyd–Max levels:", [round(v, 3) for v in lloyd.tolist()])

# %%
def mse_and_entropy(x, table):
    codes, absmax = quantize_blockwise(x, table, 64)
    p = torch.bincount(codes.reshape(-1).long(), minlength=len(table)).double() / x.numel()
    entropy = -(p[p > 0] * p[p > 0].log2()).sum().item()
    return mse(dequantize_blockwise(codes, absmax, table, 64), x), entropy


fit = {}
for name, t in {**tables, "Lloyd–Max": lloyd}.items():
    for data, x in [("normal", gauss), ("weights", all_w)]:
        fit[name, data] = mse_and_entropy(x, t)
print(f"{'':>11}  MSE / NF4 on normal, on weights | code entropy (bits of 4) on normal, on weights")
for name in [*tables, "Lloyd–Max"]:
    (mn, hn), (mw, hw) = fit[name, "normal"], fit[name, "weights"]
    ratio_n, ratio_w = mn / fit["NF4", "normal"][0], mw / fit["NF4", "weights"][0]
    print(f"{name:>11}: {ratio_n:.3f}  {ratio_w:.3f}  | {hn:.3f}  {hw:.3f}")

# %% [markdown]
# The checks, with margins: on normal samples NF4 beats E2M1 and Int4 but does not reach 4 bits of
# entropy, and Lloyd–Max has a smaller error than NF4 while using its codes *less* evenly.

# %%
nf4_n, nf4_w = fit["NF4", "normal"], fit["NF4", "weights"]
assert nf4_n[0] < 0.9 * fit["FP4 (E2M1)", "normal"][0] < 0.98 * fit["Int4", "normal"][0]
assert 3.7 < nf4_n[1] < 3.95, "equal-mass levels, but not 4 bits under nearest rounding"
assert fit["Lloyd–Max", "normal"][0] < 0.97 * nf4_n[0], "Lloyd–Max: less error than NF4"
assert fit["Lloyd–Max", "weights"][0] < 0.98 * nf4_w[0], "… on the real weights too"
assert fit["Lloyd–Max", "normal"][1] < nf4_n[1], "… with less even code use"

# %% [markdown]
# So "information-theoretically optimal" holds only in a narrow sense: NF4's levels are the
# equal-mass quantiles of a normal distribution, which makes the codes *nearly* equally used (the
# entropy printed above, not 4 bits). It is not the format with the smallest error: Lloyd–Max
# levels fitted to the same normal samples have a lower MSE on the samples and on our weights
# (the ratios above), though they lose the exact zero. Yoshida (2023), *NF4 Isn't Information
# Theoretically Optimal (and that's Good)*, makes this case, and bitsandbytes ships its alternative
# table as `af4`. NF4 is a good, simple table designed for normal weights, not the optimum of any
# error measure.
#
# **Does it matter for the model?** Replace every linear weight by its 4-bit version (quantize,
# then dequantize: "fake quantization") and measure validation cross-entropy on 300 corpus
# documents, beside two no-context references: the uniform guess ($\ln V$) and a unigram model
# (token frequencies of 2,000 training documents).

# %%
import math
from course_lib.evaluation import unigram_cross_entropy

val_texts = [d["text"] for d in corpus_documents("val", 300)]
train_ids = tok([d["text"] for d in corpus_documents("train", 2000)])["input_ids"]
val_ce = {"uniform": math.log(len(tok))}
val_ce["unigram"] = unigram_cross_entropy(train_ids, tok(val_texts)["input_ids"], len(tok))
val_ce["fp32"] = cross_entropy(model, tok, val_texts)
for name, t in tables.items():
    val_ce[name] = cross_entropy(qlora.fake_quantize(model, t), tok, val_texts)
for name, ce in val_ce.items():
    print(f"{name:>11}: {ce:.4f} nats/token  ({ce - val_ce['fp32']:+.4f} vs fp32)")
assert max(val_ce[n] for n in tables) - val_ce["fp32"] < 0.01, "4-bit barely changes the loss"

# %% [markdown]
# The model is far better than both references, and every 4-bit format costs almost nothing:
# the differences are in the third or fourth decimal, too small to rank the formats reliably on
# this model. The weight-MSE ranking above is robust; the paper's *quality* ranking was measured on
# models with billions of parameters, and a small model with a simple language does not reproduce
# that part. We do not pretend it does.
#
# ## 5 · Double quantization
#
# With blocks of 64 every weight carries $32/64 = 0.5$ extra bits for its block's fp32 absmax.
# **Double quantization** (QLoRA §3) quantizes those constants too: subtract their mean
# (they are all positive), quantize them blockwise to 8 bits in blocks of 256, and keep one fp32
# constant per 256 constants:
#
# $$\text{bits/param} = 4 + \underbrace{\frac{8}{64} + \frac{32}{64 \cdot 256}}_{0.127} \quad\text{instead of}\quad 4 + \underbrace{\frac{32}{64}}_{0.5}.$$
#
# The saving, 0.373 bits per parameter, is about 3 GB for a 65B model. The formula as a function:

# %%
#| export course_lib.quantization
def bits_per_parameter(
    bits: int = 4, blocksize: int = 64, double_quant: bool = False, blocksize2: int = 256
) -> float:
    """Storage per weight: the code plus its share of the block constants (fp32, or 8-bit + fp32)."""
    if double_quant:
        return bits + 8 / blocksize + 32 / (blocksize * blocksize2)
    return bits + 32 / blocksize


# %% [markdown]
# Double quantization itself is three lines on top of `quantize_blockwise`. The 8-bit table `code`
# is bitsandbytes' "dynamic" 8-bit code (256 values in $[-1, 1]$, dense near 0), which a
# `quantize_4bit` state carries as `state2.code`:

# %%
#| export course_lib.quantization
def double_quantize(absmax: torch.Tensor, code: torch.Tensor, blocksize: int = 256):
    """Quantize the block constants themselves (QLoRA §3): subtract their mean, then 8-bit
    blockwise with the table `code`. Returns (codes, absmax of the absmax blocks, offset)."""
    offset = absmax.mean()  # all absmax are > 0: centring uses both halves of the signed code
    codes, absmax2 = quantize_blockwise(absmax - offset, code, blocksize)
    return codes, absmax2, offset


# %% [markdown]
# From scratch against bitsandbytes (`compress_statistics=True` turns double quantization on):

# %%
_, plain = bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4")
_, dq = bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)
codes2, absmax2, offset = double_quantize(plain.absmax, dq.state2.code, blocksize=256)
print(
    f"{plain.absmax.numel()} fp32 constants -> {codes2.numel()} uint8 codes + {absmax2.numel()} "
    f"fp32 + offset {offset:.4f}"
)
assert torch.allclose(offset, dq.offset) and torch.allclose(absmax2, dq.state2.absmax), (
    "offset and 2nd-level absmax"
)
same = (codes2 == dq.absmax).float().mean().item()
x = (plain.absmax - offset) / absmax2.repeat_interleave(256)[: len(codes2)]
code8 = dq.state2.code
ours_dist, bnb_dist = (x - code8[codes2.long()]).abs(), (x - code8[dq.absmax.long()]).abs()
print(
    f"same 8-bit codes: {same:.2%}; where they differ, ours is never farther: "
    f"{bool((ours_dist <= bnb_dist + 1e-7).all())}"
)
assert (
    same > 0.98
    and (ours_dist <= bnb_dist + 1e-7).all()
    and (codes2.int() - dq.absmax.int()).abs().max() <= 1
)


# %% [markdown]
# The offset and the second-level constants are identical. The 8-bit codes agree except for a
# handful of near-ties: bitsandbytes finds the nearest of the 256 values of its 8-bit "dynamic" code by
# a binary search (7 halvings) that can end on the neighbour when two values are almost equally near;
# ours takes the true nearest, and the two never differ by more than one code.
# (On the 4-bit codes above, with only 16 values, they agree everywhere.)
#
# Now count bits per parameter from the tensors bitsandbytes actually allocates for this layer
# (codes, constants, second-level constants; the 16- and 256-entry code tables are shared
# lookup tables, left out), next to the formula:

# %%
def nbytes(*ts):
    return sum(t.numel() * t.element_size() for t in ts)


n = w.numel()
bits_plain = 8 * nbytes(packed, plain.absmax) / n
bits_dq = 8 * nbytes(packed, dq.absmax, dq.state2.absmax, dq.offset.reshape(1)) / n
print(f"without DQ: {bits_plain:.4f} bits/param (formula {bits_per_parameter(4, 64):.4f})")
print(
    f"with DQ:    {bits_dq:.4f} bits/param (formula {bits_per_parameter(4, 64, double_quant=True):.4f})"
)
print(f"saving on a 65B model: {(bits_plain - bits_dq) * 65e9 / 8 / 1e9:.1f} GB")
assert abs(bits_plain - bits_per_parameter(4, 64)) < 1e-9
assert abs(bits_dq - bits_per_parameter(4, 64, double_quant=True)) < 0.005, (
    "DQ overhead should be ~0.127 bits"
)

# %% [markdown]
# (The measured DQ figure is a hair above the formula: this layer's 1,536 constants fill 6 blocks of
# 256 exactly, plus one fp32 offset per layer.)
#
# ## 6 · QLoRA for real: a 4-bit base model in transformers
#
# `transformers` does all of the above at load time: with a `BitsAndBytesConfig` every
# `nn.Linear` (except the output head, here tied to the embeddings) becomes a
# `bitsandbytes.nn.Linear4bit` whose weight is the packed uint8 codes plus a `quant_state`.
#
# Two dtypes are involved:
# * the **storage dtype**: 4-bit NF4 codes (+ 8-bit double-quantized constants);
# * the **compute dtype** (`bnb_4bit_compute_dtype`): each forward pass *dequantizes* the weight to
#   this dtype and does an ordinary matmul in it. On GPUs bfloat16 is usual; float32 is exact but
#   slower there. Nothing is ever computed *in* 4 bits.

# %%
q4, _ = load_model("4bit", quant_type="nf4", double_quant=True, compute_dtype=torch.float32)
layer = q4.model.layers[0].self_attn.q_proj
print(
    type(layer).__name__,
    "| weight",
    layer.weight.dtype,
    tuple(layer.weight.shape),
    "| quant_type",
    layer.weight.quant_state.quant_type,
    "| nested (DQ):",
    layer.weight.quant_state.nested,
)
deq = bnbf.dequantize_4bit(layer.weight.data, layer.weight.quant_state)
ref = model.model.layers[0].self_attn.q_proj.weight
codes, absmax = quantize_blockwise(ref, nf4_values(), 64)
print(f"same packed codes as ours: {torch.equal(layer.weight.data, pack_4bit(codes))}")
assert torch.equal(layer.weight.data, pack_4bit(codes)), (
    "transformers' 4-bit weight = our NF4 codes"
)
no_dq, with_dq = mse(dequantize_blockwise(codes, absmax, nf4_values()), ref), mse(deq, ref)
print(
    f"weight MSE: NF4 {no_dq:.3e}, NF4 + DQ {with_dq:.3e} ({with_dq / no_dq - 1:+.2%} from "
    "quantizing the constants)"
)
assert with_dq < 1.05 * no_dq, "double quantization should add almost no error"

# %% [markdown]
# The compute dtype, measured: the loss on one batch of 64 validation documents, with float32 and
# with bfloat16 compute. The models are in training mode, the path training takes (see the CPU
# note in section 8 for why that matters here).

# %%
vb = next(iter(text_batches(tok, val_texts[:64], batch_size=64)))
compute = {}
with torch.no_grad():
    for dt in (torch.float32, torch.bfloat16):
        m4 = q4 if dt == torch.float32 else load_model("4bit", compute_dtype=dt)[0]
        compute[str(dt)] = m4.train()(**vb).loss.item()
    fake_nf4 = qlora.fake_quantize(model, nf4_values()).train()(**vb).loss.item()
print(
    f"loss: fp32 compute {compute['torch.float32']:.5f} | bf16 compute {compute['torch.bfloat16']:.5f} | "
    f"fake-quantized NF4 (no DQ) {fake_nf4:.5f}"
)
assert abs(compute["torch.float32"] - fake_nf4) < 2e-3, "fp32 compute = our NF4 weights (up to DQ)"
assert abs(compute["torch.bfloat16"] - compute["torch.float32"]) < 0.02, (
    "bf16 compute adds rounding, but little"
)

# %% [markdown]
# ### Model size in bytes
#
# Counted from the tensors each model allocates (`model_bytes` walks parameters, buffers and the
# 4-bit `quant_state`s, counting tied weights once) and checked against transformers'
# `get_memory_footprint()`, which counts parameters and buffers only.

# %%
bf16_model = load_model("causal")[0].to(torch.bfloat16)
sizes = {
    "fp32": qlora.model_bytes(model),
    "bf16": qlora.model_bytes(bf16_model),
    "4-bit NF4+DQ": qlora.model_bytes(q4),
}
footprint = {
    "fp32": model.get_memory_footprint(),
    "bf16": bf16_model.get_memory_footprint(),
    "4-bit NF4+DQ": q4.get_memory_footprint(),
}
for k, v in sizes.items():
    print(
        f"{k:>13}: {v['total']:>10,} bytes (weights {v['weights']:,} + quant state {v['quant_state']:,}) "
        f"| get_memory_footprint {footprint[k]:,}"
    )
lin = sum(t.numel() for t in weights.values())
emb = model.model.embed_tokens.weight.numel()
print(
    f"linear weights: {lin:,} params; embeddings (fp32 in every version, tied to the head): {emb:,}"
)

# %% [markdown]
# The checks: our count equals transformers' for parameters and buffers, bf16 is exactly half of
# fp32, and the linear layers alone cost what the bits-per-parameter formula says.

# %%
for k in sizes:
    assert sizes[k]["weights"] == footprint[k], (
        "our count of parameters and buffers = get_memory_footprint"
    )
assert sizes["bf16"]["total"] * 2 == sizes["fp32"]["total"], "bf16 is exactly half of fp32"
linear_4bit = sizes["4-bit NF4+DQ"]["total"] - (sizes["fp32"]["total"] - 4 * lin)
qs = layer.weight.quant_state
tables_bits = (
    8 * len(weights) * 4 * (qs.code.numel() + qs.state2.code.numel()) / lin
)  # 16 + 256 floats per layer
expected = bits_per_parameter(4, 64, double_quant=True) + tables_bits
print(
    f"linear layers in 4 bits: {8 * linear_4bit / lin:.3f} bits/param = formula "
    f"{bits_per_parameter(4, 64, True):.3f}"
    f" + code tables {tables_bits:.3f} (+ offsets) -> expected {expected:.3f}"
)
assert abs(8 * linear_4bit / lin - expected) < 0.02, (
    "4-bit linear layers should cost the formula + code tables"
)
plt.figure(figsize=(5, 2.6))
plt.bar(list(sizes), [v["total"] / 1e6 for v in sizes.values()])
plt.ylabel("MB")
plt.title("Base model size");

# %% [markdown]
# The 4-bit model is not 8× smaller than fp32 but about 4×: the **embedding matrix stays in
# full precision** (it is a lookup table, not an `nn.Linear`, and here it doubles as the output
# head), and in this tiny model it holds 13 % of the parameters. The 4-bit layers cost a little
# more than the formula because every layer also stores its two code tables (16 + 256 floats),
# which a large layer would hardly notice.
#
# Is the embedding share negligible in real models? It was for LLaMA-1 65B (32k vocabulary), the
# QLoRA paper's model. Vocabularies have grown since (128k–262k tokens), and in small models the
# embeddings are now a large share. From the published shapes (vocabulary × hidden size, doubled
# when the output head is a separate matrix) and parameter counts, with the linear layers in NF4 +
# DQ and the embeddings in bf16, as `BitsAndBytesConfig` leaves them:

# %%
published = {  # vocabulary, hidden size, tied head?, total parameters (model cards / papers)
    "LLaMA-1 65B": (32_000, 8192, False, 65.2e9),
    "Llama-3.2-1B": (128_256, 2048, True, 1.236e9),
    "Qwen2.5-0.5B": (151_936, 896, True, 0.494e9),
    "Gemma-3-1B": (262_144, 1152, True, 1.0e9),
}
nf4_bits = bits_per_parameter(4, 64, double_quant=True)
for name, (vocab, hidden, tied, total) in published.items():
    share = vocab * hidden * (1 if tied else 2) / total
    bits = (1 - share) * nf4_bits + share * 16
    emb_gb, lin_gb = share * total * 2 / 1e9, (1 - share) * total * nf4_bits / 8 / 1e9
    print(
        f"{name:>13}: embeddings {share:5.1%} of parameters -> {bits:5.2f} bits/param; "
        f"embeddings {emb_gb:5.2f} GB vs 4-bit linear layers {lin_gb:5.2f} GB"
    )
ours = emb / (emb + lin)
print(f"{'this model':>13}: embeddings {ours:5.1%} (in fp32 here)")

# %% [markdown]
# So a "4-bit" Llama-3.2-1B averages well above 6 bits per parameter, and its embeddings take more
# memory than all its 4-bit linear layers together.
#
# ## 7 · Training: QLoRA vs LoRA on the same task
#
# The task: inject the 80 new facts of `new_facts` (chapter 01) by training on their statements,
# and score the fact probes in the trained phrasing and in an unseen paraphrase.
#
# `prepare_model_for_kbit_training` gets a quantized model ready for training: it freezes every
# base parameter, casts the remaining full-precision ones (norms, embeddings) to float32 for stable
# training, makes the input embeddings' outputs require gradients (so gradients can flow back
# through frozen layers to the adapters), and by default turns on **gradient checkpointing**
# (activations are recomputed in the backward pass: less memory, more time). We turn that off here
# to time the 4-bit layers alone, and measure it separately below.
#
# **A CPU caveat (bitsandbytes 0.50).** On CPUs with AVX512-BF16, the first time a `Linear4bit`
# runs in eval mode on an input without gradient, bitsandbytes *repacks* its weight for a fast bf16
# inference kernel, and that kernel has no backward: training the model afterwards would silently
# get no gradient through those layers (PyTorch warns "an autograd kernel was not registered").
# So: train first, evaluate after, and time freshly loaded models; `qlora.cpu_packed_layers(model)`
# lists repacked layers and `measure.train_step_seconds` refuses them.

# %%
from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

facts = load_jsonl("new_facts")
statements = [s for f in facts for s in f["statements"]]


def probe_acc(m, kind):
    picks = choose_many(m, tok, [f[kind] for f in facts], [f["candidates"] for f in facts])
    return accuracy(picks, [f["answer"] for f in facts])


def add_lora(m, seed=0):
    torch.manual_seed(seed)  # the seed draws the adapters' A matrices
    return get_peft_model(
        m, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
    )


SEED = 0  # the live run; the shipped sweep below adds seeds 1-4
cfg = TrainConfig(lr=5e-3, max_steps=150, warmup_steps=15)
print(
    len(statements),
    f"training statements; base model before training: {probe_acc(model, 'probe_seen'):.1%}",
)

# %% [markdown]
# Same LoRA (r = 16 on all linear layers, 150 steps, lr 5e-3, batch 16), same seed (adapter
# initialisation and batch order), two bases: the fp32 base model, and the 4-bit NF4 + DQ base
# prepared for k-bit training.

# %%
lora = add_lora(load_model("causal", device=device)[0], SEED)
hist_lora = train(lora, text_batches(tok, statements, batch_size=16, seed=SEED), cfg)
qlora_model = add_lora(
    prepare_model_for_kbit_training(
        load_model("4bit", device=device)[0], use_gradient_checkpointing=False
    ),
    SEED,
)
hist_qlora = train(qlora_model, text_batches(tok, statements, batch_size=16, seed=SEED), cfg)
lora.print_trainable_parameters()
qlora_model.print_trainable_parameters()

# %% [markdown]
# The score: probe accuracy in the trained phrasing and in the unseen paraphrase (chapter 01's fact
# probes), each with its 95 % Wilson interval over the 80 facts.

# %%
from course_lib.evaluation import wilson_interval

live = {}
for name, m in [("LoRA (fp32 base)", lora), ("QLoRA (NF4 base)", qlora_model)]:
    live[name] = {k: probe_acc(m, k) for k in ("probe_seen", "probe_paraphrase")}
    ci = {k: wilson_interval(round(v * len(facts)), len(facts)) for k, v in live[name].items()}
    print(
        f"{name}: seen {live[name]['probe_seen']:.1%} (95% CI {ci['probe_seen'][0]:.0%}–"
        f"{ci['probe_seen'][1]:.0%})  paraphrase {live[name]['probe_paraphrase']:.1%} "
        f"(95% CI {ci['probe_paraphrase'][0]:.0%}–{ci['probe_paraphrase'][1]:.0%})"
    )
print(f"training time: LoRA {hist_lora.seconds:.1f} s, QLoRA {hist_qlora.seconds:.1f} s")
assert all(v["probe_seen"] > 0.8 for v in live.values()), "both should learn most of the facts"

# %% [markdown]
# One run per arm cannot say whether the paraphrase scores differ: the intervals over 80 facts are
# about ±8 points wide, and a different seed (another draw of the adapters' A matrices, another
# batch order) moves each arm by several facts. The 5 seeds of each arm do not fit this lesson's
# time budget, so they ship as a sweep (`course_lib/build/sweeps_ch05.py`, rebuilt by
# `make sweep NAME=ch05_lora_vs_qlora`; a test re-runs one seed and matches it). Seed 0 of the
# sweep is exactly the run above. The table gives mean ± sd over the seeds, with references:
# chance (one of the candidates at random), the base model before training, and for the loss on the
# training statements the uniform guess ($\ln V$) and a unigram model of the statements.

# %%
from course_lib import sweeps, uncertainty

rec = sweeps.load("ch05_lora_vs_qlora")
chance = sum(1 / len(f["candidates"]) for f in facts) / len(facts)
base_seen, base_para = probe_acc(model, "probe_seen"), probe_acc(model, "probe_paraphrase")
stmt_ids = tok(statements)["input_ids"]
print(
    f"references: chance {chance:.1%}; base model seen {base_seen:.1%}, paraphrase "
    f"{base_para:.1%}, statement loss {cross_entropy(model, tok, statements):.3f}; uniform "
    f"{math.log(len(tok)):.3f}; unigram {unigram_cross_entropy(stmt_ids, stmt_ids, len(tok)):.3f}"
)
print(f"sweep built in {rec['build_seconds']} s with {rec['threads']} threads")
sweeps.table(rec, ["probe_seen", "probe_paraphrase", "statement_loss", "train_seconds"])

# %% [markdown]
# Is QLoRA worse than LoRA? `uncertainty.verdict` computes the Welch interval of the difference of
# the means over seeds and calls a difference only when that interval excludes zero; `sweeps.place`
# says where the live run falls among the shipped seeds.

# %%
arms = tuple(rec["arms"])
verdicts = {}
for metric in ("probe_paraphrase", "statement_loss"):
    a, b = (sweeps.values(rec, arm, metric) for arm in arms)
    verdicts[metric] = uncertainty.differs(a, b)
    print(f"{metric}: {uncertainty.verdict(a, b, ('LoRA', 'QLoRA'))}")
for arm in arms:
    print(sweeps.place(live[arm]["probe_paraphrase"], rec, arm, "probe_paraphrase"))
    assert "inside" in sweeps.place(live[arm]["probe_paraphrase"], rec, arm, "probe_paraphrase")
assert not any(verdicts.values()), "the prose below says: no difference outside the noise"

# %% [markdown]
# Per seed, with the mean and its 95 % interval:

# %%
fig, axes = plt.subplots(1, 2, figsize=(8, 2.8), sharey=True)
for ax, metric in zip(axes, ("probe_seen", "probe_paraphrase")):
    for i, arm in enumerate(arms):
        sp = sweeps.summary(rec, arm, metric)
        ax.errorbar(i, sp.mean, yerr=[[sp.mean - sp.lo], [sp.hi - sp.mean]], fmt="o", capsize=6)
        ax.scatter([i + 0.12] * sp.n, sweeps.values(rec, arm, metric), s=12, color="grey")
    ax.set_xticks(range(len(arms)), arms, fontsize=8)
    ax.set_title(metric)
axes[0].set_ylabel("accuracy over 80 facts")
plt.tight_layout()

# %% [markdown]
# The two loss curves:

# %%
from course_lib.plotting import plot_losses

plot_losses({"LoRA": hist_lora, "QLoRA": hist_qlora}, title="Training loss: LoRA vs QLoRA");

# %% [markdown]
# **What the seeds say.** The live runs differ by a few facts on the paraphrases, and a single
# pair of runs invites reading that as "QLoRA generalises better" (or worse). Over 5 seeds the
# verdicts above find no difference outside the noise, on the paraphrases or on the loss: the
# spread between seeds of the *same* arm is as large as the gap between the arms. That is
# expected here, since fake quantization changed the base model's loss only in the fourth decimal
# (section 4): the two bases are nearly the same function. This is the noise floor of an 80-item
# evaluation, and the reason every comparison in this course from here on runs several seeds.
# At scale the QLoRA paper found the same kind of result: QLoRA matched 16-bit LoRA and 16-bit
# full fine-tuning on its benchmarks. The adapters stay in full precision, and so do their
# gradients and optimizer states; only the frozen base is 4-bit.
#
# ## 8 · Is QLoRA faster? Time per step, measured
#
# A common claim is that QLoRA "trains faster". Look at what a step does with bitsandbytes, the
# library QLoRA uses: every `Linear4bit` **dequantizes its weight** to the compute dtype in the
# forward pass and again in the backward pass (to pass the gradient to the layer below), then runs
# the same matmul LoRA runs. The dequantization is extra work proportional to the weights; the
# matmul is proportional to weights × tokens. So on this **dequantize-then-matmul** path a step
# costs more than LoRA's, most when there are few tokens per step (small micro-batches, which is
# exactly how memory-starved QLoRA runs are set up).
#
# Median time of one forward + backward pass on freshly loaded models (the trained ones were
# evaluated, see the CPU caveat in section 7), the runs interleaved so that a busy machine slows
# both alike:

# %%
batch1 = next(iter(text_batches(tok, statements, batch_size=1)))
batch16 = next(iter(text_batches(tok, statements, batch_size=16)))
clinic = next(
    iter(text_batches(tok, [r["text"] for r in load_jsonl("clinic_train")], batch_size=16))
)
pair = {
    "LoRA": add_lora(load_model("causal", device=device)[0]),
    "QLoRA": add_lora(
        prepare_model_for_kbit_training(
            load_model("4bit", device=device)[0], use_gradient_checkpointing=False
        )
    ),
}
step = {}
for name, b, reps in [
    ("1 statement", batch1, 20),
    ("16 statements", batch16, 10),
    ("16 clinic notes", clinic, 3),
]:
    step[name] = train_step_seconds(pair, b, repeats=reps, warmup=2)
    t = step[name]
    print(
        f"{name:>16} ({b['input_ids'].numel():>5} tokens): LoRA {t['LoRA'] * 1e3:6.1f} ms  "
        f"QLoRA {t['QLoRA'] * 1e3:6.1f} ms  ratio {t['QLoRA'] / t['LoRA']:.2f}"
    )

# %% [markdown]
# The claims for this path, asserted: QLoRA is clearly slower with one short sequence per step,
# not faster at any batch size here, and its relative overhead shrinks as the step gets more tokens
# (the dequantization cost is fixed per step).

# %%
ratios = {k: v["QLoRA"] / v["LoRA"] for k, v in step.items()}
assert ratios["1 statement"] > 1.15, (
    "with few tokens per step the dequantization should show: QLoRA slower"
)
assert min(ratios.values()) > 0.9, "dequantize-then-matmul: not faster than LoRA at any batch"
assert ratios["1 statement"] > ratios["16 clinic notes"], (
    "the overhead should shrink as tokens per step grow"
)

# %% [markdown]
# And with the default of `prepare_model_for_kbit_training`, gradient checkpointing on: the
# forward pass of every layer runs twice.

# %%
gc_model = add_lora(
    prepare_model_for_kbit_training(
        load_model("4bit", device=device)[0],  # default: checkpointing on
        gradient_checkpointing_kwargs={"use_reentrant": False},
    )
)
t_gc = train_step_seconds(
    {"QLoRA": pair["QLoRA"], "QLoRA + checkpointing": gc_model, "LoRA": pair["LoRA"]},
    batch16,
    repeats=6,
    warmup=2,
)
for k, v in t_gc.items():
    print(f"{k:>22}: {v * 1e3:6.1f} ms per forward + backward ({v / t_gc['LoRA']:.2f}x LoRA)")
assert t_gc["QLoRA + checkpointing"] > 1.15 * t_gc["QLoRA"], (
    "recomputing activations should cost time"
)

# %% [markdown]
# **So: with bitsandbytes' dequantize-then-matmul path, QLoRA is slower per step than LoRA on the
# same hardware and batch** (measured above on this CPU; the same path does the same extra work on a
# GPU). What it saves is **memory**: the frozen base takes ~4.13 instead of 16 bits per parameter,
# which is what lets a 65B model fit on one GPU at all, or a 7B model on a consumer card. Fewer GPUs
# can make a whole project cheaper, and a model that fits where it did not can be trained at all.
#
# This is a statement about an implementation, not about 4-bit weights. **Fused kernels** read the
# packed 4-bit weights and dequantize them inside the matmul, in registers, so a 4-bit weight is
# moved from memory as 4 bits. When a step is limited by memory bandwidth rather than arithmetic,
# as in decoding one token at a time (a matrix–vector product per layer), reading 4× fewer weight
# bytes makes 4-bit inference *faster* than 16-bit on GPUs (bitsandbytes' own batch-1 inference
# kernel, GPTQ/AWQ kernels such as Marlin and ExLlama, llama.cpp). Training frameworks with fused
# dequantize-and-matmul kernels (for example Unsloth's Triton kernels) narrow or remove the per-step
# overhead we measured. "QLoRA is slower" and "QLoRA is faster" are both claims about a kernel.
#
# ## 9 · Paged optimizers
#
# The third QLoRA ingredient. When a long sequence makes GPU memory spike, training would
# crash with out-of-memory. **Paged optimizers** allocate the optimizer states (AdamW's two moments)
# in **CUDA unified memory**: when the GPU runs short, the driver evicts pages of them to CPU RAM and
# brings them back when the optimizer step needs them, like virtual memory paging. It costs
# nothing while memory suffices and turns a crash into a slowdown when it does not.
# It is a GPU-only mechanism: on a CPU there is nothing to page out to. bitsandbytes'
# `PagedAdamW` runs on CPU tensors but warns and falls back to an ordinary optimizer; with
# `transformers` you would pass `optim="paged_adamw_32bit"` (or `"paged_adamw_8bit"`) on a GPU.
#
# How large are the optimizer states with LoRA? AdamW keeps 2 × 4 bytes per *trainable*
# parameter. Counted here, and for the same adapter (r = 16 on every linear layer) on a 7B model
# with Llama-2-7B's shapes (32 layers, hidden 4096, MLP 11008, 6.74 B parameters):

# %%
trainable = sum(p.numel() for p in qlora_model.parameters() if p.requires_grad)
share = trainable / (trainable + emb + lin)
print(
    f"this model: {trainable:,} LoRA parameters ({share:.1%} of all) -> AdamW states "
    f"{2 * 4 * trainable:,} bytes vs the 4-bit base {sizes['4-bit NF4+DQ']['total']:,} bytes"
)
h, f, layers, total_7b = 4096, 11008, 32, 6.74e9  # Llama-2-7B
lora_7b = layers * 16 * (4 * (h + h) + 3 * (h + f))  # q, k, v, o: h->h; gate, up, down: h<->f
print(
    f"7B model: {lora_7b / 1e6:.1f} M LoRA parameters ({lora_7b / total_7b:.2%}) -> AdamW states "
    f"{8 * lora_7b / 1e9:.2f} GB vs the 4-bit base {total_7b * nf4_bits / 8 / 1e9:.2f} GB"
)

# %% [markdown]
# On this tiny model r = 16 on all layers is a tenth of the parameters, so the optimizer states
# come close to the size of the whole 4-bit base. On a 7B model the same adapter is well under 1 %
# of the parameters and its states are a small fraction of the base: there, paging matters for the
# rare spikes (long sequences, large activations), not for the average.

# %% [markdown]
# ## 10 · Other quantizers, and a claim about `quantize_dynamic`
#
# A claim repeated in tutorials: *"`torch.ao.quantization.quantize_dynamic` makes GPT-2 4× smaller
# and 2.5× faster."* The 4× is 32 bits / 8 bits, which assumes that every weight is converted.
# `quantize_dynamic(model, {nn.Linear})` converts only modules that **are** `nn.Linear` (int8
# weights, activations quantized on the fly). GPT-2 in transformers builds its attention and MLP
# projections from `transformers.pytorch_utils.Conv1D`, a linear layer with a transposed weight
# that is *not* an `nn.Linear`. Measured on a tiny GPT-2 built offline from a config (random
# weights: sizes and speed do not depend on training):

# %%
import copy
import warnings
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.pytorch_utils import Conv1D
from course_lib.measure import median_seconds, saved_bytes

DynamicLinear = torch.ao.nn.quantized.dynamic.Linear


def quantize_dynamic(m):
    with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(m, {nn.Linear}, dtype=torch.qint8)


def count(m, kind):
    return sum(isinstance(x, kind) for x in m.modules())


# %% [markdown]
# The tiny GPT-2 (4 layers, 256 wide, our tokenizer's vocabulary), before and after:

# %%
tokens = dict(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
gpt2_cfg = GPT2Config(n_layer=4, n_embd=256, n_head=4, n_positions=128, **tokens)
gpt2 = GPT2LMHeadModel(gpt2_cfg).eval()
gpt2_q = quantize_dynamic(gpt2)
print(
    f"after quantize_dynamic: {count(gpt2_q, Conv1D)} Conv1D left in fp32, "
    f"{count(gpt2_q, DynamicLinear)} int8 Linear (the output head, tied to the embeddings)"
)
print(f"saved size: {saved_bytes(gpt2):,} -> {saved_bytes(gpt2_q):,} bytes")

# %% [markdown]
# Every Conv1D stays in fp32. The only `nn.Linear` is the output head, whose weight is *tied* to the
# token embeddings: the int8 copy is stored next to the fp32 embedding, so the model gets bigger.
# The fix is to turn each Conv1D into an equal `nn.Linear` first (transpose the weight):

# %%
def conv1d_to_linear(model):
    """Replace every transformers Conv1D (y = x W + b, W: [in, out]) by an equal nn.Linear."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, Conv1D):
                linear = nn.Linear(*child.weight.shape)  # (in, out)
                linear.weight.data = child.weight.data.t().contiguous()
                linear.bias.data = child.bias.data
                setattr(module, name, linear)
    return model


# %% [markdown]
# Converted, then quantized: which modules are int8 now, how large is the file, and how far do the
# logits move?

# %%
gpt2_lin_q = quantize_dynamic(conv1d_to_linear(copy.deepcopy(gpt2)))
ids = torch.randint(0, len(tok), (8, 64), generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    drift = (gpt2_lin_q(ids).logits - gpt2(ids).logits).abs().max().item()
size = {k: saved_bytes(m) for k, m in [("fp32", gpt2), ("dyn", gpt2_q), ("fixed", gpt2_lin_q)]}
print(
    f"converted first: {count(gpt2_lin_q, DynamicLinear)} int8 Linear, {size['fixed']:,} bytes "
    f"({size['fp32'] / size['fixed']:.2f}x smaller); largest logit change {drift:.3f}"
)
assert count(gpt2_q, Conv1D) == 4 * gpt2_cfg.n_layer and size["dyn"] > size["fp32"]
assert 2 < size["fp32"] / size["fixed"] < 3.5, "embeddings stay fp32: far from 4x"

# %% [markdown]
# Even converted, the model is not 4× smaller: the embeddings (and the int8 copy of the tied head)
# are not Linear weights. The same arithmetic on GPT-2 small's real shapes (124 M parameters),
# counted on the `meta` device (shapes without memory), and the speed of a forward pass over 8 × 64
# tokens on this CPU (medians of 7 interleaved runs, for 3 seeds of weights and inputs):

# %%
with torch.device("meta"):
    small = GPT2LMHeadModel(GPT2Config())  # GPT-2 small: 12 layers, 768 wide, 50,257 tokens
n_all = sum(p.numel() for p in small.parameters())
n_conv = sum(m.weight.numel() for m in small.modules() if isinstance(m, Conv1D))
n_head = small.lm_head.weight.numel()  # the int8 copy of the tied head
print(
    f"GPT-2 small fp32 {4 * n_all / 1e6:.0f} MB; quantize_dynamic {(4 * n_all + n_head) / 1e6:.0f}"
    f" MB; converted first {(4 * (n_all - n_conv) + n_conv + n_head) / 1e6:.0f} MB"
)

# %% [markdown]
# And the speed on this CPU, as a spread over seeds:

# %%
speedup = {"quantize_dynamic": [], "converted first": []}
for seed in range(3):
    torch.manual_seed(seed)
    m32 = GPT2LMHeadModel(gpt2_cfg).eval()
    runs = {
        "fp32": m32,
        "quantize_dynamic": quantize_dynamic(m32),
        "converted first": quantize_dynamic(conv1d_to_linear(copy.deepcopy(m32))),
    }
    x = torch.randint(0, len(tok), (8, 64), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        t = median_seconds({k: (lambda m=m: m(x)) for k, m in runs.items()}, repeats=7, warmup=2)
    for k in speedup:
        speedup[k].append(t["fp32"] / t[k])
for k, v in speedup.items():
    print(f"{k:>16}: {uncertainty.spread(v).fmt(2)}x as fast as fp32 (3 seeds)")

# %% [markdown]
# So the claim fails twice on GPT-2: as written (`{nn.Linear}` on a Conv1D model) the model does
# not shrink at all, and even after converting the layers the embeddings keep it far from 4×. The
# speed-up depends on the CPU's int8 kernels and the matrix sizes (the spread over seeds above);
# a figure like 2.5× is one machine and one model, not a property of int8. `quantize_dynamic` is
# also deprecated: PyTorch points to `torchao` for eager-mode quantization.
#
# ### The quantization landscape
#
# NF4 is one point in a larger space. What each common method quantizes, how, and whether you can
# fine-tune on top of it (from the papers and the libraries' documentation):
#
# | method | what is quantized | how | calibration data | training on top |
# |---|---|---|---|---|
# | LLM.int8() (bnb `load_in_8bit`) | weights int8 per row, activations int8 per token | absmax; the few outlier feature columns of the activations multiplied in 16 bits | none | LoRA on the frozen 8-bit base (peft) |
# | NF4 / FP4 (bnb `load_in_4bit`, this chapter) | weights only, blocks of 64 (+ DQ); compute in bf16/fp32 | a 16-level table, absmax per block | none | QLoRA: LoRA on the frozen 4-bit base |
# | GPTQ (Frantar et al., 2022) | weights only: int4/int3 (2–8 bits), groups (e.g. 128) with scale and zero point | layer by layer, column by column; each rounding error is compensated on the columns not yet quantized, using second-order (Hessian) information from calibration activations | yes (e.g. 128 text samples) | LoRA on the frozen GPTQ base (peft) |
# | AWQ (Lin et al., 2023) | weights only: int4 groups with scale and zero point | scales up the ~1 % salient weight channels (those meeting large activations) before rounding | yes, small | LoRA on the frozen AWQ base (peft) |
# | GGUF k-quants (llama.cpp, Ollama) | weights only: Q2_K … Q6_K (beside the older Q4_0, Q8_0, …) | super-blocks of 256 weights in sub-blocks whose scales (and minimums) are themselves quantized, like DQ; rounding optionally weighted by an importance matrix | optional | an inference format: fine-tune in PyTorch, merge, then convert (chapter 13 decodes Q4_1 from scratch) |
# | FP8 (E4M3 / E5M2) | weights and activations (in training also gradients) | per-tensor or per-block scales; FP8 matmuls on Ada, Hopper and Blackwell GPUs | no | yes: FP8 mixed-precision training (Transformer Engine, torchao) |
# | MXFP4 / NVFP4 | weights (and activations) as E2M1 with one shared scale per 32 / 16 values | the OCP MX format of section 2; Blackwell tensor cores | no | mainly inference (gpt-oss ships MXFP4 weights); FP4 training is research |
#
# Related tools: **8-bit optimizers** (bnb `AdamW8bit`) store AdamW's moments blockwise in 8 bits:
# the block-wise quantization this chapter uses was introduced for them (Dettmers et al., 2021).
# **LoftQ** initialises the LoRA factors so that the quantized base plus the adapter starts close to
# the full-precision weights; **QA-LoRA** trains with group-wise quantization so that the adapter can
# be merged into an int4 model. **Merging a QLoRA adapter** means dequantizing the base, adding
# $BA$, and then either keeping 16-bit weights or quantizing again, which rounds the merged
# weights anew: evaluate the merged model, not only the adapter.

# %% [markdown]
# ## Summary
#
# * **Absmax** quantization scales by the largest magnitude. One outlier inflates int8's error by
#   the larger *factor*, but at int4 it sends *every* other weight to 0. The famous LLM.int8()
#   outliers are in the **activations**; weights are near-normal (kurtosis measured), and NF4
#   quantizes weights only. **Blocks** of 64 confine the damage of a large weight.
# * **4-bit types** differ only in their 16 levels. **NF4** puts them at normal quantiles (with an
#   exact zero), built here from `scipy`'s `norm.ppf` and equal to bitsandbytes' table. On the
#   base model's weights the error ordering is **NF4 < FP4 (E2M1) < Int4**; bitsandbytes' FP4
#   differs from E2M1 in one subnormal level, which makes it worse than Int4. NF4 uses its codes
#   nearly, not exactly, equally, and Lloyd–Max levels have a lower error: "optimal" only in the
#   equal-mass sense. On this small model all formats change the validation loss by < 0.01 nats.
# * **Double quantization** cuts the constants from 0.5 to 0.127 bits per parameter (measured
#   from the allocated tensors). Embeddings stay in 16/32 bits: in today's small models with large
#   vocabularies they are a fifth or more of the parameters.
# * **QLoRA** = 4-bit NF4 frozen base (+ DQ) + LoRA adapters in full precision + compute in
#   bf16/fp32 + paged optimizers. Over 5 seeds its fact scores were **within noise** of LoRA's on
#   the fp32 base (verdicts printed in section 7), with the base 4× smaller; with bitsandbytes'
#   dequantize-then-matmul path it was **slower per step**, most at small micro-batches. Fused
#   4-bit kernels change the speed side of that trade-off, not the memory side.
# * `quantize_dynamic(model, {nn.Linear})` leaves GPT-2's Conv1D layers in fp32: check which modules
#   a quantizer converted, and measure the size, before believing "4× smaller".
#
# ## Quiz
#
# 1. One weight 20× larger than the rest: which suffers more, int8 or int4, relatively and absolutely?
# 2. Why does NF4 have 8 positive and only 7 negative levels?
# 3. A block of 64 weights is all zeros except one value. What do its codes look like, and what is its absmax?
# 4. How many bits per parameter does a 4-bit NF4 weight cost with blocks of 64, with and without double quantization?
# 5. Does `bnb_4bit_compute_dtype=torch.bfloat16` mean the matmul runs in 4 bits?
# 6. You run `quantize_dynamic(gpt2, {nn.Linear})`. Why does the saved model not shrink?
#
# <details><summary>Answers</summary>
#
# 1. Relatively, int8: its clean error is tiny, so the coarser step multiplies it by the larger
#    factor (section 1 prints both). Absolutely, int4: the step becomes $20\max|w|/7 \approx
#    2.9\max|w|$, half a step exceeds every other weight, and all of them round to 0.
# 2. A 4-bit code has 16 values and NF4 wants an exact zero; 16 = 8 + 1 + 7, so one side gets one
#    level fewer. The largest magnitude is 1 on both sides.
# 3. The nonzero value maps to ±1 (its own absmax); every other weight maps to the code of 0 (exactly zero,
#    thanks to NF4's exact zero). The absmax is the magnitude of that one value.
# 4. $4 + 32/64 = 4.5$ without, $4 + 8/64 + 32/(64 \cdot 256) \approx 4.127$ with double quantization.
# 5. No: the weight is stored in 4 bits and dequantized to bf16 for each matmul, which runs in bf16.
# 6. Its projections are transformers' `Conv1D`, not `nn.Linear`, so they stay fp32; the only
#    `nn.Linear` is the output head, tied to the embeddings, and its int8 copy is stored on top.
# </details>
#
# ## Interview questions
#
# * What does QLoRA add to LoRA, and what does each piece save?
# * Why NF4 rather than Int4 or FP4? What does "information-theoretically optimal" mean here?
# * What is double quantization, and how many bits per parameter does it save?
# * Is QLoRA faster than LoRA? What did you measure, and why?
# * What is the difference between the storage dtype and the compute dtype of a 4-bit layer?
# * GPTQ, AWQ, GGUF and NF4: what does each quantize, and which can you fine-tune on top of?
#
# Exercises: [../exercises/05_qlora_quantization_exercises.ipynb](../exercises/05_qlora_quantization_exercises.ipynb)
