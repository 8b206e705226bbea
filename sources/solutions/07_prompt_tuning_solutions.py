# %% [markdown]
# # 07 · Prompt tuning, prefix tuning, P-tuning — Solutions
#
# **Measured runtime:** 23 s on a 2-core CPU (`make execute`; your machine may differ).
#
# Exercises for [the lesson](../notebooks/07_prompt_tuning.ipynb). Each exercise says its level: ★ warm-up,
# ★★ core, ★★★ stretch. Write your code where it says so, then run the check cell below it: it
# tells you what is wrong, not only that something is.

# %%
import torch
import course_lib
from course_lib.course.checkers import ch07

device = course_lib.setup(seed=0)


# %% [markdown]
# ## Exercise 1 ★ — count a prefix
#
# Write `prefix_param_count(n_virtual, n_layers, n_heads, n_kv_heads, head_dim)`: the number of
# trainable parameters of prefix tuning without the MLP reparametrisation. (One of the arguments is
# a distractor: which one, and why?)

# %%
def prefix_param_count(
    n_virtual: int, n_layers: int, n_heads: int, n_kv_heads: int, head_dim: int
) -> int:
    ### BEGIN SOLUTION
    return (
        n_virtual * n_layers * 2 * n_kv_heads * head_dim
    )  # keys and values, every layer; n_heads unused
    ### END SOLUTION


# %%
ch07.check_prefix_count(prefix_param_count)


# %% [markdown]
# ## Exercise 2 ★ — initialise a prompt from a text
#
# Write `text_init(embedding, token_ids, n_virtual)`: the rows of the `nn.Embedding` for `token_ids`,
# repeated as a whole until there are `n_virtual` rows, or cut to the first `n_virtual` (what peft's
# `prompt_tuning_init="TEXT"` does). Return a fresh tensor, not tied to the embedding matrix.

# %%
def text_init(embedding: torch.nn.Embedding, token_ids, n_virtual: int) -> torch.Tensor:
    ### BEGIN SOLUTION
    ids = list(token_ids)
    ids = (ids * (n_virtual // len(ids) + 1))[:n_virtual]
    return embedding.weight[ids].detach().clone()
    ### END SOLUTION


# %%
ch07.check_text_init(text_init)


# %% [markdown]
# ## Exercise 3 ★★ — attention with a prefix
#
# The lesson described prefix tuning by the shapes it injects: in every layer, $n$ virtual keys and
# values go in front of the real ones, $K = [P_K; X W_K]$, $V = [P_V; X W_V]$, while the queries
# come from the real tokens only. Write it for one causal attention head:
# `prefix_attention(q, k, v, prefix_k, prefix_v)` with `q`, `k`, `v` of shape `[L, d]` (the real
# tokens' queries, keys and values) and `prefix_k`, `prefix_v` of shape `[n, d]`; return the
# attention output `[L, d]`, $\text{softmax}(QK^\top/\sqrt{d} + \text{mask})\,V$. What may real
# token $i$ attend to?

# %%
def prefix_attention(q, k, v, prefix_k, prefix_v):
    ### BEGIN SOLUTION
    n, length = prefix_k.shape[0], q.shape[0]
    keys, values = torch.cat([prefix_k, k]), torch.cat([prefix_v, v])  # [n + L, d]
    scores = q @ keys.T / q.shape[-1] ** 0.5  # [L, n + L]
    # token i sees the whole prefix and the real tokens 0..i: a causal mask shifted by n
    allowed = torch.ones(length, n + length, dtype=torch.bool).tril(diagonal=n)
    return torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1) @ values
    ### END SOLUTION


# %%
ch07.check_prefix_attention(prefix_attention)


# %% [markdown]
# ## Exercise 4 ★★ — the loss of a prompt-tuned model
#
# A prompt-tuned model returns logits for $n + L$ positions. Write
# `real_token_loss(logits, input_ids, attention_mask, n_virtual)`: `logits` is `[b, n + L, V]`,
# `input_ids` and `attention_mask` are `[b, L]` (right-padded). Return the mean next-token
# cross-entropy over the real tokens, exactly as a plain model is scored (`evaluation.cross_entropy`):
# every real token from the second on is predicted from the position before it, padding is left
# out, and the mean runs over all predicted tokens of the batch. (The first real token is not
# scored, as for a plain model, which has nothing before it; peft's training loss does score it,
# from the last virtual position.)

# %%
def real_token_loss(logits, input_ids, attention_mask, n_virtual: int):
    ### BEGIN SOLUTION
    logits = logits[:, n_virtual:-1]  # drop the virtual positions, and the last (no target)
    targets, keep = input_ids[:, 1:], attention_mask[:, 1:].bool()
    nll = torch.nn.functional.cross_entropy(
        logits.transpose(1, 2).float(), targets, reduction="none"
    )
    return nll[keep].mean()
    ### END SOLUTION


# %%
ch07.check_real_token_loss(real_token_loss)

# %% [markdown]
# ## Exercise 5 ★★★ — how long should the prompt be?
#
# Lester et al. found that, for small models, longer prompts help (up to about 20 tokens on T5; beyond
# that little changes). Measure it on the course model: train text-initialised soft prompts of
# [1, 4, 16, 64] virtual tokens on the lesson's yardstick (`comparison.yardstick()`: clinic notes after
# the vocabulary stage; peft's `PromptTuningConfig`, init text as in the lesson, `torch.manual_seed(0)`
# before building, then `comparison.yardstick_loss(model, ys, lr, seed=0)` at the lesson's chosen rate
# `comparison.YARDSTICK_LR["prompt tuning (text init)"]`). It reports the loss on the 100 reported
# notes, reading only the real tokens' logits. Then answer: does length buy much here, and why (think
# of what a longer prompt can and cannot change)?

# %%
import copy
from peft import PromptTuningConfig, TaskType, get_peft_model
from course_lib import comparison as C
from course_lib.models import BASE_MODEL_DIR

ys = C.yardstick(device)
INIT_TEXT = "Clinic note. Patient presents with symptoms; assessment and plan follow."
LR = C.YARDSTICK_LR["prompt tuning (text init)"]

# %%
### BEGIN SOLUTION
by_length = {}
for n in [1, 4, 16, 64]:
    cfg = PromptTuningConfig(
        task_type=TaskType.CAUSAL_LM,
        num_virtual_tokens=n,
        prompt_tuning_init="TEXT",
        prompt_tuning_init_text=INIT_TEXT,
        tokenizer_name_or_path=str(BASE_MODEL_DIR),
    )
    torch.manual_seed(0)
    model = get_peft_model(copy.deepcopy(ys.base), cfg)
    by_length[n] = C.yardstick_loss(model, ys, LR, seed=0)
    print(
        f"{n:3d} virtual tokens ({n * ys.base.config.hidden_size:,} parameters): "
        f"loss {by_length[n]:.3f}"
    )
start = ys.references["after the vocabulary stage"]
print(f"start (after the vocabulary stage): {start:.3f}")
### END SOLUTION

# %% [markdown]
# <!-- BEGIN SOLUTION -->
# The printed losses answer it (one seed each: read differences of a few hundredths as noise; the
# lesson's three-seed table gives the spread). Length buys little on this model: a longer prompt only
# adds context for the frozen network to read; it cannot change the weights that turn the context
# into predictions, which is what the rest of the notes' structure needs, so every length stays well
# above LoRA and full fine-tuning in the lesson's table. A longer prompt also costs $n$ extra
# positions in every forward pass. Lester et al.'s small T5 models did gain from length; the largest
# did well even with short prompts: a large model has many behaviours for a prompt to select, a small
# one has few. (With one token, the text init is just the embedding of `<|bos|>`.)
# <!-- END SOLUTION -->

# %% [markdown]
# ## Interview questions
#
# **Q1. Compare prompt tuning, prefix tuning and P-tuning.**
#
# <!-- BEGIN SOLUTION -->
# All three train virtual tokens and leave the model frozen; they differ in where the vectors enter.
# **Prompt tuning** (Lester et al. 2021) learns $n$ input embeddings prepended to the tokens ($n \cdot d$
# parameters: 3,840 for 20 tokens on the course model, 0.19 %); the attention mask gets ones and the labels
# $-100$ in front. **P-tuning** (Liu et al. 2021) also acts at the input, but generates the prompt with
# an encoder (bi-LSTM + MLP in the paper, an MLP by default in peft): 69,824 trainable parameters
# here, and only the $n \times d$ output is kept. **Prefix tuning** (Li & Liang 2021) puts a key and
# a value into the attention of every layer, each `[batch, n_kv_heads, n, head_dim]`:
# $n \cdot n_\text{layers} \cdot 2 \cdot$ kv dim = 30,720 parameters here (1.5 %), optionally produced by an
# MLP during training (226,688 parameters, discarded after training). P-tuning v2 is this deep-prompt idea
# applied to NLU. On the lesson's yardstick (clinic notes after a vocabulary stage, 20 steps, three
# seeds, each method at the rate chosen on a tuning split) full fine-tuning leads clearly; the
# lesson's table and verdicts show which gaps among the prompt methods and LoRA exceed the noise.
# <!-- END SOLUTION -->
#
# **Q2. When is prompt tuning the right choice?**
#
# <!-- BEGIN SOLUTION -->
# When the model is large and shared: one frozen model of ≥ 10 B parameters serving many tasks, each
# with a tiny prompt (kilobytes; 3,840 numbers in the lesson) that can even be mixed within one batch,
# because the task lives in the input and not in the weights. When the task is close to something the
# model can already do, so the prompt only has to select behaviour. Lester et al. show that at ~10 B+
# parameters prompt tuning matches model tuning. It is the wrong choice on a small model or a task
# far from pretraining (on the lesson's small model a soft prompt at first *disturbs* a base that
# already works), when you need the best quality per parameter, or when you cannot afford
# the extra sequence length at inference ($n$ more tokens in every forward pass). Then LoRA, or prefix
# tuning / P-tuning v2 if you want to stay with virtual tokens, is the better default. Practical
# costs: learning rates far above the full fine-tune's (chosen on the tuning split in the lesson)
# and sensitivity to initialisation.
# <!-- END SOLUTION -->
#
# **Q3. Why does prompt tuning underperform on small models?**
#
# <!-- BEGIN SOLUTION -->
# A soft prompt can only add context that the frozen network reads through its existing weights;
# it cannot change the computation. A large model has many behaviours already, so choosing the right
# context is enough; a small one has few, so what it needs is new computation, which needs changed
# weights. Lester et al. measured exactly this: on T5 the gap to model tuning is large at small sizes and
# closes at ~11 B parameters. In the lesson (2 M parameters, 20 steps) prompt tuning stayed behind
# full fine-tuning by far more than the seed noise, and a longer prompt (exercise 5) bought little.
# Optimisation adds to it: the gradient reaches the prompt through every frozen layer, the prompt
# needs large learning rates and depends on its initialisation (peft's random init is N(0, 1), far
# outside the vocabulary's scale). Deep prompts (prefix tuning, P-tuning v2) give every layer its own
# virtual keys and values: the papers' answer to the small-model gap.
# <!-- END SOLUTION -->
