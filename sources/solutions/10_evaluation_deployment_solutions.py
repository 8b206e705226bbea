# %% [markdown]
# # 10 · Evaluation and deployment — Solutions
#
# **Measured runtime:** 11 s on a 2-core CPU (`make execute`; your machine may differ).
#
# Exercises for [the lesson](../notebooks/10_evaluation_deployment.ipynb). Each exercise says its level: ★ warm-up,
# ★★ core, ★★★ stretch. Write your code where it says so, then run the check cell below it: it
# tells you what is wrong, not only that something is.

# %%
import math
from collections import Counter
import torch
import course_lib
from course_lib.course.checkers import ch10

device = course_lib.setup(seed=0)


# %% [markdown]
# ## Exercise 1 ★ — perplexity from token losses
#
# You get `token_losses` `[batch, length]` (the cross-entropy of every predicted position, in nats)
# and `mask` `[batch, length]` (1 for real tokens, 0 for padding; the losses at padding positions
# are garbage). Write `corpus_perplexity(token_losses, mask)`: the perplexity of the whole batch as
# one corpus. Return a float or a 0-d tensor.

# %%
def corpus_perplexity(token_losses: torch.Tensor, mask: torch.Tensor) -> float:
    ### BEGIN SOLUTION
    m = mask.float()
    return math.exp(
        float((token_losses * m).sum() / m.sum())
    )  # pool all real tokens, then exp once
    ### END SOLUTION


# %%
ch10.check_perplexity(corpus_perplexity)


# %% [markdown]
# ## Exercise 2 ★★ — BLEU from scratch
#
# Write `bleu(candidates, references, max_order=4)`: corpus BLEU for already-tokenised texts
# (`candidates[i]` and `references[i]` are lists of tokens, one reference per candidate):
# clipped n-gram precisions pooled over the corpus, their geometric mean, times the brevity penalty
# $e^{1 - r/c}$ when $c \le r$. Return 0.0 if some precision is 0.

# %%
def bleu(candidates: list[list[str]], references: list[list[str]], max_order: int = 4) -> float:
    ### BEGIN SOLUTION
    def grams(toks, n):
        return Counter(tuple(toks[i : i + n]) for i in range(len(toks) - n + 1))

    precisions = []
    for n in range(1, max_order + 1):
        matches = sum(
            sum((grams(c, n) & grams(r, n)).values()) for c, r in zip(candidates, references)
        )
        total = sum(sum(grams(c, n).values()) for c in candidates)
        precisions.append(matches / total if total else 0.0)
    if min(precisions) == 0:
        return 0.0
    c, r = sum(map(len, candidates)), sum(map(len, references))
    bp = 1.0 if c > r else math.exp(1 - r / c)
    return bp * math.exp(sum(math.log(p) for p in precisions) / max_order)
    ### END SOLUTION


# %%
ch10.check_bleu(bleu)

# %% [markdown]
# Cross-check with the course's local metric module (same tokenisation when the tokens are
# space-separated words):

# %%
from course_lib.evaluation import load_metric

cands, refs = ch10.BLEU_CASE
lib = load_metric("bleu").compute(
    predictions=[" ".join(c) for c in cands], references=[" ".join(r) for r in refs]
)
print(f"yours {bleu(cands, refs):.6f}   local evaluate module {lib['bleu']:.6f}")
assert math.isclose(bleu(cands, refs), lib["bleu"], abs_tol=1e-12)


# %% [markdown]
# ## Exercise 3 ★★ — merge a LoRA adapter into the weight
#
# A LoRA layer with frozen `W` `[out, in]`, `A` `[r, in]`, `B` `[out, r]` computes
# $Wx + \frac{\alpha}{r} B A x$. Write `merge_lora_weight(W, A, B, alpha, r)` returning the merged
# weight, without modifying `W`.

# %%
def merge_lora_weight(
    W: torch.Tensor, A: torch.Tensor, B: torch.Tensor, alpha: float, r: int
) -> torch.Tensor:
    ### BEGIN SOLUTION
    return W + (alpha / r) * (B @ A)
    ### END SOLUTION


# %%
ch10.check_merge(merge_lora_weight)

# %% [markdown]
# Now against peft: merge a real (randomly initialised, then perturbed) adapter with your function
# and compare with `merge_and_unload`.

# %%
import copy
from peft import LoraConfig, get_peft_model
from course_lib.models import load_model

base, tok = load_model("causal")
pm = get_peft_model(
    copy.deepcopy(base),
    LoraConfig(r=4, lora_alpha=12, target_modules=["q_proj"], task_type="CAUSAL_LM"),
)
layer = pm.base_model.model.model.layers[1].self_attn.q_proj
torch.nn.init.normal_(layer.lora_B["default"].weight, std=0.02)
mine = merge_lora_weight(
    layer.base_layer.weight.detach(),
    layer.lora_A["default"].weight.detach(),
    layer.lora_B["default"].weight.detach(),
    12,
    4,
)
merged = pm.merge_and_unload()
assert torch.allclose(mine, merged.model.layers[1].self_attn.q_proj.weight, atol=1e-6)
print("your merge equals peft's merge_and_unload")


# %% [markdown]
# ## Exercise 4 ★★★ — per-channel int8, and why per channel
#
# Write `quantize(w)` returning `(q, scale)`: symmetric absmax int8 **per output channel** (per row
# of `w` `[out, in]`), `scale` of shape `[out, 1]`, `q` a `torch.int8` tensor in $[-127, 127]$; and
# `dequantize(q, scale)`.

# %%
def quantize(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ### BEGIN SOLUTION
    scale = w.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127
    return torch.round(w / scale).clamp(-127, 127).to(torch.int8), scale
    ### END SOLUTION


def dequantize(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    ### BEGIN SOLUTION
    return q.float() * scale
    ### END SOLUTION


# %%
ch10.check_int8(quantize, dequantize)

# %% [markdown]
# Then measure what per-channel buys over per-tensor on the course model: quantize every linear
# weight of the base model both ways and compare the mean squared weight error and the general-text
# cross-entropy.

# %%
from course_lib.data import load_jsonl
from course_lib.evaluation import cross_entropy

texts = [r["text"] for r in load_jsonl("corpus_val")[:60]]


def per_tensor(w):
    s = w.abs().max() / 127
    return torch.round(w / s).clamp(-127, 127) * s


results = {}
for name, fn in [
    ("fp32", lambda w: w),
    ("int8 per-tensor", per_tensor),
    ("int8 per-channel", lambda w: dequantize(*quantize(w))),
]:
    m, err = copy.deepcopy(base), []
    with torch.no_grad():
        for mod_name, mod in m.named_modules():
            if isinstance(mod, torch.nn.Linear) and "lm_head" not in mod_name:
                new = fn(mod.weight)
                err.append(((new - mod.weight) ** 2).mean().item())
                mod.weight.copy_(new)
    results[name] = (sum(err) / len(err), cross_entropy(m, tok, texts))
    print(f"{name:17s} weight MSE {results[name][0]:.2e}   general CE {results[name][1]:.4f}")

# %% [markdown]
# What do you observe, and is the CE difference large enough to matter?

# %% [markdown]
# <!-- BEGIN SOLUTION -->
# Per-channel scales fit each row's own range, so the mean squared weight error is smaller (9.80e-08 against 3.13e-07 per-tensor). At 8 bits both are fine for this model: general CE 0.4020 (per-channel) and 0.4021 (per-tensor) against 0.4020 in fp32, a difference far below anything a task would notice. Per-channel matters when rows differ a lot in scale (outlier channels) or at fewer bits, where the step size of a per-tensor scale becomes too coarse for the small rows.
# <!-- END SOLUTION -->

# %%
assert results["int8 per-channel"][0] < results["int8 per-tensor"][0], (
    "per-channel scales must fit each row better"
)

# %% [markdown]
# ## Exercise 5 ★ — which metric?
#
# For each task, name the metric you would report first and one way it can mislead:
# (a) the course's arithmetic instructions ("What is 36 minus 3?"); (b) a summary of a clinic note;
# (c) the language model's fit to a new domain before any instruction tuning; (d) review sentiment with
# 90 % positive reviews.

# %% [markdown]
# <!-- BEGIN SOLUTION -->
# * (a) **Exact match** after a stated normalisation (strip, maybe case): one right answer. Misleads when the
#   format varies ("33." vs "33"). In the lesson the chat model answers in the references' own format, so
#   the normalisations it tried changed little; on free-form output they decide the score, so state yours.
# * (b) **ROUGE** (and a human or model judge): many right summaries. Misleads by rewarding word overlap: in the
#   lesson, a baseline that copies the input got a high ROUGE-L and BLEU with zero exact match.
# * (c) **Perplexity / mean token CE** on held-out domain text: it measures exactly the fit. It misleads as a
#   proxy for task success: the base model had the lowest general CE and an exact match of about 0.
# * (d) **Macro-F1** (or per-class recall) next to accuracy: always answering "positive" scores 0.90 accuracy
#   but a macro-F1 of about 0.47 (F1 0.95 for the majority class, 0 for the other).
# <!-- END SOLUTION -->

# %% [markdown]
# ## Interview questions
#
# Answer in a few sentences each, using the numbers the lesson measured.
#
# **Q1. How would you evaluate a fine-tuned LLM?**

# %% [markdown]
# <!-- BEGIN SOLUTION -->
# On held-out data, with the metric each task needs, in one harness so that every model gets the same data and settings: CE/perplexity for domain fit, exact match (with a stated normalisation and a Wilson interval) for single answers, accuracy and macro-F1 for labels, BLEU/ROUGE only as rough signals for long text, plus the things fine-tuning may break (general-text CE for forgetting). In the lesson one `evaluate_all` call per model (every skill scored: the subset is stratified) showed the shipped chat model's skills one by one (its weakest, lists, visible only per skill; an average over skills would hide it) with its general-text CE kept near the base model's by replay, and the clinic adapter winning its own task and nothing else: looking only at the trained task, or only at ROUGE, would have hidden one or the other. Every metric was computed by hand once and checked against the library.
# <!-- END SOLUTION -->

# %% [markdown]
# **Q2. Why isn't perplexity enough?**

# %% [markdown]
# <!-- BEGIN SOLUTION -->
# Perplexity measures how well the model predicts the reference text under teacher forcing, not whether its own generations are right or in the right format. In the lesson's harness table the base model had the lowest general CE and an exact match of zero, and the chat model the reverse. It is also easy to compute wrongly: averaging per-sequence perplexities overstates it (Jensen), and counting padding moves it (up here, where the pad token was never seen; down when pad = EOS); and it is only comparable between models with the same tokenizer.
# <!-- END SOLUTION -->

# %% [markdown]
# **Q3. Merged or unmerged adapters in serving: what are the trade-offs?**

# %% [markdown]
# <!-- BEGIN SOLUTION -->
# Merged (W' = W + (alpha/r) B A, `merge_and_unload`): one plain model, no peft at inference, no extra matmuls; we reloaded it with `AutoModelForCausalLM` and got the same logits (max difference 1.85e-05) and the same greedy text. But every task needs its own full copy (8.16 MB here) and you can no longer switch or remove the adapter. Unmerged: the base stays shared and the adapter is small (0.94 MB on disk here, 11.4% of the base in memory), adapters can be hot-swapped or mixed per row, at the price of the extra low-rank matmuls in each adapted layer. Merge for one task per deployment; keep adapters separate for many tasks or tenants.
# <!-- END SOLUTION -->

# %% [markdown]
# **Q4. How do you serve many LoRA adapters at once?**

# %% [markdown]
# <!-- BEGIN SOLUTION -->
# Keep one base model in memory and load each adapter by name (peft `load_adapter`), switch with `set_adapter`, or route each row of a batch to its own adapter with `adapter_names=[...]` ('__base__' for none): every LoRA layer computes the base output once and adds each row's own update. In the lesson a mixed batch (instruct, base, clinic, instruct) equalled the separate runs row by row. Memory for 10 tasks: 17.5 MB as base + adapters against 81.6 MB as merged copies. Servers such as vLLM or LoRAX do the same with fused kernels.
# <!-- END SOLUTION -->

# %% [markdown]
# **Q5. What does int8 quantization buy, and what does it cost?**

# %% [markdown]
# <!-- BEGIN SOLUTION -->
# It buys size: the linear weights shrink 4× (the checkpoint less, because the tied embedding stays fp32). Quality, on the shipped chat model: weight-only per-channel int8 moved the answer CE far less than torch's dynamic mode, which also quantizes activations per call with one scale per tensor and, on x86, a 7-bit range (`reduce_range=True`); the share of greedy answers that flipped and the EM with its interval are what a user sees, and the lesson prints all three. Speed depends on the hardware and kernels: on a 2 M model overheads matter as much as arithmetic, so measure rather than assume. torch.ao.quantization.quantize_dynamic is deprecated in torch 2.13 (torchao replaces it); in practice 4-bit weight-only formats (GPTQ, AWQ, GGUF) are what gets deployed.
# <!-- END SOLUTION -->
