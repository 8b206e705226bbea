# %% [markdown]
# # 04 · LoRA, the math — Solutions
#
# **Measured runtime:** 10 s on a 2-core CPU (`make execute`; your machine may differ).
#
# Exercises for [the lesson](../notebooks/04_lora.ipynb). Each exercise says its level: ★ warm-up,
# ★★ core, ★★★ stretch. Write your code where it says so, then run the check cell below it: it
# tells you what is wrong, not only that something is.

# %%
import math
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
# ## Exercise 2 ★★ — the forward pass
#
# Write `lora_forward(x, W, A, B, alpha, r)` for a batch `x` of shape `[n, d_in]`, a frozen weight
# `W` of shape `[d_out, d_in]` (no bias), `A` of shape `[r, d_in]` and `B` of shape `[d_out, r]`.

# %%
def lora_forward(x, W, A, B, alpha: float, r: int):
    ### BEGIN SOLUTION
    return x @ W.T + (alpha / r) * (x @ A.T @ B.T)
    ### END SOLUTION


# %%
ch04.check_forward(lora_forward)


# %% [markdown]
# ## Exercise 3 ★★ — a LoRA module
#
# Write the class `LoRA(base, r, alpha)` wrapping an `nn.Linear`: trainable parameters `A` (`[r, in]`,
# Kaiming-uniform) and `B` (`[out, r]`, zeros), the base layer frozen, and the forward pass of
# exercise 2 (with the base layer's bias).

# %%
class LoRA(torch.nn.Module):
    ### BEGIN SOLUTION
    def __init__(self, base: torch.nn.Linear, r: int, alpha: float):
        super().__init__()
        self.base, self.scaling = base.requires_grad_(False), alpha / r
        self.A = torch.nn.Parameter(torch.empty(r, base.in_features))
        self.B = torch.nn.Parameter(torch.zeros(base.out_features, r))
        torch.nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))

    def forward(self, x):
        return self.base(x) + self.scaling * (x @ self.A.T @ self.B.T)

    ### END SOLUTION


# %%
ch04.check_module(LoRA)


# %% [markdown]
# ## Exercise 4 ★★ — merge
#
# Write `merge(W, A, B, alpha, r)` returning the merged weight. Then answer: after merging, what
# does the adapter cost at inference?

# %%
def merge(W, A, B, alpha: float, r: int):
    ### BEGIN SOLUTION
    return W + (alpha / r) * (B @ A)
    ### END SOLUTION


# %%
ch04.check_merge(merge)


# %% [markdown]
# <!-- BEGIN SOLUTION -->
# Nothing: the merged weight is an ordinary `[out, in]` matrix, so the model has the base model's
# shape and latency (measured in the lesson: merged within a few percent of the base model, while
# the unmerged adapter adds two small matrix products per adapted layer). The price: one merged
# model per adapter, so no switching between adapters on one base.
# <!-- END SOLUTION -->

# %% [markdown]
# ## Exercise 5 ★★★ — how low-rank is a fine-tune?
#
# Write `top_energy(M, k)`: the share of $\|M\|_F^2 = \sum_i \sigma_i^2$ in the top `k` singular
# values. Then fine-tune the base model on the clinic notes for 40 steps (lr 1e-3) and report, for
# `k = 8`, the mean share over all attention and MLP weights of the fine-tune's $\Delta W$, next to
# the share for random matrices of the same shapes.

# %%
def top_energy(M, k: int) -> float:
    ### BEGIN SOLUTION
    s = torch.linalg.svdvals(M.float())
    return float((s[:k] ** 2).sum() / (s**2).sum())
    ### END SOLUTION


# %%
ch04.check_energy(top_energy)

# %%
import copy
from course_lib.models import load_base_model
from course_lib.data import load_jsonl
from course_lib.training import TrainConfig, train, text_batches

### BEGIN SOLUTION
base, tok = load_base_model(device=device)
tuned = copy.deepcopy(base)
train(
    tuned,
    text_batches(tok, [r["text"] for r in load_jsonl("clinic_train")], batch_size=16),
    TrainConfig(lr=1e-3, max_steps=40, warmup_steps=4, progress=False),
)
pairs = [
    (p1.detach().cpu(), p0.detach().cpu())
    for (n, p1), (_, p0) in zip(tuned.named_parameters(), base.named_parameters())
    if "layers" in n and p1.ndim == 2
]
dw = sum(top_energy(a - b, 8) for a, b in pairs) / len(pairs)
rnd = sum(top_energy(torch.randn_like(a), 8) for a, _ in pairs) / len(pairs)
print(f"top-8 energy share: clinic fine-tune ΔW {dw:.1%}, random matrices {rnd:.1%}")
### END SOLUTION

# %% [markdown]
# <!-- BEGIN SOLUTION -->
# The fine-tune's update is far more concentrated than noise (the lesson found the same for the
# review classifier), but it is not rank 8: a sizeable share lies outside the top 8 directions.
# That is why LoRA usually approaches but does not always equal full fine-tuning, and why the rank
# still matters for tasks far from pretraining.
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
# $B$ (and e.g. a new head) are trained and saved: in the lesson, 1.4 % of the classifier's
# parameters, for the same accuracy as the full fine-tune (100 % vs 99.7 %). For serving, $W_0 + \Delta W$ is computed once (merged): the same shapes and the same
# latency as the base model (measured). Unmerged adapters cost two small extra matmuls per layer but
# let many adapters share one base.
# <!-- END SOLUTION -->
#
# **Q2. How do you choose r, α and the target modules?**
#
# <!-- BEGIN SOLUTION -->
# Target modules first: adapting all linear layers (attention and MLP) beat `q`,`v` only in the
# lesson at the same rank, as the QLoRA paper recommends. Rank: start at 8–16; in the lesson's sweep the loss kept falling with r, but
# the return per parameter fell about 13-fold from r 1→8 to r 8→64; raise r for tasks far from pretraining or with much data. α: a common rule is α = 2r (or α = r), keeping α/r fixed so the
# learning rate carries over; with a fixed α and large r, use rsLoRA (α/√r) or the update is scaled
# down and learns slowly (measured in the lesson at r = 64). LoRA typically wants a larger learning
# rate than full fine-tuning (here 2e-3 vs 5e-4).
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
# served. In the lesson LoRA matched full fine-tuning on the reviews but needed more steps and a
# larger learning rate to leave the plateau the task starts on; Biderman et al. 2024 found LoRA
# "learns less and forgets less" on code and math at scale. LoRA wins when memory, storage per task,
# or many tasks per base matter.
# <!-- END SOLUTION -->
