# %% [markdown]
# # 07 · Prompt tuning, prefix tuning, P-tuning
#
# **Measured runtime:** 34 s on a 2-core CPU (`make execute`; your machine may differ).
#
# LoRA (chapter 04) changes weights. The methods of this chapter change none: they learn a few
# **virtual tokens**, vectors that the frozen model reads as if they were part of its input
# (prompt tuning, P-tuning) or part of every layer's attention memory (prefix tuning). They are the
# smallest adapters there are, and on a small model they are also the weakest, which this chapter
# measures instead of hiding.
#
# **You will learn to**
# 1. build a soft prompt from scratch (prepend embeddings, extend the attention mask and the labels) and show it equals peft's `PromptTuningConfig`, logits and loss;
# 2. initialise a soft prompt randomly or from the embeddings of a text, and see why the scale matters;
# 3. explain prefix tuning by the shapes of what it injects, count its parameters, and know what the MLP reparametrisation adds and drops;
# 4. run prompt tuning, prefix tuning and P-tuning through peft on one task and compare them with LoRA and full fine-tuning, parameters against score;
# 5. say when a soft prompt is the right tool, and why it is not on a 2 M-parameter model.
#
# **Prerequisites:** chapters 03 (the training loop, `count_parameters`) and 04 (LoRA, the clinic task).

# %%
import copy
import time
import warnings
import torch
from torch import nn
import course_lib
from course_lib.models import load_model
from course_lib.evaluation import cross_entropy
from course_lib.formats import IGNORE_INDEX
from course_lib.lora import inject_lora
from course_lib.measure import count_parameters, trainable_share
from course_lib.models import BASE_MODEL_DIR
from course_lib.prompt_tuning import (
    check_prepend_args,
    check_soft_prompt_args,
    text_init,
    copy_prompt_from_peft,
    prefix_param_count,
    prefix_projection_param_count,
)
from course_lib import comparison as C, sweeps
from course_lib.uncertainty import differs, spread, verdict

device = course_lib.setup(seed=0)
base, tok = load_model("causal", device=device)
for noisy in [
    "past_key_values",
    "is_gradient_checkpointing",
    "Position ids",
]:  # library deprecation chatter
    warnings.filterwarnings("ignore", message=f".*{noisy}.*")

# %% [markdown]
# The shapes that matter in this chapter come from the model's config:

# %%
cfg = base.config
n_layers, n_heads, n_kv, head_dim, hidden = (
    cfg.num_hidden_layers,
    cfg.num_attention_heads,
    cfg.num_key_value_heads,
    cfg.head_dim,
    cfg.hidden_size,
)
print(
    f"{n_layers} layers, {n_heads} query heads, {n_kv} key/value heads of size {head_dim}, hidden "
    f"size {hidden}, "
    f"{count_parameters(base):,} parameters"
)

# %% [markdown]
# ## 1 · A soft prompt is a matrix in front of the input
#
# A prompt in words ("Summarise this clinic note:") steers a model through the embeddings of its
# tokens. **Prompt tuning** (Lester et al. 2021, *The Power of Scale for Parameter-Efficient Prompt
# Tuning*) skips the words: it learns the vectors directly. With token embeddings
# $E(x) \in \mathbb{R}^{L \times d}$ and a trainable **soft prompt** $P \in \mathbb{R}^{n \times d}$
# ($n$ virtual tokens), the frozen model reads
#
# $$\tilde X = [\,P\,;\,E(x)\,] \in \mathbb{R}^{(n + L) \times d}.$$
#
# Two more things must grow with the sequence, or the model and the loss see the wrong thing:
#
# * the **attention mask** gets $n$ ones in front: every real token may attend to the prompt;
# * the **labels** get $n$ values $-100$ in front: a virtual token has nothing to predict, and
#   $-100$ is the index PyTorch's cross-entropy ignores.
#
# The prompt goes **in front**: in a causal model a token only sees what comes before it, so a
# prompt placed after the text could not influence the text at all. Only $n \cdot d$ numbers are
# trained; the model is not touched.
#
# In code: the cell below starts with `#| export course_lib.prompt_tuning`; it and the
# `SoftPromptLM` cell after it are copied verbatim into `course_lib/prompt_tuning.py` (`make lib`;
# a test fails if they differ), which the tests and later chapters import. `check_prepend_args` and
# `check_soft_prompt_args`, imported above, only turn bad shapes into clear errors.

# %%
#| export course_lib.prompt_tuning
def prepend_soft_prompt(
    prompt: torch.Tensor,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
):
    """Put prompt [n, d] before inputs_embeds [b, L, d]; mask gets n ones, labels n -100s in front."""
    check_prepend_args(prompt, inputs_embeds, attention_mask, labels)
    batch, n = inputs_embeds.shape[0], prompt.shape[0]
    prompts = prompt.to(inputs_embeds.dtype).unsqueeze(0).expand(batch, -1, -1)  # [b, n, d]
    embeds = torch.cat([prompts, inputs_embeds], dim=1)  # the prompt in FRONT: [b, n + L, d]
    if attention_mask is not None:  # every real token may attend to the prompt
        attention_mask = torch.cat([attention_mask.new_ones(batch, n), attention_mask], dim=1)
    if labels is not None:  # a virtual token has nothing to predict
        labels = torch.cat([labels.new_full((batch, n), IGNORE_INDEX), labels], dim=1)
    return embeds, attention_mask, labels


# %% [markdown]
# Three virtual tokens in front of a batch of two notes, the second one padded:

# %%
prompt = torch.randn(3, hidden)
enc = tok(["Pt 35M. Cough.", "Pt 60F."], return_tensors="pt", padding=True)
labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
embeds = base.get_input_embeddings()(enc["input_ids"].to(device))
e, m, y = prepend_soft_prompt(
    prompt.to(device), embeds, enc["attention_mask"].to(device), labels.to(device)
)
print("embeddings", tuple(embeds.shape), "->", tuple(e.shape))
print("mask  ", m[1].tolist())
print("labels", y[1].tolist())
assert (
    e.shape[1] == embeds.shape[1] + 3
    and bool((y[:, :3] == -100).all())
    and bool((m[:, :3] == 1).all())
)

# %% [markdown]
# A module wraps a model with this: it freezes the model, keeps $P$ as its only `nn.Parameter`
# (peft's random default $\mathcal{N}(0, 1)$, or the rows `init` it is given), and in `forward`
# embeds the tokens, calls `prepend_soft_prompt` and runs the model on `inputs_embeds`:

# %%
#| export course_lib.prompt_tuning
class SoftPromptLM(nn.Module):
    """A frozen causal LM with n_virtual trainable embeddings prepended to every input."""

    def __init__(self, model: nn.Module, n_virtual: int, init: torch.Tensor | None = None, std=1.0):
        super().__init__()
        hidden = check_soft_prompt_args(model, n_virtual, init)  # the embedding size
        if init is None:  # peft's RANDOM init, N(0, 1)
            init = torch.randn(n_virtual, hidden) * std
        self.model, self.n_virtual = model.requires_grad_(False), n_virtual
        device = model.get_input_embeddings().weight.device
        self.prompt = nn.Parameter(init.detach().clone().float().to(device))

    def forward(self, input_ids, attention_mask=None, labels=None, **kwargs):
        """The model's output on [P; E(x)]: logits with n_virtual extra positions in front."""
        embeds = self.model.get_input_embeddings()(input_ids)
        embeds, attention_mask, labels = prepend_soft_prompt(
            self.prompt, embeds, attention_mask, labels
        )
        return self.model(
            inputs_embeds=embeds, attention_mask=attention_mask, labels=labels, **kwargs
        )


# %% [markdown]
# Wrap a copy of the base model with 20 virtual tokens. Note the logits: they cover the $n$ virtual
# positions too.

# %%
soft = SoftPromptLM(copy.deepcopy(base), n_virtual=20)
ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
out = soft(input_ids=ids, attention_mask=mask, labels=labels.to(device))
n_soft, n_all = trainable_share(soft)
print(
    f"trainable: {n_soft:,} of {n_all:,} ({n_soft / n_all:.3%}); logits {tuple(out.logits.shape)} for "
    f"{ids.shape[1]} real tokens; loss {out.loss.item():.3f}"
)
assert n_soft == 20 * hidden and out.logits.shape[1] == ids.shape[1] + 20

# %% [markdown]
# ## 2 · The same with peft, number for number
#
# peft's `PromptTuningConfig` does exactly this in `PeftModelForCausalLM.forward`: it concatenates
# ones to the mask and $-100$s to the labels, then the prompt to `inputs_embeds`. With
# `prompt_tuning_init="RANDOM"` (the default) the prompt is an `nn.Embedding(n, d)` with PyTorch's
# default initialisation, $\mathcal{N}(0, 1)$. Give our module the same prompt and compare:

# %%
from peft import (
    PromptTuningConfig,
    PrefixTuningConfig,
    PromptEncoderConfig,
    TaskType,
    get_peft_model,
)

torch.manual_seed(0)
peft_prompt = get_peft_model(
    copy.deepcopy(base), PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=20)
)
copy_prompt_from_peft(soft, peft_prompt)
with torch.no_grad():
    ours = soft(input_ids=ids, attention_mask=mask, labels=labels.to(device))
    theirs = peft_prompt(input_ids=ids, attention_mask=mask, labels=labels.to(device))
diff = (ours.logits[:, 20:] - theirs.logits[:, 20:]).abs().max().item()
print(
    f"max |logit difference| on the real tokens {diff:.1e}; loss ours {ours.loss:.5f}, peft {theirs.loss:.5f}"
)
assert torch.allclose(ours.logits[:, 20:], theirs.logits[:, 20:], atol=1e-5) and torch.allclose(
    ours.loss, theirs.loss, atol=1e-6
)

# %% [markdown]
# **Initialisation from a text.** Lester et al. compare random initialisation, embeddings of
# sampled vocabulary, and embeddings of words related to the task; at small model sizes the informed
# initialisations win clearly, and the gap vanishes at 11 B parameters. peft's `TEXT` init tokenizes
# `prompt_tuning_init_text` and repeats (or cuts) its token embeddings to $n$ rows; `text_init` does the same:

# %%
INIT_TEXT = "Clinic note. Patient presents with symptoms; assessment and plan follow."
text_cfg = PromptTuningConfig(
    task_type=TaskType.CAUSAL_LM,
    num_virtual_tokens=20,
    prompt_tuning_init="TEXT",
    prompt_tuning_init_text=INIT_TEXT,
    tokenizer_name_or_path=str(BASE_MODEL_DIR),
)
peft_text = get_peft_model(copy.deepcopy(base), text_cfg)
ours_text = text_init(base.get_input_embeddings(), tok(INIT_TEXT)["input_ids"], 20)
assert torch.equal(peft_text.prompt_encoder["default"].embedding.weight, ours_text), (
    "same rows as peft"
)
norm = lambda w: w.norm(dim=-1).mean().item()
print(
    f"mean vector norm: vocabulary {norm(base.get_input_embeddings().weight):.2f}, text init "
    f"{norm(ours_text):.2f}, "
    f"random init {norm(peft_prompt.prompt_encoder['default'].embedding.weight):.2f}"
)

# %% [markdown]
# The scale is the point: a random $\mathcal{N}(0, 1)$ vector in $d = 192$ dimensions has norm about
# $\sqrt{192} \approx 14$, far larger than any real token embedding. The frozen model has never seen
# such inputs, and the optimiser first has to shrink them. A text initialisation starts inside the
# distribution the model knows.
#
# ## 3 · Scoring a prompt-tuned model
#
# `evaluation.cross_entropy` shifts the logits against the token ids. With a soft prompt the logits
# have $n$ extra positions in front, so they no longer line up with the ids: the positions must be
# cut away first. That is why it reads only the last $L$ logits of a text of $L$ tokens, which is
# right for every model here (for a plain or a prefix-tuned model nothing is cut):

# %%
ys = C.yardstick(device)  # chapter 04 §8: clinic notes after the vocabulary stage
ce_base = cross_entropy(ys.base, tok, ys.eval)
print(f"yardstick base on clinic_val[:100]: {ce_base:.3f} nats/token")
for k, v in ys.references.items():
    print(f"{k:>33}: {v:6.3f}")


# %% [markdown]
# ## 4 · One task for every method
#
# The common task is the PEFT yardstick of chapter 04 (§8): clinic notes after a vocabulary stage
# (the embeddings trained alone first, because on the raw notes the base model is worse than a
# uniform guess and only the embedding matrix can fix that), then 20 steps of 16 notes from
# there, scored on `clinic_val[:100]`. Every method gets the same data and steps and **its own
# learning rate**, chosen on the tuning split `clinic_val[100:200]` by the shipped sweep
# `peft_methods` (three rates, three seeds each; `peft_methods_edges` adds one rate beyond the grid
# where the best of the three sat on its edge). Virtual tokens need large rates: a few vectors
# have to move a long way, and their gradient arrives through the whole frozen network.

# %%
rec = C.lr_records("yardstick")  # the two sweeps' arms, pooled
methods = [
    "full fine-tuning",
    "LoRA q,v r=8",
    "prompt tuning (text init)",
    "prefix tuning",
    "P-tuning",
]
for method in methods:
    assert C.chosen_lr(rec, method) == C.YARDSTICK_LR[method], "the sweep's choice"
    print(f"{method:>25}  {C.lr_line(rec, method)}")


# %% [markdown]
# Each method below runs **one seed live** (seed 0) at its chosen rate; section 7 sets it among the
# three shipped seeds. The random-init prompt runs at the text-init prompt's rate (one factor
# changed: the initialisation) and prefix + MLP at P-tuning's (both reparametrised by an MLP);
# these two are not in the shipped sweep, so they get one seed and no claims.

# %%
LR = dict(C.YARDSTICK_LR)
LR["prompt tuning (random init)"] = LR["prompt tuning (text init)"]
LR["prefix tuning + MLP"] = LR["P-tuning"]
results = {}  # method -> (trainable parameters, live loss, seconds)


def record(name, model, lr):
    model_seconds = time.perf_counter()
    ce = C.yardstick_loss(model, ys, lr, seed=0)
    secs = time.perf_counter() - model_seconds
    results[name] = (count_parameters(model, trainable_only=True), ce, secs)
    print(f"{name:>27}: clinic loss {ce:.3f}, {results[name][0]:>9,} trainable, {secs:.1f} s")


# %% [markdown]
# The two ends of the scale from chapter 04: full fine-tuning and LoRA ($r = 8$, $\alpha = 16$ on
# `q_proj` and `v_proj`). Chapter 04 trains both live; to keep this lesson within its time budget
# we build them here only to count their parameters and take their loss from the shipped sweep
# (seed 0, the seed a live run here would use):

# %%
torch.manual_seed(0)
lora = inject_lora(copy.deepcopy(ys.base), ["q_proj", "v_proj"], r=8, alpha=16)
for name, built in [("full fine-tuning", copy.deepcopy(ys.base).requires_grad_(True)),
                    ("LoRA q,v r=8", lora)]:
    seed0 = sweeps.values(*C.at_chosen_lr(rec, name), "eval_loss")[0]
    results[name] = (count_parameters(built, trainable_only=True), seed0, 0.0)
    print(f"{name:>27}: clinic loss {seed0:.3f} (shipped seed 0), {results[name][0]:>9,} trainable")

# %% [markdown]
# Now prompt tuning with 20 virtual tokens, text and random initialisation, at the same rate:

# %%
torch.manual_seed(0)
record(
    "prompt tuning (text init)",
    get_peft_model(copy.deepcopy(ys.base), text_cfg),
    LR["prompt tuning (text init)"],
)
random_cfg = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=20)
torch.manual_seed(0)
record(
    "prompt tuning (random init)",
    get_peft_model(copy.deepcopy(ys.base), random_cfg),
    LR["prompt tuning (random init)"],
)

# %% [markdown]
# Both prompts train 3,840 numbers. At the *same* rate, the two differ only in where they start: a
# random $\mathcal{N}(0, 1)$ vector has a norm far outside the vocabulary's (section 2), which the
# optimiser first has to undo. One live seed each, so no ranking is claimed here; section 7 shows
# the shipped spread of the text-initialised prompt.
#
# ## 5 · Prefix tuning: virtual keys and values in every layer
#
# A soft prompt acts only at the input; by the upper layers its influence has passed through every
# frozen block. **Prefix tuning** (Li & Liang 2021, *Prefix-Tuning: Optimizing Continuous Prompts for
# Generation*) gives every layer its own virtual tokens, and not as inputs but directly as attention
# **keys and values**. In layer $\ell$, each head attends over
#
# $$K^{(\ell)} = [\,P_K^{(\ell)} ; X W_K^{(\ell)}\,], \qquad V^{(\ell)} = [\,P_V^{(\ell)} ; X W_V^{(\ell)}\,],$$
#
# while the queries come from the real tokens only. This is exactly the shape of a **KV cache**: a
# prefix is a cache of $n$ "past tokens" that never existed. Per layer, the key and the value each
# have shape `[batch, n_kv_heads, n_virtual, head_dim]`; with grouped-query attention the cache has
# `n_kv_heads`, not `n_heads`, heads (peft sets this up from `num_key_value_heads`). Without
# reparametrisation the trainable parameters are
#
# $$n_\text{virtual} \times n_\text{layers} \times 2 \times \underbrace{n_\text{kv heads} \cdot d_\text{head}}_{\text{kv dim}}.$$
#
# peft stores them as one `nn.Embedding(n_virtual, n_layers·2·kv_dim)` and, in `get_prompt`, reshapes
# it into a transformers `DynamicCache`, passed as `past_key_values`:

# %%
torch.manual_seed(0)
prefix = get_peft_model(
    copy.deepcopy(ys.base), PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=20)
)
cache = prefix.get_prompt(batch_size=2)
print(
    type(cache).__name__,
    "with",
    len(cache.layers),
    "layers; layer 0: keys",
    tuple(cache.layers[0].keys.shape),
    "values",
    tuple(cache.layers[0].values.shape),
)
n_prefix = prefix_param_count(20, n_layers, n_kv, head_dim)
print(f"prefix parameters: 20 × {n_layers} × 2 × {n_kv * head_dim} = {n_prefix:,}")
assert tuple(cache.layers[0].keys.shape) == (2, n_kv, 20, head_dim)
assert n_prefix == sum(p.numel() for p in prefix.parameters() if p.requires_grad)

# %% [markdown]
# The course model has as many key/value heads as query heads (4 and 4), so these shapes cannot
# tell `n_kv_heads` from `n_heads`. A 2-layer model with grouped-query attention, 4 query heads
# sharing 2 key/value heads, can:

# %%
from transformers import LlamaConfig, LlamaForCausalLM

gqa_cfg = LlamaConfig(
    vocab_size=len(tok),
    hidden_size=hidden,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=head_dim,
)
gqa = get_peft_model(
    LlamaForCausalLM(gqa_cfg),
    PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=20),
)
gqa_keys = tuple(gqa.get_prompt(batch_size=2).layers[0].keys.shape)
n_gqa = sum(p.numel() for p in gqa.parameters() if p.requires_grad)
print(f"GQA, 4 query / 2 kv heads: prefix keys {gqa_keys}, {n_gqa:,} parameters")
assert gqa_keys == (2, 2, 20, head_dim), "the cache has n_kv_heads = 2 heads, not n_heads = 4"
assert (
    n_gqa == prefix_param_count(20, 2, 2, head_dim) == prefix_param_count(20, 2, 4, head_dim) // 2
)

# %% [markdown]
# Two details of how this meets a Llama model. The prefix keys are injected **after** the rotary
# position embedding (the cache holds rotated keys), so they carry no position; they are free
# vectors. And the real tokens are numbered from $n$ on, because the model believes $n$ tokens came
# before them. The attention mask gets $n$ ones in front, as for a soft prompt, but the logits and
# labels do not grow: the virtual tokens are not in the sequence, only in the memory.
#
# **The MLP reparametrisation.** Li & Liang found that optimising the prefix directly was unstable and
# slightly worse, so they trained a smaller matrix and an MLP that maps it to the prefix:
# $P = \text{MLP}(P')$. peft's `prefix_projection=True` uses an `nn.Embedding(n, kv_dim)` followed by
# `Linear(kv_dim, h) → tanh → Linear(h, n_layers·2·kv_dim)`. That costs far more parameters during
# training, but it is **discarded afterwards**: only its output, the prefix itself, is needed.

# %%
torch.manual_seed(0)
prefix_mlp = get_peft_model(
    copy.deepcopy(ys.base),
    PrefixTuningConfig(
        task_type=TaskType.CAUSAL_LM,
        num_virtual_tokens=20,
        prefix_projection=True,
        encoder_hidden_size=128,
    ),
)
n_mlp = sum(p.numel() for p in prefix_mlp.parameters() if p.requires_grad)
assert n_mlp == prefix_projection_param_count(20, n_layers, n_kv * head_dim, 128)
from peft import get_peft_model_state_dict

saved = get_peft_model_state_dict(prefix_mlp)
print(
    f"trained with the MLP: {n_mlp:,} parameters; saved: "
    f"{dict((k, tuple(v.shape)) for k, v in saved.items())}"
)
assert sum(v.numel() for v in saved.values()) == n_prefix, "what is saved is the prefix alone"

# %% [markdown]
# Train the prefix on the clinic notes (prefix + MLP, one more 20-step run, is left for you to
# try: `record("prefix tuning + MLP", prefix_mlp, LR["prefix tuning + MLP"])`):

# %%
record("prefix tuning", prefix, LR["prefix tuning"])

# %% [markdown]
# **What works with transformers 5 (5.24) and peft 0.21.2.** Training and scoring go through the
# forward pass, and there prefix tuning works: peft passes its `DynamicCache` as `past_key_values`
# and the model uses it (a `FutureWarning` says that argument is being renamed to `cache`). Text
# generation is another matter: `generate()` creates its own cache and passes it as `cache`, the
# model prefers that one, and **peft's prefix is silently dropped**. Check it: compare peft's
# `generate` with the base model's, and with a greedy loop that calls the forward pass (no cache):

# %%
x = tok(["Pt 35M. PC:"], return_tensors="pt").to(device)
kw = dict(max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
with torch.no_grad():
    by_generate, by_base = prefix.generate(**x, **kw)[0, -12:], ys.base.generate(**x, **kw)[0, -12:]
    seq = x["input_ids"]
    for _ in range(12):
        seq = torch.cat(
            [
                seq,
                prefix(input_ids=seq, attention_mask=torch.ones_like(seq))
                .logits[:, -1:]
                .argmax(-1),
            ],
            1,
        )
for name, t in [
    ("base generate", by_base),
    ("prefix generate", by_generate),
    ("prefix, forward loop", seq[0, -12:]),
]:
    print(f"{name:>21}: {ascii(tok.decode(t))}")
with torch.no_grad():
    moved = (prefix(**x).logits - ys.base(**x).logits).abs().max().item()
print(f"the trained prefix moves the forward pass's logits by up to {moved:.2f}")

# %% [markdown]
# peft's `generate` returns exactly the base model's continuation, token for token, although the
# trained prefix clearly changes the forward pass's logits (the greedy loop, which uses them, may or
# may not pick different tokens: the yardstick's base already writes plausible notes). The claim,
# checked (if this assert fails, your library versions have fixed the problem):

# %%
assert torch.equal(by_generate, by_base), "peft's generate ignored the prefix here"
assert moved > 0.05, "the forward pass does use the trained prefix"

# %% [markdown]
# So with these versions, evaluate and decode prefix-tuned models through the forward pass (as the
# loss above does), or pass the prefix cache yourself. Prompt tuning and P-tuning are not affected:
# their virtual tokens travel in `inputs_embeds`.
#
# ## 6 · P-tuning: a prompt encoder
#
# **P-tuning** (Liu et al. 2021, *GPT Understands, Too*) also learns input-level virtual tokens, but
# produces them with a small network, a **prompt encoder**: trainable embeddings $h_1..h_n$ go through
# a bidirectional LSTM and an MLP in the paper, so that the virtual tokens depend on each other and
# are easier to optimise than independent vectors. peft's `PromptEncoderConfig` offers the MLP
# (default: three linear layers with ReLU) or the LSTM. Like prefix tuning's MLP, the encoder is only
# needed during training: peft saves its output, the $n \times d$ prompt.

# %%
torch.manual_seed(0)
ptuning = get_peft_model(
    copy.deepcopy(ys.base),
    PromptEncoderConfig(
        task_type=TaskType.CAUSAL_LM, num_virtual_tokens=20, encoder_hidden_size=128
    ),
)
record("P-tuning", ptuning, LR["P-tuning"])
assert tuple(get_peft_model_state_dict(ptuning)["prompt_embeddings"].shape) == (20, hidden)

# %% [markdown]
# **P-tuning v2** (Liu et al. 2022, *P-Tuning v2: Prompt Tuning Can Be Comparable to Fine-tuning
# Universally Across Scales and Tasks*) is, in its own words, deep prompt tuning: trainable prompts
# in **every** layer, i.e. prefix tuning, applied to understanding tasks (classification, sequence
# labelling) with a classification head instead of a verbaliser, and with the reparametrisation made
# optional. In peft there is no separate config: you run it with `PrefixTuningConfig` (with
# `task_type=TaskType.SEQ_CLS` for a classifier). Our "prefix tuning" run above *is* deep prompt
# tuning on a language-modelling task. Its reported result is the reason it exists: deep prompts
# close much of the gap that input-only prompts leave on models below 10 B parameters.
#
# ## 7 · Trainable parameters against score
#
# All methods, same task, same 20 steps, each at its own learning rate: the shipped three seeds
# (mean ± sd) and this notebook's live seed. The random-init prompt ran here only, one seed: shown,
# not compared.

# %%
shipped = {m: C.at_chosen_lr(rec, m) for m in methods}  # method -> (record, arm)
losses = {m: sweeps.values(r, a, "eval_loss") for m, (r, a) in shipped.items()}
n_base = count_parameters(base)
print(f"{'method':>32} {'trainable':>10} {'of base':>8} {'loss, 3 seeds':>14} {'live':>7}")
for m, (n, live_ce, _) in sorted(results.items(), key=lambda kv: kv[1][0]):
    three = spread(losses[m]).fmt() if m in losses else "(one seed)"
    print(f"{m:>32} {n:>10,} {n / n_base:>8.2%} {three:>14} {live_ce:>7.3f}")
for k, v in ys.references.items():
    print(f"{k:>32} {'':>10} {'':>8} {v:>14.3f}")
outside = [m for m in losses if "OUTSIDE" in sweeps.place(results[m][1], *shipped[m], "eval_loss")]
print("live seeds outside the shipped spread:", outside or "none")

# %% [markdown]
# The same as a plot, parameters on a log scale, error bars ± one sd over the seeds (hollow: one
# live seed only, no spread, so no claim is made about it):

# %%
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(6.8, 3.6))
for i, (name, (n, live_ce, _)) in enumerate(results.items()):
    if name in losses:  # three shipped seeds: mean ± sd
        s_ = spread(losses[name])
        ax.errorbar(n, s_.mean, yerr=s_.sd, fmt="o", color=f"C{i}", capsize=3)
        y = s_.mean
    else:  # one live seed only
        ax.scatter(n, live_ce, facecolors="none", edgecolors=f"C{i}")
        y = live_ce
    ax.annotate(name, (n, y), fontsize=7, xytext=(4, 3), textcoords="offset points")
start = ys.references["after the vocabulary stage"]
ax.axhline(start, ls="--", color="grey")
ax.text(3e3, start * 1.02, "start (after the vocabulary stage)", fontsize=7, color="grey")
ax.set_xscale("log")
ax.set_xlabel("trainable parameters (log)")
ax.set_ylabel("clinic loss (nats/token)")
ax.set_title("Yardstick, 20 steps, 3 seeds: parameters vs loss")
plt.tight_layout()

# %% [markdown]
# Which differences are larger than the noise of three seeds (95 % Welch interval of the
# difference of the means)? The orderings this chapter claims are asserted only where the verdict
# says so; they are checks of the shipped numbers that the prose below relies on:

# %%
pairs = [
    ("prefix tuning", "prompt tuning (text init)"),
    ("LoRA q,v r=8", "prompt tuning (text init)"),
    ("LoRA q,v r=8", "prefix tuning"),
    ("P-tuning", "prompt tuning (text init)"),
    ("full fine-tuning", "LoRA q,v r=8"),
]
for a, b in pairs:
    print(verdict(losses[a], losses[b], (a, b)))
assert min(results, key=lambda m: results[m][0]).startswith("prompt tuning"), "fewest parameters"
assert differs(losses["full fine-tuning"], losses["LoRA q,v r=8"])
assert max(losses["full fine-tuning"]) < min(losses["LoRA q,v r=8"]), "full fine-tuning leads"

# %% [markdown]
# What the table says, on this 2 M-parameter model and this task (a base that already writes the
# notes' vocabulary well, 20 steps):
#
# * **Full fine-tuning** leads clearly: 20 steps that move two million weights beat 20 steps that
#   move a few thousand.
# * Among the parameter-efficient methods, read the verdicts above: only differences whose 95 %
#   interval excludes zero are findings; the rest are within the noise of three seeds. Note where
#   each method ends relative to the **start** (the base after the vocabulary stage): a soft prompt
#   begins by *disturbing* a model that already works, and has to earn back that disturbance.
# * That is why the comparison runs after the vocabulary stage: on the raw clinic notes no virtual
#   token can lift the output rows of the 138 tokens the model never saw (chapter 04 §7), and a
#   comparison there measures the vocabulary, not the method.
#
# **Why the gap, and why the papers see less of it.** A soft prompt can only add context; it cannot
# change what the frozen network computes from context. Lester et al. found that prompt tuning on T5
# trails model tuning badly at small sizes and matches it only around 10 B+ parameters (T5-XXL, 11 B),
# with about 0.01 % of the parameters trained; the larger the model, the more behaviours are already
# in it for a prompt to select. Li & Liang report prefix tuning competitive with fine-tuning on
# table-to-text generation (GPT-2, BART) with 0.1 % of the parameters, and weaker when data is plentiful
# or the task far from pretraining. Our model has 2 M parameters: the case these methods are worst
# at. On a 7 B model and a task the model can already half do, the
# same 0.1–1 % can be enough.
#
# **When to choose a prompt method.** When you serve many tasks from one large frozen model and each
# task must be tiny (a few thousand numbers per task, mixed tasks in one batch, since the prompt is
# part of the input); when the model is large (≥ 10 B) and the task is close to what it already does.
# Otherwise LoRA is the better default: more capacity per parameter, mergeable, and stable with
# ordinary learning rates.

# %% [markdown]
# ## Summary
#
# * A soft prompt is an $n \times d$ matrix prepended to the token embeddings; the attention mask gets
#   $n$ ones and the labels $n$ values $-100$ in front. Ours equals peft's `PromptTuningConfig` (logits
#   on the real tokens and loss).
# * Initialisation matters at small scale: peft's random init is $\mathcal{N}(0,1)$, far from the
#   vocabulary's scale; a text init starts among real embeddings.
# * Prefix tuning injects keys and values into every layer, `[batch, n_kv_heads, n, head_dim]` each:
#   $n \cdot n_\text{layers} \cdot 2 \cdot \text{kv dim}$ parameters; the MLP reparametrisation is a
#   training aid and is dropped when saving. With transformers 5.24 / peft 0.21.2, `generate()` drops
#   the prefix; the forward pass works.
# * P-tuning produces the prompt with an encoder (MLP or LSTM); P-tuning v2 is deep prompt tuning, run
#   with `PrefixTuningConfig`.
# * Compared on the yardstick (three seeds, rates chosen on a tuning split, uniform and unigram
#   reference rows), full fine-tuning leads after 20 steps; differences among the prompt methods and
#   LoRA count only where their verdict excludes zero: the small-model regime Lester et al. describe.

# %% [markdown]
# ## Quiz
#
# 1. Why must the labels of the virtual tokens be $-100$, and what happens if you forget to extend the labels at all?
# 2. A model has 32 layers, 32 query heads, 8 key/value heads and head_dim 128. How many parameters has a prefix of 10 virtual tokens (no projection)?
# 3. Why can't you evaluate a prompt-tuned model with a loss function that shifts `logits[:, :-1]` against `input_ids[:, 1:]`?
# 4. What happens to prefix tuning's MLP after training?
#
# <details><summary>Answers</summary>
#
# 1. A virtual token has no target; $-100$ is the index the cross-entropy ignores. Without extending, the
#    labels are $n$ positions shorter than the logits: Hugging Face raises a shape error (or, in a
#    hand-written loss, every target is misaligned by $n$ positions).
# 2. $10 \times 32 \times 2 \times 8 \cdot 128 = 655{,}360$ (not $\times 32$ heads: the cache has 8).
# 3. The logits have $n$ extra positions in front; they must be cut off first (`evaluation.cross_entropy` reads only the last $L$).
# 4. It is discarded: peft saves only its output, the prefix ($n \times n_\text{layers} \cdot 2 \cdot$ kv dim).
# </details>

# %% [markdown]
# ## Interview questions
#
# * Compare prompt tuning, prefix tuning and P-tuning: where do the trainable vectors enter, and how many are there?
# * When is prompt tuning the right choice, and when is LoRA?
# * Why does prompt tuning underperform on small models?
#
# Answers, with this chapter's numbers, and the exercises are in
# [the exercises notebook](../exercises/07_prompt_tuning_exercises.ipynb).
