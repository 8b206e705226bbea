# %% [markdown]
# # 12 · Choosing a method
#
# **Measured runtime:** 133 s on a 2-core CPU (`make execute`; your machine may differ).
#
# Chapters 03–07 each taught one way to adapt a model. This chapter puts all of them on **one task,
# in one run**, under the same rules, and measures what each costs and what each buys: trainable
# parameters, training memory, time per step, score, and the size of the file you ship. Then it turns
# the measurements into a decision procedure, and holds popular claims against them.
#
# **You will learn to**
# 1. run full fine-tuning, freeze-tuning, LoRA, QLoRA, bottleneck adapters, (IA)³, prompt tuning and prefix tuning under one protocol, against the zero- and few-shot floor;
# 2. define training memory honestly on a CPU (weights + gradients + optimizer state + saved activations, each counted from real tensors) and compare it with chapter 11's calculator;
# 3. read a cost/quality table: Pareto-optimal methods, and why the cheapest method in parameters is not the cheapest in memory or time;
# 4. use (and question) a decision procedure over resources, data size, task and deployment;
# 5. check popular claims ("QLoRA is faster", "PEFT prevents forgetting", …) against measurements, and say which cannot be checked at all.
#
# **Prerequisites:** chapters 03 (full and freeze-tuning), 04 (LoRA), 05 (QLoRA), 06 (adapters, (IA)³), 07 (prompt and prefix tuning), 11 (the memory calculator).

# %%
import warnings
import pandas as pd
import matplotlib.pyplot as plt
import course_lib
from course_lib.models import load_model
from course_lib.data import load_jsonl
from course_lib.world.datasets import corpus_documents
from course_lib.evaluation import cross_entropy
from course_lib.training import text_batches
from course_lib.measure import tensor_bytes, train_step_seconds
from course_lib.memory import saved_activation_bytes
from course_lib import comparison as C, memory
from course_lib.choosing import recommend

device = course_lib.setup(seed=0)
base, tok = load_model("causal", device=device)
for noisy in [
    "past_key_values",
    "is_gradient_checkpointing",
    "Position ids",
    "bnb_4bit",
    "kernels",
]:
    warnings.filterwarnings("ignore", message=f".*{noisy}.*")

# %% [markdown]
# ## 1 · One task, one protocol
#
# A fair comparison needs a task every method can do and a budget every method gets alike.
#
# * **Task:** domain adaptation to clinic notes (chapters 06 and 07): next-token prediction on terse
#   notes such as `Pt 35M. PC: productive cough x8/7. …`. It is next-token prediction, so prompt and
#   prefix tuning apply as much as LoRA. (The review task of chapters 01–04 needs about 150 steps
#   before any method beats chance, chapter 04's loss curves; too many for eight methods in one run.)
# * **Score:** the validation loss on 100 held-out notes, in nats per real token (lower is better;
#   `evaluation.cross_entropy` reads only the real tokens' logits, so a soft prompt's extra
#   positions are dropped).
# * **Budget:** every method takes the **same 20 optimizer steps on the same 320 notes** (16 per step,
#   same order), AdamW with warm-up and cosine decay (`course_lib.training.train`).
# * **Learning rate:** each method gets its own, the one chapters 06–07 found for 20 steps (full and
#   freeze-tuning 3e-3; LoRA, QLoRA and adapters 3e-2; (IA)³ 0.3; text-initialised prompt tuning
#   3e-2; prefix tuning 1.0). Small parameter sets need large steps to move within 20 steps; one
#   shared learning rate would compare learning rates, not methods.
# * **Floor:** the frozen base model, zero-shot and with example notes written in front (few-shot).
#
# The registry of methods, with how each is built, is `course_lib.comparison.METHODS`:

# %%
train_texts = [r["text"] for r in load_jsonl("clinic_train")]
val_texts = [r["text"] for r in load_jsonl("clinic_val")][:100]
for name, spec in C.METHODS.items():
    print(f"{name:>34}: lr {spec.lr:<6g} ships {spec.artefact}")

# %% [markdown]
# ### The floor: zero-shot and few-shot
#
# Before training anything, what does the base model do with the notes, and does showing it a few
# notes in its context help? `cross_entropy(..., context=...)` writes $k$ training notes in front of
# each validation note and counts the loss on the validation note's tokens only, the same tokens the
# zero-shot score counts.

# %%
floor = {"zero-shot": cross_entropy(base, tok, val_texts)}
for k in (1, 3):
    shots = "\n".join(train_texts[:k]) + "\n"  # k example notes, one per line, before the note
    floor[f"{k}-shot"] = cross_entropy(base, tok, val_texts, context=shots)
for name, ce in floor.items():
    print(f"{name:>9}: {ce:.3f} nats/token")
assert min(floor["1-shot"], floor["3-shot"]) > floor["zero-shot"] - 0.5, (
    "the 2 M model barely uses notes in its context"
)

# %% [markdown]
# Notes in the context barely help, and three notes are worse than one: a 2 M-parameter model has
# almost no in-context learning, the ability that makes few-shot prompting work in large models
# (Brown et al. 2020 found it growing with scale). On a large model this floor would be much lower,
# and prompting is the first option on any decision list because it costs no training at all. Here
# the floor is simply "the frozen model", about 12.5 nats/token, worse than guessing uniformly over
# the 1,399-token vocabulary ($\ln 1399 \approx 7.24$): the base model is confidently wrong on this
# notation.
#
# ## 2 · What we measure, and how
#
# For each method, after building it and before training:
#
# * **trainable parameters** $N_t$: `requires_grad` tensors, a tied embedding/head matrix counted once
#   (`measure.count_parameters`, chapter 03);
# * **training memory**, in bytes, each part counted from real tensors:
#
# $$M = \underbrace{W}_{\text{all weights and buffers}} + \underbrace{G}_{\text{one gradient per trainable parameter}}
#  + \underbrace{O}_{\text{AdamW: } 2 \text{ fp32 moments} + \text{step counters}} + \underbrace{A}_{\text{tensors saved for backward}}$$
#
#   $W$ is `qlora.model_bytes` (for the 4-bit base: packed codes plus quantization constants), $G$ sums
#   the trainable tensors' sizes (`measure.tensor_bytes`), $O$ is the state of a real AdamW after one step, and $A$ is what
#   autograd's `saved_tensors_hooks` see during one forward pass on the first training batch
#   (`memory.saved_activation_bytes`, chapter 03). This is the memory a GPU would have to
#   hold at the peak of a step (after backward, before the optimizer frees nothing), not the
#   process's resident size, which on a CPU also holds Python, libraries and allocator caches;
# * **time per step:** the median over steps 2–20 of the wall-clock time between optimizer steps;
# * **artefact:** the bytes of the files you would ship, written to a temporary folder: the whole
#   model for full fine-tuning, peft's `save_pretrained` files (weights + config) for peft methods, and
#   a safetensors file of the trained tensors for freeze-tuning and the course's own adapters.
#
# First by hand, for full fine-tuning: with AdamW in fp32, every parameter costs 4 (weight) + 4
# (gradient) + 8 (two moments) = 16 bytes, plus the activations. Count it ourselves, then compare with
# `training_memory_counted` and chapter 11's calculator:

# %%
batch = next(iter(text_batches(tok, train_texts, 16)))
full_model = C.METHODS["full fine-tuning"].build(base).train()
n = sum(p.numel() for p in full_model.parameters())
acts = saved_activation_bytes(full_model, batch)
by_hand = 16 * n + acts
counted = C.training_memory_counted(full_model, batch)
calc = memory.training_memory(n, "full", "fp32", activations=acts)
print(f"by hand {by_hand:,} | counted {counted.total:,} | calculator {calc.total:,.0f} bytes")
parts = ("weights", "gradients", "optimizer", "activations")
print("counted:", ", ".join(f"{p} {getattr(counted, p):,}" for p in parts))
buffers = tensor_bytes(full_model.buffers())  # RoPE's inv_freq
n_tensors = len(list(full_model.parameters()))
assert counted.total == by_hand + buffers + 4 * n_tensors, (
    "equal up to buffers and AdamW's step counters"
)
assert calc.total == by_hand

# %% [markdown]
# The three agree: the counted total adds only the rotary embedding's `inv_freq` buffer and AdamW's
# `step` counters, one 4-byte number per parameter tensor. So the counted memory is the textbook 16 bytes per parameter plus activations, with
# nothing hidden.
#
# ## 3 · Every method, one run
#
# `run_method` builds a method from a fresh copy of the base model, measures its memory on the first
# batch, trains it for 20 steps with the shared batches and its learning rate, and returns one row.

# %%
rows = []
for name in C.METHODS:
    row = C.run_method(name, base, tok, train_texts, val_texts, steps=20, batch_size=16)
    rows.append(row)
    print(f"{name:>34}: val loss {row['loss']:.3f}, {row['step_s'] * 1e3:5.0f} ms/step")

# %% [markdown]
# The table, with the floor added as rows (nothing trained, nothing shipped; the few-shot examples are
# part of every request instead):

# %%
table = pd.DataFrame([{k: v for k, v in r.items() if k != "model"} for r in rows]).set_index(
    "method"
)
for name, ce in floor.items():
    table.loc[f"base, {name}"] = {"loss": ce, "trainable": 0, "artefact": 0}
n_base = sum(p.numel() for p in base.parameters())
table["trainable %"] = 100 * table["trainable"] / n_base
table["memory MB"], table["artefact kB"] = table["memory"] / 1e6, table["artefact"] / 1e3
table["ms/step"] = 1e3 * table["step_s"]
show = ["lr", "trainable", "trainable %", "memory MB", "ms/step", "loss", "artefact kB"]
table[show].sort_values("loss").round(3)

# %% [markdown]
# Loss against the two sizes that matter for choosing: trainable parameters (what the optimizer
# holds) and the artefact (what you store and ship per task). Both axes logarithmic; the dashed lines
# are the floor.

# %%
trained = table.dropna(subset=["step_s"])
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
for ax, col, label in [
    (axes[0], "trainable", "trainable parameters"),
    (axes[1], "artefact", "artefact (bytes)"),
]:
    for i, (name, r) in enumerate(trained.iterrows()):
        ax.scatter(r[col], r["loss"], color=f"C{i}", label=name)
    for name, ce in floor.items():
        ax.axhline(ce, ls="--", lw=0.8, color="grey")
    ax.set_xscale("log")
    ax.set_xlabel(f"{label}, log scale")
axes[0].set_ylabel("clinic validation loss (nats/token)")
axes[1].legend(fontsize=7, loc="upper right")
fig.suptitle("20 steps, same data: cost vs quality")
plt.tight_layout()

# %% [markdown]
# What the table shows, asserted with margins that hold across seeds:

# %%
L, P, A = trained["loss"], trained["trainable"], trained["artefact"]
embedding_trainers = [
    "full fine-tuning",
    "freeze-tuning (top block + head)",
]  # both train the tied embedding/head
peft_names = [m for m in L.index if m not in embedding_trainers]
assert L.idxmin() in embedding_trainers, (
    "a method that trains the embedding/head matrix reaches the lowest loss"
)
assert L[peft_names].min() > L[embedding_trainers].min() + 1.0, (
    "by more than 1 nat/token over every PEFT method"
)
assert (L < min(floor.values()) - 2).all(), "every trained method beats the floor by 2+ nats/token"
assert L["prompt tuning (20 tokens)"] > L["LoRA q,v r=8"] + 0.5, (
    "prompt tuning is the weakest of the PEFT methods here"
)
assert abs(L["QLoRA q,v r=8 (NF4 base)"] - L["LoRA q,v r=8"]) < 0.5, (
    "QLoRA scores close to LoRA (within the PEFT spread)"
)

# %%
assert P.idxmax() == "full fine-tuning" and P.idxmin() in ("(IA)³", "prompt tuning (20 tokens)")
for name in ["LoRA q,v r=8", "(IA)³", "prompt tuning (20 tokens)", "prefix tuning (20 tokens)"]:
    assert 4 * P[name] <= A[name] < 4 * P[name] + 10_000, (
        f"{name}: artefact = fp32 trained weights + a small config"
    )
assert A["full fine-tuning"] > 50 * A["LoRA q,v r=8"], (
    "the full model is 50× more to store than a LoRA adapter"
)


# %% [markdown]
# **Reading it.** With 20 steps on a domain the model has barely seen, the two methods that train the
# tied embedding/head matrix, full fine-tuning and freeze-tuning (top block + that matrix, a third of
# the model), lead by more than a nat per token: the clinic notation needs new token statistics, and
# the embedding/head matrix is where they live. That freeze-tuning keeps up with full fine-tuning here
# is itself a finding: *which* parameters you train can matter more than how many. The PEFT methods
# with ~25–30 k parameters (LoRA, QLoRA, bottleneck adapters, prefix tuning) land within about
# 0.6 nats of each other, and prompt tuning (~4 k) trails them. QLoRA and LoRA train the same
# adapter; they differ only by the 4-bit base, whose rounding noise changes the trajectory of a short
# run at a large learning rate: in our run QLoRA even ended a little *lower* (about 0.3 nats), a
# difference of the same size as the spread between the PEFT methods, not a sign that quantization
# helps. Every trained method beats the floor by several nats/token.
#
# **Pareto-optimal** methods are those no other method beats on both axes at once (fewer parameters
# *and* lower loss). Only they are worth considering for a given budget; everything else is dominated.

# %%
def pareto(df, cost, score="loss"):
    keep = []
    for name, r in df.iterrows():
        dominated = (
            (df[cost] <= r[cost])
            & (df[score] <= r[score])
            & ((df[cost] < r[cost]) | (df[score] < r[score]))
        ).any()
        keep += [] if dominated else [name]
    return keep


front = pareto(trained, "trainable")
print("Pareto-optimal in (trainable parameters, loss):", front)
assert L.idxmin() in front and any(m in front for m in ("(IA)³", "prompt tuning (20 tokens)"))

# %% [markdown]
# ## 4 · Memory: where it goes, and where it will go at scale
#
# The memory column splits into its four parts. Look at which part dominates:

# %%
parts = trained[["weights", "gradients", "optimizer", "activations"]] / 1e6
ax = parts.plot.barh(stacked=True, figsize=(8, 3.6))
ax.set_xlabel("MB (counted from tensors)")
ax.set_title("Training memory per method, batch of 16 notes")
plt.tight_layout()
share = trained["activations"] / trained["memory"]
print((100 * share).round(0).to_string())
assert share.drop("full fine-tuning").min() > 0.5, (
    "on a 2 M model with 16 notes, activations dominate every PEFT method"
)

# %% [markdown]
# On our 2 M-parameter model, **activations dominate**: the weights are 8 MB, a batch of 16 notes
# saves tens of MB for backward. That is why the PEFT methods' memory is so close to each other, and
# why prompt tuning, with the fewest parameters, is not the cheapest: its 20 extra positions lengthen
# every sequence, and gradients must flow through the whole frozen network to reach the prompt. QLoRA
# saves what it can save, the weights, and they are a small share here.
#
# At 7 B parameters the picture flips: weights and optimizer state dwarf the activations of a modest
# batch. Chapter 11's calculator, checked against our counts above, gives the other end:

# %%
shape = memory.KNOWN["Llama-2-7B"]
n7, lora7 = shape.n_params(), memory.lora_params(shape, r=8, targets=("q_proj", "v_proj"))
at_scale = {
    "full (mixed)": memory.training_memory(n7, "full", "mixed"),
    "LoRA (bf16 base)": memory.training_memory(n7, "lora", "bf16", trainable=lora7),
    "QLoRA (NF4 base)": memory.training_memory(n7, "qlora", "bf16", trainable=lora7),
}
for name, est in at_scale.items():
    print(f"{name:>17}: {est.total / memory.GIB:6.1f} GiB before activations")
assert (
    at_scale["full (mixed)"].total
    > 6 * at_scale["LoRA (bf16 base)"].total
    > 6 * 2 * at_scale["QLoRA (NF4 base)"].total
)

# %% [markdown]
# Our counted QLoRA weights are larger than the calculator's $0.52$ bytes per parameter because the
# tied embedding matrix (13 % of our model) stays in fp32: bitsandbytes quantizes the linear layers
# only. On a 7 B model the embeddings are ~2 % of the parameters, and the calculator's number is close.
#
# ## 5 · Time per step
#
# `run_method` timed every step; the medians (this is a shared machine, so single runs vary):

# %%
ms = (1e3 * trained["step_s"]).sort_values()
ax = ms.plot.barh(figsize=(7, 3.2))
ax.set_xlabel("median ms per optimizer step")
plt.tight_layout()
print(ms.round(1).to_string())

# %% [markdown]
# On a CPU a step of this tiny model costs a few tens of milliseconds for every method: the frozen
# network's forward and backward passes are paid in full by every PEFT method, and only the optimizer
# update and the weight gradients are saved. Sequential timings on a shared machine are noisy, so the
# one timing claim the next section asserts (QLoRA vs LoRA) is measured interleaved, step by step.
#
# ## 6 · A decision procedure
#
# `course_lib.choosing.recommend` turns the chapters' measurements into rules over **resources**
# (model size, GPU memory), **data** (number of examples), **task** and **deployment** (how many tasks
# share one base). The tree, in the order the rules fire:
#
# ```
# knowledge that changes? ───────────────yes──▶ retrieval (RAG)
# fewer than 100 examples? ──────────────yes──▶ prompting (few-shot, retrieval)
# full FT fits (16 B/param ≤ 80 % GPU), one task, ≥ 10k examples? ──yes──▶ full fine-tuning (DPO for preferences)
# LoRA on a 16-bit base fits? ───────────yes──▶ LoRA  (one adapter per task if several)
# QLoRA on a 4-bit base fits? ───────────yes──▶ QLoRA
# otherwise ─────────────────────────────────▶ smaller model, or several GPUs (ZeRO-3 / FSDP, chapter 11)
# ```
#
# The tested cases (tests/lib/test_choosing.py), with the reason each recommendation gives first:

# %%
cases = [
    (0.5, 80, 50_000, "instruction", 1, False),
    (7, 80, 50_000, "instruction", 1, False),
    (7, 24, 5_000, "classification", 1, False),
    (13, 24, 5_000, "domain", 1, False),
    (70, 48, 5_000, "instruction", 1, False),
    (70, 24, 5_000, "instruction", 1, False),
    (7, 24, 20, "classification", 1, False),
    (7, 24, 5_000, "knowledge", 1, True),
    (7, 24, 5_000, "preference", 1, False),
    (0.5, 80, 50_000, "instruction", 5, False),
]
recs = [recommend(p, g, n, t, k, f) for p, g, n, t, k, f in cases]
pd.set_option("display.max_colwidth", 90)
pd.DataFrame(
    [
        {
            "model (B)": c[0],
            "GPU GiB": c[1],
            "examples": c[2],
            "task": c[3],
            "tasks": c[4],
            "method": r.method,
            "first reason": r.reasons[0],
        }
        for c, r in zip(cases, recs)
    ]
)

# %% [markdown]
# Where our measurements support the rules, and where they cannot speak:
#
# * *Prompting first when data is scarce*: it costs no training, but it needs a model that learns
#   from its context; our 2 M model does not (the few-shot floor), a 7 B model does. *Full fine-tuning is strongest when it fits*: it (and freeze-tuning, which also trains the embedding/head matrix) led every PEFT method by over 1 nat/token at equal steps.
# * *QLoRA only when LoRA does not fit*: it scored close to LoRA but is slower per step (next section),
#   so it is a memory tool, not a default.
# * *One adapter per task*: a LoRA artefact here is ~100 kB against the 8 MB model (about 1 %), so
#   many tasks cost little storage; LoRA also merges into the weights for zero extra latency
#   (chapter 04), which bottleneck adapters cannot (chapter 06), so the tree names LoRA.
# * The thresholds (100 examples, 10 k examples, the 20 % activation reserve) are rules of thumb; our
#   2 M-parameter model cannot validate them for 7 B models. Treat them as a starting point and
#   measure on your own task, as this chapter did.
#
# ## 7 · Critical reading: popular claims against the measurements
#
# Blog posts, vendor pages and forum answers repeat a handful of claims. Each is checked here against
# what this course measured.
#
# **Claim 1: "QLoRA trains faster than LoRA."** Source: blog posts and tool pages that confuse
# *fits on a smaller GPU* with *faster*. Measured: the same LoRA adapter on an fp32 base and on a
# 4-bit base, one forward + backward each, interleaved so that machine load hits both alike:

# %%
pair = {
    "LoRA": C.METHODS["LoRA q,v r=8"].build(base),
    "QLoRA": C.METHODS["QLoRA q,v r=8 (NF4 base)"].build(base),
}
small = next(iter(text_batches(tok, train_texts, 2)))
speed = {
    "2 notes": train_step_seconds(pair, small, repeats=15, warmup=2),
    "16 notes": train_step_seconds(pair, batch, repeats=3, warmup=1),
}
for k, t in speed.items():
    print(
        f"{k:>8}: LoRA {1e3 * t['LoRA']:.1f} ms, QLoRA {1e3 * t['QLoRA']:.1f} ms -> QLoRA/LoRA "
        f"{t['QLoRA'] / t['LoRA']:.2f}"
    )
assert speed["2 notes"]["QLoRA"] > 1.1 * speed["2 notes"]["LoRA"], (
    "dequantizing every weight on every pass costs time"
)
assert min(t["QLoRA"] / t["LoRA"] for t in speed.values()) > 0.95, (
    "QLoRA is not faster at either batch size"
)

# %% [markdown]
# Verdict: **false.** QLoRA dequantizes each 4-bit weight on every forward and backward pass; it
# saves memory and pays in time (Dettmers et al. 2023 say so themselves). The overhead shrinks as the
# batch grows, because the dequantization cost is per weight and the matrix products per token.
#
# **Claim 2: "LoRA matches full fine-tuning."** Source: the LoRA paper (Hu et al. 2021) reports
# parity on GLUE and on GPT-3 tasks close to pretraining. Measured: at 20 equal steps on a new domain,
# LoRA q,v r=8 trails full fine-tuning by more than 1 nat/token (table above); chapter 04 needed 4×
# more steps for LoRA to reach full fine-tuning's accuracy on reviews. Verdict: **depends** on the task's
# distance from pretraining, the rank, the targets and the budget; "always" is false (Biderman et al.
# 2024, *LoRA learns less and forgets less*, measure the same gap on code and maths).
#
# **Claim 3: "Prompt tuning is as good as fine-tuning."** Source: Lester et al. 2021, correctly
# quoted only for models of ~10 B parameters and more. Measured: on our 2 M model, the worst trained
# method here, several nats/token behind full fine-tuning. Verdict: **false at small scale**, plausible
# at very large scale: the paper's own curve shows the gap closing only with size.
#
# **Claim 4: "PEFT prevents forgetting."** Source: a common reading of "the base weights are frozen".
# Measured: the loss on general text (the pretraining corpus' validation split) before and after each
# method trained on clinic notes:

# %%
general = [d["text"] for d in corpus_documents("val", 100)]
ce_general = {"base": cross_entropy(base, tok, general)}
for r in rows:
    if r["method"] in (
        "full fine-tuning",
        "LoRA q,v r=8",
        "prompt tuning (20 tokens)",
        "prefix tuning (20 tokens)",
    ):
        ce_general[r["method"]] = cross_entropy(r["model"], tok, general)
for name, ce in ce_general.items():
    print(f"{name:>26}: general-text loss {ce:.3f} ({ce - ce_general['base']:+.3f})")
g = ce_general
rise = {k: v - g["base"] for k, v in g.items()}
assert rise["full fine-tuning"] > rise["LoRA q,v r=8"] > 1.0, (
    "LoRA forgets, less than full fine-tuning"
)
assert rise["prompt tuning (20 tokens)"] < rise["LoRA q,v r=8"] / 2, (
    "a soft prompt leaves the weights alone and forgets least"
)

# %% [markdown]
# Verdict: **false.** The frozen base weights are intact, so *removing* the adapter gives the base
# model back exactly; but the *adapted* model, the one you deploy, got much worse on general text. At
# the large learning rates a 20-step run needs, LoRA's rise in general-text loss was about two thirds of
# full fine-tuning's, and prefix tuning's was larger than LoRA's; only prompt tuning, which changes
# nothing but the input, stayed close to the base. "LoRA forgets less" (Biderman et al. 2024) holds in
# direction here, and how much less depends on the learning rate and the number of steps; "prevents"
# is simply wrong. To keep general ability, measure it and use chapter 03's tools (replay, a smaller
# learning rate, early stopping).
#
# **Claim 5: "Fine-tuning adds knowledge easily."** Source: tutorials that fine-tune on a document and
# ask about it. Measured in chapters 01, 05 and 08: facts trained in one phrasing are recalled mainly in
# that phrasing, and paraphrased questions score far lower; facts given in the prompt are used in any
# phrasing. Verdict: **misleading.** Fine-tuning shapes behaviour and format well; new facts that must
# be recalled in any wording, or that change, belong in retrieval (this is the first rule of the tree).
#
# **Claim 6: "Quantum fine-tuning" (quantum-enhanced, quantum-inspired, …) makes training faster or
# better.** Source: marketing pages and press releases. Measured: nothing, because no such claim comes
# with a method we could run: no algorithm, no code, no benchmark against a baseline. Verdict:
# **not checkable, so not evidence.** A method you can check names its algorithm, its baseline and its
# numbers, as every row of the table above does. Until a claim does that, treat it as advertising.
#
# | claim | source type | what we measured | verdict |
# |---|---|---|---|
# | QLoRA trains faster | blogs, tool pages | QLoRA slower per step, interleaved timing | false |
# | LoRA always matches full FT | paper results generalised | > 1 nat/token behind at equal steps | depends; "always" false |
# | prompt tuning = fine-tuning | paper, quoted without its scale | the weakest method on 2 M params | false at small scale |
# | PEFT prevents forgetting | folk reading of "frozen" | general-text loss rises with LoRA (2/3 of full FT's rise) and prefix tuning; least with prompt tuning | false |
# | fine-tuning adds knowledge easily | tutorials | recall mainly in the trained phrasing (ch. 01, 05, 08) | misleading; use retrieval |
# | quantum fine-tuning | marketing | no method to measure | not checkable |
#
# ## Summary
#
# * One protocol for all methods: same task, same batches, same number of steps, a stated learning
#   rate per method, scored on held-out data, against the zero- and few-shot floor.
# * Training memory on a CPU = weights + gradients + AdamW state + saved activations, each counted
#   from real tensors; it matched the 16 bytes/parameter rule and chapter 11's calculator exactly
#   (up to AdamW's step counters).
# * On a 2 M model at 20 steps: full and freeze-tuning (both train the embedding/head) lead by more than 1 nat/token; the ~25 k-parameter
#   PEFT methods cluster; prompt tuning trails; activations dominate memory, so the PEFT
#   methods cost about the same memory, and QLoRA's savings are small here and large at 7 B.
# * The artefact is what PEFT really saves: ~100 kB for LoRA against 8 MB for the whole model.
# * The decision procedure: retrieval for changing facts, prompting for tiny data, full fine-tuning
#   when it fits and data is plentiful, else LoRA, else QLoRA; thresholds are rules of thumb to check.
# * Claims need measurements: QLoRA is slower, not faster; PEFT does not prevent forgetting (LoRA forgot 2/3 as much as full FT here); prompt
#   tuning's parity needs scale; "quantum fine-tuning" names no method to check.
#
# ## Quiz
#
# 1. Why does every method get the same steps and batches but its own learning rate?
# 2. Prompt tuning trains the fewest parameters here. Why is its training memory not the smallest?
# 3. A LoRA adapter of 24,576 parameters is saved in fp32. About how large is the artefact, and what else does the folder hold?
# 4. Method X has more trainable parameters and a higher loss than method Y. Is X on the Pareto front?
# 5. Which claim in section 7 could not be tested at all, and why?
#
# <details><summary>Answers</summary>
#
# 1. Equal steps and data make the budget equal; the learning rate is part of each method's recipe
#    (small parameter sets need larger steps), so one shared value would favour some methods by accident.
# 2. Its 20 virtual tokens lengthen every sequence, so every layer saves more activations, and the
#    gradient must pass back through the whole frozen network to reach the input. Activations dominate
#    memory at this scale.
# 3. $24{,}576 \times 4 = 98{,}304$ bytes of weights, plus a small `adapter_config.json` (and peft's
#    README, which we do not count): about 100 kB.
# 4. No: Y dominates it (fewer parameters and lower loss).
# 5. "Quantum fine-tuning": no algorithm, code or baseline is given, so there is nothing to run.
# </details>
#
# ## Interview questions
#
# * How do you choose between full fine-tuning, LoRA, QLoRA and prompt tuning for a given model, GPU and dataset?
# * What does each method cost (memory, time, storage) and what does it buy? Give numbers.
# * When should you not fine-tune at all?
# * Someone says QLoRA is faster and PEFT prevents forgetting. What do you answer?
#
# Answers, with this chapter's numbers, and the exercises are in
# [the exercises notebook](../exercises/12_choosing_a_method_exercises.ipynb).
