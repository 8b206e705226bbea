# %% [markdown]
# # 15 · Debug this tutorial — Solutions
#
# **Measured runtime:** 11 s on a 2-core CPU (`make execute`; your machine may differ).
#
# Popular fine-tuning tutorials share a handful of bugs. Their code runs, often without a warning,
# and quietly gives a wrong number or a model that misbehaves. Each exercise below shows a snippet
# written the way those tutorials write it (our own code, in their style), runs it so you see the
# symptom, and asks for the fixed version. The check names the bug if your fix still has it. Each
# exercise says its level: ★ warm-up, ★★ core, ★★★ stretch. Everything runs on the course's tiny
# models in seconds.

# %%
import torch
import course_lib
from course_lib.course.checkers import ch15

device = course_lib.setup(seed=0)

# %% [markdown]
# ## Exercise 1 ★ — `print(model.print_trainable_parameters())`
#
# The tutorial wraps a LoRA model and prints its size. Run it and look at the last line.

# %%
from peft import LoraConfig, get_peft_model
from course_lib.course.checkers._models import tiny_llama

config = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"])
model = get_peft_model(tiny_llama(seed=3), config)
print(model.print_trainable_parameters())  # the tutorial's line

# %% [markdown]
# `print_trainable_parameters()` prints its line itself and returns `None`, so the outer `print`
# adds a line that says `None`. Harmless here; the same habit (printing a function that returns
# nothing) hides real results elsewhere. Write `trainable_summary(model)` that returns
# `(trainable, total, percent)` as numbers, the way peft computes them.

# %%
def trainable_summary(model):
    ### BEGIN SOLUTION
    trainable, total = model.get_nb_trainable_parameters()
    return trainable, total, 100 * trainable / total
    ### END SOLUTION


# %%
ch15.check_trainable_summary(trainable_summary)

# %% [markdown]
# ## Exercise 2 ★★ — argmax over `generate()` as class labels
#
# The tutorial asks a model to answer "positive" or "negative", then takes
# `outputs.argmax(-1)` as the predicted class. Here are sequences shaped exactly like
# `model.generate()` returns them (prompt, then the answer, then padding):

# %%
from course_lib.course.checkers.ch15 import course_tokenizer, generated_case

tok = course_tokenizer()
sequences, prompt_length, _ = generated_case()
print(sequences.shape, "| the tutorial's 'classes':", sequences.argmax(-1).tolist())
print(tok.batch_decode(sequences[:, prompt_length:], skip_special_tokens=True))

# %% [markdown]
# The argmax is the *position of the largest token id* in each row, not a class. Write
# `labels_from_generate(tok, sequences, prompt_length, labels)`: decode only the new tokens and
# return, per row, the label the answer starts with (case-insensitive, spaces stripped), or
# `"unknown"` when it starts with none.

# %%
def labels_from_generate(tok, sequences, prompt_length: int, labels) -> list[str]:
    ### BEGIN SOLUTION
    texts = tok.batch_decode(sequences[:, prompt_length:], skip_special_tokens=True)
    found = []
    for text in texts:
        text = text.strip().lower()
        found.append(next((label for label in labels if text.startswith(label)), "unknown"))
    return found
    ### END SOLUTION


# %%
ch15.check_labels_from_generate(labels_from_generate)

# %% [markdown]
# ## Exercise 3 ★★ — `datasets.map(batched=True)` with a function written for one example
#
# The tutorial truncates long texts with a function written for one example, then switches on
# `batched=True` "for speed". Nothing fails. Count the rows:

# %%
import datasets

datasets.disable_progress_bars()
texts = [f"note {i}: " + "word " * (3 * i + 1) for i in range(10)]
ds = datasets.Dataset.from_dict({"text": texts})


def truncate(example, max_chars=3):  # written for ONE example: example["text"] is a string
    return {"text": example["text"][:max_chars]}


print(len(ds), "rows before,", len(ds.map(truncate, batched=True, batch_size=4)), "after")

# %% [markdown]
# With `batched=True`, `example["text"]` is a *list* of up to `batch_size` strings, so `[:3]` keeps
# the first three rows of every batch and a batched map may return fewer rows than it got. Write
# `truncate_batch(batch, max_chars)` for `Dataset.map(..., batched=True)`.

# %%
def truncate_batch(batch, max_chars: int):
    ### BEGIN SOLUTION
    return {"text": [text[:max_chars] for text in batch["text"]]}
    ### END SOLUTION


# %%
ch15.check_truncate_batch(truncate_batch)

# %% [markdown]
# ## Exercise 4 ★ — `Trainer` fed rows without labels
#
# The tutorial tokenizes its texts and hands them to `Trainer` with a padding collator. Training
# stops at the first step. The same call without `Trainer`:

# %%
model = tiny_llama(pad_token_id=0, seed=1)
batch = {"input_ids": torch.tensor([[1, 5, 9, 2], [1, 7, 2, 0]])}
batch["attention_mask"] = (batch["input_ids"] != 0).long()
print("loss:", model(**batch).loss)  # Trainer: "The model did not return a loss from the inputs"

# %% [markdown]
# A causal LM computes a loss only from `labels`. Write `collate(rows, pad_id)`: right-pad the rows'
# `input_ids`, and return `input_ids`, `attention_mask` and `labels` as tensors, where the labels
# are the input ids (the model shifts them itself) with -100 on the padding.

# %%
def collate(rows: list[dict], pad_id: int) -> dict:
    ### BEGIN SOLUTION
    width = max(len(r["input_ids"]) for r in rows)
    ids, mask, labels = [], [], []
    for r in rows:
        pad = width - len(r["input_ids"])
        ids.append(list(r["input_ids"]) + [pad_id] * pad)
        mask.append([1] * len(r["input_ids"]) + [0] * pad)
        labels.append(list(r["input_ids"]) + [-100] * pad)
    columns = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    return {name: torch.tensor(values) for name, values in columns.items()}
    ### END SOLUTION


# %%
ch15.check_collate(collate)

# %% [markdown]
# ## Exercise 5 ★★ — pad = eos, and a model that never learns to stop
#
# Many tutorials write `tokenizer.pad_token = tokenizer.eos_token` and then use a collator that
# masks every position whose id is the pad id (what `DataCollatorForLanguageModeling` does). Count
# what the labels still teach about stopping:

# %%
from course_lib.course.checkers.ch15 import EOS, eos_case

ids, mask = eos_case()
tutorial_labels = ids.masked_fill(ids == EOS, -100)  # "mask the padding"
real_eos = int(((ids == EOS) & (mask == 1)).sum())
print(f"real end-of-text tokens: {real_eos}, labelled: {int((tutorial_labels == EOS).sum())}")

# %% [markdown]
# Every real end-of-text token lost its label too: the model is never trained to emit it, and at
# inference it runs on to `max_new_tokens`. Write `lm_labels(input_ids, attention_mask, pad_id)`
# that masks only the padding.

# %%
def lm_labels(input_ids, attention_mask, pad_id: int):
    ### BEGIN SOLUTION
    return input_ids.masked_fill(attention_mask == 0, -100)  # by position, never by id
    ### END SOLUTION


# %%
ch15.check_lm_labels(lm_labels)

# %% [markdown]
# ## Exercise 6 ★★★ — perplexity over padded batches
#
# The tutorial evaluates in batches with `labels=input_ids` and reports `exp(mean(batch losses))`:

# %%
import math
from course_lib.models import load_model
from course_lib.course.checkers.ch15 import ppl_texts

base, base_tok = load_model("causal", device="cpu")
texts = ppl_texts()  # five documents of the course world, some cut short
losses = []
for i in range(0, len(texts), 2):
    enc = base_tok(texts[i : i + 2], padding=True, return_tensors="pt")
    with torch.no_grad():
        losses.append(float(base(**enc, labels=enc["input_ids"]).loss))
print(f"the tutorial's perplexity: {math.exp(sum(losses) / len(losses)):.2f}")

# %% [markdown]
# Two bugs: the padding is scored as tokens to predict, and batches that predict different numbers
# of tokens get equal weight. Write `corpus_perplexity(model, tok, texts, batch_size)`: -100 on the
# padding, and the exponential of the summed token losses over the number of predicted tokens.
# Then compare the two numbers: which way does the tutorial's error go here, and why?

# %%
def corpus_perplexity(model, tok, texts: list[str], batch_size: int) -> float:
    ### BEGIN SOLUTION
    total, count = 0.0, 0
    for i in range(0, len(texts), batch_size):
        enc = tok(texts[i : i + batch_size], padding=True, return_tensors="pt")
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        with torch.no_grad():
            loss = model(**enc, labels=labels).loss  # the mean over this batch's predicted tokens
        n = int((labels[:, 1:] != -100).sum())  # how many tokens this batch predicts
        total, count = total + float(loss) * n, count + n
    return math.exp(total / count)
    ### END SOLUTION


# %%
ch15.check_corpus_perplexity(corpus_perplexity)
print(f"fixed: {corpus_perplexity(base, base_tok, texts, 2):.2f}")

# %% [markdown]
# <!-- BEGIN SOLUTION -->
# Here the tutorial's number is far off because the padding positions (labelled with the pad id)
# are easy or hard to predict depending on the model: the base model never saw long runs of
# `<|pad|>`, so it assigns them little probability and the padded batches' mean loss is inflated;
# a model trained with padding in its labels would instead learn to predict padding and report a
# perplexity that looks *better* than it is. Either way the number measures padding, not text.
# The equal weighting adds a second error whenever batches differ in length.
# <!-- END SOLUTION -->

# %% [markdown]
# ## Interview questions
#
# **Q1. Your fine-tuned model never stops generating. What do you check first?**
#
# <!-- BEGIN SOLUTION -->
# Whether the training labels ever contained the end-of-sequence token. The classic cause is
# `pad_token = eos_token` together with a collator that masks every pad id: each real eos is masked
# too (exercise 5: 2 real end tokens, 0 labelled), so the model is never trained to emit it. Fix:
# mask padding by the attention mask (or give the tokenizer its own pad token), keep the eos
# label, and check a rendered training example by eye. Then check the template appends the eos at
# all, and that generation uses the same eos id as `eos_token_id`.
# <!-- END SOLUTION -->
#
# **Q2. A tutorial's code runs without an error. How do you find out whether it is right?**
#
# <!-- BEGIN SOLUTION -->
# Check the invariants the code should keep on a case small enough to compute by hand: the number
# of rows before and after a batched `map` (exercise 3 silently dropped rows), the shape and type of
# what a call returns (a `generate()` output is token ids, not class scores; a printing function
# returns None), that the loss exists and is computed only on the tokens you mean (labels present,
# padding at -100), and that a metric does not change when you change the batch size. Compare one
# number with an independent implementation (peft's count, a reference perplexity).
# <!-- END SOLUTION -->
#
# **Q3. Your evaluation perplexity changes when you change the evaluation batch size. Why?**
#
# <!-- BEGIN SOLUTION -->
# A correct corpus perplexity does not depend on the batch size: it is the exponential of the
# summed token losses over the number of predicted tokens. It changes when padding is scored (more
# padding in larger batches of mixed lengths) or when per-batch mean losses are averaged with equal
# weight (batches predict different numbers of tokens). Mask the padding with -100 and weight each
# batch by its number of predicted tokens (exercise 6).
# <!-- END SOLUTION -->
