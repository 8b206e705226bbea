# %% [markdown]
# # 08 · Instruction tuning (SFT) — Solutions
#
# **Measured runtime:** 8 s on a 2-core CPU (`make execute`; your machine may differ).
#
# Exercises for [the lesson](../notebooks/08_instruction_tuning.ipynb). Each exercise says its level: ★ warm-up,
# ★★ core, ★★★ stretch. Write your code where it says so, then run the check cell below it: it
# tells you what is wrong, not only that something is.

# %%
import torch
import course_lib
from course_lib.models import load_model
from course_lib.course.checkers import ch08

device = course_lib.setup(seed=0)
base, tok = load_model("causal", device=device)


# %% [markdown]
# ## Exercise 1 ★ — labels on the response only
#
# Write `sft_labels(tokenizer, messages, width)` for a conversation that ends with the assistant's
# reply. Return `{"input_ids": ..., "labels": ...}`, two lists of length `width`: the rendered chat's
# token ids right-padded with `tokenizer.pad_token_id`, and labels equal to the ids on the reply and its
# `<|end|>` only, $-100$ everywhere else (prompt, the template's newline after `<|end|>`, padding).
# Hint: render the prompt alone with `add_generation_prompt=True` and the full chat, and tokenize both
# with `add_special_tokens=False`.

# %%
def sft_labels(tokenizer, messages, width):
    ### BEGIN SOLUTION
    prompt = tokenizer.apply_chat_template(
        messages[:-1], tokenize=False, add_generation_prompt=True
    )
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    end = len(ids) - 1 - ids[::-1].index(tokenizer.convert_tokens_to_ids("<|end|>"))
    labels = [t if len(p_ids) <= i <= end else -100 for i, t in enumerate(ids)]
    pad = width - len(ids)
    return {"input_ids": ids + [tokenizer.pad_token_id] * pad, "labels": labels + [-100] * pad}
    ### END SOLUTION


# %%
ch08.check_labels(sft_labels)

# %% [markdown]
# ## Exercise 2 ★ — exact match
#
# Write `exact_match(predictions, references)`: the share of predictions equal to their reference after
# normalising both (lower-case, strip spaces and the punctuation `.!?"'` at the ends, collapse runs of
# spaces). Raise `ValueError` when the lists are empty or of different lengths.

# %%
import re


def exact_match(predictions, references):
    ### BEGIN SOLUTION
    if not predictions or len(predictions) != len(references):
        raise ValueError("need equally many predictions and references, at least one")
    norm = lambda s: re.sub(r"\s+", " ", s.strip().lower()).strip(" .!?\"'")
    return sum(norm(p) == norm(r) for p, r in zip(predictions, references)) / len(references)
    ### END SOLUTION


# %%
ch08.check_exact_match(exact_match)


# %% [markdown]
# ## Exercise 3 ★★ — the top-p sampling distribution
#
# Write `nucleus_probs(logits, temperature, top_p)` for logits `[batch, vocab]`: the distribution a
# sampler draws from, as transformers computes it (temperature first, then the nucleus, then renormalise).
# Keep a token if the probability mass of the tokens ranked above it is below `top_p`.

# %%
def nucleus_probs(logits, temperature, top_p):
    ### BEGIN SOLUTION
    z = logits / temperature
    probs, order = z.softmax(-1).sort(-1, descending=True)
    drop_sorted = probs.cumsum(-1) - probs >= top_p
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return z.masked_fill(drop, float("-inf")).softmax(-1)
    ### END SOLUTION


# %%
ch08.check_nucleus(nucleus_probs)


# %% [markdown]
# ## Exercise 4 ★★ — pack examples
#
# Write `pack(examples, max_length)`: `examples` are dicts with `input_ids` and `labels` (lists of equal
# length, none longer than `max_length`). Return a list of rows, each a dict with `input_ids`, `labels`
# and `position_ids`, holding whole examples one after another, at most `max_length` tokens per row,
# position ids restarting at 0 for each example. Use as few rows as you reasonably can (first fit,
# longest first, is a good heuristic).

# %%
def pack(examples, max_length):
    ### BEGIN SOLUTION
    rows = []
    for e in sorted(examples, key=lambda e: -len(e["input_ids"])):
        n = len(e["input_ids"])
        row = next((r for r in rows if len(r["input_ids"]) + n <= max_length), None)
        if row is None:
            row = {"input_ids": [], "labels": [], "position_ids": []}
            rows.append(row)
        row["input_ids"] += e["input_ids"]
        row["labels"] += e["labels"]
        row["position_ids"] += list(range(n))
    return rows
    ### END SOLUTION


# %%
ch08.check_packing(pack)


# %% [markdown]
# ## Exercise 5 ★★★ — whose loss is it? Token mean vs example mean
#
# `model(**batch).loss` averages over all labelled tokens of the batch, so an example with a long answer
# weighs more than one with a short answer. Write `per_example_loss(logits, labels)`: each example's mean
# next-token loss over its labelled tokens, then the mean over examples. Then compare both means on a
# real batch of the lesson's SFT data (the base model, 64 validation instructions) and explain which
# skills gain weight under each.

# %%
def per_example_loss(logits, labels):
    ### BEGIN SOLUTION
    logp = logits[:, :-1].log_softmax(-1)
    targets = labels[:, 1:]
    mask = targets != -100
    nll = -logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
    return (nll.sum(1) / mask.sum(1)).mean()
    ### END SOLUTION


# %%
ch08.check_per_example_loss(per_example_loss)

# %%
from course_lib import sft
from course_lib.data import load_jsonl

records = load_jsonl("instructions_val")[:64]
batch = sft.pad_examples([sft.sft_example(tok, r) for r in records], tok.pad_token_id)
with torch.no_grad():
    out = base(**batch)
answer_tokens = (batch["labels"] != -100).sum(1)
print(
    f"token mean {out.loss.item():.3f}, example mean "
    f"{per_example_loss(out.logits, batch['labels']).item():.3f}"
)
print(
    {
        s: round(answer_tokens[[r["skill"] == s for r in records]].float().mean().item(), 1)
        for s in sorted({r["skill"] for r in records})
    },
    "labelled tokens per example",
)

# %% [markdown]
# <!-- BEGIN SOLUTION -->
# On the untrained base model the two means differ (9.76 vs 10.62 here), and they
# weigh the skills differently: the token mean gives every labelled token the same weight, so a rewrite
# (about 11 answer tokens) counts almost four times as much as a fact or an arithmetic answer (about 3);
# the example mean gives every *example* the same weight, so short answers count as much as long ones.
# Neither is "right": the token mean (transformers' and TRL's default, and what packing gives anyway) favours
# long answers; the example mean favours the short-answer skills. If a skill with short answers lags, the
# example mean (or re-weighting) is a knob to try.
# <!-- END SOLUTION -->

# %% [markdown]
# ## Interview questions
#
# **Q1. What is instruction tuning (SFT), and how does it differ from continued pretraining?**
#
# <!-- BEGIN SOLUTION -->
# Supervised fine-tuning on (instruction, answer) pairs rendered with a chat template, with the
# loss on the answer only: it teaches a pretrained model a *behaviour* (answer in the format, then stop).
# Continued pretraining trains on plain domain text with the loss on every token: it teaches *content and
# style* of text, not how to respond. In the lesson the base model's exact match on held-out
# instructions was about zero (it continues text instead of answering); a short SFT run raised it
# clearly (section 6 prints it with its Wilson interval), the format itself was learnt in the first
# few dozen steps, and the shipped chat model, the same recipe run longer, rewrites and classifies
# well but still fails at number manipulation (lists, sums).
# <!-- END SOLUTION -->
#
# **Q2. Why mask the prompt in the loss? When might you not?**
#
# <!-- BEGIN SOLUTION -->
# The prompt is always given at inference, so predicting it is wasted capacity, and averaging over
# prompt tokens dilutes the gradient on the answer, which is usually much shorter. In the lesson, on the reading
# exercises (a note and a question, then a short answer: a small share of the tokens is answer), two
# runs of 60 steps with the same batches ended far apart in answer loss on unseen notes, in favour of
# the mask. That metric is what the masked run optimises; the generated EM, which neither optimises,
# is the fairer check, and the lesson prints its gap with its noise. Masking matters most for long
# prompts and short answers, as in retrieval-augmented answering.
# You might not mask when prompts are themselves useful text to model (e.g. little data and long, high-quality
# prompts; Shi et al. 2024 report gains from a loss over instructions in that regime), or for multi-turn data
# where earlier assistant turns should be learnt too (mask only the user turns).
# <!-- END SOLUTION -->
#
# **Q3. What is packing, and what must change so that it is correct?**
#
# <!-- BEGIN SOLUTION -->
# Putting several examples into one fixed-length row instead of padding each to the batch's
# longest: on the lesson's data packing removed most of the padding of batches of 16 (the lesson
# prints both shares). To be correct, position ids must restart at 0 per example and attention must be
# block-diagonal (no example attends to another); then the packed loss equals the padded loss exactly (checked
# in the lesson). TRL's `packing=True` uses best-fit decreasing (inside each `datasets.map` batch,
# which is why it needed a few more rows than ours until packed as one batch) and passes position
# ids, which FlashAttention-style kernels turn into per-example attention.
# <!-- END SOLUTION -->
#
# **Q4. Should you inject new knowledge by fine-tuning or by retrieval?**
#
# <!-- BEGIN SOLUTION -->
# Retrieval, for facts. In the lesson the chat model given the fact in the prompt ranked the right
# answer first far more often than without it; after fine-tuning on the fact statements it completed
# the *seen phrasing* far above chance (and a held-out paraphrase of it), but the chat *question*
# gained far less: knowledge stored as one kind of sentence is not extractable as an answer to a
# question without augmentation or mixed training (Allen-Zhu & Li 2023; the lesson tests mixed
# training on held-out people, with a partial effect at best at this scale). Retrieval also updates by editing documents, cites sources and
# does not damage other abilities. Fine-tune for behaviour, format, style, and (with augmented, varied data)
# for knowledge that must be available without a retriever.
# <!-- END SOLUTION -->
#
# **Q5. What do temperature and top-p do, and what would you use for a fact-answering assistant?**
#
# <!-- BEGIN SOLUTION -->
# Temperature divides the logits before the softmax: below 1 it sharpens the distribution, above 1
# flattens it. Top-p keeps the smallest set of most likely tokens whose mass reaches p and renormalises, cutting
# the unlikely tail. In the lesson a moderate temperature cost little exact match (within the
# bootstrap interval of 50 prompts) while the answers began to vary; at T = 2 exact match collapsed
# and almost every sample differed (greedy: always the same answer, distinct share 0.25).
# For a fact-answering assistant: greedy (or a low temperature); sampling is for tasks that want variety or
# several candidates (best-of-n, preference data).
# <!-- END SOLUTION -->
#
# **Q6. Full SFT hurt your model's general ability. What are your options?**
#
# <!-- BEGIN SOLUTION -->
# Measure it first (general-text perplexity, a held-out general benchmark). In the lesson full SFT
# raised the general cross-entropy several-fold (printed in section 9). Options: replay (mix general
# text into the SFT batches: it kept much of the general ability, at a price on the answers), a lower
# learning rate or fewer steps, parameter-efficient tuning (at a matched budget over three seeds,
# LoRA forgot less general text than full SFT; the lesson's sweep prints whether it also learnt
# less), or regularisation towards the base weights (EWC, chapter 03).
# <!-- END SOLUTION -->
