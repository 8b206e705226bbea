# %% [markdown]
# # 11 · Scaling out: memory, data parallelism, ZeRO and FSDP
#
# **Measured runtime:** 37 s on a 2-core CPU (`make execute`; your machine may differ).
#
# Every method so far trained a 2 M-parameter model on a laptop. A real 7 B model does not fit that way,
# and the first question of every fine-tuning project is therefore **how much memory does it need, and
# on how many GPUs?** This chapter answers it with a calculator that is checked byte for byte against
# real tensors, applies it to Llama-2 7B/13B/70B, holds it against figures quoted in papers and articles,
# and then runs data parallelism and sharding for real: two processes on this CPU, same losses as one.
#
# **You will learn to**
# 1. account for training memory (weights, gradients, optimizer state, master weights, activations) for full fine-tuning, LoRA and QLoRA in fp32 and mixed precision, and verify the count on a real model;
# 2. size 7B/13B/70B fine-tunes and say what popular figures ("56 GB for 7B", "65B QLoRA on 48 GB", "LoRA cuts memory 3×") assume and leave out;
# 3. explain why data-parallel training with averaged gradients equals one big batch, and run it with `torchrun` (DDP), 🤗 Accelerate and FSDP;
# 4. compute per-GPU memory for ZeRO stages 1–3, map them to FSDP's sharding strategies and read a DeepSpeed config;
# 5. use gradient checkpointing and accumulation as memory levers, and put their effect on a 7B model in numbers;
# 6. place tensor, pipeline and context parallelism beside data parallelism, size FSDP + QLoRA for 70B, count the all-reduces `no_sync` saves, and say what a memory reserve stands for.
#
# **Prerequisites:** chapters 03 (training loop, `saved_activation_bytes`, checkpointing, accumulation),
# 04 (LoRA) and 05 (NF4, QLoRA with bitsandbytes).

# %%
import copy
import json
import time
import warnings
import torch
import course_lib
from course_lib import memory, distributed
from course_lib.measure import tensor_bytes, train_step_seconds
from course_lib.memory import saved_activation_bytes
from course_lib.models import load_model
from course_lib.data import load_jsonl
from course_lib.training import pack_tokens
from course_lib.plotting import plot_bars

device = course_lib.setup(seed=0)
base, tok = load_model("causal")
warnings.filterwarnings("ignore", message=".*(deprecated|use_cache|quantiz).*")

# %% [markdown]
# The measurements use one batch of 8 clinic-note blocks of 64 tokens (the data of the DDP runs later),
# and the model's shape as the calculator sees it:

# %%
ids = [tok(r["text"])["input_ids"] for r in load_jsonl("clinic_train")[:200]]
blocks = pack_tokens(ids, 64, eos_id=tok.eos_token_id)[:8].clone()
batch = {"input_ids": blocks, "labels": blocks}
B, S = blocks.shape
shape = memory.LlamaShape.from_config(base.config)
N = shape.n_params()
assert N == sum(p.numel() for p in base.parameters()), "the shape formula must count the real model"
print(shape, f"\n{N:,} parameters; batch {B} x {S} tokens")

# %% [markdown]
# ## 1 · Where training memory goes
#
# Write $\Psi$ for the number of parameters. Training with AdamW keeps, for every trained parameter,
# the weight, its gradient and two moment estimates ($m$ and $v$); mixed precision adds an fp32
# **master copy** of the weights, because bf16/fp16 cannot hold the small updates $\eta\,\hat m/\sqrt{\hat v}$
# (Micikevicius et al. 2018). In bytes per parameter (the ZeRO paper, Rajbhandari et al. 2020, §3.1):
#
# | setup | weights | gradients | master | Adam $m, v$ | total |
# |---|---|---|---|---|---|
# | fp32 | 4 | 4 | – | 8 | **16** |
# | mixed precision (bf16/fp16 + fp32 master) | 2 | 2 | 4 | 8 | **16** |
# | "pure" bf16, fp32 moments | 2 | 2 | – | 8 | **12** |
# | LoRA, frozen base in 16 bit | 2 per base param | 4 per adapter param | – | 8 per adapter param | $2\Psi + 16\Psi_A$ |
# | QLoRA, base in NF4 + double quantization | 0.516 per base param | as LoRA | – | as LoRA | $0.516\Psi + 16\Psi_A$ |
#
# Mixed precision does **not** save memory on the states: it saves time (tensor cores) and activation
# memory. The NF4 figure is $4 + 8/64 + 32/(64\cdot256) = 4.127$ bits: a 4-bit code per weight, an 8-bit
# absmax per block of 64, an fp32 scale per 256 absmax values (chapter 05).
#
# On top come the **activations** autograd saves for the backward pass. They grow with batch × sequence
# length × layers and do not depend on the optimizer, which is why the calculator takes them as a
# separate number: `memory.activation_bytes` counts them for a Llama shape (section 1.1).

# %%
r = 8
lora_n = memory.lora_params(shape, r)  # r*(d_in + d_out) for all 7 linear layers of every block
rows = {
    "full fp32": memory.training_memory(N, "full", "fp32"),
    "full mixed": memory.training_memory(N, "full", "mixed"),
    "full bf16": memory.training_memory(N, "full", "bf16"),
    f"LoRA r={r} fp32": memory.training_memory(N, "lora", "fp32", trainable=lora_n),
}
for name, est in rows.items():
    print(
        f"{name:>15}: "
        + ", ".join(f"{k} {v / 1e6:5.2f}" for k, v in vars(est).items() if k != "notes")
        + f" | total {est.total / 1e6:5.2f} MB = {est.total / N:4.1f} B/param"
    )

# %% [markdown]
# ### 1.1 · Checking the calculator against real tensors: full fine-tuning
#
# "Measured" on a CPU means counting real tensors, since there is no `torch.cuda.max_memory_allocated`.
# `memory.measure_step(model, optimizer, batch)` does one training step and adds up
#
# * the **weights**: every parameter's storage, once (the tied embedding/LM head counts once);
# * the **gradients**: every `.grad` after `backward()`;
# * the **optimizer state**: every tensor in `optimizer.state` after `step()` (AdamW's `exp_avg` and `exp_avg_sq`);
# * the **activations**: the tensors autograd saves for backward, seen by a `saved_tensors_hooks` pack
#   hook (`saved_activation_bytes`, chapter 03), each storage once, parameters excluded.
#
# The calculator predicts all four. We ask for agreement within **1 %** per component and in total.
# (The process's resident memory, RSS, would be a rougher check, and a misleading one inside a
# notebook: memory freed by earlier cells is reused by the allocator without growing the RSS.)

# %%
acts = memory.activation_bytes(shape, B, S, value_bytes=4)
est = memory.training_memory(N, "full", "fp32", activations=acts)
model = copy.deepcopy(base)
t0 = time.perf_counter()
meas = memory.measure_step(model, torch.optim.AdamW(model.parameters(), lr=1e-3), batch)
PARTS = ("weights", "gradients", "optimizer", "activations", "total")


def compare(meas, est, parts=PARTS, tol=0.01):
    for part in parts:
        m, e = getattr(meas, part), getattr(est, part)
        print(f"{part:>12}: measured {m:>12,.0f} B | calculator {e:>12,.0f} B | {m / e - 1:+.2%}")
        assert abs(m / e - 1) < tol, (
            f"{part}: calculator off by {m / e - 1:+.2%} (tolerance {tol:.0%})"
        )


compare(meas, est)
print(f"({time.perf_counter() - t0:.1f} s)")

# %% [markdown]
# Every component agrees exactly, activations included. The activation count is not a fit: it comes
# from listing the tensors a transformers `LlamaDecoderLayer` saves (sdpa attention, no dropout). Per
# token and per block, with hidden size $h$, MLP size $i$, $n_h$ query heads, $n_{kv}$ key/value heads
# of size $d$, and $b$ bytes per value:
#
# $$\underbrace{b\,(4i + 4h)}_{\text{MLP: gate, up, SiLU, product; 4 hidden-size tensors}}
# + \underbrace{b\,(2n_h + 2n_{kv})\,d}_{q,\,k,\,v,\,\text{attention output}}
# + \underbrace{4\,(2h + 2 + n_h)}_{\text{fp32: 2 RMSNorm inputs and scales, one log-sum-exp per head}}$$
#
# plus, once, the final norm and the **fp32 logits** ($4 \times$ vocabulary bytes per token) kept for the
# loss. Two details matter at scale. RMSNorm upcasts its input to fp32 even in a bf16 model, so not all
# activations halve in bf16. And sdpa (like FlashAttention on a GPU) saves one log-sum-exp per head
# instead of the $s \times s$ attention matrix, so activations grow **linearly** with sequence length.
# The same formula with $b = 2$ must match a bf16 copy of the model:

# %%
m16 = copy.deepcopy(base).to(torch.bfloat16)
got16, want16 = (
    saved_activation_bytes(m16, batch),
    memory.activation_bytes(shape, B, S, value_bytes=2),
)
print(f"bf16 model: measured {got16:,} B, formula {want16:,} B; fp32 / bf16 = {acts / got16:.2f}")
assert abs(got16 / want16 - 1) < 0.01, "the activation formula should hold in bf16 too"
assert 1.3 < acts / got16 < 1.95, "bf16 saves activations, but less than 2x (fp32 norms and logits)"

# %% [markdown]
# ### 1.2 · Mixed precision from scratch
#
# The "mixed" row of the table is what DeepSpeed and Apex-style training keep: a bf16 model that runs
# forward and backward, and an fp32 master copy that the optimizer updates and copies back. Here is one
# such step in plain PyTorch, then the bytes of what it keeps. (PyTorch's autocast, used by the HF
# Trainer's `bf16=True`, reaches 16 bytes differently: fp32 weights and fp32 gradients, bf16 only inside
# the matmuls.)

# %%
m16 = copy.deepcopy(base).to(torch.bfloat16)
master = [p.detach().float().clone().requires_grad_() for p in m16.parameters()]
opt = torch.optim.AdamW(master, lr=1e-3)
m16(**batch).loss.backward()  # bf16 forward and backward
for p32, p16 in zip(master, m16.parameters()):
    p32.grad = p16.grad.float()  # upcast the gradient for the update
opt.step()
with torch.no_grad():
    for p32, p16 in zip(master, m16.parameters()):
        p16.copy_(p32)
        p32.grad = None  # new bf16 weights; fp32 grads were temporary
mixed = memory.MemoryEstimate(  # each part counted from the real tensors
    weights=tensor_bytes(m16.parameters()),
    gradients=tensor_bytes(p.grad for p in m16.parameters()),
    optimizer=tensor_bytes(v for s in opt.state.values() for k, v in s.items() if k != "step"),
    master_weights=tensor_bytes(master),
)

# %% [markdown]
# What that step keeps, held against the calculator's "mixed" row, component by component:

# %%
compare(
    mixed,
    memory.training_memory(N, "full", "mixed"),
    ("weights", "gradients", "master_weights", "optimizer", "total"),
)
assert abs(mixed.total / N - 16) < 0.01, "mixed-precision AdamW keeps 16 bytes per parameter"

# %% [markdown]
# Sixteen bytes per parameter, as in fp32. (The fp32 copies of the gradients existed for a moment during
# the update; real implementations convert them bucket by bucket so that they never all exist at once.)
#
# ### 1.3 · LoRA and QLoRA
#
# With LoRA the frozen base keeps only its weights; gradients and AdamW moments exist for the adapters
# alone. First peft's LoRA on all seven linear layers at $r = 8$ on the fp32 model:

# %%
from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

lora_cfg = lambda: LoraConfig(
    r=r, lora_alpha=2 * r, target_modules=list(memory.ALL_LINEAR), task_type="CAUSAL_LM"
)


def adam_for(model):
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)


lora_model = get_peft_model(copy.deepcopy(base), lora_cfg())
lora_meas = memory.measure_step(lora_model, adam_for(lora_model), batch)
lora_est = memory.training_memory(N, "lora", "fp32", trainable=lora_n, activations=acts)
compare(lora_meas, lora_est, ("weights", "gradients", "optimizer"))

# %% [markdown]
# Then the same adapters on the 4-bit base loaded through bitsandbytes (chapter 05). Only the
# `nn.Linear` layers are quantized: the embeddings and norms stay in the compute precision
# (`prepare_model_for_kbit_training` even casts them to fp32), which the calculator takes as
# `unquantized`. A 4-bit layer's weight is a packed `uint8` parameter plus a quantization state (block
# absmax values, code tables) that `measure_step` counts as well.

# %%
t0 = time.perf_counter()
q_model = get_peft_model(
    prepare_model_for_kbit_training(load_model("4bit")[0], use_gradient_checkpointing=False),
    lora_cfg(),
)
q_meas = memory.measure_step(q_model, adam_for(q_model), batch)
linear_n = shape.layers * sum(a * b for a, b in shape.linear_shapes().values())
q_est = memory.training_memory(
    N, "qlora", "fp32", trainable=lora_n, unquantized=N - linear_n, activations=acts
)
compare(q_meas, q_est, ("gradients", "optimizer"))
compare(q_meas, q_est, ("weights",), tol=0.03)
print(
    f"QLoRA weights / LoRA weights: {q_meas.weights / lora_meas.weights:.2f} "
    f"({time.perf_counter() - t0:.1f} s)"
)

# %% [markdown]
# Gradients and optimizer state agree exactly; the 4-bit weights within 3 %, the rest being per-layer
# constants (the 16-entry NF4 code table and the 256-entry table of the quantized absmax values in every
# layer), which a 7B model spreads over 4,096 × 11,008-sized matrices. On this small model the base
# shrinks only about 3.5×, not 7.8×: 13 % of its parameters are the embedding, which stays in fp32.
#
# The activations of LoRA and QLoRA are **smaller** than full fine-tuning's, and the formula (which
# counts full fine-tuning) is an upper bound for them: with frozen weights, autograd does not need to
# keep tensors whose only use was a weight gradient.

# %%
for name, mm in (("LoRA", lora_meas), ("QLoRA", q_meas)):
    print(
        f"{name}: activations {mm.activations:,} B = {mm.activations / acts:.0%} of full "
        f"fine-tuning's {acts:,} B"
    )
    assert 0.75 * acts < mm.activations <= acts, (
        "frozen weights should save a little activation memory, not most"
    )


# %% [markdown]
# ## 2 · Llama-2 7B, 13B, 70B, and the figures in articles
#
# The calculator needs only the shape. `memory.KNOWN` holds the published Llama-2 configurations, whose
# parameter counts (6,738,415,616; 13,015,864,320; 68,976,648,192) the unit tests check exactly. For
# QLoRA the embeddings and the output head stay in bf16 (about 262 M parameters on 7B). Activations are
# left out here (they come in section 6). GB means $10^9$ bytes throughout; GiB would be $2^{30}$,
# 7 % more per unit, a difference that decides whether a setup "fits in 80 GB".

# %%
def llama_table(r=16):
    table = {}
    for name, sh in memory.KNOWN.items():
        n, lin = sh.n_params(), sh.layers * sum(a * b for a, b in sh.linear_shapes().values())
        ad = memory.lora_params(sh, r)
        table[name] = {
            "full mixed": memory.training_memory(n, "full", "mixed").total,
            "full bf16": memory.training_memory(n, "full", "bf16").total,
            f"LoRA r={r} bf16": memory.training_memory(n, "lora", "bf16", trainable=ad).total,
            f"QLoRA r={r}": memory.training_memory(
                n, "qlora", "bf16", trainable=ad, unquantized=n - lin
            ).total,
        }
    return table


table = llama_table()
for name, row in table.items():
    print(f"{name:>12}: " + " | ".join(f"{k} {v / 1e9:7.1f} GB" for k, v in row.items()))

# %% [markdown]
# Read the rows against the hardware: a 7B model's full fine-tuning states alone exceed one 80 GB GPU,
# LoRA with a bf16 base fits with room for activations, QLoRA fits on a consumer card; 70B needs
# several GPUs even with LoRA, and fits on one 80 GB GPU only with QLoRA. The checks and the picture
# (log scale, 13B left out for space):

# %%
seven = table["Llama-2-7B"]
assert 100e9 < seven["full mixed"] < 110e9, (
    "7B full fine-tuning with mixed-precision AdamW: 16 B x 6.74 B"
)
assert seven["QLoRA r=16"] < 0.06 * seven["full mixed"], (
    "QLoRA should need < 6 % of full fine-tuning's states"
)
fig, ax = plot_bars(
    {f"{m[8:]} {k}": v / 1e9 for m, row in table.items() for k, v in row.items() if "13B" not in m},
    title="Training states, no activations (log scale)",
    ylabel="GB",
    fmt="{:.0f}",
    hlines={"one 80 GB GPU": 80},
)
ax.set_yscale("log")
ax.tick_params(axis="x", labelrotation=35)
fig.tight_layout()

# %% [markdown]
# ### Claim 1: "fine-tuning a 7B model needs about 56 GB"
#
# A figure that circulates in blog posts. $56 \times 10^9 / 6.74 \times 10^9 = 8.3$ bytes per parameter.
# Which setups give that? Let the calculator try every precision × optimizer combination it knows for
# full fine-tuning of Llama-2-7B and keep those within 10 % of 56 GB:

# %%
n7, claim = memory.KNOWN["Llama-2-7B"].n_params(), 56e9
combos = {
    (p, o): memory.training_memory(n7, "full", p, optimizer=o).total
    for p in ("fp32", "mixed", "bf16")
    for o in memory.OPTIMIZER_BYTES
}
close = {k: v for k, v in combos.items() if abs(v / claim - 1) < 0.10}
for (p, o), v in sorted(close.items(), key=lambda kv: kv[1]):
    print(f"matches: {p:>5} + {o:<12} {v / 1e9:5.1f} GB = {v / n7:.0f} B/param")
print(f"standard mixed-precision AdamW: {combos[('mixed', 'adamw')] / 1e9:.1f} GB")
assert close and all(o in ("sgd", "sgd_momentum") for _, o in close), (
    "only Adam-free setups give ~56 GB"
)
assert combos[("mixed", "adamw")] > 1.8 * claim, (
    "with Adam the states alone are about twice the claim"
)

# %% [markdown]
# The claim holds for 8 bytes per parameter, e.g. bf16 weights and gradients plus one 4-byte state
# (SGD with momentum), or fp32 weights and gradients with **no optimizer state at all**, or (not in the
# calculator) AdamW with both moments in bf16. It does not hold for the usual recipe, mixed-precision
# AdamW, which needs about 108 GB for the states alone, and it leaves out the activations (section 6:
# about 12.6 GB for a single 2,048-token sequence in bf16). The honest statement: *7B full fine-tuning
# with AdamW needs ≈ 108 GB of states plus activations, i.e. more than one 80 GB GPU, unless you shard
# (section 4), use an 8-bit optimizer, or offload.*
#
# ### Claim 2: "QLoRA fine-tunes a 65B model on a single 48 GB GPU" (Dettmers et al. 2023)
#
# The paper's setup: LLaMA-65B (hidden 8,192, MLP 22,016, 80 layers, 64 heads), NF4 with double
# quantization, LoRA with $r = 64$ on **all** linear layers, bf16 adapters. The paper also says
# 16-bit full fine-tuning of the same model needs "more than 780 GB".

# %%
llama65 = memory.LlamaShape(32000, 8192, 22016, 80, 64, 64)
n65, ad65 = llama65.n_params(), memory.lora_params(llama65, 64)
lin65 = llama65.layers * sum(a * b for a, b in llama65.linear_shapes().values())
q65 = memory.training_memory(n65, "qlora", "bf16", trainable=ad65, unquantized=n65 - lin65)
full65 = memory.training_memory(n65, "full", "bf16").total
act65 = memory.activation_bytes(
    llama65, 1, 512, 2, checkpointing=True
) + memory.layer_activation_bytes(llama65, 1, 512, 2)
print(f"{n65 / 1e9:.1f} B params, {ad65 / 1e6:.0f} M adapter params ({ad65 / n65:.1%})")
print(
    "QLoRA states:",
    {k: f"{v:.1f} GiB" for k, v in q65.gib().items() if v},
    f"= {q65.total / 1e9:.1f} GB",
)
print(
    f"+ activations, 1 x 512 tokens with checkpointing: {act65 / 1e9:.2f} GB; 16-bit full: "
    f"{full65 / 1e9:.0f} GB"
)
assert q65.total + act65 < 48e9, "QLoRA-65B states + checkpointed activations should fit in 48 GB"
assert 780e9 < full65 < 800e9, (
    "the paper's '> 780 GB' is 12 B/param: bf16 weights + grads + fp32 Adam moments"
)

# %% [markdown]
# Both of the paper's figures check out. The 780 GB is 12 bytes per parameter (bf16 weights and
# gradients, fp32 Adam moments, no fp32 master copy). The 48 GB holds, but with less room than the
# headline suggests: the NF4 linear layers take 33.4 GB, the embeddings and output head (not quantized,
# bf16) 1.1 GB, and the $r = 64$ adapters on every layer are 800 M parameters whose bf16 weights and
# gradients and fp32 AdamW moments add another 9.6 GB. What remains is enough for short
# sequences with gradient checkpointing, not for long ones; the paper adds paged optimizers for the
# spikes. Articles that quote "65B in 48 GB" usually omit these conditions.
#
# ### Claim 3: "LoRA cuts training memory by 3×" (Hu et al. 2021)
#
# The LoRA paper: on GPT-3 175B, VRAM during training drops "from 1.2 TB to 350 GB", and with $r = 4$
# on the query and value projections the checkpoint shrinks from 350 GB to about 35 MB. GPT-3 has 96
# layers of width 12,288, so each adapted projection is $12{,}288 \times 12{,}288$.

# %%
psi, layers, d = 175e9, 96, 12288
gpt3_lora = layers * 2 * 4 * (d + d)  # q and v, r = 4: r * (d_in + d_out) each
lora175 = memory.training_memory(psi, "lora", "bf16", trainable=gpt3_lora).total
full175 = memory.training_memory(psi, "full", "mixed").total
print(
    f"adapter {gpt3_lora / 1e6:.1f} M params -> checkpoint {2 * gpt3_lora / 2**20:.0f} MiB in fp16"
)
print(
    f"LoRA training states {lora175 / 1e9:.0f} GB; full mixed AdamW {full175 / 1e12:.1f} TB "
    f"(paper: 1.2 TB); ratio {full175 / lora175:.0f}x vs the paper's {1.2e12 / 350e9:.1f}x"
)
assert abs(2 * gpt3_lora / 2**20 / 35 - 1) < 0.1, "the adapter checkpoint should be ~35 MB"
assert abs(lora175 / 350e9 - 1) < 0.02, (
    "LoRA's 350 GB is the frozen fp16 weights (2 B x 175 B) and little else"
)
assert full175 > 2 * 1.2e12, "16 B/param is well above the paper's 1.2 TB for full fine-tuning"


# %% [markdown]
# The 350 GB and the 35 MB are exactly what the calculator says: LoRA's memory *is* the frozen fp16
# model. The 1.2 TB for full fine-tuning is only about 7 bytes per parameter, far below the 16 of
# mixed-precision Adam (2.8 TB); the paper does not break it down (a sharded or partly offloaded
# setup would explain it). So "3×" is a ratio of two of the paper's numbers, not a constant: with the
# standard accounting the same LoRA saves 8×, and with QLoRA's base the saving is larger still. Either
# way the ratio leaves out activations, which LoRA does not shrink much (section 1.3).
#
# ## 3 · Data parallelism: the same step on several processes
#
# Split a global batch of $B$ equally sized examples into $N$ shards of $B/N$. The loss is a mean, so
# $$\nabla_\theta \frac1B\sum_{j=1}^{B}\ell_j \;=\; \frac1N\sum_{k=1}^{N}\;\nabla_\theta\,\underbrace{\frac{1}{B/N}\sum_{j \in \text{shard }k}\ell_j}_{\text{loss on process }k}.$$
# Each process computes the gradient of its own shard's mean loss; an **all-reduce** sums them across
# processes and dividing by $N$ gives exactly the big batch's gradient. Every process then takes the same
# optimizer step from the same weights and stays identical. Summing without dividing would be $N$ times
# the gradient (an $N$-times larger learning rate for SGD; AdamW hides most of it, a reason the bug can
# go unnoticed). Shards must have equal weight: with a per-token mean and shards of unequal token
# counts, the average of means is not the global mean. First the identity, in one process:

# %%
def grads(model, rows):
    model.zero_grad(set_to_none=True)
    model(input_ids=rows, labels=rows).loss.backward()
    return [p.grad.clone() for p in model.parameters()]


g_all = grads(base, blocks)
g_shards = [
    grads(base, blocks[k::2]) for k in range(2)
]  # rank k takes every 2nd row, like DDP below
g_mean = [(a + b) / 2 for a, b in zip(*g_shards)]
worst = max((x - y).abs().max().item() for x, y in zip(g_all, g_mean))
print(f"max |full-batch grad - mean of shard grads| = {worst:.1e}")
assert worst < 1e-5, "the mean of equal-size shard gradients must equal the full-batch gradient"
assert max((x - 2 * y).abs().max().item() for x, y in zip(g_all, g_mean)) > 1e-3, (
    "a sum is not a mean"
)
base.zero_grad(set_to_none=True)

# %% [markdown]
# Now for real. `torchrun --nproc_per_node 2 -m course_lib.distributed` starts two processes and
# gives each its `RANK`, `WORLD_SIZE`, `MASTER_ADDR` and `MASTER_PORT`. Each one runs
# `course_lib.distributed.run`:
#
# ```python
# dist.init_process_group("gloo")                      # gloo: the CPU backend (nccl on GPUs)
# model = DistributedDataParallel(model)               # broadcasts rank 0's weights, hooks the gradients
# for batch in global_batches(...):
#     shard = batch[rank::world]                       # this process's rows
#     loss = model(input_ids=shard, labels=shard).loss
#     loss.backward()                                  # all-reduce + divide by world size, bucket by bucket
#     opt.step(); opt.zero_grad()
# ```
#
# DDP registers a hook on every parameter's gradient; gradients are grouped into buckets (25 MB by
# default) and each bucket is all-reduced as soon as it is ready, overlapping communication with the
# rest of backward. The optimizer never knows it is distributed. `distributed.launch` runs `torchrun`
# on a free port and returns rank 0's losses and the wall time (a run that hangs, which we saw a few
# times on a heavily loaded machine, is killed with its workers and started once more); the reference is
# the same function run in this process with one "rank" and the whole batch.

# %%
STEPS = 3
t0 = time.perf_counter()
single = distributed.run(steps=STEPS)
single_s = time.perf_counter() - t0
ddp, ddp_s = distributed.launch(steps=STEPS)
diff = max(abs(a - b) for a, b in zip(ddp["losses"], single))
print(f"single process ({single_s:.1f} s): {[round(x, 5) for x in single]}")
print(
    f"DDP, 2 processes ({ddp_s:.1f} s):  {[round(x, 5) for x in ddp['losses']]}  max diff {diff:.1e}"
)
assert ddp["world_size"] == 2 and len(ddp["losses"]) == STEPS
assert diff < 1e-4, "DDP must take the same steps as one process with the whole batch"
assert single[-1] < single[0] - 1, "and the steps must actually train"

# %% [markdown]
# Same losses to about $10^{-6}$ (summation order differs between one matmul over 8 rows and two over 4,
# so bit-equality is not expected). The wall time tells the other half of the story: two processes did
# half the work each, yet took longer than one process doing all of it. Starting Python, importing torch
# and transformers, loading the model and forming the process group costs seconds per launch; on 3
# tiny steps that dominates. Data parallelism pays off when a step takes much longer than the
# communication and the start-up is amortised over thousands of steps.
#
# ### The same run with 🤗 Accelerate
#
# `Accelerator.prepare(model, optimizer)` wraps the model in DDP when it runs in a process group, and
# `accelerator.backward(loss)` replaces `loss.backward()`; the training loop stays single-process code
# (`distributed.run_accelerate`). Under `torchrun`, `Accelerator()` reads the same environment variables
# and finds the process group itself.
#
# `accelerate launch` is a launcher like `torchrun`: it reads the config written by `accelerate config`
# (or flags such as `--num_processes`, `--multi_gpu`, `--mixed_precision`), sets the environment and
# starts the processes, for multi-GPU through torch's own elastic launcher. One trap, measured when
# this chapter was written: `accelerate launch --cpu --num_processes 2` starts **one** process. In
# accelerate's `launch_command` every branch that would start several processes is guarded by
# `not args.cpu`, so `--cpu` falls through to the "simple launcher", which runs the script once (several
# CPU processes need `mpirun`, via `--mpirun_hostfile`). On a CPU, use `torchrun` as here.

# %%
import inspect
from accelerate.commands.launch import launch_command

src = inspect.getsource(launch_command)
assert "multi_gpu and not args.cpu" in src and "simple_launcher(args)" in src, (
    "accelerate's launcher changed: recheck"
)
acc, acc_s = distributed.launch("--accelerate", steps=STEPS)
diff_acc = max(abs(a - b) for a, b in zip(acc["losses"], single))
print(
    f"Accelerate under torchrun ({acc_s:.1f} s): {[round(x, 5) for x in acc['losses']]}  max diff "
    f"{diff_acc:.1e}"
)
assert diff_acc < 1e-4, "Accelerate's DDP must take the same steps as one process"
assert min(ddp_s, acc_s) > single_s, (
    "on 3 tiny steps, process start-up should cost more than the work saved"
)

# %% [markdown]
# ## 4 · ZeRO: stop storing the same states $N$ times
#
# DDP keeps a full copy of weights, gradients and optimizer state on every GPU: $16\Psi$ bytes each,
# however many GPUs there are. ZeRO (Rajbhandari et al. 2020) **partitions** them. With $K = 12$ bytes
# of optimizer state per parameter (fp32 master, $m$, $v$) and $N$ GPUs, the model states per GPU are
#
# | stage | what is sharded | bytes per GPU |
# |---|---|---|
# | 0 (DDP) | nothing | $(2 + 2 + K)\Psi = 16\Psi$ |
# | 1 ($P_{os}$) | optimizer state | $4\Psi + 12\Psi/N$ |
# | 2 ($P_{os+g}$) | + gradients | $2\Psi + 14\Psi/N$ |
# | 3 ($P_{os+g+p}$) | + parameters | $16\Psi/N$ |
#
# Stages 1 and 2 communicate as much as DDP ($2\Psi$ per step: a reduce-scatter of gradients and an
# all-gather of updated weights replace the all-reduce); stage 3 must also all-gather every layer's
# weights before its forward and again before its backward, 1.5× DDP's volume. `memory.zero_memory`
# implements the table; the paper's own example ($\Psi$ = 7.5 B, $N$ = 64) is the test:

# %%
paper = {0: 120.0, 1: 31.4, 2: 16.6, 3: 1.9}  # GB per GPU, ZeRO paper Figure 1
ours = {s: memory.zero_memory(7.5e9, 64, s) / 1e9 for s in range(4)}
print({s: round(v, 2) for s, v in ours.items()})
assert all(abs(ours[s] - paper[s]) < 0.05 for s in paper), (
    "should reproduce the paper's 120 / 31.4 / 16.6 / 1.9 GB"
)

# %% [markdown]
# The same formulas for Llama-2, on 1, 2, 8 and 64 GPUs, and the fewest 80 GB GPUs that hold a 70B
# model's states with a fifth of each card left for activations:

# %%
gpus = (1, 2, 8, 64)
for name, sh in memory.KNOWN.items():
    n = sh.n_params()
    print(
        f"{name:>12} "
        + "  ".join(
            f"stage {s}: " + "/".join(f"{memory.zero_memory(n, g, s) / 1e9:.0f}" for g in gpus)
            for s in range(4)
        )
        + f"  GB on {gpus} GPUs"
    )
n70 = memory.KNOWN["Llama-2-70B"].n_params()
fits = {
    s: min((g for g in range(1, 129) if memory.zero_memory(n70, g, s) < 0.8 * 80e9), default=None)
    for s in range(4)
}
print("fewest 80 GB GPUs for 70B (states <= 80 % of the card, up to 128 GPUs):", fits)
assert fits[0] is fits[1] is fits[2] is None and fits[3], (
    "70B with AdamW: only ZeRO-3 fits on 80 GB GPUs"
)

# %% [markdown]
# 70B with AdamW does not fit on any number of 80 GB GPUs under DDP, ZeRO-1 or ZeRO-2, because every GPU
# still holds the 138 GB of bf16 weights (stage 1 and 2 also the gradients); only stage 3 brings the
# per-GPU share down with $N$. The plot shows why the stages differ so much at large $N$: stages 1 and 2
# level off at the replicated part ($4\Psi$, $2\Psi$), stage 3 keeps falling as $1/N$.

# %%
from course_lib.plotting import plot_lines

ns = [1, 2, 4, 8, 16, 32, 64]
fig, ax = plot_lines(
    ns,
    {f"stage {s}": [memory.zero_memory(n70, g, s) / 1e9 for g in ns] for s in range(4)},
    "Llama-2-70B model states per GPU (mixed-precision AdamW)",
    "GPUs",
    "GB per GPU",
    logx=True,
)
ax.set_yscale("log")
ax.axhline(80, ls="--", color="gray")
ax.text(1, 85, "80 GB", color="gray")

# %% [markdown]
# ### FSDP: ZeRO in PyTorch
#
# PyTorch's Fully Sharded Data Parallel implements the same idea. Its sharding strategies (from the
# docstring of `torch.distributed.fsdp.ShardingStrategy`) map onto the ZeRO stages:
#
# | FSDP (`ShardingStrategy`) | FSDP2 (`fully_shard`) | ZeRO |
# |---|---|---|
# | `NO_SHARD` | – (use DDP) | stage 0 (DDP) |
# | `SHARD_GRAD_OP`: gradients and optimizer state sharded, weights kept whole between forward and backward | `reshard_after_forward=False` | ≈ stage 2 |
# | `FULL_SHARD`: weights gathered per layer for forward and again for backward, freed after | `reshard_after_forward=True` (default) | stage 3 |
# | `HYBRID_SHARD` / `_HYBRID_SHARD_ZERO2` | 2-D device mesh | stage 3 / 2 inside a node, replicas across nodes |
#
# FSDP has no pure stage 1. The unit of gathering is what you wrap: `fully_shard(block)` for each
# decoder block, then `fully_shard(model)` for the rest, so that only one block's full weights exist at a
# time. FSDP2 runs on CPU with gloo, so we can run ZeRO-3 for real: `python -m course_lib.distributed
# --fsdp` under `torchrun` shards the course model over two processes and reports what each one holds.

# %%
from torch.distributed.fsdp import ShardingStrategy

print([s.name for s in ShardingStrategy])
assert {"FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD"} <= {
    s.name for s in ShardingStrategy
}

# %% [markdown]
# Now FSDP for real. The check per rank: parameters, gradients and AdamW moments it holds should add up
# to $16\Psi/N$, the ZeRO-3 row of the table with $N = 2$; and the losses should be those of one process.

# %%
fsdp, fsdp_s = distributed.launch("--fsdp", steps=STEPS)
diff_fsdp = max(abs(a - b) for a, b in zip(fsdp["losses"], single))
for k, rank in enumerate(fsdp["per_rank"]):
    held = rank["params"] + rank["grads"] + rank["optimizer"]
    print(
        f"rank {k}: params {rank['params']:,} B of {fsdp['full_param_bytes']:,}; all states {held:,} B; "
        f"16 Psi / N = {memory.zero_memory(N, 2, 3):,.0f} B"
    )
    assert abs(held / memory.zero_memory(N, 2, 3) - 1) < 0.01, (
        "each rank should hold 1/N of the 16 Psi bytes"
    )
print(
    f"FSDP ({fsdp_s:.1f} s) losses {[round(x, 5) for x in fsdp['losses']]}, max diff to one "
    f"process {diff_fsdp:.1e}"
)
assert diff_fsdp < 1e-4, "sharding must not change the training"

# %% [markdown]
# Each rank holds half of the 16 bytes per parameter (fp32 weights 4 + gradients 4 + moments 8 add up to
# 16 as well; the few bytes over half are padding that makes every tensor divisible by 2), and training
# is unchanged. The price is communication: every block's weights were all-gathered twice per step.
#
# ## 5 · A DeepSpeed config, line by line
#
# DeepSpeed is configured by a JSON file (DeepSpeed is not installed in this course; the config below is
# checked for consistency, not run). This one trains a 7B model with ZeRO-2 in bf16 on 8 GPUs:

# %%
ds_config = json.loads("""{
  "train_batch_size": 64, "train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 4,
  "bf16": {"enabled": true},
  "optimizer": {"type": "AdamW",
                "params": {"lr": 2e-5, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0}},
  "zero_optimization": {"stage": 2, "overlap_comm": true, "contiguous_gradients": true,
                        "reduce_bucket_size": 5e8, "offload_optimizer": {"device": "none"}},
  "gradient_clipping": 1.0,
  "activation_checkpointing": {"partition_activations": false}
}""")
world = 8

# %% [markdown]
# * `train_batch_size` must equal `train_micro_batch_size_per_gpu × gradient_accumulation_steps ×` number
#   of GPUs (DeepSpeed refuses to start otherwise; give any two and it infers the third): here 2 × 4 × 8 = 64
#   sequences per optimizer step, of which each GPU holds 2 at a time.
# * `bf16.enabled`: bf16 weights and gradients with fp32 master weights and moments, the 16-byte
#   accounting of section 1 ("fp16" would add dynamic loss scaling).
# * `optimizer`: DeepSpeed builds AdamW itself, so that it can shard its state (stage ≥ 1).
# * `zero_optimization.stage`: 2 = optimizer state and gradients sharded, weights replicated: the row
#   $2\Psi + 14\Psi/N$ of section 4.
# * `overlap_comm`: reduce the gradients while backward is still running (what DDP's buckets do).
#   `contiguous_gradients`: copy each gradient into one preallocated buffer as it is produced, which
#   avoids fragmentation. `reduce_bucket_size`: how many elements are reduced at once (memory for speed).
# * `offload_optimizer.device`: `"cpu"` (ZeRO-Offload) or `"nvme"` would move the sharded optimizer state
#   and its update off the GPU, trading PCIe traffic for GPU memory; `"none"` keeps it on the GPU.
# * `gradient_clipping`: clip the global gradient norm (computed across the shards).
# * `activation_checkpointing`: DeepSpeed's own checkpointing options; with Hugging Face models one
#   usually turns on `gradient_checkpointing` in the model instead (section 6).
#
# The checks a config deserves, with the table of section 4:

# %%
z = ds_config["zero_optimization"]
assert ds_config["train_batch_size"] == (
    ds_config["train_micro_batch_size_per_gpu"] * ds_config["gradient_accumulation_steps"] * world
), "batch sizes inconsistent"
per_gpu = memory.zero_memory(n7, world, z["stage"])
print(
    f"ZeRO-{z['stage']} ({memory.ZERO_STAGES[z['stage']]}): 7B states {per_gpu / 1e9:.1f} GB per GPU "
    f"on {world} GPUs, vs {memory.zero_memory(n7, world, 0) / 1e9:.1f} GB under DDP"
)
assert abs(per_gpu - (2 * n7 + 14 * n7 / world)) < 1, "stage 2 is 2 Psi + 14 Psi / N"
assert per_gpu < 0.5 * memory.zero_memory(n7, world, 0), (
    "ZeRO-2 on 8 GPUs should more than halve the states"
)

# %% [markdown]
# ## 6 · Gradient checkpointing and accumulation: the activation levers
#
# ZeRO shrinks the states; activations need other levers. Chapter 03 measured both on this model; here
# they enter the calculator.
#
# * **Gradient checkpointing** keeps only each block's input during forward and recomputes the block's
#   internals during backward: saved activations drop to $L \cdot h$ values per token plus the head, and
#   the peak adds one recomputed block. The price is one extra forward pass, roughly a third more compute
#   per step (backward ≈ 2 × forward).
# * **Gradient accumulation** splits a batch into $k$ micro-batches and sums their (scaled) gradients before
#   one optimizer step: the same update, with activations of one micro-batch, for $k$ sequential passes.

# %%
ck = copy.deepcopy(base)
ck.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
ck.train()
ck_bytes = saved_activation_bytes(ck, batch)
peak_ck = ck_bytes + memory.layer_activation_bytes(shape, B, S, 4)
assert ck_bytes == memory.activation_bytes(shape, B, S, 4, checkpointing=True), (
    "formula with checkpointing"
)

# %%
calls = []
hooks = [
    blk.input_layernorm.register_forward_pre_hook(lambda *a: calls.append(1))
    for blk in ck.model.layers
]
ck(**batch).loss.backward()
ck.zero_grad(set_to_none=True)
[h.remove() for h in hooks]
sec = {
    "plain": train_step_seconds(base, batch, repeats=3),
    "checkpointed": train_step_seconds(ck, batch, repeats=3),
}
print(
    f"saved: {acts / 1e6:.1f} MB -> {ck_bytes / 1e6:.1f} MB (peak with one recomputed block "
    f"{peak_ck / 1e6:.1f} MB)"
)
print(
    f"block forward passes per step: {len(calls)}; time per step {sec['plain'] * 1e3:.0f} ms -> "
    f"{sec['checkpointed'] * 1e3:.0f} ms (x{sec['checkpointed'] / sec['plain']:.2f})"
)
assert peak_ck < 0.4 * acts, (
    "checkpointing should cut activation memory by more than 2.5x even at the peak"
)
assert len(calls) == 2 * shape.layers, "every block runs forward twice: the price of checkpointing"


# %% [markdown]
# The memory saving is exact and the price is visible as work: every block ran its forward pass twice.
# The wall-clock ratio printed above is the same price in seconds, but on a shared or busy machine it is
# noisy (chapter 03 measured about ×1.2 on a quiet one), so the assert is on the count, not the clock.
#
# Accumulation next: 4 micro-batches of 2 against the batch of 8, gradients scaled by $1/4$ so that
# their sum is the mean over the 8 sequences.

# %%
def accumulated_grads(model, rows, k):
    model.zero_grad(set_to_none=True)
    for part in rows.chunk(k):
        (
            model(input_ids=part, labels=part).loss / k
        ).backward()  # scale by 1/k: a mean over micro-batches
    return [p.grad.clone() for p in model.parameters()]


g4 = accumulated_grads(base, blocks, 4)
acc_diff = max((x - y).abs().max().item() for x, y in zip(g_all, g4))
micro = saved_activation_bytes(base, {"input_ids": blocks[:2], "labels": blocks[:2]})
print(
    f"4 x 2 accumulated vs batch of 8: max grad diff {acc_diff:.1e}; activations {acts / micro:.2f}x smaller"
)
assert acc_diff < 1e-5 and abs(acts / micro - 4) < 0.1, (
    "same gradient, a quarter of the activations"
)
base.zero_grad(set_to_none=True)

# %% [markdown]
# Now the same levers on Llama-2-7B, full fine-tuning in mixed precision, a batch of 8 sequences of
# 2,048 tokens (bf16 activations, formula of section 1.1). States: 108 GB regardless. Activations:

# %%
k7 = memory.KNOWN["Llama-2-7B"]
layer7 = lambda b: memory.layer_activation_bytes(k7, b, 2048, 2)
act7 = {
    "batch 8": memory.activation_bytes(k7, 8, 2048, 2),
    "batch 8, checkpointing": memory.activation_bytes(k7, 8, 2048, 2, checkpointing=True)
    + layer7(8),
    "8 x micro-batch 1": memory.activation_bytes(k7, 1, 2048, 2),
    "8 x micro-batch 1, checkpointing": memory.activation_bytes(k7, 1, 2048, 2, checkpointing=True)
    + layer7(1),
}
for name, v in act7.items():
    print(
        f"{name:>33}: {v / 1e9:6.1f} GB activations; with ZeRO-3 on 8 GPUs total "
        f"{(memory.zero_memory(n7, 8, 3) + v) / 1e9:5.1f} GB per GPU"
    )
assert act7["batch 8"] > memory.training_memory(n7, "full", "mixed").total / 2, (
    "long batches: activations rival the states"
)
assert act7["8 x micro-batch 1, checkpointing"] < act7["batch 8"] / 50, (
    "both levers together: > 50x less"
)

# %% [markdown]
# Without the levers the activations of 8 × 2,048 tokens (about 100 GB) are as large as the states;
# checkpointing cuts them by about 10×, accumulation by another 8×, and together with ZeRO-3 on 8 GPUs
# a 7B full fine-tune fits in about 15 GB per GPU. Each lever has a price: checkpointing about one extra
# forward pass (we measured the slowdown above), accumulation $k$ sequential passes instead of one
# parallel batch, ZeRO-3 1.5× DDP's communication.
#
# ## 7 · What the calculator leaves out
#
# ### Four ways to split the work
#
# Everything so far splits the **batch** (data parallelism) and, with ZeRO/FSDP, the **states**.
# Two more axes matter when one layer or one sequence no longer fits:
#
# | parallelism | what each GPU holds | what travels | when you need it |
# |---|---|---|---|
# | data (DDP) | the whole model, its shard of the batch | gradients, once per step | the model fits on one GPU |
# | ZeRO / FSDP | a shard of the states, gathered layer by layer | weights (all-gather) and gradients (reduce-scatter) | the states do not fit, the layers do |
# | tensor (Megatron-LM) | a slice of every weight matrix (columns of one, rows of the next) | activations, twice per layer in forward and backward | one layer is too large or too slow; needs NVLink-class links, so it stays inside a node |
# | pipeline | a block of consecutive layers | activations at the stage boundaries | very deep models across nodes; idle "bubbles" unless the batch is cut into micro-batches |
# | sequence / context | a slice of every sequence's tokens | keys and values (ring attention) or activations | long contexts, whose activations exceed one GPU even with checkpointing |
#
# Large pre-training runs combine them ("3D parallelism"); fine-tuning usually needs only data
# parallelism with ZeRO/FSDP, plus context parallelism for long sequences.
#
# ### FSDP + QLoRA: 70B on two 24 GB cards
#
# QLoRA alone puts a 70B model's frozen weights at about half a byte per parameter, too much for
# one consumer card; FSDP can shard those 4-bit weights too, if bitsandbytes stores them in a dtype
# FSDP can flatten (`bnb_4bit_quant_storage=torch.bfloat16`; Answer.AI and Hugging Face, 2024).
# The calculator of section 2, split over two GPUs (checkpointed activations not counted):

# %%
sh = memory.KNOWN["Llama-2-70B"]
n, lin = sh.n_params(), sh.layers * sum(a * b for a, b in sh.linear_shapes().values())
qlora70 = memory.training_memory(
    n, "qlora", "bf16", trainable=memory.lora_params(sh, 16), unquantized=n - lin
)
for gpus in (1, 2):
    per_gpu = qlora70.total / gpus / 1e9  # FULL_SHARD splits every state evenly
    print(f"70B QLoRA r=16 states on {gpus} GPU(s): {per_gpu:5.1f} GB per GPU")
assert qlora70.total / 1e9 > 24 > qlora70.total / 2 / 1e9, "one 24 GB card: no; two: yes"

# %% [markdown]
# The states fit on two cards with a few GB left per card for activations, which is why that
# recipe needs gradient checkpointing and short sequences, and often CPU offloading.
#
# ### Gradient accumulation under DDP: `no_sync`
#
# DDP all-reduces the gradients in the backward pass of **every** `loss.backward()`. With $k$
# micro-batches per optimizer step, $k - 1$ of those all-reduces are wasted: only the sum at the
# last one is used. `model.no_sync()` skips them. We count the all-reduces with a DDP
# communication hook, on a one-process group (so it runs here; the count is the same on $N$):

# %%
import contextlib
import os
import tempfile

import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

store = tempfile.NamedTemporaryFile(delete=False).name  # one-process group, no network needed
dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
calls = []


def counting_hook(state, bucket):
    calls.append(bucket.buffer().numel())  # one call per gradient bucket all-reduced
    return dist.all_reduce(bucket.buffer(), async_op=True).get_future().then(lambda f: f.value()[0])


net = DDP(torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1)))
net.register_comm_hook(None, counting_hook)

# %% [markdown]
# One optimizer step of $k$ micro-batches, with and without `no_sync` on all but the last:

# %%
x, k = torch.randn(4, 8, 64), 4  # k micro-batches of 8


def accumulate(skip_sync: bool) -> int:
    calls.clear()
    for i in range(k):
        last = i == k - 1
        ctx = net.no_sync() if skip_sync and not last else contextlib.nullcontext()
        with ctx:
            net(x[i]).sum().backward()
    net.zero_grad()
    return len(calls)


counts = {"plain": accumulate(False), "no_sync": accumulate(True)}
dist.destroy_process_group()
os.remove(store)
print(f"all-reduce calls for one optimizer step of {k} micro-batches: {counts}")
assert counts["plain"] == k * counts["no_sync"], "no_sync: one all-reduce per step, not per micro-batch"

# %% [markdown]
# On a 7B model each all-reduce moves about 13.5 GB of bf16 gradients; $k = 8$ without `no_sync`
# moves eight times that per step. 🤗 Accelerate's `accelerator.accumulate(model)` and the
# `Trainer`'s `gradient_accumulation_steps` apply `no_sync` for you; a hand-written DDP loop must.
#
# ### What the 10 % reserve stands for
#
# `choosing.RESERVE` keeps 10 % of a GPU's memory out of every "does it fit" answer in chapter 12.
# It stands for what no formula above counts, each of which depends on the machine:
# * the **CUDA context** of each process (the driver's and the kernels' own memory, typically a few
#   hundred MB, more with many loaded kernel libraries);
# * **allocator fragmentation**: PyTorch's caching allocator reserves blocks it cannot always reuse
#   for tensors of other sizes (`PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True` reduces it);
# * **communication buffers**: NCCL's, DDP's gradient buckets (25 MB by default), and under ZeRO-3 /
#   FSDP the gathered full weights of the layer being computed plus the prefetched next one;
# * temporary tensors of single operations (the logits of a 128 k vocabulary over a long sequence can
#   take several GB on their own).
#
# The honest way to set it is to measure: `torch.cuda.max_memory_reserved()` after a few steps of the
# real run, against the calculator's total. On this CPU-only course the reserve is a stated rule of
# thumb, not a measurement.

# %% [markdown]
# ## Summary
#
# * Training memory = weights + gradients + optimizer state (+ fp32 master weights) + activations.
#   AdamW costs **16 bytes per trained parameter** in fp32 and in mixed precision alike; LoRA/QLoRA pay it
#   only for the adapters and keep the frozen base at 2 or ≈ 0.52 bytes per parameter.
# * The calculator matched real tensors on the course model: exactly for full fine-tuning (fp32 and
#   mixed, all four parts), LoRA's and QLoRA's gradients and optimizer state, and within 3 % for the
#   4-bit weights; the activation count is exact for a transformers Llama in fp32 and bf16.
# * Popular figures hide assumptions: "56 GB for 7B" has no Adam state and no activations; "65B QLoRA on
#   48 GB" holds with short, checkpointed sequences; "LoRA 3×" is a ratio of two numbers of one paper.
# * Data parallelism averages gradients of equal shards, which equals the big batch: DDP, Accelerate and
#   FSDP over two CPU processes reproduced the single-process losses to $10^{-6}$.
# * ZeRO-1/2/3 shard optimizer state, gradients, weights: $4\Psi + 12\Psi/N$, $2\Psi + 14\Psi/N$, $16\Psi/N$.
#   FSDP's `FULL_SHARD` is ZeRO-3, `SHARD_GRAD_OP` ≈ ZeRO-2; a DeepSpeed config states the same choice.
# * Checkpointing and accumulation trade compute for activation memory; on a 7B model with long
#   sequences they decide whether training fits at all.
# * Tensor, pipeline and context parallelism split layers, depth and sequences where data parallelism
#   and sharding are not enough; FSDP can shard QLoRA's 4-bit weights (70B on two 24 GB cards, states
#   only); under DDP, `no_sync` cuts accumulation's all-reduces from $k$ to one per step (counted);
#   the 10 % memory reserve is a rule of thumb for what no formula counts.

# %% [markdown]
# ## Quiz
#
# 1. A 13 B-parameter model, full fine-tuning with mixed-precision AdamW: memory for the states, in GB?
# 2. Why does mixed precision not reduce the 16 bytes per parameter?
# 3. ZeRO-2 on 8 GPUs: which terms are divided by 8?
# 4. A data-parallel job sums gradients across 4 ranks instead of averaging. What changes for SGD? For Adam?
# 5. Why is `accelerate launch --cpu --num_processes 2` not data-parallel on a CPU?
#
# <details><summary>Answers</summary>
#
# 1. $16 \times 13.0 \times 10^9 \approx 208$ GB (13,015,864,320 parameters), plus activations.
# 2. The 16-bit weights and gradients (4 bytes) are joined by an fp32 master copy (4) and fp32 moments (8):
#    it saves time and activation memory, not state.
# 3. The gradients (2 bytes) and the optimizer state (12 bytes): $2\Psi + 14\Psi/8$. The bf16 weights stay whole.
# 4. The gradient is 4× too large: for SGD that is a 4× learning rate. Adam divides $m$ by $\sqrt{v}$, so a
#    constant factor mostly cancels (except against $\epsilon$ and for gradient clipping), which is why the bug
#    can hide.
# 5. With `--cpu`, accelerate's launcher uses its simple launcher and starts one process (multi-CPU needs
#    `mpirun`); use `torchrun --nproc_per_node 2`.
# </details>

# %% [markdown]
# ## Interview questions
#
# * How much memory do you need to fine-tune a 7B model? Break it down.
# * What does ZeRO-3 / FSDP `FULL_SHARD` shard, and what does it cost?
# * DDP or FSDP: when do you pick which?
# * What does gradient checkpointing cost, and what does it save?
# * Someone says QLoRA lets you fine-tune 65B on one 48 GB GPU. Under what conditions is that true?
#
# Answers, with this chapter's numbers, and the exercises are in
# [the exercises notebook](../exercises/11_scaling_out_exercises.ipynb).
