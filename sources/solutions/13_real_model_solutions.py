# %% [markdown]
# # 13 · A real model — Solutions
#
# **Measured runtime:** 8 s on a 2-core CPU (`make execute`; your machine may differ).
#
# Exercises for [the lesson](../notebooks/13_real_model.ipynb). Each exercise says its level: ★ warm-up,
# ★★ core, ★★★ stretch. Write your code where it says so, then run the check cell below it: it
# tells you what is wrong, not only that something is.

# %%
import torch
from transformers import AutoTokenizer
import course_lib
from course_lib.course.checkers import ch13
from course_lib.formats import IGNORE_INDEX
from course_lib.models import BASE_MODEL_DIR, REAL_MODEL_DIR
from course_lib.quantization import dequantize_q4_1

device = course_lib.setup(seed=0)
real_tok = AutoTokenizer.from_pretrained(REAL_MODEL_DIR)  # SmolLM2's tokenizer (no weights needed)
course_tok = AutoTokenizer.from_pretrained(BASE_MODEL_DIR)


# %% [markdown]
# ## Exercise 1 ★★ — encode a Q4_1 block
#
# The lesson decoded Q4_1. Now write the encoder, `quantize_q4_1_block(w)`: 32 float32 weights in,
# the 20 bytes of one GGUF Q4_1 block out (a `uint8` tensor), exactly as llama.cpp writes them:
#
# * $d = (\max w - \min w)/15$ and $m = \min w$, each stored as float16, little-endian (bytes 0–1
#   and 2–3; `tensor.view(torch.uint8)` gives a tensor's bytes);
# * codes $q_i = \operatorname{round}((w_i - m)/d)$, clipped to $0 \dots 15$ (compute them with
#   the float32 $d$, before it is rounded to float16);
# * 16 bytes of codes: byte $j$ holds $q_j$ in its **low** 4 bits and $q_{j+16}$ in its **high** 4 bits.
#
# The check compares your bytes with the `gguf` package's own quantizer and decodes them with the
# lesson's `dequantize_q4_1`.

# %%
def quantize_q4_1_block(w: torch.Tensor) -> torch.Tensor:
    ### BEGIN SOLUTION
    low, high = w.min(), w.max()
    d = (high - low) / 15
    q = torch.round((w - low) / d).clamp(0, 15).to(torch.uint8)
    packed = q[:16] | (q[16:] << 4)  # q_j low, q_(j+16) high
    header = torch.stack([d, low]).to(torch.float16).view(torch.uint8)  # 4 bytes: d, m
    return torch.cat([header, packed])
    ### END SOLUTION


# %%
ch13.check_quantize_q4_1(quantize_q4_1_block)
block = ch13.q4_1_blocks()[1]
raw = quantize_q4_1_block(block)
print("bytes:", raw.tolist())
print(f"max error {(dequantize_q4_1(raw) - block).abs().max():.4f}, half a step {(block.max() - block.min()) / 30:.4f}")


# %% [markdown]
# ## Exercise 2 ★ — which words are one token?
#
# Write `single_token_share(tokenizer, words)`: the share of the words that the tokenizer encodes as
# **one** token where a word usually stands, in the middle of a sentence (that is, after a space).
# Count only the word's own tokens, no special tokens. Then compare the two tokenizers on clinic
# words and on words of the course world.

# %%
def single_token_share(tokenizer, words: list[str]) -> float:
    ### BEGIN SOLUTION
    one = [len(tokenizer(" " + w, add_special_tokens=False)["input_ids"]) == 1 for w in words]
    return sum(one) / len(words)
    ### END SOLUTION


# %%
ch13.check_single_token_share(single_token_share)
for name, tok in (("course", course_tok), ("SmolLM2", real_tok)):
    clinic = single_token_share(tok, ch13.CLINIC_WORDS)
    world = single_token_share(tok, ch13.WORLD_WORDS)
    print(f"{name:>8}: clinic words {clinic:.0%} single tokens, world words {world:.0%}")

# %% [markdown]
# **What do the numbers say?** *(answer in a sentence or two)* Why does the course tokenizer keep
# the world's words whole but not the clinic's, and what does that cost when fine-tuning on clinic notes?
#
# <!-- BEGIN SOLUTION -->
# The course tokenizer was trained on the course corpus only, so its 1,399 tokens are that corpus's words and pieces; the clinic vocabulary never occurred there and falls apart into letters. SmolLM2's 49 k vocabulary was trained on web text that includes medical words. The cost is length: in the lesson the clinic notes took 4.11 tokens per word with the course tokenizer against 2.69 with SmolLM2's, so every training step and every context window holds fewer clinic words, and the model must learn words letter by letter.
# <!-- END SOLUTION -->

# %% [markdown]
# ## Exercise 3 ★★ — labels on every assistant turn
#
# Chapter 02's `response_labels` puts labels on the **last** reply only. In a multi-turn chat every
# assistant reply is a training target. Write `chatml_labels(tokenizer, messages)` returning
# `{"input_ids": …, "labels": …}` for the whole chat rendered with the tokenizer's ChatML template:
# labels equal the token ids on each assistant reply **and its `<|im_end|>`**, and `-100`
# (`IGNORE_INDEX`) everywhere else: the system prompt the template adds, the user turns, each
# `<|im_start|>assistant\n` header and the newline after `<|im_end|>`.
#
# Hint: the template renders a conversation's first $i$ messages as a prefix of the whole chat;
# `add_generation_prompt=True` appends the assistant header.

# %%
def chatml_labels(tokenizer, messages: list[dict]) -> dict[str, list[int]]:
    ### BEGIN SOLUTION
    def n_tokens(msgs, header=False):
        text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=header)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    full = tokenizer.apply_chat_template(messages, tokenize=False)
    ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    labels = [IGNORE_INDEX] * len(ids)
    for i, message in enumerate(messages):
        if message["role"] == "assistant":
            start = n_tokens(messages[:i], header=True)  # the reply's first token
            end = n_tokens(messages[: i + 1]) - 1  # up to <|im_end|>, without the "\n"
            labels[start:end] = ids[start:end]
    return {"input_ids": ids, "labels": labels}
    ### END SOLUTION


# %%
ch13.check_chatml_labels(chatml_labels)
out = chatml_labels(real_tok, ch13.CONVERSATION)
learnt = [t if lab != IGNORE_INDEX else None for t, lab in zip(out["input_ids"], out["labels"])]
print(f"{sum(t is not None for t in learnt)} of {len(learnt)} tokens carry a label:")
print(repr(real_tok.decode([t for t in learnt if t is not None])))

# %% [markdown]
# ## Interview questions
#
# **Q1. How do you load a GGUF checkpoint into transformers, and why might you convert it?**
#
# <!-- BEGIN SOLUTION -->
# ANSWER_Q1
# <!-- END SOLUTION -->
#
# **Q2. What is grouped-query attention, and what does it save?**
#
# <!-- BEGIN SOLUTION -->
# ANSWER_Q2
# <!-- END SOLUTION -->
#
# **Q3. How would you measure hallucination, and what makes the measurement trustworthy?**
#
# <!-- BEGIN SOLUTION -->
# ANSWER_Q3
# <!-- END SOLUTION -->
#
# **Q4. What can a few dozen LoRA steps change in a model, and what can they not?**
#
# <!-- BEGIN SOLUTION -->
# ANSWER_Q4
# <!-- END SOLUTION -->
#
# **Q5. Why does a 135 M model's training step cost tens of times the course model's on a CPU, and what changes on a GPU?**
#
# <!-- BEGIN SOLUTION -->
# ANSWER_Q5
# <!-- END SOLUTION -->
