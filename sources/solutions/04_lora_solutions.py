# %% [markdown]
# # 04 · LoRA, the math — Solutions
#
# **Measured runtime:** 14 s on a 2-core CPU (`make execute`; your machine may differ).
#
# Exercises for [the lesson](../notebooks/04_lora.ipynb). Each exercise says its level: ★ warm-up,
# ★★ core, ★★★ stretch. Write your code where it says so, then run the check cell below it: it
# tells you what is wrong, not only that something is.

# %%
import torch
import course_lib
from course_lib.course.checkers import ch04

device = course_lib.setup(seed=0)


# %% [markdown]
# ## Exercise 1 ★ — count the adapter
#
# Write `lora_param_count(shapes, r)`: `shapes` lists the `(d_out, d_in)` of every adapted weight;
# return the number of LoRA parameters at rank `r`.

# %%
def lora_param_count(shapes, r: int) -> int:
    ### BEGIN SOLUTION
    return sum(r * (d_out + d_in) for d_out, d_in in shapes)
    ### END SOLUTION


# %%
ch04.check_param_count(lora_param_count)


# %% [markdown]
# ## Exercise 2 ★★ — LoRA on an embedding
#
# peft can also adapt an `nn.Embedding` (the token-embedding table, `[num_embeddings, embedding_dim]`).
# Write the module `LoRAEmbedding(base, r, alpha)`: it freezes `base` and holds two trainable
# `nn.Parameter`s with peft's shapes, `lora_A` `[r, num_embeddings]` and `lora_B`
# `[embedding_dim, r]`; the token index plays the role of a linear layer's input. Its
# `forward(ids)` returns `base(ids)` plus the scaled low-rank update for those tokens, and a fresh
# module must equal the base embedding. Which of the two does peft start at zero here?

# %%
class LoRAEmbedding(torch.nn.Module):
    ### BEGIN SOLUTION
    def __init__(self, base: torch.nn.Embedding, r: int, alpha: float):
        super().__init__()
        self.base, self.scaling = base.requires_grad_(False), alpha / r
        n, d = base.num_embeddings, base.embedding_dim
        self.lora_A = torch.nn.Parameter(torch.zeros(r, n))  # peft: A = 0 for embeddings
        self.lora_B = torch.nn.Parameter(torch.randn(d, r))  # and B random

    def forward(self, ids):
        rows = torch.nn.functional.embedding(ids, self.lora_A.T)  # column i of A: [..., r]
        return self.base(ids) + self.scaling * rows @ self.lora_B.T

    ### END SOLUTION


# %%
ch04.check_embedding_lora(LoRAEmbedding)


# %% [markdown]
# ## Exercise 3 ★★ — merge it
#
# Write `merge_embedding(E, A, B, alpha, r)`: the embedding matrix `E` (`[num_embeddings,
# embedding_dim]`) with the update of exercise 2 folded in. Then answer: why is the update of an
# embedding not simply added like $\Delta W = \frac{\alpha}{r} BA$ to a linear layer's weight, and
# what does the merged adapter cost at inference?

# %%
def merge_embedding(E, A, B, alpha: float, r: int):
    ### BEGIN SOLUTION
    return E + (alpha / r) * (B @ A).T
    ### END SOLUTION


# %%
ch04.check_merge_embedding(merge_embedding)


# %% [markdown]
# <!-- BEGIN SOLUTION -->
# An `nn.Linear` stores its weight as `[out, in]`, and $BA$ (`[out, r] @ [r, in]`) has that shape.
# An embedding stores one row per token, `[num_embeddings, embedding_dim]`: the "input" (the token
# index) is the first dimension, so $BA$, `[embedding_dim, num_embeddings]`, must be transposed:
# $E + \frac{\alpha}{r}(BA)^\top$. After merging, the adapter costs nothing: the result is an
# ordinary embedding table of the same shape, looked up as before. The price, as for a linear
# layer: one merged table per adapter, so no switching between adapters on one base.
# <!-- END SOLUTION -->

# %% [markdown]
# ## Exercise 4 ★★★ — DoRA's magnitude and direction
#
# DoRA (Liu et al. 2024; the lesson ran it with peft's `use_dora=True`) writes a weight as a
# magnitude times a direction and applies LoRA to the direction only:
#
# $$W' = m \cdot \frac{W_0 + s\,BA}{\lVert W_0 + s\,BA \rVert},$$
#
# with one trainable magnitude per output unit, i.e. the norm taken over each row of the
# `[out, in]` weight, and $s$ LoRA's scaling. Write `dora_magnitude(W0)`, the magnitude DoRA starts
# from, and `dora_weight(W0, A, B, m, s)`, the weight $W'$. At the start ($B = 0$) the layer must be
# the base layer. (The check's tests confirm that this is the weight peft's DoRA layer merges.)

# %%
def dora_magnitude(W0):
    ### BEGIN SOLUTION
    return W0.norm(dim=1)  # one norm per row (output unit): [out]
    ### END SOLUTION


def dora_weight(W0, A, B, m, s: float):
    ### BEGIN SOLUTION
    V = W0 + s * B @ A  # LoRA acts on the direction
    return (m / V.norm(dim=1))[:, None] * V
    ### END SOLUTION


# %%
ch04.check_dora(dora_magnitude, dora_weight)

# %% [markdown]
# ## Exercise 5 ★★★ — the best rank-r update
#
# The lesson measured how much of a full fine-tune's $\Delta W$ lies in its top 8 singular
# directions. Go one step further. Write `svd_factors(M, r)`: factors `B` (`[out, r]`) and `A`
# (`[r, in]`) whose product is the best rank-`r` approximation of `M` (the truncated SVD: by the
# Eckart–Young theorem no rank-`r` matrix is closer in Frobenius norm; PiSSA, Meng et al. 2024,
# initialises LoRA's factors this way from $W_0$). Then fine-tune the base model on the clinic
# notes for 40 steps (lr 1e-3) and report, for `r = 8`, the mean relative error
# $\lVert \Delta W - BA \rVert_F / \lVert \Delta W \rVert_F$ over all attention and MLP weights:
# how far is even the *best* rank-8 LoRA from the full fine-tune's update? Compare with random
# matrices of the same shapes.

# %%
def svd_factors(M, r: int):
    ### BEGIN SOLUTION
    U, S, Vh = torch.linalg.svd(M.float(), full_matrices=False)  # M = U diag(S) Vh
    root = S[:r].sqrt()  # split each singular value between B and A, as PiSSA does
    return U[:, :r] * root, root[:, None] * Vh[:r]
    ### END SOLUTION


# %%
ch04.check_svd_factors(svd_factors)

# %%
import copy
from course_lib.models import load_model
from course_lib.data import load_jsonl
from course_lib.training import TrainConfig, train, text_batches

### BEGIN SOLUTION
base, tok = load_model("causal", device=device)
tuned = copy.deepcopy(base)
train(
    tuned,
    text_batches(tok, [r["text"] for r in load_jsonl("clinic_train")], batch_size=16),
    TrainConfig(lr=1e-3, max_steps=40, warmup_steps=4, progress=False),
)
deltas = [
    (p1 - p0).detach().cpu()
    for (n, p1), (_, p0) in zip(tuned.named_parameters(), base.named_parameters())
    if "layers" in n and p1.ndim == 2
]


def rank_r_error(M, r=8):
    B, A = svd_factors(M, r)
    return float((M - B @ A).norm() / M.norm())


dw = sum(rank_r_error(d) for d in deltas) / len(deltas)
rnd = sum(rank_r_error(torch.randn_like(d)) for d in deltas) / len(deltas)
print(f"relative error of the best rank-8 update: clinic fine-tune ΔW {dw:.1%}, random {rnd:.1%}")
### END SOLUTION

# %% [markdown]
# <!-- BEGIN SOLUTION -->
# The run above prints both numbers: the best rank-8 update leaves out a sizeable share of the
# fine-tune's $\Delta W$ (relative Frobenius error), far less than for random matrices of the same
# shapes, which are nearly all left out. The update is far more concentrated than noise (the lesson
# found the same for the review classifier), yet even the best possible rank-8 LoRA would miss part
# of it in norm (whether that part matters is what the lesson's truncation test measures), and
# a trained LoRA does not reach that optimum: it finds its own $BA$ by gradient descent. That is why
# LoRA usually approaches but does not always equal full fine-tuning, and why the rank still
# matters for tasks far from pretraining. PiSSA turns the same idea around: it puts the top
# singular directions of $W_0$ itself into the trainable $B$ and $A$ and freezes the rest.
# <!-- END SOLUTION -->

# %% [markdown]
# ## Interview questions
#
# **Q1. What is LoRA, and why does it add no inference latency?**
#
# <!-- BEGIN SOLUTION -->
# LoRA freezes the pretrained weights and learns, for chosen weight matrices $W_0$
# (`[out, in]`), an update $\Delta W = \frac{\alpha}{r} BA$ with $A$ `[r, in]`, $B$ `[out, r]`,
# $r \ll$ the layer's size; $B = 0$ at the start, so training starts at the base model. Only $A$,
# $B$ (and e.g. a new head) are trained and saved: in the lesson about 1.5 % of the classifier's
# parameters, for an accuracy within a few points of the full fine-tune's (the lesson prints both
# with their intervals). For serving, $W_0 + \Delta W$ is computed once (merged): the same shapes
# and therefore the same cost as the base model. Unmerged adapters cost two small extra matmuls per
# layer but let many adapters share one base.
# <!-- END SOLUTION -->
#
# **Q2. How do you choose r, α and the target modules?**
#
# <!-- BEGIN SOLUTION -->
# Target modules: compare them at an equal parameter budget, not an equal rank (all linear layers
# at the same r simply have several times more parameters). The lesson's shipped sweep does that
# (q,v r = 8 vs attention r = 4 vs MLP r = 3 vs all r = 2, about 25 k each, three seeds); *LoRA
# Without Regret* (2025) found MLP / all-layer LoRA better than attention-only at equal budget, and
# the QLoRA paper recommends all linear layers. Rank: start at 8–16 and raise it for tasks far from
# pretraining or with much data. α: the scale is α/r, so the common rule α = 2r keeps the scale at 2
# for every rank — which means a larger rank is also a larger update per step at the same learning
# rate; fixing α and scaling by α/r instead shrinks each direction's update as r grows, so large
# ranks learn slowly (the lesson's rank sweep at α = 16). rsLoRA's α/√r is the scaling under which
# a learning rate carries over across ranks and larger ranks keep helping (Kalajdzievski 2023).
# Choose the learning rate on a tuning split, with a small sweep; LoRA wants a larger one than full
# fine-tuning (here about 10×).
# <!-- END SOLUTION -->
#
# **Q3. Why is B initialised to zero and not A?**
#
# <!-- BEGIN SOLUTION -->
# One of the two must be zero so that $BA = 0$ and the adapted model starts exactly at the
# pretrained one. If both were zero, both gradients would be zero ($\partial L/\partial B \propto
# A$, $\partial L/\partial A \propto B$) and nothing would train. With $B = 0$ and $A$ random, the
# first step moves $B$ in a random $r$-dimensional projection of the input; zero $A$ and random $B$
# would also work in principle (the peft/paper convention is zero $B$).
# <!-- END SOLUTION -->
#
# **Q4. When would you prefer full fine-tuning?**
#
# <!-- BEGIN SOLUTION -->
# When the task is far from pretraining and there is much data (continued pretraining on a new
# domain or language, new capabilities), when you have the memory, and when only one model is
# served. Biderman et al. 2024 found that full fine-tuning on code and math learns updates of
# 10–100× higher rank than typical LoRA configurations, and that LoRA "learns less and forgets less"
# there. Check the vocabulary first, though: on the lesson's clinic notes LoRA alone looked hopeless
# until the embeddings were trained too (LoRA + `modules_to_save` / trainable tokens, or a
# vocabulary stage), after which it is a fair competitor. LoRA wins when memory, storage per task,
# or many tasks per base matter.
# <!-- END SOLUTION -->
#
# **Q5. Your domain is full of tokens the base model never saw. What goes wrong with LoRA, and what do you do?**
#
# <!-- BEGIN SOLUTION -->
# A token that never appeared as a target in pretraining has had its (often tied) embedding /
# output row pushed down by every softmax; the base model gives it almost no probability, and the
# loss on the domain can be worse than a uniform guess (the lesson's clinic notes: 12.5 nats/token
# against ln V = 7.2). LoRA on attention or MLP weights cannot lift those rows: it only changes the
# hidden state that all logits are read from, so it stalls whatever its rank, and comparisons of
# ranks or modules on such a task measure the embedding, not LoRA. Fixes: train the embeddings too
# (peft `modules_to_save=["embed_tokens"]` with `ensure_weight_tying=True` when the output layer is
# tied, or `trainable_token_indices` for just the new rows), or run a first stage that trains the
# embeddings alone, then LoRA. If frequent domain words split into many pieces, add tokens
# (`tokenizer.add_tokens`, better a tokenizer trained on the domain and merged) and
# `resize_token_embeddings` (mean-initialised new rows), then train them. Always print the uniform
# and unigram reference losses next to the base model's: a base worse than uniform is the sign.
# <!-- END SOLUTION -->
