# %% [markdown]
# # 04 · LoRA, the math
#
# **Measured runtime:** 152 s on a 2-core CPU (`make execute`; your machine may differ).
#
# Full fine-tuning updates every weight. **LoRA** (Hu et al. 2021, *LoRA: Low-Rank Adaptation of
# Large Language Models*) freezes them and learns, beside each chosen weight matrix, a low-rank
# update. This chapter builds LoRA from scratch, checks it against `peft` number for number, and
# measures the claims people make about it on the course model.
#
# **You will learn to**
# 1. write the LoRA update $\Delta W = \frac{\alpha}{r} B A$ with the right shapes, initialisation and scaling;
# 2. show that it equals peft's `LoraConfig` / `get_peft_model` (outputs and gradients);
# 3. measure why low rank is enough (the spectrum of a full fine-tune's $\Delta W$) and what rank and target modules buy;
# 4. merge an adapter into the weights (no extra latency), and keep several adapters on one base;
# 5. try rsLoRA, DoRA and AdaLoRA through peft.
#
# **Prerequisites:** chapters 01 and 03 (fine-tuning with the course loop).

# %%
import copy
import math
import torch
from torch import nn
import course_lib
from course_lib.models import load_model
from course_lib.classification import label_batches, predict_labels
from course_lib.data import load_jsonl
from course_lib.evaluation import accuracy, cross_entropy
from course_lib.lora import (
    check_lora_args,
    inject_lora,
    lora_layers,
    merge_lora,
    copy_from_peft,
)
from course_lib.measure import count_parameters, median_seconds, trainable_share
from course_lib.training import TrainConfig, train, text_batches
from course_lib.plotting import plot_lines, plot_losses

device = course_lib.setup(seed=0)
base, tok = load_model("causal", device=device)


# %% [markdown]
# ## 1 · The update $\Delta W = \frac{\alpha}{r} B A$
#
# A linear layer computes $h = W_0 x$ with $W_0 \in \mathbb{R}^{d_\text{out} \times d_\text{in}}$
# (PyTorch's `nn.Linear` stores the weight as `[out, in]`). Fine-tuning would learn
# $W_0 + \Delta W$. LoRA freezes $W_0$ and writes the update as a product of two thin matrices:
#
# $$h = W_0 x + \frac{\alpha}{r}\, B A x, \qquad A \in \mathbb{R}^{r \times d_\text{in}},\;
# B \in \mathbb{R}^{d_\text{out} \times r},\; r \ll \min(d_\text{in}, d_\text{out}).$$
#
# So $BA$ has the shape of $W_0$ and rank at most $r$. It costs $r(d_\text{in} + d_\text{out})$
# parameters instead of $d_\text{in} d_\text{out}$. (Articles that draw $A$ as
# $d_\text{in} \times r$ and then add $BA$ to a `[out, in]` weight have the shapes transposed.)

# %%
def lora_params(d_in, d_out, r):
    return r * (d_in + d_out)


for name, d, r in [
    ("course model q_proj", 192, 8),
    ("Llama-2-7B q_proj", 4096, 8),
    ("Llama-2-7B q_proj", 4096, 64),
]:
    print(
        f"{name:>20}, r={r:2d}: {lora_params(d, d, r):>9,} vs {d * d:>12,} weights "
        f"({lora_params(d, d, r) / d**2:.2%})"
    )


# %% [markdown]
# **Initialisation.** $A$ is random (peft uses Kaiming-uniform), $B = 0$. Then $BA = 0$: training
# starts *exactly* at the pretrained model, and the first gradient step moves $B$ (the gradient
# w.r.t. $A$ is zero at first, because it is multiplied by $B$). If both were random, the model
# would start from a randomly perturbed base.
#
# **Scaling.** The factor $\alpha / r$ keeps the size of the update comparable when you change $r$,
# so a learning rate tuned for one rank roughly carries over. rsLoRA (Kalajdzievski 2023) argues that
# $\alpha / \sqrt{r}$ is the right normalisation: with $\alpha / r$, large ranks learn too slowly.
#
# ## 2 · A LoRA layer from scratch
#
# First with plain tensors, on the first attention block's `q_proj` weight. The update is applied
# as two thin products, $x A^\top B^\top$: the $d_\text{out} \times d_\text{in}$ matrix $BA$ is never
# built, and the result is the same as adding a dense $\Delta W$ to $W_0$. ($B$ is random here, as
# if it had been trained, so that the update is visible.)

# %%
W0 = base.model.layers[0].self_attn.q_proj.weight.detach()  # [out, in] = [192, 192]
r, alpha = 8, 16
A = torch.nn.init.kaiming_uniform_(torch.empty(r, 192, device=device), a=math.sqrt(5))  # [r, in]
B = 0.02 * torch.randn(192, r, device=device)  # [out, r]
x = torch.randn(4, 192, device=device)  # 4 tokens
thin = x @ W0.T + (alpha / r) * (x @ A.T @ B.T)  # [4, r], then [4, out]
dense = x @ (W0 + (alpha / r) * B @ A).T  # the same update as a dense ΔW = (α/r)·BA
rank = torch.linalg.matrix_rank(B @ A).item()
print(f"rank of BA: {rank}; max |thin - dense| = {(thin - dense).abs().max():.1e}")
assert rank == r and torch.allclose(thin, dense, atol=1e-5)

# %% [markdown]
# Two options complete the layer, both as in peft:
#
# * **dropout** (`lora_dropout`) acts on the input of the LoRA branch only,
#   $h = W_0 x + \frac{\alpha}{r} B A\,\text{dropout}(x)$: the frozen path always sees the clean
#   $x$, and at inference (`model.eval()`) dropout is the identity;
# * **rsLoRA** (`use_rslora=True`) scales by $\alpha / \sqrt{r}$ instead of $\alpha / r$. At a
#   fixed $\alpha$ the two part ways as the rank grows:

# %%
for k in [1, 8, 64]:
    print(f"r = {k:2d}, α = 16:  LoRA α/r = {16 / k:6.3f},  rsLoRA α/√r = {16 / math.sqrt(k):6.3f}")

# %% [markdown]
# Now the layer. The cell below starts with `#| export course_lib.lora`: it is copied verbatim into
# `course_lib/lora.py` (`make lib`; a test fails if the two differ), so this class is the one that
# section 3 compares with peft, the tests check and later chapters import. `check_lora_args`,
# imported above, only turns a wrong layer, rank or dropout into a clear error. The parameter names
# `lora_A` and `lora_B` are peft's; `merged` comes into play in the next step.

# %%
#| export course_lib.lora
class LoRALinear(nn.Module):
    """y = base(x) + scaling · B A dropout(x): a frozen nn.Linear plus a low-rank update."""

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout=0.0, rslora=False):
        super().__init__()
        check_lora_args(base, r, dropout)
        self.base, self.r, self.alpha, self.merged = base.requires_grad_(False), r, alpha, False
        self.scaling = alpha / math.sqrt(r) if rslora else alpha / r
        like = dict(dtype=base.weight.dtype, device=base.weight.device)
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, **like))  # [r, in]
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, **like))  # [out, r], zero
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # peft's default for A
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.merged:  # ΔW already sits in base.weight (merge, below)
            return out
        return out + self.scaling * (self.dropout(x) @ self.lora_A.T @ self.lora_B.T)


# %% [markdown]
# Wrap a copy of `q_proj` and check the shapes, the zero start and what is trainable:

# %%
q = copy.deepcopy(base.model.layers[0].self_attn.q_proj)
layer = LoRALinear(q, r=8, alpha=16)
trainable = [n for n, p in layer.named_parameters() if p.requires_grad]
print(layer)
print(f"A {tuple(layer.lora_A.shape)}, B {tuple(layer.lora_B.shape)}, scaling {layer.scaling}")
print("trainable:", trainable)
assert torch.equal(layer(x), q(x)), "with B = 0 the layer must equal the base layer exactly"
assert trainable == ["lora_A", "lora_B"], "only A and B train; the base layer is frozen"

# %% [markdown]
# **Merging.** The branch is linear in $x$, so (as the plain-tensor check showed)
# $W_0 x + \frac{\alpha}{r} BAx = (W_0 + \frac{\alpha}{r} BA)\,x$: after training, $\Delta W$ can be
# added into the base weight once, and the layer then costs what the base layer costs (section 6).
# `unmerge` subtracts it again, to go on training or to switch adapters. `course_lib.add_to_class`
# attaches a function to a class defined in an earlier cell (as in d2l), so the class grows cell by
# cell; this cell is exported too.

# %%
#| export course_lib.lora
@course_lib.add_to_class(LoRALinear)
def delta_weight(self) -> torch.Tensor:
    """ΔW = scaling · B @ A, shape [out, in] like the base weight."""
    return self.scaling * (self.lora_B @ self.lora_A)


@course_lib.add_to_class(LoRALinear)
@torch.no_grad()
def merge(self) -> None:
    """Add ΔW into the base weight: afterwards the layer costs what the base layer costs."""
    if not self.merged:
        self.base.weight += self.delta_weight()
        self.merged = True


@course_lib.add_to_class(LoRALinear)
@torch.no_grad()
def unmerge(self) -> None:
    """Subtract ΔW again, restoring the base weight (up to float rounding)."""
    if self.merged:
        self.base.weight -= self.delta_weight()
        self.merged = False


# %% [markdown]
# Give $B$ non-zero values (as if trained), merge, compare, unmerge:

# %%
torch.nn.init.normal_(layer.lora_B, std=0.02)
w_before, before = layer.base.weight.detach().clone(), layer(x).detach()
layer.merge()
after = layer(x).detach()  # one product with the merged weight, no branch
layer.unmerge()
restored = (layer.base.weight - w_before).abs().max().item()
print(f"merged: max |output diff| {(after - before).abs().max():.1e}; W restored to {restored:.1e}")
assert torch.allclose(after, before, atol=1e-5) and restored < 1e-6

# %% [markdown]
# To adapt a whole model, `course_lib.lora.inject_lora(model, names, r, alpha)` freezes it and
# replaces every `nn.Linear` whose name is in `names` by a `LoRALinear` around it: the class of the
# two cells above, from the library file they were exported to.
#
# ## 3 · The same with peft, number for number
#
# peft's `get_peft_model` does the injection for us. To compare, give both the same $A$ and $B$
# (a random, non-zero $B$, so that the check means something) and compare outputs and gradients:

# %%
from peft import LoraConfig, get_peft_model

ours = inject_lora(copy.deepcopy(base), ["q_proj", "v_proj"], r=8, alpha=16)
theirs = get_peft_model(
    copy.deepcopy(base),
    LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]),
)
theirs.print_trainable_parameters()
probe = tok(["Nina Crane has a dog."], return_tensors="pt")["input_ids"].to(device)
with torch.no_grad():
    assert torch.equal(ours(input_ids=probe).logits, base(input_ids=probe).logits), (
        "B = 0: the adapted model IS the base model"
    )
    for name, p in theirs.named_parameters():
        if "lora_B" in name:
            p.normal_(std=0.02)
copy_from_peft(ours, theirs)

# %% [markdown]
# One forward and backward pass through both models on the same sentence:

# %%
ids = tok(["Yara Marsh lives in Fernwick."], return_tensors="pt")["input_ids"].to(device)
out_ours, out_theirs = ours(input_ids=ids, labels=ids), theirs(input_ids=ids, labels=ids)
out_ours.loss.backward()
out_theirs.loss.backward()
g_ours = ours.model.layers[2].self_attn.v_proj.lora_A.grad
g_theirs = theirs.base_model.model.model.layers[2].self_attn.v_proj.lora_A["default"].weight.grad
print(
    f"max |logit diff| {(out_ours.logits - out_theirs.logits).abs().max():.1e}, max |grad diff| "
    f"{(g_ours - g_theirs).abs().max():.1e}"
)
assert torch.allclose(out_ours.logits, out_theirs.logits, atol=1e-5) and torch.allclose(
    g_ours, g_theirs, atol=1e-6
)
assert count_parameters(ours, trainable_only=True) == sum(
    p.numel() for p in theirs.parameters() if p.requires_grad
)

# %% [markdown]
# The rsLoRA scaling gives the same agreement: peft's `use_rslora=True` against `rslora=True`, with
# the same non-zero $A$ and $B$ at $r = 8$, $\alpha = 16$ (scaling $16/\sqrt{8} \approx 5.66$, not 2):

# %%
ours_rs = inject_lora(copy.deepcopy(base), ["q_proj", "v_proj"], r=8, alpha=16, rslora=True)
theirs_rs = get_peft_model(
    copy.deepcopy(base),
    LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], use_rslora=True),
)
with torch.no_grad():
    for name, p in theirs_rs.named_parameters():
        if "lora_B" in name:
            p.normal_(std=0.02)
    copy_from_peft(ours_rs, theirs_rs)
    diff = (ours_rs(input_ids=ids).logits - theirs_rs(input_ids=ids).logits).abs().max().item()
scaling = lora_layers(ours_rs)["model.layers.0.self_attn.q_proj"].scaling
print(f"rsLoRA, scaling {scaling:.3f}: max |logit diff| {diff:.1e}")
assert diff < 1e-5 and abs(scaling - 16 / math.sqrt(8)) < 1e-12

# %% [markdown]
# ## 4 · Why is low rank enough?
#
# Hu et al. hypothesised that the weight change of fine-tuning has a low "intrinsic rank"
# (following Aghajanyan et al. 2020, who found that fine-tuning can be done in a tiny random
# subspace). We can look directly: fine-tune the classifier fully on the reviews (as in chapter 01),
# take $\Delta W = W_\text{tuned} - W_0$ for every linear layer and look at its singular values.

# %%
reviews_train, reviews_test = load_jsonl("reviews_train"), load_jsonl("reviews_test")[:300]
gold = [r["label"] for r in reviews_test]
full, _ = load_model("classifier", device=device)
w0 = {n: p.detach().clone() for n, p in full.named_parameters() if p.ndim == 2 and "layers" in n}
hist_full = train(
    full,
    label_batches(tok, reviews_train, batch_size=32),
    TrainConfig(lr=5e-4, max_steps=300, warmup_steps=30),
)
acc_full = accuracy(predict_labels(full, tok, [r["text"] for r in reviews_test]), gold)
print(
    f"full fine-tune: accuracy {acc_full:.1%} in {hist_full.seconds:.0f} s, "
    f"{count_parameters(full, trainable_only=True):,} parameters trained"
)


# %% [markdown]
# How much of $\|\Delta W\|_F^2$ (the "energy" of the update) lies in its top 8 singular directions,
# compared with a random matrix of the same shape?

# %%
def top_energy(m, k=8):
    s = torch.linalg.svdvals(m.float().cpu())
    return float((s[:k] ** 2).sum() / (s**2).sum())


params = dict(full.named_parameters())
energy = {n: top_energy(params[n].detach() - w) for n, w in w0.items()}
rand = {n: top_energy(torch.randn_like(w)) for n, w in w0.items()}
mean_e, mean_r = sum(energy.values()) / len(energy), sum(rand.values()) / len(rand)
print(
    f"top-8 energy share, mean over {len(energy)} matrices: fine-tune ΔW {mean_e:.1%}, random {mean_r:.1%}"
)
assert mean_e > mean_r + 0.15, "the fine-tune's update should be far more concentrated than noise"

# %% [markdown]
# The whole spectrum of one matrix, normalised by its largest singular value:

# %%
name = "model.layers.1.self_attn.v_proj.weight"
s_dw = torch.linalg.svdvals((params[name].detach() - w0[name]).float().cpu())
s_rn = torch.linalg.svdvals(torch.randn_like(w0[name]).float().cpu())
plot_lines(
    list(range(1, 41)),
    {
        "ΔW of full fine-tune": (s_dw / s_dw[0])[:40].tolist(),
        "random matrix": (s_rn / s_rn[0])[:40].tolist(),
    },
    title=f"Singular values of ΔW ({name.split('.', 1)[1]})",
    xlabel="index",
    ylabel="σ_i / σ_1",
);

# %% [markdown]
# A few directions carry much of the update, and the rest decays; a random matrix's spectrum is
# flat by comparison. The update is not *exactly* low rank, which is why the rank still matters
# (section 7).
#
# ## 5 · LoRA vs full fine-tuning
#
# Now LoRA on the same task: rank 2 on every linear layer of the 4 blocks, $\alpha = 8$, plus the
# new classification head (3 × 192 weights, trained in both cases).

# %%
lora_clf = inject_lora(
    load_model("classifier", device=device)[0],
    ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    r=2,
    alpha=8,
)
lora_clf.score.weight.requires_grad_(True)
n_train, n_all = trainable_share(lora_clf)
hist_lora = train(
    lora_clf,
    label_batches(tok, reviews_train, batch_size=32),
    TrainConfig(lr=2e-3, max_steps=800, warmup_steps=80),
)
acc_lora = accuracy(predict_labels(lora_clf, tok, [r["text"] for r in reviews_test]), gold)
print(
    f"LoRA: accuracy {acc_lora:.1%} with {n_train:,} of {n_all:,} parameters trainable "
    f"({n_train / n_all:.2%}), {hist_lora.seconds:.0f} s"
)

# %% [markdown]
# The two training curves side by side, and the headline claim checked:

# %%
plot_losses(
    {"full fine-tune (lr 5e-4)": hist_full, "LoRA r=2 (lr 2e-3)": hist_lora},
    title="Review classification: training loss",
)
assert acc_lora >= 0.95 * acc_full, "LoRA should reach 95 % of the full fine-tune's accuracy"
assert n_train / n_all <= 0.015, "with about 1 % of the parameters"

# %% [markdown]
# Two things the curves show, both measured on this model and both worth knowing:
#
# * LoRA gets there with about 1.5 % of the parameters trainable.
# * It needs **more steps and a larger learning rate**. Both runs sit on a plateau (about 60 %, what
#   a bag of words gets) until they discover how negation and "but" compose; the full fine-tune
#   leaves it after ~180 steps, LoRA after several hundred. When this chapter was written, LoRA on
#   `q_proj` and `v_proj` only (r = 8, 1.2 % trainable) needed about 800 steps at lr 3e-3 to leave
#   the plateau, and rank 1 on all layers (0.7 %) had not left it after 700. Biderman et
#   al. 2024 (*LoRA Learns Less and Forgets Less*) report the same pattern at scale: LoRA lags full
#   fine-tuning on tasks far from pretraining and needs more training to catch up.
#
# ## 6 · Merging: no extra latency
#
# At inference, $W = W_0 + \frac{\alpha}{r} BA$ can be computed once and stored: the merged model
# has exactly the base model's shape and cost. Unmerged, every adapted layer does two extra small
# matrix products. `merge_lora(model)` calls `merge()` (section 2) on every LoRA layer of the
# trained classifier and puts the plain `nn.Linear` back in its place:

# %%
merged = merge_lora(copy.deepcopy(lora_clf))
batch = tok([r["text"] for r in reviews_test[:64]], return_tensors="pt", padding=True).to(device)
with torch.no_grad():
    same = torch.allclose(merged(**batch).logits, lora_clf(**batch).logits, atol=1e-4)
print("merged outputs equal:", same, "| LoRA layers left:", len(lora_layers(merged)))
assert same and not lora_layers(merged)


# %% [markdown]
# Latency: the median time of a forward pass over 64 reviews (after one untimed warm-up pass),
# for the base model, the merged and the unmerged adapter. `median_seconds` is the course's one
# timer (`course_lib.measure`); on a GPU it waits for the queued kernels before reading the clock.

# %%
with torch.no_grad():
    lat = {
        name: 1000 * median_seconds(lambda: m(**batch), repeats=11, warmup=1)
        for name, m in [("base model", full), ("merged LoRA", merged), ("unmerged LoRA", lora_clf)]
    }
print({k: f"{v:.1f} ms" for k, v in lat.items()}, "(median of 11, batch of 64 reviews)")
assert lat["merged LoRA"] < 1.15 * lat["base model"], (
    "a merged model should cost what the base model costs"
)

# %% [markdown]
# The unmerged adapter's overhead is the price of keeping adapters separate, which is what you want
# when you serve several of them from one base (section 8). `peft` does the same with
# `model.merge_and_unload()`; unmerging (`unmerge_adapter()`) subtracts the update again, exact up to
# float rounding.
#
# ## 7 · Which modules, which rank?
#
# These questions need many runs, so we answer them on a cheap task: adapting the language model to
# the clinic notes of chapter 01 for 20 steps, scored by the validation loss on clinic notes (lower
# is better). First, the base model and a full fine-tune as the two ends of the scale:

# %%
clinic_train = [r["text"] for r in load_jsonl("clinic_train")]
clinic_val = [r["text"] for r in load_jsonl("clinic_val")][:100]


def clinic_run(model, lr, steps=20, on_step=None):
    h = train(
        model,
        text_batches(tok, clinic_train, batch_size=16),
        TrainConfig(lr=lr, max_steps=steps, warmup_steps=2, progress=False),
        on_step=on_step,
    )
    return cross_entropy(model, tok, clinic_val), h.seconds


ce_base = cross_entropy(base, tok, clinic_val)
ce_full, _ = clinic_run(copy.deepcopy(base), lr=1e-3)
print(f"clinic validation loss: base {ce_base:.3f}, full fine-tune {ce_full:.3f} nats/token")

# %% [markdown]
# Target modules: `q_proj` and `v_proj` (the LoRA paper's choice for GPT-3) against every linear
# layer (attention and MLP, the QLoRA paper's recommendation), both at $r = 8$, $\alpha = 16$:

# %%
ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
targets = {}
for label, mods in [("q,v", ["q_proj", "v_proj"]), ("all linear", ALL)]:
    m = inject_lora(copy.deepcopy(base), mods, r=8, alpha=16)
    ce, _ = clinic_run(m, lr=3e-3)
    targets[label] = (ce, count_parameters(m, trainable_only=True))
    print(f"{label:>10}: clinic loss {ce:.3f}, {targets[label][1]:,} trainable parameters")
assert targets["all linear"][0] < targets["q,v"][0], (
    "adapting all linear layers should fit the domain better"
)

# %% [markdown]
# A rank sweep on `q_proj` and `v_proj`, with $\alpha = 2r$ (a common rule, which keeps
# $\alpha / r = 2$ fixed):

# %%
ranks, sweep = [1, 8, 16, 64], {8: targets["q,v"]}  # r=8 with alpha=16 was run above
for r in [r for r in ranks if r not in sweep]:
    m = inject_lora(copy.deepcopy(base), ["q_proj", "v_proj"], r=r, alpha=2 * r)
    sweep[r] = (clinic_run(m, lr=3e-3)[0], count_parameters(m, trainable_only=True))
print("  r   clinic loss   trainable")
for r in ranks:
    print(f"{r:3d} {sweep[r][0]:12.3f} {sweep[r][1]:11,}")

# %% [markdown]
# Loss (left axis) and trainable parameters (right axis) against the rank:

# %%
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(6.4, 3.4))
ax.plot(ranks, [sweep[r][0] for r in ranks], "o-", label="LoRA (q, v)")
ax.axhline(ce_full, ls="--", color="grey", label="full fine-tune")
ax.set_xscale("log", base=2)
ax.set_xlabel("rank r")
ax.set_ylabel("clinic validation loss")
ax2 = ax.twinx()
ax2.plot(ranks, [sweep[r][1] for r in ranks], "s:", color="C1")
ax2.set_ylabel("trainable parameters", color="C1")
ax.legend(fontsize=8)
ax.set_title("Rank sweep");

# %% [markdown]
# What does a parameter buy at low and at high rank?

# %%
per_param_low = (sweep[1][0] - sweep[8][0]) / (sweep[8][1] - sweep[1][1])
per_param_high = (sweep[8][0] - sweep[64][0]) / (sweep[64][1] - sweep[8][1])
print(
    f"loss gained per 1,000 extra parameters: r 1→8 {1000 * per_param_low:.3f}, r 8→64 "
    f"{1000 * per_param_high:.4f}"
)
assert sweep[64][0] < sweep[1][0] - 0.3, "a higher rank should fit the domain better"
assert per_param_high < per_param_low / 4, "expected diminishing returns per parameter"

# %% [markdown]
# On this task the loss keeps falling as the rank grows, but each doubling of the rank doubles the
# parameters, so the return per parameter shrinks quickly (about 13-fold from r 1→8 to r 8→64). And even $r = 64$
# stays far from the full fine-tune after 20 steps: adapting to a new vocabulary is hard for any
# low-rank update of a 2 M-parameter model. The LoRA paper found ranks 1–8 on `q`,`v` nearly as good
# as 64 on GPT-3 (175 B parameters); the smaller the model, the less that holds (Aghajanyan et al.
# 2020: larger models have smaller intrinsic dimension).
#
# ## 8 · Several adapters on one base
#
# An adapter is a few kilobytes; the base model is shared. peft keeps several adapters in one model,
# switches between them with `set_adapter`, and turns them off with `disable_adapter()`:

# %%
multi = get_peft_model(
    copy.deepcopy(base), LoraConfig(r=8, lora_alpha=16, target_modules=ALL), adapter_name="clinic"
)
multi.add_adapter("facts", LoraConfig(r=8, lora_alpha=16, target_modules=ALL))
facts = load_jsonl("new_facts")
fact_texts = [s for f in facts for s in f["statements"]]
for name, texts in [("clinic", clinic_train), ("facts", fact_texts)]:
    multi.set_adapter(name)
    train(
        multi,
        text_batches(tok, texts, batch_size=16),
        TrainConfig(lr=3e-3, max_steps=20, warmup_steps=2, progress=False),
    )


# %% [markdown]
# Score each adapter, and no adapter, on both tasks (loss on clinic notes and on the new facts' statements):

# %%
def fact_loss(m):
    return cross_entropy(m, tok, fact_texts)


rows = {}
for name in ["clinic", "facts"]:
    multi.set_adapter(name)
    rows[name] = (cross_entropy(multi, tok, clinic_val), fact_loss(multi))
with multi.disable_adapter():
    rows["no adapter"] = (cross_entropy(multi, tok, clinic_val), fact_loss(multi))
    same_as_base = torch.equal(multi(input_ids=ids).logits, base(input_ids=ids).logits)
for k, (c, f) in rows.items():
    print(f"{k:>11}: clinic loss {c:.3f}   new-facts loss {f:.3f}")

# %% [markdown]
# The claims of this section, checked:

# %%
assert same_as_base, "with adapters disabled the model must be the base model exactly"
assert rows["clinic"][0] < rows["facts"][0] and rows["facts"][1] < rows["clinic"][1], (
    "each adapter should win on its own task"
)

# %% [markdown]
# One set of base weights in memory, one small adapter per task or per customer, chosen per
# request: this is how multi-LoRA serving (e.g. vLLM, LoRAX, S-LoRA) works.
#
# ## 9 · Relatives: rsLoRA, DoRA, AdaLoRA
#
# All three are one option away in peft:
#
# * **rsLoRA** (`use_rslora=True`): scaling $\alpha/\sqrt{r}$ instead of $\alpha/r$.
# * **DoRA** (`use_dora=True`, Liu et al. 2024): splits each weight into a magnitude vector and a
#   direction, and applies LoRA to the direction only: $W = m \cdot \frac{W_0 + BA}{\|W_0 + BA\|_c}$
#   (column norms), with $m$ trainable.
# * **AdaLoRA** (`AdaLoraConfig`, Zhang et al. 2023): writes the update as $P \Lambda Q$ (an SVD-like
#   form), starts with `init_r` per module and prunes singular values by an importance score down
#   to an average of `target_r`, so layers that matter keep more rank. It needs a call to
#   `update_and_allocate(step)` after every optimizer step.
#
# At $r = 64$ with a fixed $\alpha = 16$, plain LoRA scales the update by $16/64 = 0.25$, rsLoRA by
# $16/8 = 2$:

# %%
from peft import AdaLoraConfig

variants = {
    "LoRA r=64, α=16": LoraConfig(r=64, lora_alpha=16, target_modules=["q_proj", "v_proj"]),
    "rsLoRA r=64, α=16": LoraConfig(
        r=64, lora_alpha=16, target_modules=["q_proj", "v_proj"], use_rslora=True
    ),
    "DoRA r=8": LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], use_dora=True),
    "AdaLoRA 12→4": AdaLoraConfig(
        init_r=12,
        target_r=4,
        lora_alpha=16,
        target_modules=["q_proj", "v_proj"],
        total_step=20,
        tinit=4,
        tfinal=6,
        deltaT=2,
    ),
}

# %% [markdown]
# Train each variant for the same 20 steps on the clinic notes (AdaLoRA with its rank update after every step):

# %%
results = {}
for label, cfg in variants.items():
    m = get_peft_model(copy.deepcopy(base), cfg)
    hook = (
        (lambda mm, step: mm.base_model.update_and_allocate(step))
        if label.startswith("Ada")
        else None
    )
    ce, secs = clinic_run(m, lr=3e-3, on_step=hook)
    results[label] = (ce, sum(p.numel() for p in m.parameters() if p.requires_grad), secs)
    print(f"{label:>18}: clinic loss {ce:.3f}, {results[label][1]:,} trainable, {secs:.1f} s")
assert results["rsLoRA r=64, α=16"][0] < results["LoRA r=64, α=16"][0], (
    "rsLoRA's larger scale should learn more at r=64"
)

# %% [markdown]
# The last model trained is the AdaLoRA one; its `rank_pattern` says how many of the 12 initial ranks each module kept:

# %%
ranks_left = m.peft_config["default"].rank_pattern
kept = {
    k.split("model.")[-1].replace(".self_attn", "").replace(".lora_E.default", ""): int(sum(v))
    for k, v in ranks_left.items()
}
print("AdaLoRA ranks kept per module (of 12):", kept)

# %% [markdown]
# At equal $\alpha$, plain LoRA with a large rank learns slowly because its update is scaled down;
# rsLoRA does not. (With $\alpha = 2r$, as in section 7, both scalings are large enough.) DoRA costs a
# little more time per step and lands near LoRA at the same rank; its reported gains are on large
# models and longer training, so read this run as "works the same", not as a ranking. AdaLoRA is
# worse here: in 20 steps it spends its budget pruning (and adds an orthogonality penalty to the
# loss); its rank pattern shows what it kept: mostly `v_proj`, which is the kind of allocation it
# was designed to find, given enough steps.
#
# ## Summary
#
# * LoRA learns $\Delta W = \frac{\alpha}{r} BA$ beside frozen weights: $A$ is `[r, in]`, $B$ is
#   `[out, r]`, $B$ starts at zero, so training starts at the base model.
# * Our from-scratch layer equals peft's, outputs and gradients.
# * A full fine-tune's $\Delta W$ is concentrated in a few directions, which is why low rank works;
#   on our reviews, LoRA with about 1.5 % of the parameters reached the full fine-tune's accuracy,
#   but needed more steps and a larger learning rate.
# * Merged, LoRA adds no latency; unmerged, several adapters share one base.
# * Rank shows diminishing returns; adapting all linear layers beats adapting only `q`,`v`.
#
# ## Quiz
#
# 1. What would go wrong if both $A$ and $B$ were initialised randomly?
# 2. A layer is 4096 × 11008. How many LoRA parameters at $r = 16$?
# 3. Why does a merged LoRA model have exactly the base model's latency?
# 4. You double $r$ and keep $\alpha$. What happens to the scale of the update under LoRA and under rsLoRA?
#
# <details><summary>Answers</summary>
#
# 1. The model would not start at the pretrained one: $BA$ would add a random perturbation to every adapted weight before any training.
# 2. $16 \times (4096 + 11008) = 241{,}664$ (0.54 % of the layer's 45 M).
# 3. Merging computes $W_0 + \frac{\alpha}{r}BA$ once; the result is an ordinary weight matrix of the same shape.
# 4. LoRA: $\alpha/r$ halves; rsLoRA: $\alpha/\sqrt r$ shrinks by $\sqrt 2$ only.
#
# </details>
#
# ## Interview questions
#
# * What is LoRA, and why does it add no inference latency?
# * How do you choose $r$, $\alpha$ and the target modules?
# * Why is $B$ initialised to zero and not $A$?
# * When would you prefer full fine-tuning to LoRA?
#
# Answers: [solutions/04_lora_solutions.ipynb](../solutions/04_lora_solutions.ipynb).
# Exercises: [exercises/04_lora_exercises.ipynb](../exercises/04_lora_exercises.ipynb).
