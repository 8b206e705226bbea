# %% [markdown]
# # 00 · Welcome and setup
#
# **Measured runtime:** 18 s on a 2-core CPU (`make execute`; your machine may differ).
#
# This course teaches fine-tuning of large language models by doing it: every method is built
# from scratch in plain PyTorch, checked against the library people use (transformers, peft,
# bitsandbytes, trl), and measured on a real experiment, all offline on a laptop CPU in minutes.
#
# **In this notebook you will**
# 1. check that your environment is complete and offline;
# 2. learn how lessons, exercises, solutions and checkers fit together;
# 3. tour the course world and its datasets;
# 4. meet the base model every chapter fine-tunes.
#
# **Prerequisites:** Python, a little PyTorch. Start JupyterLab with `make lab` from the course folder.

# %%
import os
import json
import course_lib

device = course_lib.setup(seed=0)

# %% [markdown]
# ## 1 · The environment
#
# `course_lib.setup()` is the first cell of every notebook. It seeds Python, NumPy and PyTorch,
# picks the device (CUDA if present, else CPU), silences the libraries' info logs, prints the
# versions, and switches every Hugging Face library to **offline mode**. Nothing in this course is
# downloaded at run time: the data come from the course's own generator, the base model ships in
# `data/base_model/`, and the metrics are local modules.

# %%
from course_lib.environment import versions

for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    print(f"{var} = {os.environ[var]}")
v = versions()
assert all(x != "missing" for x in v.values()), f"a library is missing: {v} - run `make lab` again"
assert v["torch"].startswith("2.13"), "the course is tested with torch 2.13 (see requirements.txt)"

# %% [markdown]
# To prove that the course needs no network, the test suite blocks every connection except to
# this machine (loopback). You can do the same here: afterwards any attempt to reach the internet fails
# at once, yet everything in the course still works.

# %%
import socket
from course_lib.course.netguard import block_network, NetworkBlocked

block_network()
try:
    socket.create_connection(("10.255.255.1", 80), timeout=1)
except NetworkBlocked as err:
    print("blocked:", err)

# %% [markdown]
# ## 2 · How the course works
#
# | folder | what it holds |
# |---|---|
# | `notebooks/` | the lessons, `00_…` to `12_…`, executed, outputs included: you can read before you run |
# | `exercises/` | one notebook per chapter with exercises ★ warm-up, ★★ core, ★★★ stretch |
# | `solutions/` | the same notebooks solved, with answers to the interview questions |
# | `course_lib/` | the helper package: every concept a chapter builds ends up here for later chapters |
# | `data/` | the datasets (JSONL you can open) and the base model |
#
# Each exercise is followed by a **check cell** that runs your code against the reference and says
# *what* is wrong, not only that something is, in one line: ✔ passed, ✘ and the mistake, or ✘ "not
# done yet" for an exercise you have not started. A check never stops the notebook, so "Run All"
# goes through every exercise and you see where you stand on each. Here is a check receiving a
# classic mistake: a next-token loss computed without shifting the targets by one position.

# %%
import torch.nn.functional as F
from course_lib.course.checkers import ch01
from course_lib.course.checks import CheckFailed


def next_token_loss_wrong(logits, input_ids):  # forgets the shift
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), input_ids.reshape(-1))


try:
    ch01.check_next_token_loss(next_token_loss_wrong)  # in JupyterLab: prints the ✘ line
except CheckFailed as err:  # scripts and the test suite (COURSE_CHECKS=raise) get an exception
    print(err)

# %% [markdown]
# Instructors hand out `exercises/`; `solutions/` is the single source both are built from
# (`make exercises` regenerates the exercises, and a test fails if they are out of date).

# %% [markdown]
# ## 3 · The course world
#
# Every dataset comes from one seeded generator (`course_lib.world.entities`, `course_lib.world.documents`), so the
# course always knows the truth behind a text: which facts a model should know, the true label of a
# review, the true quality of an answer. `make data` regenerates all files byte for byte.

# %%
import pandas as pd
from course_lib.world.entities import make_world

world = make_world()
print(
    f"{len(world.people)} people, {len(world.new_people)} 'new' people (never in the corpus), "
    f"{len(world.towns)} towns, {len(world.products)} products"
)
pd.DataFrame([p.__dict__ for p in world.people]).head(6)

# %% [markdown]
# Every dataset of the course is a JSON-lines file in `data/`, produced by the same generator.
# Their sizes:

# %%
from course_lib.data import load_jsonl
from course_lib.data import DATA_DIR

rows = []
for path in sorted(DATA_DIR.glob("*.jsonl")):
    recs = load_jsonl(path.stem)
    rows.append({"dataset": path.stem, "rows": len(recs), "fields": ", ".join(recs[0])})
pd.DataFrame(rows)

# %% [markdown]
# One record of each kind (the datasheet `data/README.md` describes every field and how the data
# were made):

# %%
for name in [
    "corpus_sample",
    "clinic_train",
    "reviews_train",
    "instructions_train",
    "new_facts",
    "preferences_train",
]:
    rec = load_jsonl(name)[0]
    print(f"--- {name}\n{json.dumps(rec, ensure_ascii=False)[:400]}")

# %% [markdown]
# The **gold reward** scores any answer to a fact or arithmetic question: +2 if correct, −1 if
# wrong (−0.5 if it evades), +0.5 if polite, −1.5 if rude, −0.1 per word beyond 12. Chapter 09
# uses it as the truth that RLHF is judged against, and to catch a learned reward model being gamed.

# %%
from course_lib.world.preferences import gold_reward

q = f"Where does {world.people[0].name} live?"
for answer in [
    world.people[0].town + ".",
    "Sure, happy to help! It is " + world.people[0].town + ".",
    "Obviously it is " + world.people[0].town + ". Think next time.",
    "It is Redcliff or Fernwick or Brookmere.",
    "I do not know, sorry.",
]:
    print(f"{gold_reward(q, answer):+5.1f}  {answer}")

# %% [markdown]
# ## 4 · The base model
#
# A small `LlamaForCausalLM`, the same architecture family as Llama 2/3 (RoPE, RMSNorm, SwiGLU,
# modules named `q_proj` … `down_proj`), pretrained by the course on the world's corpus. It is an
# ordinary Hugging Face model folder, loaded with plain transformers:

# %%
from transformers import AutoModelForCausalLM, AutoTokenizer
from course_lib.models import BASE_MODEL_DIR

model = AutoModelForCausalLM.from_pretrained(BASE_MODEL_DIR).to(device)
tok = AutoTokenizer.from_pretrained(BASE_MODEL_DIR)
n_params = sum(p.numel() for p in model.parameters())
print(f"{n_params:,} parameters; vocabulary {len(tok)}; layers {model.config.num_hidden_layers}")
print([name for name, _ in model.model.layers[0].named_modules() if name.count(".") == 1])

# %% [markdown]
# The model card's figures were measured when the model was built and saved in `metrics.json`:

# %%
card = json.loads((BASE_MODEL_DIR / "metrics.json").read_text())
for key in [
    "tokens_seen",
    "train_seconds",
    "val_cross_entropy",
    "unigram_cross_entropy",
    "generator_entropy",
    "fact_recall",
]:
    print(f"{key:>22}: {card[key]}")
assert card["val_cross_entropy"] <= 0.5 * card["unigram_cross_entropy"], (
    "base model below the competence bar"
)

# %% [markdown]
# It writes fluent text about its world (greedy decoding, then sampling). `generate` takes a list
# of prompts and returns the new text of each; `chat=False` continues the raw text:

# %%
from course_lib.generation import generate

person = world.people[0]
prompts = [f"{person.name} lives in", "On Friday morning,", "A customer wrote about the"]
for prompt, text in zip(prompts, generate(model, tok, prompts, chat=False, max_new_tokens=30)):
    print(f"{prompt!r} -> {text!r}")
sampled = generate(
    model, tok, prompts[1:2], chat=False, max_new_tokens=40, temperature=0.8, top_p=0.95, seed=1
)
print(sampled[0])
greedy = generate(model, tok, prompts[:1], chat=False, max_new_tokens=5)[0]
assert greedy.strip().startswith(person.town), (
    f"the base model should know where {person.name} lives"
)

# %% [markdown]
# Its tokenizer carries a **chat template** for later chapters. The base model has never seen
# a chat turn: chapter 08 teaches it.

# %%
chat = [{"role": "user", "content": "What is 2 plus 3?"}, {"role": "assistant", "content": "5"}]
print(tok.apply_chat_template(chat, tokenize=False))

# %% [markdown]
# ## Summary
# * `make lab` starts the course, `make test` checks all of it; nothing is downloaded.
# * The course world is synthetic on purpose: the truth behind every text is known, so every effect
#   can be measured exactly.
# * The base model is a real Llama-architecture model, small enough to fine-tune on a CPU in seconds.
#
# ## Quiz
# 1. Why does the course generate its own data instead of using a public dataset?
# 2. Which file would you open to see how the reviews were labelled?
#
# <details><summary>Answers</summary>
#
# 1. It runs offline, deterministic and fast, and the truth behind each text (facts, labels,
#    answer quality) is known, so effects are measured exactly rather than estimated.
# 2. `data/README.md`, the datasheet (and `course_lib/text.py`, the generator itself).
# </details>
#
# ## Interview question
# * Why evaluate a fine-tuned model against a ground truth you control before trusting a benchmark?
#
# Next: [01 · Pretraining vs fine-tuning](01_pretraining_vs_finetuning.ipynb).
