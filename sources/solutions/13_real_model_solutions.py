# %% [markdown]
# # 13 · A real model — Solutions
#
# **Measured runtime:** 9 s on a 2-core CPU (`make execute`; your machine may differ).
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
error, half_step = (dequantize_q4_1(raw) - block).abs().max(), (block.max() - block.min()) / 30
print(f"max error {error:.4f}, half a step {half_step:.4f}")


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
# The course tokenizer was trained on the course corpus only, so its 1,399 tokens are that corpus's words and pieces: 88 % of the world words above are one token, none of the clinic words. SmolLM2's 49 k vocabulary was trained on web text that includes medical words (88 % of the clinic words are one token) but not the course's invented town names (62 % of the world words). The cost of a poor fit is length: in the lesson the clinic notes took 4.11 tokens per word with the course tokenizer against 2.69 with SmolLM2's, so every training step and every context window holds fewer clinic words, and the model must assemble words from letters.
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
# `AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)` (and the same for the tokenizer) reads the GGUF file with the `gguf` package and dequantizes every tensor into an ordinary PyTorch model; for SmolLM2 the tokenizer and its ChatML template come out of the file's metadata too. transformers refuses to `save_pretrained` a model loaded that way, so the course copies the state dict into a fresh `LlamaForCausalLM(config)` with the quantization config removed and saves that: 98 MB of Q4_1 become a 538 MB fp32 safetensors folder, once, in about half a minute on 2 cores, which then loads in under a second and works with peft, the course's loop and `save_pretrained` like any checkpoint. Two things to know: the converted weights are the 4-bit values (the lesson's decoder equals `gguf.quants.dequantize` and the converted `v_proj` exactly; `q_proj`/`k_proj` hold the same values with rows permuted back from llama.cpp's RoPE layout), so quality is that of the quantized model; and fp32 costs 5.5× the file's bytes for no extra information.
# <!-- END SOLUTION -->
#
# **Q2. What is grouped-query attention, and what does it save?**
#
# <!-- BEGIN SOLUTION -->
# Several query heads share one key/value head. SmolLM2 has 9 query heads of 64 dimensions and 3 key/value heads, so `q_proj` is 576 → 576 but `k_proj` and `v_proj` are 576 → 192 (the lesson printed both layers' shapes next to the course model's, which has 4 heads and 4 KV heads). It saves a third of the parameters of the K and V projections here and, more importantly at inference, the KV cache: 3 times fewer keys and values to store per token, which is what limits batch size and context length when serving. Quality stays close to full multi-head attention (Ainslie et al., 2023); multi-query attention is the extreme of one KV head.
# <!-- END SOLUTION -->
#
# **Q3. How would you measure hallucination, and what makes the measurement trustworthy?**
#
# <!-- BEGIN SOLUTION -->
# Ask questions whose true answer you know and grade every reply automatically into correct / abstains / wrong, with the rule written down (here: correct = names the gold value and no other candidate; abstains = says it does not know; anything else is a confident false answer). Report each share with its interval: on 60 facts of the course world SmolLM2 was correct 0 % [0 %, 6 %], abstained 0 % [0 %, 6 %] and wrong 100 % [94 %, 100 %] (Wilson 95 %), while on 24 capitals it was correct 79 % [60 %, 91 %], so the two are clearly apart. Trustworthy means: a gold truth rather than another model's opinion, enough questions for tight intervals, a control the model should pass (capitals), a second probe that does not depend on free-form wording (ranking the 8 towns after "X lives in": 4/30 for SmolLM2, near chance, 30/30 for the course model that read those facts), and a look at the replies, since a regular-expression judge can misread a paraphrase.
# <!-- END SOLUTION -->
#
# **Q4. What can a few dozen LoRA steps change in a model, and what can they not?**
#
# <!-- BEGIN SOLUTION -->
# Behaviour and format, fast: 24 steps of LoRA (r = 8 on all seven linear layers, 2.44 M trainable parameters, 1.78 %) on 96 notes took SmolLM2 from 0 % answers in the course's short format to 91 % ± 3 % (mean ± sd over 5 seeds) on 48 held-out notes, and its correct content from 44 % [31 %, 58 %] to 91 %: it learnt to take the fact from the note and say only that. Every seed's gain exceeded three seed standard deviations and every seed landed above the untrained model's interval. What such a run cannot do is put knowledge into the model: the held-out notes' facts were never trained on (the answers come from the prompt), and facts the model does not know (the course world, where it hallucinated 100 % of the time) need retrieval or far more training, which chapter 08 showed generalises poorly to new phrasings.
# <!-- END SOLUTION -->
#
# **Q5. Why does a 135 M model's training step cost tens of times the course model's on a CPU, and what changes on a GPU?**
#
# <!-- BEGIN SOLUTION -->
# A LoRA step costs about 4NT floating-point operations (forward 2NT, the gradient back through the frozen weights 2NT), N parameters, T tokens: 176 GFLOP for SmolLM2 on a batch of 4 notes (328 tokens). The committed run measured 1.34 s against 44 ms for the course model, 31× (other runs gave 32× and 41×: the small model's few milliseconds are noisy), below the arithmetic ratio of 93× (66× the parameters, 1.4× the tokens), because the tiny model's step is dominated by fixed per-operation costs. On a data-centre GPU (~990 TFLOP/s dense bf16) the arithmetic would take 0.18 ms, so a step at this batch size is bound by kernel launches, Python and memory traffic; one would raise the batch and sequence length by orders of magnitude and use bf16. Memory is no issue there: full fine-tuning of 135 M parameters needs about 2.2 GB for weights, gradients and AdamW state.
# <!-- END SOLUTION -->
