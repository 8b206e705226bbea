# %% [markdown]
# # 06 · Adapters — Solutions
#
# **Measured runtime:** 28 s on a 2-core CPU (`make execute`; your machine may differ).
#
# Exercises for [the lesson](../notebooks/06_adapters.ipynb). Each exercise says its level: ★ warm-up,
# ★★ core, ★★★ stretch. Write your code where it says so, then run the check cell below it: it
# tells you what is wrong, not only that something is.

# %%
import torch
import course_lib
from course_lib.course.checkers import ch06

device = course_lib.setup(seed=0)


# %% [markdown]
# ## Exercise 1 ★ — count the adapters
#
# Write `adapter_param_count(d_model, m, n_adapters)`: the number of parameters of `n_adapters`
# bottleneck adapters of width `d_model` and bottleneck `m` (down- and up-projection, with biases).

# %%
def adapter_param_count(d_model: int, m: int, n_adapters: int) -> int:
    ### BEGIN SOLUTION
    return n_adapters * (2 * d_model * m + d_model + m)
    ### END SOLUTION


# %%
ch06.check_param_count(adapter_param_count)


# %% [markdown]
# ## Exercise 2 ★★ — IA3 from scratch
#
# The lesson ran IA3 through peft. Write it yourself: the module `IA3Linear(base, feedforward)`
# freezes the `nn.Linear` `base` and learns one vector, an `nn.Parameter` named `ia3_l`. For an
# attention projection (`k_proj`, `v_proj`: `feedforward=False`) the vector rescales the layer's
# output element by element; for the MLP's `down_proj` (`feedforward=True`) it rescales the
# layer's input, the MLP's inner activations. Choose the vector's length and starting value so that
# a fresh module is exactly the base layer. Then answer: the lesson says IA3 can be merged like
# LoRA. What does merging do to the weight and the bias, for each kind of vector?

# %%
class IA3Linear(torch.nn.Module):
    ### BEGIN SOLUTION
    def __init__(self, base: torch.nn.Linear, feedforward: bool):
        super().__init__()
        self.base, self.feedforward = base.requires_grad_(False), feedforward
        size = base.in_features if feedforward else base.out_features
        self.ia3_l = torch.nn.Parameter(torch.ones(size))  # 1: every channel unchanged

    def forward(self, x):
        if self.feedforward:
            return self.base(x * self.ia3_l)  # rescale the inputs
        return self.base(x) * self.ia3_l  # rescale the outputs, bias included (as peft does)

    ### END SOLUTION


# %%
ch06.check_ia3_module(IA3Linear)


# %% [markdown]
# <!-- BEGIN SOLUTION -->
# Output scaling (keys, values): $l \odot (Wx + b) = (\operatorname{diag}(l)\,W)\,x + l \odot b$,
# so merging multiplies row $i$ of $W$ and bias entry $i$ by $l_i$. Input scaling (`down_proj`):
# $W (l \odot x) + b = (W \operatorname{diag}(l))\,x + b$, so merging multiplies column $j$ of $W$
# by $l_j$ and leaves the bias alone. Either way the result is an ordinary weight of the same
# shape: a merged IA3 model costs what the base model costs, like merged LoRA and unlike an
# adapter, whose nonlinearity between two projections cannot be folded into any matrix.
# <!-- END SOLUTION -->

# %% [markdown]
# ## Exercise 3 ★★ — Houlsby placement
#
# A pre-norm decoder block computes $h = x + \text{attn}(\text{norm}_1(x))$, then
# $y = h + \text{mlp}(\text{norm}_2(h))$. Write `houlsby_block(x, attn, mlp, norm1, norm2, ad_attn, ad_mlp)`
# returning $y$ with Houlsby adapters: `ad_attn` on the attention sublayer, `ad_mlp` on the MLP
# sublayer (all arguments except `x` are functions from a tensor to a tensor; each adapter already
# includes its own residual).

# %%
def houlsby_block(x, attn, mlp, norm1, norm2, ad_attn, ad_mlp):
    ### BEGIN SOLUTION
    h = x + ad_attn(attn(norm1(x)))  # adapter on the sublayer's output, before the residual add
    return h + ad_mlp(mlp(norm2(h)))
    ### END SOLUTION


# %%
ch06.check_houlsby_block(houlsby_block)


# %% [markdown]
# ## Exercise 4 ★★ — a parallel adapter
#
# Write `parallel_mlp(h, mlp, norm, down, up)`: the MLP half of a pre-norm block,
# $h + \text{mlp}(\text{norm}(h))$, with a parallel adapter whose branch
# $\text{up}(\text{relu}(\text{down}(\cdot)))$ runs beside the MLP. What must the branch read?

# %%
def parallel_mlp(h, mlp, norm, down, up):
    ### BEGIN SOLUTION
    u = norm(h)  # the branch reads what the MLP reads
    return h + mlp(u) + up(torch.relu(down(u)))
    ### END SOLUTION


# %%
ch06.check_parallel(parallel_mlp)

# %% [markdown]
# ## Exercise 5 ★★★ — how wide should the bottleneck be?
#
# The lesson trained a Pfeiffer adapter with $m = 16$ (25,408 parameters) on the yardstick (clinic
# notes after the vocabulary stage, `comparison.yardstick()`) at the adapters' chosen rate. Train
# Pfeiffer adapters with $m = 4$ and $m = 64$ the same way (`torch.manual_seed(seed)`, then
# `course_lib.adapters.add_adapter` on a copy of `ys.base`, then
# `comparison.yardstick_loss(model, ys, lr, seed=seed)` with
# `lr = comparison.YARDSTICK_LR["Houlsby m=8"]`), for seeds 0 and 1, and compare with the lesson's
# shipped $m = 16$ row (`sweeps.summary(sweeps.load("peft_adapters"), "Pfeiffer m=16", "eval_loss")`)
# and LoRA on all linear layers (116,736 parameters, `peft_lora`, arm "LoRA all r=8").

# %%
import copy
from course_lib import comparison as C, sweeps
from course_lib.adapters import add_adapter, adapter_params

ys = C.yardstick(device)
lr = C.YARDSTICK_LR["Houlsby m=8"]

### BEGIN SOLUTION
for m in [4, 64]:
    losses = []
    for seed in [0, 1]:
        torch.manual_seed(seed)
        model = add_adapter(copy.deepcopy(ys.base), "clinic", "pfeiffer", bottleneck=m)
        losses.append(C.yardstick_loss(model, ys, lr, seed=seed))
    print(
        f"Pfeiffer m={m:2d}: {adapter_params(model, 'clinic'):>6,} parameters, loss",
        [f"{x:.3f}" for x in losses],
    )
m16 = sweeps.summary(sweeps.load("peft_adapters"), "Pfeiffer m=16", "eval_loss")
all8 = sweeps.summary(sweeps.load("peft_lora"), "LoRA all r=8", "eval_loss")
print(f"Pfeiffer m=16 (shipped, 3 seeds): {m16.fmt()}; LoRA all r=8 (shipped): {all8.fmt()}")
### END SOLUTION

# %% [markdown]
# <!-- BEGIN SOLUTION -->
# Read the printed numbers against the shipped spreads: two seeds per width give a rough spread too.
# The width matters far less than the parameter count suggests: 16× more parameters from $m = 4$ to
# $m = 64$ moves the loss by little compared with the gap to full fine-tuning, and the rate was chosen
# for the Houlsby adapter (a wider adapter takes larger steps in output space and may want a smaller
# one), so sweep the width together with the learning rate. Houlsby et al. treated the size as a
# hyperparameter chosen per task (from 8, 64 and 256); on a harder task or with longer training a
# wider adapter can pay off.
# <!-- END SOLUTION -->

# %% [markdown]
# ## Interview questions
#
# **Q1. What is an adapter, and how does it differ from LoRA?**
#
# <!-- BEGIN SOLUTION -->
# An adapter is a small bottleneck network inserted into each block of a frozen model:
# $h + W_\text{up} f(W_\text{down} h + b_\text{down}) + b_\text{up}$ with a bottleneck $m \ll d$, on the
# output of the attention and MLP sublayers (Houlsby), of the MLP only (Pfeiffer) or beside the MLP
# (parallel). The up-projection starts at zero, so training starts at the base model. It costs
# $2dm + d + m$ parameters per adapter. LoRA instead adds a low-rank *linear* update
# $\frac{\alpha}{r}BA$ beside existing weight matrices. Both train ~1 % of the weights; in the lesson,
# at about 25 k trainable parameters (1.2–1.3 %), Houlsby (m = 8), Pfeiffer and parallel (m = 16)
# adapters and LoRA on `q`,`v` (r = 8) land close together on the yardstick (three seeds each; the
# lesson prints which gaps exceed the noise). The practical difference is at inference: LoRA
# merges, adapters cannot.
# <!-- END SOLUTION -->
#
# **Q2. Why do adapters add inference latency, and LoRA does not?**
#
# <!-- BEGIN SOLUTION -->
# An adapter puts extra layers *in series* with the model: a down-projection, a nonlinearity,
# an up-projection and an addition after each adapted sublayer. Because of the nonlinearity between
# the two projections, and because it acts on the sublayer's output, there is no weight matrix the
# adapter can be folded into, so every forward pass runs those extra kernels, each waiting for the one
# before. LoRA's update is linear and reads the same input as $W_0$, so
# $W_0 x + \frac{\alpha}{r}BAx = (W_0 + \frac{\alpha}{r}BA)x$: after merging the model has exactly the
# base model's shapes and cost. In one run of the lesson at batch size 1 (8 tokens): base 2.52 ms, merged LoRA 2.56 ms (+2 %),
# Houlsby 2.97 ms (+18 %), Pfeiffer 2.74 ms (+9 %), unmerged LoRA on all 28 linear layers 3.37 ms (+34 %);
# such timings move by a few percent from run to run (Houlsby: +13 to +19 % over seven runs). The overhead matters most for small batches (online serving, one
# user); in larger batches the base model's matrix products dominate and the adapters' share shrinks. The LoRA paper measured +20–30 % for adapters
# at batch size 1 on GPT-2 medium.
# <!-- END SOLUTION -->
#
# **Q3. When would you pick adapters, LoRA, IA3 or full fine-tuning?**
#
# <!-- BEGIN SOLUTION -->
# * **LoRA** (the default today): same quality as adapters at the same budget in the lesson, merges
#   for zero-latency serving, and also keeps many adapters on one base when unmerged.
# * **Adapters**: when you want modular, composable task modules (AdapterHub, AdapterFusion, stacking
#   language and task adapters) and latency at small batch sizes is not critical; the parallel form
#   fits the model's compute better.
# * **IA3**: the smallest footprint (3,584 parameters in the lesson, 7× fewer than the 25 k methods,
#   in the same range of loss on the yardstick), many tasks or users per base, few-shot data; it
#   merges too. It needs a learning rate about 30× LoRA's (chosen on the tuning split).
# * **Full fine-tuning**: when the task is far from pretraining, data is plentiful, memory allows, and
#   one model is served: in the lesson it was clearly ahead of every parameter-efficient method after
#   20 steps. And check the vocabulary first: on the raw clinic notes every method here stalled
#   whatever its size, because none trains the embeddings (chapter 04).
# <!-- END SOLUTION -->
