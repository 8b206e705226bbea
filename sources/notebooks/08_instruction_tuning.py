# %% [markdown]
# # 08 · Instruction tuning (supervised fine-tuning)
#
# **Measured runtime:** 110 s on a 2-core CPU (`make execute`; your machine may differ).
#
# A pretrained model continues text. An assistant answers. **Supervised fine-tuning** (SFT, also
# called instruction tuning) turns the first into the second by training on (instruction, answer)
# pairs written in a chat format, with the loss on the answer only. This chapter does that to the
# course model, measures what it gains (exact match per skill, reading facts from the prompt) and what
# it costs (the general-text perplexity), and ends with the decoding settings that decide how the
# tuned model's answers are drawn.
#
# **You will learn to**
# 1. render a conversation with a chat template and find, token by token, where the loss starts;
# 2. train with the loss on the response only, measure why, and pack examples without wasting tokens on padding;
# 3. run SFT with the course loop and with TRL's `SFTTrainer`, evaluate by exact match per skill with intervals, and compare LoRA with full SFT at a matched budget over seeds;
# 4. compare knowledge injected by fine-tuning with knowledge given in the prompt;
# 5. measure what SFT costs in general language ability and what keeps it, and choose greedy, temperature and top-p decoding.
#
# **Prerequisites:** chapter 02 (chat templates, label masking, packing and its block-diagonal mask),
# chapter 03 (the training loop, forgetting and replay), chapter 04 (LoRA).

# %%
import copy
import math
import tempfile
import time
import warnings
import torch
import course_lib
from course_lib import sft, sweeps
from course_lib.models import check_real_model_folder, load_model
from course_lib.data import load_jsonl
from course_lib.evaluation import (
    accuracy,
    choose_many,
    continuation_logprobs,
    cross_entropy,
    exact_match,
    wilson_interval,
)
from course_lib.formats import IGNORE_INDEX, packed_attention, padding_waste, response_labels
from course_lib.generation import distinct_share, entropy_bits, generate, sampling_probs
from course_lib.plotting import plot_lines, plot_losses
from course_lib.training import TrainConfig, text_batches, train
from course_lib.uncertainty import bootstrap_interval
from transformers import AutoTokenizer

device = course_lib.setup(seed=0)
base, tok = load_model("causal", device=device)
LIVE_STEPS, TRL_STEPS, FACT_STEPS = 100, 25, 60  # the chapter's three live training budgets
warnings.filterwarnings(
    "ignore", message=".*(past_key_values|generation flags|use_cache|gradient_checkpointing).*"
)

# %% [markdown]
# The data: 944 training instructions in five skills (a fact question, arithmetic, rewriting a sentence,
# classifying a review, listing), 100 for validation and 250 held out for the test; 400 reading
# exercises (`context_qa`, a note about two visitors, then a question answered by the note); the 80
# `new_facts` about people the corpus never mentions; and general text (`corpus_val`) to measure how
# much of the base model's language ability survives.

# %%
train_recs, val_recs, test_recs = (
    load_jsonl(f"instructions_{s}") for s in ("train", "val", "test")
)
context_recs, facts = load_jsonl("context_qa_train"), load_jsonl("new_facts")
general = [r["text"] for r in load_jsonl("corpus_val")[:200]]
print(len(train_recs), len(val_recs), len(test_recs), len(context_recs), len(facts), len(general))
for r in train_recs[:3] + context_recs[:1]:
    print(f"[{r['skill']}] {r['messages'][0]['content']!r} -> {r['messages'][1]['content']!r}")

# %% [markdown]
# ## 1 · A chat template turns messages into one token sequence
#
# A chat model never sees "messages": it sees one string, built by the tokenizer's **chat template**
# (a Jinja template stored with the tokenizer). The course template is
#
# `<|bos|><|user|>\n{question}<|end|>\n<|assistant|>\n{answer}<|end|>\n`
#
# Special tokens mark whose turn it is, and `<|end|>` closes each turn; it is also the model's
# end-of-sequence token, so a model that learns to emit it after its answer learns to stop.
# At inference we render the user turn with `add_generation_prompt=True`, which appends
# `<|assistant|>\n` and leaves the answer to the model.

# %%
record = train_recs[0]
full = tok.apply_chat_template(record["messages"], tokenize=False)
prompt = tok.apply_chat_template(record["messages"][:1], tokenize=False, add_generation_prompt=True)
print(repr(full))
print(repr(prompt))
assert full.startswith(prompt), "the generation prompt must be a prefix of the full conversation"

# %% [markdown]
# For training, the labels are the token ids themselves where the model should learn to predict them,
# and $-100$ (`IGNORE_INDEX`, skipped by the cross-entropy) everywhere else.
# `course_lib.formats.response_labels` (chapter 02) tokenizes the prompt and the full conversation and
# labels only what comes after the prompt, up to and including the answer's `<|end|>`;
# `sft.sft_example` applies it to a record. Below, each token with its label: the loss starts at the
# first token after `<|assistant|>\n`.

# %%
ex = sft.sft_example(tok, record)
tokens = tok.convert_ids_to_tokens(ex["input_ids"])
print(" ".join(f"{t}{'*' if lab != IGNORE_INDEX else ''}" for t, lab in zip(tokens, ex["labels"])))
start = next(i for i, lab in enumerate(ex["labels"]) if lab != IGNORE_INDEX)
learnt = tok.decode([t for t, lab in zip(ex["input_ids"], ex["labels"]) if lab != IGNORE_INDEX])
print(
    f"loss starts at token {start} of {len(tokens)}, after {tokens[start - 2 : start]}; learnt: {learnt!r}"
)
assert (
    tokens[start - 2 : start] == ["<|assistant|>", "Ċ"] and learnt == record["output"] + "<|end|>"
)

# %% [markdown]
# (`Ċ` is how a byte-level BPE shows the newline byte.) Starred tokens carry a label: the answer and
# its `<|end|>`, but not the newline the template writes after it, which the model never has to
# produce. Everything before — the system of special tokens, the question — is context only.
#
# ### The same on a real model: SmolLM2's ChatML
#
# The course template is a small cousin of **ChatML**, the template of many open chat models. The
# real model of chapter 13, SmolLM2-135M-Instruct, ships it with its tokenizer: each turn is
# `<|im_start|>role\n … <|im_end|>\n`, and the template adds a default **system** turn when the
# conversation has none. The same record, the same `response_labels`, its real tokenizer (loaded
# from the folder that `load_model("smollm2")` reads; the weights are not needed here):

# %%
real_tok = AutoTokenizer.from_pretrained(check_real_model_folder())  # chapter 13's SmolLM2 tokenizer
print(repr(real_tok.apply_chat_template(record["messages"], tokenize=False)))
real_ex = response_labels(real_tok, record["messages"])
real_tokens = real_tok.convert_ids_to_tokens(real_ex["input_ids"])
marks = ["*" if lab != IGNORE_INDEX else "" for lab in real_ex["labels"]]
starred = [f"{t}{m}" for t, m in zip(real_tokens, marks)]
print(" ".join(starred))
real_answer = [t for t, lab in zip(real_ex["input_ids"], real_ex["labels"]) if lab != IGNORE_INDEX]
real_learnt = real_tok.decode(real_answer)
print(f"course template {len(tokens)} tokens; ChatML {len(real_tokens)} ({len(real_tok):,} in vocab)")
assert real_learnt == record["output"] + "<|im_end|>", real_learnt

# %% [markdown]
# The mask works the same way: the loss starts after `<|im_start|>assistant\n` and covers the answer
# and `<|im_end|>` (SmolLM2's end-of-turn and EOS token), not the newline after it. Two differences
# matter in practice. The default system prompt ("You are a helpful AI assistant named SmolLM…") is
# part of every conversation the model was tuned on, so leaving it out at inference changes the
# context it sees (most of the extra tokens counted above are that system turn); and a model must be
# prompted with exactly the template it was tuned with, special tokens included. Whatever the
# template, the rule is the one above: render with the model's own template, and label only what the
# assistant says.
#
# ## 2 · The base model does not follow instructions
#
# Exact match (EM) compares the normalised greedy answer with the reference (lower-cased, surrounding
# punctuation and spaces removed; `course_lib.evaluation.normalize_answer`). Per skill, on the 250
# held-out test instructions, before any tuning:

# %%
t0 = time.perf_counter()
em_base = sft.exact_match_by_skill(base, tok, test_recs)
print({k: round(v, 3) for k, v in em_base.items()}, f"({time.perf_counter() - t0:.1f} s)")
question = test_recs[0]["messages"][0]["content"]
print(repr(question), "->", repr(generate(base, tok, [question], chat=True, max_new_tokens=24)[0]))


# %% [markdown]
# The base model has seen the special tokens only in a handful of pretraining documents. Asked a
# question in the chat format, it continues with corpus-like text instead of an answer that ends,
# so EM is about zero. Nothing is wrong with its knowledge; it has never been shown the *format*.
#
# ## 3 · Loss on the response only
#
# SFT minimises the negative log-likelihood of the answer $y$ given the prompt $x$:
#
# $$\mathcal{L}_\text{SFT} = -\frac{1}{|y|}\sum_{t=1}^{|y|} \log p_\theta(y_t \mid x, y_{<t}).$$
#
# Without the mask the loss also covers $\log p_\theta(x)$, the prompt. That is not wrong, but it
# spends capacity on modelling questions the model will always be given, and in the mean over all
# tokens the answer gets the weight $|y| / (|x| + |y|)$. Alpaca's training code masks the prompt, and
# TRL does it by default for prompt-completion data. Not everyone did: the InstructGPT paper does not
# say, and OpenAI's legacy fine-tuning API kept a small loss on the prompt (`prompt_loss_weight`,
# default 0.01).
#
# How much that weight matters depends on the data. It is largest when prompts are long and answers
# short, as in the reading exercises (a note, a question, a one- or two-word answer):

# %%
def answer_share(records) -> float:
    exs = [sft.sft_example(tok, r) for r in records]
    return sum(sum(l != IGNORE_INDEX for l in e["labels"]) for e in exs) / sum(
        len(e["labels"]) for e in exs
    )


print(
    f"share of the tokens that are answer: instructions {answer_share(train_recs):.1%}, "
    f"reading exercises {answer_share(context_recs):.1%}"
)

# %% [markdown]
# So the experiment: two runs on the reading exercises, 60 steps of 8, the same seed and batch order,
# identical except for `mask_prompt`. The test set is one neither run saw: the 80 `new_facts`, each as
# a note (the fact's statements) followed by its question, scored two ways: the loss on the answer
# tokens (what the masked run optimises, so it favours masking by construction) and the exact match
# of the generated answer (what a user sees, and the metric of Shi et al. 2024, who find the opposite
# in some regimes).

# %%
notes = [" ".join(f["statements"]) for f in facts]
reading_test = [
    {
        "messages": [
            {"role": "user", "content": n + "\n" + f["question"]},
            {"role": "assistant", "content": f["answer"]},
        ]
    }
    for n, f in zip(notes, facts)
]
val_batch = sft.pad_examples([sft.sft_example(tok, r) for r in val_recs], tok.pad_token_id)
reading_batch = sft.pad_examples([sft.sft_example(tok, r) for r in reading_test], tok.pad_token_id)


@torch.no_grad()
def response_ce(model, batch=val_batch) -> float:
    model.eval()
    return model(**{k: v.to(device) for k, v in batch.items()}).loss.item()


print(
    f"base model, response CE: reading test {response_ce(base, reading_batch):.3f}, instructions "
    f"{response_ce(base):.3f}"
)

# %% [markdown]
# The base model's loss on the answers is high: it does not expect an answer after
# `<|assistant|>\n` at all. Now the two runs:

# %%
reading_ce, reading_em = {}, {}
reading_prompts = [f"{n}\n{f['question']}" for n, f in zip(notes, facts)]
for mask in (True, False):
    name = "masked" if mask else "unmasked"
    torch.manual_seed(0)
    model = copy.deepcopy(base)
    hist = train(
        model,
        sft.sft_batches(tok, context_recs, 8, mask_prompt=mask),
        TrainConfig(lr=1e-3, max_steps=60, progress=False),
    )
    reading_ce[name] = response_ce(model, reading_batch)
    replies = generate(model, tok, reading_prompts, chat=True, max_new_tokens=8)
    reading_em[name] = exact_match(replies, [f["answer"] for f in facts])
    print(f"{name}: answer CE {reading_ce[name]:.3f}, EM {reading_em[name]:.3f} ({hist.seconds:.0f} s)")
gap = reading_ce["unmasked"] - reading_ce["masked"]
assert gap > 0.3, f"masking should lower the answer loss clearly at equal steps, gap only {gap:.3f}"
em_gap = reading_em["masked"] - reading_em["unmasked"]
print(f"answer-CE gap {gap:.2f} nats; EM gap {em_gap:+.3f} ({round(em_gap * len(facts)):+d} of 80)")

# %% [markdown]
# With the same steps, the same batches and the same learning rate, the masked run reaches a
# much lower loss *on the answers* (the gap printed above; one seed here, but the assert asks for
# 0.3 nats, several times what a change of seed moves it). Without the mask only a small share of the
# labelled tokens are answer (printed in the previous section); the rest are note and question, and
# the gradient mostly teaches the model to write notes. The exact match of the generated answers is
# the fairer metric, since neither run optimises it directly; at 60 steps it is printed above with
# its gap in answers out of 80, and a gap of a few answers out of 80 is within the noise of one seed
# (the standard error of a difference of two EMs near 0.5 on 80 items is about 0.08).
# On the instructions, whose answers are a larger share of the tokens, the effect of the mask is
# small and noisy. On large models the
# difference in final quality is often small too (Shi et al. 2024, *Instruction Tuning With Loss Over
# Instructions*, even find a loss on the prompt helps when answers are short and data is scarce); what
# masking reliably does is put the training signal where the behaviour is, and it matters most for
# long prompts, as in retrieval-augmented answering.
#
# ## 4 · Packing: stop paying for padding
#
# A padded batch is as wide as its longest example. Chat examples vary a lot in length (a fact
# question is 28 tokens, a review to classify is many more), so a share of every batch is padding,
# computed and thrown away. **Packing** fills rows of a fixed length with several examples.

# %%
examples = [sft.sft_example(tok, r) for r in train_recs + context_recs]
lengths = [len(e["input_ids"]) for e in examples]
order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(0)).tolist()
waste_padded = padding_waste([lengths[i] for i in order], 16)
rows = sft.pack_examples(examples, max_length=128)
waste_packed = 1 - sum(lengths) / (len(rows) * 128)
print(f"{len(examples)} examples, {sum(lengths):,} tokens, lengths {min(lengths)}-{max(lengths)}")
print(
    f"padded batches of 16: {waste_padded:.1%} padding; packed into {len(rows)} rows of 128: "
    f"{waste_packed:.1%}"
)
assert waste_packed < waste_padded / 2, "packing should at least halve the wasted positions"

# %% [markdown]
# `sft.pack_examples` is first-fit decreasing: longest example first, each into the first row with
# room. TRL's `pack_dataset(..., strategy="bfd")` (best-fit decreasing, what `SFTConfig(packing=True)`
# uses) solves the same bin-packing problem with another heuristic. One detail changes its result:
# it packs inside each batch of `datasets.map` (1,000 rows by default), so examples of different
# map batches never share a row. Packed as one batch (`map_kwargs={"batch_size": len(ds)}`), it
# should need as few rows as ours:

# %%
from datasets import Dataset
from trl.data_utils import pack_dataset

ds = Dataset.from_dict({"input_ids": [e["input_ids"] for e in examples]})
packed_trl = pack_dataset(ds, seq_length=128, strategy="bfd")
packed_one = pack_dataset(ds, seq_length=128, strategy="bfd", map_kwargs={"batch_size": len(ds)})
print(f"TRL bfd: {len(packed_trl)} rows (map batches of 1,000), {len(packed_one)} (one batch)")
print(f"ours: {len(rows)} rows; TRL columns {packed_trl.column_names}")
waste_trl = 1 - sum(lengths) / (len(packed_trl) * 128)
print(f"padding left: TRL {waste_trl:.1%}, ours {waste_packed:.1%}")
assert waste_trl < waste_padded / 2, "TRL's packing should also remove most of the padding"
assert abs(len(packed_one) - len(rows)) <= 2, "packed in one batch, TRL should match first fit"

# %% [markdown]
# Packed in one batch, TRL's best fit needs about the rows our first fit needs: the extra rows of the
# default call come from the map batches, not from the heuristic.
#
# Packing changes the *computation* unless it is done right, which chapter 02 showed: the position ids
# must restart at every example and the attention mask must be block-diagonal, or each example
# attends to the previous ones (cross-talk). TRL passes `position_ids` and relies on attention kernels
# that read the restarts (FlashAttention's variable-length path); on CPU we build the mask ourselves
# with `formats.packed_attention`. Done right, one packed row gives exactly the loss of the padded
# batch:

# %%
few = examples[:4]
padded = sft.pad_examples(few, tok.pad_token_id)
row = sft.pack_examples(few, max_length=512)[0]
positions, mask = packed_attention(row["lengths"])
with torch.no_grad():
    loss_padded = base(**padded).loss
    loss_packed = base(
        input_ids=torch.tensor([row["input_ids"]]),
        position_ids=positions,
        attention_mask=mask,
        labels=torch.tensor([row["labels"]]),
    ).loss
print(f"padded {loss_padded:.5f}  packed {loss_packed:.5f}")
assert torch.allclose(loss_padded, loss_packed, atol=1e-5)

# %% [markdown]
# Both losses average over the same labelled tokens, so they agree to float precision. (A subtle
# point: with packing, the mean is over all answer tokens in the row, so long answers weigh more than
# in a per-example mean; TRL's default does the same.) `sft.packed_batches` serves such rows, a few
# per batch, each with its reset positions and its block-diagonal mask; the main run below uses it.
# Per example it costs less time than padded batches, though by less than the padding share
# suggests: a row of 128 with a dense 128 × 128 mask costs more attention than a short padded batch.
#
# ## 5 · SFT from scratch with the course loop
#
# Full fine-tuning of all 2 M parameters on the 944 training instructions, response-masked and
# packed: 8 rows of 128 tokens per step (about 26 examples), learning rate $2 \cdot 10^{-3}$ with
# warm-up and cosine decay (`training.train`, chapter 03), for the lesson's budget of `LIVE_STEPS`.
# These exact lines are `sft.train_sft(..., method="full")`, which section 7 and the shipped sweep use.

# %%
torch.manual_seed(0)
full = copy.deepcopy(base)
hist_full = train(
    full,
    sft.packed_batches(tok, train_recs, rows_per_batch=8, seed=0),
    TrainConfig(lr=2e-3, max_steps=LIVE_STEPS, progress=False),
)
print(f"{LIVE_STEPS} steps in {hist_full.seconds:.0f} s, final loss {hist_full.loss[-1]:.3f}")
plot_losses({"full SFT": hist_full}, title="SFT training loss (response tokens)")

# %% [markdown]
# The loss falls steeply in the first few dozen steps: that is the format being learnt (answer,
# then `<|end|>`). The slow part afterwards is the content of the answers.
#
# A lesson cannot afford many more steps, so the course ships the same recipe run for longer, on the
# instructions plus more generated ones and the reading exercises, with general text replayed in
# the rows (section 9): the **chat model**
# (`load_model("chat")`, built by `make chat-model`; its card `data/chat_model/README.md` gives the
# recipe and build time). The later sections use it wherever a weak model would say nothing.
#
# ## 6 · Exact match, per skill, before and after
#
# An exact match over $n$ items is a share of yes/no outcomes, so every EM below carries its Wilson
# 95 % interval (`evaluation.wilson_interval`); with 50 items per skill an interval is about
# ±0.1 wide, so differences smaller than that are not rankings.

# %%
chat, _ = load_model("chat", device=device)
em = {
    "base": em_base,
    f"SFT {LIVE_STEPS} steps": sft.exact_match_by_skill(full, tok, test_recs),
    "chat model (shipped)": sft.exact_match_by_skill(chat, tok, test_recs),
}
per_skill = {k: sum(r["skill"] == k for r in test_recs) for k in em_base if k != "all"}
per_skill["all"] = len(test_recs)


def interval(share: float, n: int) -> tuple[float, float]:
    return wilson_interval(round(share * n), n)


for name, scores in em.items():
    cells = []
    for k, v in scores.items():
        lo, hi = interval(v, per_skill[k])
        cells.append(f"{k} {v:.2f} [{lo:.2f}, {hi:.2f}]")
    print(f"{name:22s}", " | ".join(cells))

# %% [markdown]
# The same as a picture, with the intervals as error bars:

# %%
import matplotlib.pyplot as plt
import numpy as np

keys, width = list(per_skill), 0.27
fig, ax = plt.subplots(figsize=(8, 3.4))
for j, (name, scores) in enumerate(em.items()):
    lo_hi = np.array([interval(scores[k], per_skill[k]) for k in keys]).T
    y = np.array([scores[k] for k in keys])
    x = np.arange(len(keys)) + (j - 1) * width
    ax.bar(x, y, width, label=name, yerr=[y - lo_hi[0], lo_hi[1] - y], capsize=3)
ax.set_xticks(np.arange(len(keys)), keys)
ax.set_ylabel("exact match (95 % Wilson)")
ax.set_title("held-out instructions: base, live SFT, shipped chat model")
ax.legend(fontsize=8)
plt.show()
em_sft, em_chat = em[f"SFT {LIVE_STEPS} steps"], em["chat model (shipped)"]
n_test = len(test_recs)
assert interval(em_sft["all"], n_test)[0] > interval(em_base["all"], n_test)[1], (
    "SFT should raise test EM beyond both intervals"
)
assert interval(em_chat["all"], n_test)[0] > interval(em_sft["all"], n_test)[1], (
    "the long run should beat the lesson's short one beyond both intervals"
)
for r in test_recs[::50]:
    reply = generate(chat, tok, [sft.user_text(r)], chat=True)[0]
    print(f"{r['skill']:10s} {sft.user_text(r)[:50]!r:55s} -> {reply!r}")

# %% [markdown]
# Both tuned models answer in the format and stop, which the base model never does. The short live
# run gets few answers exactly right (look at which skill: at this budget it mostly learns the
# format and one frequent label). The shipped chat model, with many more steps (its card gives the
# recipe: lr 1e-3, general text replayed in the rows, lists and sums drawn more often), gets every
# skill right some of the time, and the skills differ widely (the rows above). Rewriting is copying
# with one word changed, classifying is one word out of three (chance 1/3), and facts about people
# in the corpus are partly known from pretraining; lists and sums are number manipulation, which a
# 2 M-parameter model whose tokenizer splits numbers unevenly learns slowest: its card
# (`data/chat_model/README.md`) shows them still rising at the end of the recipe search, and states
# the limits. The printed intervals say how far each difference can be trusted. A perfect answer
# format is necessary for EM and nowhere near sufficient. (The validation EM of the same model can
# differ from the test EM by several points: with 100 and 250 items, both intervals are wide.)
#
# ## 7 · The same with TRL's `SFTTrainer` and a LoRA adapter
#
# TRL takes a dataset of conversations. With **prompt-completion** records (`prompt` = the user turn,
# `completion` = the assistant turn) it sets `completion_only_loss=True` by default and masks the
# prompt, like `sft_example`. With `peft_config`, it wraps the model in a LoRA adapter (chapter 04)
# before training; `use_cpu=True` keeps it on the CPU when there is no GPU.

# %%
from peft import LoraConfig
from trl import SFTConfig, SFTTrainer

pairs = Dataset.from_list(
    [{"prompt": r["messages"][:1], "completion": r["messages"][1:]} for r in train_recs]
)
config = SFTConfig(
    output_dir=tempfile.mkdtemp(),
    use_cpu=not torch.cuda.is_available(),
    max_length=128,
    per_device_train_batch_size=16,
    learning_rate=3e-3,
    max_steps=TRL_STEPS,
    warmup_steps=4,
    lr_scheduler_type="cosine",
    packing=False,
    logging_steps=10,
    report_to=[],
    save_strategy="no",
    seed=0,
    disable_tqdm=True,
)
trainer = SFTTrainer(
    model=copy.deepcopy(base),
    args=config,
    train_dataset=pairs,
    processing_class=tok,
    peft_config=LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"),
)
print(
    trainer.model.get_nb_trainable_parameters(),
    "completion_only_loss:",
    trainer.completion_only_loss,
)

# %% [markdown]
# What does TRL's collator put in the labels? Compare its batch for the first record with ours:

# %%
trl_row = trainer.data_collator([trainer.train_dataset[0]])
ours = sft.sft_example(tok, train_recs[0])
same_ids = trl_row["input_ids"][0].tolist() == ours["input_ids"]
differ = [
    i for i, (a, b) in enumerate(zip(trl_row["labels"][0].tolist(), ours["labels"])) if a != b
]
print("same tokens:", same_ids, "| labels differ at", differ, [tokens[i] for i in differ])
assert same_ids and differ == [len(ours["input_ids"]) - 1], (
    "TRL should differ only on the final newline"
)

# %% [markdown]
# The same tokens and the same mask, except one position: TRL labels *everything* after the prompt,
# including the newline the template writes after `<|end|>`; `response_labels` stops at `<|end|>`.
# Harmless (the model learns to write a newline after ending, which generation never reaches because
# it stops at `<|end|>`), but worth knowing when two implementations' losses differ slightly. (For
# `messages`-style data TRL instead needs `assistant_only_loss=True` and a template with
# `{% generation %}` markers.) Now train:

# %%
trainer.train()
lora_chat = trainer.model.eval()
ce_trl, ce_base = response_ce(lora_chat), response_ce(base)
print(f"TRL + LoRA, {TRL_STEPS} steps: validation response CE {ce_trl:.3f} (base {ce_base:.3f})")
assert ce_trl < ce_base - 1.0, "a short LoRA run should already teach much of the format"

# %% [markdown]
# A few LoRA steps move the response loss a long way from the base model's: the largest part of
# that is the format. This run shows the library path, not a comparison: it has a quarter of the
# steps of section 5, so its exact match says nothing about LoRA. TRL adds the conveniences (dataset
# formats, packing, logging, checkpoints, multi-GPU); the loss it optimises is the one we wrote.
#
# ### LoRA against full SFT at a matched budget
#
# A fair comparison changes one thing: the parameters that train. `sft.train_sft` runs both methods
# with the same data, the same number of steps and, for one seed, the very same batches in the same
# order; LoRA adapts every linear layer ($r = 16$, $\alpha = 32$). Learning rates are not shared:
# full SFT keeps section 5's; LoRA's is chosen among three ($10^{-3}$, $3 \cdot 10^{-3}$ and
# $10^{-2}$, the "a low-rank update needs 5× more" guess) by the mean exact match on the 100
# *validation* instructions over the seeds (`best_lora_arm`), never by the test EM. Full SFT's rate
# was not tuned, so this compares tuned LoRA with full SFT at one reasonable setting; the shipped
# sweep `ch08_lora_vs_full` has 3 seeds per arm (`make sweep NAME=ch08_lora_vs_full`).

# %%
from course_lib.build.sweeps_ch08 import best_lora_arm

rec = sweeps.load("ch08_lora_vs_full")
lora_arm = best_lora_arm(rec)  # the highest mean validation EM; the test EM is not looked at
lora_lr = float(lora_arm.split("=")[1])
print("arms of the shipped sweep:", rec["arms"], "| seeds:", rec["seeds"])
val_by_arm = {a: sweeps.summary(rec, a, "val_em").mean for a in rec["arms"] if a != "full"}
print("LoRA, mean validation EM per rate:", {a: round(v, 3) for a, v in val_by_arm.items()})
print("chosen on validation:", lora_arm)
lora, hist_lora = sft.train_sft(base, tok, train_recs, method="lora", lr=lora_lr, steps=LIVE_STEPS)
em_lora = sft.exact_match_by_skill(lora, tok, test_recs)
print(f"live seed 0, {LIVE_STEPS} steps each: full EM {em_sft['all']:.3f}, LoRA {em_lora['all']:.3f}")
print(sweeps.place(em_sft["all"], rec, "full", "test_em_all"))
print(sweeps.place(em_lora["all"], rec, lora_arm, "test_em_all"))

# %% [markdown]
# One seed is one draw. The shipped sweep has three per arm (mean ± sd over seeds); the verdicts come
# from the interval of the difference (`uncertainty.verdict`, Welch), not from the ranking:

# %%
from course_lib.uncertainty import differs, verdict

metrics = ["test_em_all", "test_em_classify", "val_em", "general_ce"]
print(sweeps.table(rec, metrics + ["final_loss", "train_seconds"]).to_string())
for m in metrics:
    a, b = sweeps.values(rec, "full", m), sweeps.values(rec, lora_arm, m)
    print(f"{m:18s}", verdict(a, b, ("full", "LoRA")))
em_full_seeds = sweeps.values(rec, "full", "test_em_all")
em_lora_seeds = sweeps.values(rec, lora_arm, "test_em_all")
ce_full_seeds = sweeps.values(rec, "full", "general_ce")
ce_lora_seeds = sweeps.values(rec, lora_arm, "general_ce")
forgets_less = "full SFT" if max(ce_full_seeds) < min(ce_lora_seeds) else "LoRA"
print(f"general-text CE after SFT: {forgets_less} forgets less in every seed")
assert differs(ce_full_seeds, ce_lora_seeds), "the forgetting difference is beyond the seed spread"
for arm in val_by_arm:  # every LoRA rate, not only the chosen one
    em_arm = sweeps.values(rec, arm, "test_em_all")
    assert differs(em_full_seeds, em_arm) and min(em_full_seeds) > max(em_arm), (
        f"full SFT should learn more than LoRA at {arm} in 100 steps"
    )

# %% [markdown]
# Read the verdicts, not the means: a line that says "within noise" is not a ranking, whatever the
# means. At this budget no LoRA rate learnt a measurable exact match: the validation EMs printed
# above are one or two right answers out of 300, so the rule "best validation EM" picked its rate by
# noise. That is worth seeing: a selection rule is only as good as the signal it selects on, and
# here the final training loss (in the table) would have been the better one; it ranks the rates
# differently. Full SFT learnt more than LoRA at every rate tried (the check above). The popular
# claim is that LoRA "forgets less" because it changes far fewer parameters (chapter 04); the
# general-CE column shows that here it depends on the rate more than on the method: at the lowest
# rate LoRA keeps the base model's general CE and learns nothing, at the highest it forgets more
# than full SFT. Both trade-offs move with the budget and the learning rate: compare methods at rates
# chosen on a validation signal that moves, over seeds (chapter 04's yardstick does).
#
# ## 8 · Knowledge: in the weights or in the prompt?
#
# A popular hope: fine-tune a model on your documents and it will answer questions about them. Test
# it with the 80 `new_facts` (4 facts about each of 20 people the corpus never mentions), on the
# shipped chat model. Three ways to get a fact into an answer to the chat question ("Where does
# Ines Castell live?"):
#
# 1. **zero-shot**: ask the chat model; it has never seen these people, so it can only guess;
# 2. **in the prompt** (retrieval-style, as in RAG): put the fact's statements before the question,
#    in one user turn (the note, a line break, the question); the reading exercises in its SFT data
#    taught the model to use such notes (here an oracle hands it the right note; chapter 16,
#    sections 3–6, puts a real BM25 retriever in its place, with its recall and its failures);
# 3. **in the weights**: continue training the chat model on the statements, then ask without context.
#
# One metric for every bar: each fact has 8 candidate answers, and we score whether the model ranks
# the right one first (chance 1/8), for a statement probe ("Ines Castell lives in") as for the chat
# question (the candidate as the whole assistant reply, `<|end|>` included). The generated EM is
# printed beside it.

# %%
questions, answers = [f["question"] for f in facts], [f["answer"] for f in facts]
with_notes = [f"{n}\n{q}" for n, q in zip(notes, questions)]  # the facts, then the question


def chat_rank(model, asked: list[str], subset: list[dict]) -> float:
    """Share of facts whose answer the model ranks first as its whole reply to the chat prompt."""
    turns = [[{"role": "user", "content": q}] for q in asked]
    rendered = tok.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    prompts = [r.removeprefix(tok.bos_token) for r in rendered]  # the tokenizer adds <|bos|> itself
    flat_p = [p for p, f in zip(prompts, subset) for _ in f["candidates"]]
    flat_c = [c + tok.eos_token for f in subset for c in f["candidates"]]
    scores, k, right = continuation_logprobs(model, tok, flat_p, flat_c), 0, 0
    for f in subset:
        n = len(f["candidates"])
        right += f["candidates"][max(range(n), key=lambda j: scores[k + j])] == f["answer"]
        k += n
    return right / len(subset)



# %%
zero_shot, in_prompt = chat_rank(chat, questions, facts), chat_rank(chat, with_notes, facts)
em_prompt = exact_match(generate(chat, tok, with_notes, chat=True), answers)
print(f"chat question, ranked: zero-shot {zero_shot:.3f}, facts in the prompt {in_prompt:.3f}")
print(f"generated EM with the facts in the prompt: {em_prompt:.3f}")
shown = generate(chat, tok, with_notes[:4], chat=True)  # four examples, right or wrong marked
for q, n, a, gold in zip(questions[:4], notes, shown, answers):
    mark = "✔" if exact_match([a], [gold]) == 1.0 else f"✘ (right: {gold})"
    print(f"{n} | {q} -> {a}  {mark}")
assert in_prompt > zero_shot + 0.15, "a model trained to read notes should use facts in the prompt"


# %% [markdown]
# Now the weights. The statements are plain sentences ("Ines Castell lives in Stonebridge."); we train
# the chat model on them as text, the way one would fine-tune on documents, and probe three ways:
# the **seen** phrasing ("Ines Castell lives in"), an unseen **paraphrase** ("Ines Castell has a
# house in"), and the **chat question**.

# %%
def probe(model, subset=facts) -> dict:
    cands, gold = [f["candidates"] for f in subset], [f["answer"] for f in subset]
    asked = [f["question"] for f in subset]
    seen = choose_many(model, tok, [f["probe_seen"] for f in subset], cands)
    para = choose_many(model, tok, [f["probe_paraphrase"] for f in subset], cands)
    return {
        "seen": accuracy(seen, gold),
        "paraphrase": accuracy(para, gold),
        "chat question": chat_rank(model, asked, subset),
        "chat EM": exact_match(generate(model, tok, asked, chat=True), gold),
    }


torch.manual_seed(0)
informed = copy.deepcopy(chat)
statements = [s for f in facts for s in f["statements"]]
hist_facts = train(
    informed,
    text_batches(tok, statements, 16),
    TrainConfig(lr=1e-3, max_steps=FACT_STEPS, progress=False),
)
before, after = probe(chat), probe(informed)
print("before:", before, "\nafter: ", after)

# %% [markdown]
# What the claims are, as checks: the statements must have been learnt (else the experiment says
# nothing), and what the chat question gains must be far below what the seen phrasing gains.
# (An earlier version asserted "the chat EM does not rise by 0.05", a margin of four questions out
# of 80 that failed on another machine: with 80 items the standard error of a share near 0.5 is
# about 0.06, so only gaps of several tenths are claims here.)

# %%
gain = {k: after[k] - before[k] for k in ("seen", "chat question")}
print(f"gain, seen phrasing {gain['seen']:+.3f}; chat question (ranked) {gain['chat question']:+.3f}")
assert after["seen"] > before["seen"] + 0.3, "the statements should teach the seen phrasing"
assert gain["chat question"] < gain["seen"] - 0.3, (
    "the statements should teach the chat answers far less than the phrasing they show"
)

# %% [markdown]
# The remedy Allen-Zhu & Li (*Physics of Language Models, Part 3.1*, 2023) found is **mixed
# training**: show the model, besides the statements, the question–answer form of *other* facts, so
# that it learns to extract what a statement says. We test it on people held out from the QA data:
# statements of all 20 people, chat QA pairs for the first 10 only, the same steps; then the chat
# question about the other 10 (40 facts whose QA form was never shown).

# %%
people = list(dict.fromkeys(f["person"] for f in facts))
shown = set(people[:10])
qa_shown = [
    {"messages": [{"role": "user", "content": f["question"]}, {"role": "assistant", "content": a}]}
    for f, a in zip(facts, answers)
    if f["person"] in shown
]
held_out = [f for f in facts if f["person"] not in shown]
torch.manual_seed(0)
mixed = copy.deepcopy(chat)
config_facts = TrainConfig(lr=1e-3, max_steps=FACT_STEPS, progress=False)
train(mixed, sft.mixed_batches(tok, qa_shown, statements, 16), config_facts)
held_q = [f["question"] for f in held_out]
held = {name: chat_rank(m, held_q, held_out) for name, m in [("statements", informed), ("mixed", mixed)]}
print(f"chat question on the 10 held-out people (40 facts), ranked: {held}")

# %% [markdown]
# The chart puts every route on the one metric (ranking accuracy among 8 candidates; chance 1/8):

# %%
import matplotlib.pyplot as plt

bars = {
    "zero-shot (chat question)": zero_shot,
    "in the prompt (chat question)": in_prompt,
    "statements: seen phrasing": after["seen"],
    "statements: paraphrase": after["paraphrase"],
    "statements: chat question": after["chat question"],
    "mixed: chat question, held-out people": held["mixed"],
    "statements: chat q., same held-out people": held["statements"],
}
fig, ax = plt.subplots(figsize=(7, 3.2))
ax.barh(list(bars), list(bars.values()), color="tab:blue")
ax.axvline(1 / 8, color="grey", ls="--", label="chance (1/8)")
ax.set_xlabel("ranks the right answer first")
ax.invert_yaxis()
ax.legend(fontsize=8)
ax.set_title("new facts: in the weights vs in the prompt")
plt.show()

# %% [markdown]
# The fine-tuned model has learnt the *sentences*: it completes the seen phrasing far above chance,
# and a held-out paraphrase too (a statement-shaped probe transfers to another statement). The chat
# question gains far less (printed above), because "X lives in Y" and "Where does X live? → Y" are
# different token sequences and nothing in plain-text fine-tuning connects them. Mixed training is
# the test of the remedy: the lines above print whether the held-out people's chat questions rose
# beyond the statements-only run (40 facts each, so a difference below about 0.15 is within noise).
# On a 2 M-parameter model after 60 steps, expect at most a partial effect; Allen-Zhu & Li needed
# many facts per person in many phrasings. Gekhman et al. (2024) add a warning: new knowledge taught
# by SFT is learnt slowly and raises hallucination on what the model knew. A fact given in the prompt
# is used directly, needs no training per fact, and can be updated by changing a document: that is
# why retrieval (RAG) is the default for knowledge, and fine-tuning for behaviour and format, as a
# rule of thumb that these runs support at this scale, not a law.
#
# ## 9 · What SFT costs: general language ability
#
# The cross-entropy on general corpus text (`corpus_val`, 200 documents) measures how well the model
# still models ordinary text, beside two reference rows: a uniform guess over the vocabulary
# ($\ln V$) and the base model. The live runs trained on instructions alone; the shipped chat model
# had general text replayed in its rows (its card gives the recipe):

# %%
ce = {
    "uniform (ln V)": math.log(len(tok)),
    "base": cross_entropy(base, tok, general),
    f"full SFT {LIVE_STEPS} steps": cross_entropy(full, tok, general),
    f"LoRA {LIVE_STEPS} steps": cross_entropy(lora, tok, general),
    "chat model (shipped)": cross_entropy(chat, tok, general),
    "chat model + facts fine-tune": cross_entropy(informed, tok, general),
}
print({k: round(v, 3) for k, v in ce.items()})
full_ce = ce[f"full SFT {LIVE_STEPS} steps"]
assert full_ce > ce["base"] + 1.0, "full SFT on instructions alone should damage general-text modelling"
assert ce["chat model (shipped)"] < full_ce - 1.0, "replay should keep the shipped model's general CE"
print(
    f"general CE vs the base model: full SFT {LIVE_STEPS} steps {full_ce / ce['base']:.1f}x, "
    f"shipped chat model {ce['chat model (shipped)'] / ce['base']:.2f}x"
)

# %% [markdown]
# An honest finding: full SFT on instructions alone, at these learning rates, damages the base
# ability a lot within 100 steps (the ratio is printed above). A large model fine-tuned gently on a
# small instruction set changes far less, but the direction is the same, and chapter 03 named it:
# catastrophic forgetting. The chat model does not need to write corpus documents, yet the damage
# is real and shows up in everything not in the SFT data. The shipped chat model trained many times
# longer and kept its general CE close to the base model's (printed above): its recipe replays
# pretraining text in every batch.
#
# What keeps it? Chapter 03's cure, **replay**: mix some general text into the SFT batches (its loss on
# every token). Two short runs on the instructions, 100 steps of 8, the same seed, one with 300 corpus
# documents shuffled in, each scored on general text, on the instructions' answers (response CE), and
# by exact match on the 100 validation instructions:

# %%
corpus = [r["text"] for r in load_jsonl("corpus_sample")[:300]]
short, resp, em_short = {}, {}, {}
for name, batches in [
    ("SFT", sft.sft_batches(tok, train_recs, 8)),
    ("SFT + replay", sft.mixed_batches(tok, train_recs, corpus, 8)),
]:
    torch.manual_seed(0)
    short[name] = copy.deepcopy(base)
    train(short[name], batches, TrainConfig(lr=1e-3, max_steps=100, progress=False))
    ce[name], resp[name] = cross_entropy(short[name], tok, general), response_ce(short[name])
    em_short[name] = sft.exact_match_by_skill(short[name], tok, val_recs)["all"]
    print(f"{name:13s} general CE {ce[name]:.3f}, response CE {resp[name]:.3f}, EM {em_short[name]:.3f}")
assert ce["SFT + replay"] < ce["SFT"] - 0.2, "replay should keep general ability"
print(
    f"replay: general CE {ce['SFT'] - ce['SFT + replay']:.2f} nats better, response CE "
    f"{resp['SFT + replay'] - resp['SFT']:+.2f} nats, EM {em_short['SFT + replay'] - em_short['SFT']:+.3f}"
)

# %% [markdown]
# Replay keeps much of the general ability, and it is not free: about a quarter of each batch is
# now corpus text, so the answers get fewer updates, and the response CE and the EM printed above
# show the price at equal steps (one seed; an EM difference of a few points on 100 items is within
# its noise). A low-rank update at a low rate makes a similar trade (section 7: LoRA at the
# lowest rate kept the base model's general CE and learnt no exact match), and so does a lower
# learning rate. Which trade is right depends on what else the model
# must still do.
#
# ## 10 · Decoding: greedy, temperature, top-p
#
# At each step the model gives logits $z \in \mathbb{R}^{V}$. **Greedy** decoding takes
# $\arg\max_i z_i$. **Sampling** with temperature $T$ draws from
#
# $$p_i = \frac{\exp(z_i / T)}{\sum_j \exp(z_j / T)},$$
#
# sharper for $T < 1$, flatter for $T > 1$ ($T \to 0$ is greedy). **Top-p** (nucleus) sampling
# (Holtzman et al. 2020) keeps the smallest set of most likely tokens whose probability adds up to
# at least $p$ and renormalises: sort $p_{(1)} \ge p_{(2)} \ge \dots$, keep token $(k)$ if the mass
# *before* it, $\sum_{j<k} p_{(j)}$, is below $p$ — so the top token is always kept.
# `generation.top_p_filter` does this from scratch; transformers applies `TemperatureLogitsWarper` then
# `TopPLogitsWarper`:

# %%
from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

ids = tok.apply_chat_template(
    val_recs[0]["messages"][:1], add_generation_prompt=True, return_tensors="pt", return_dict=True
)["input_ids"]
with torch.no_grad():
    logits = chat(input_ids=ids).logits[:, -1]
ours = sampling_probs(logits, temperature=0.7, top_p=0.9)
hf = TopPLogitsWarper(0.9)(ids, TemperatureLogitsWarper(0.7)(ids, logits.clone())).softmax(-1)
print(
    f"tokens kept: ours {(ours > 0).sum().item()}, transformers {(hf > 0).sum().item()} of {logits.shape[-1]}"
)
assert torch.allclose(ours, hf, atol=1e-6)

# %% [markdown]
# How temperature reshapes that one next-token distribution (entropy in bits; 0 = one certain token):

# %%
temps = [0.3, 0.5, 0.7, 1.0, 1.5, 2.0]
ent = {
    "all tokens": [entropy_bits(sampling_probs(logits, t))[0].item() for t in temps],
    "top-p 0.9": [entropy_bits(sampling_probs(logits, t, 0.9))[0].item() for t in temps],
}
plot_lines(
    temps, ent, title="entropy of the next-token distribution", xlabel="temperature", ylabel="bits"
)

# %% [markdown]
# And on whole answers, with the shipped chat model: 50 validation prompts (every second one, 10 per
# skill), 4 samples each, EM (mean over all samples, with a bootstrap 95 % interval over the prompts:
# the 4 samples of one prompt are not independent) and the share of distinct answers per prompt
# (1/4 = always the same answer, 1 = four different ones).
# `generation.generate` draws every token from exactly `sampling_probs` (temperature, then top-p;
# no hidden top-k cut):

# %%
prompts, refs = [sft.user_text(r) for r in val_recs[::2]], [r["output"] for r in val_recs[::2]]
settings = {
    "greedy": (0.0, 1.0),
    "T=0.5": (0.5, 1.0),
    "T=1.0": (1.0, 1.0),
    "T=1.0 p=0.9": (1.0, 0.9),
    "T=2.0": (2.0, 1.0),
}
decode = {}
for name, (t, p) in settings.items():
    draws = [
        generate(chat, tok, prompts, chat=True, max_new_tokens=24, temperature=t, top_p=p, seed=s)
        for s in range(4)
    ]
    per_prompt = [exact_match(list(a), [r] * 4) for a, r in zip(zip(*draws), refs)]
    lo, hi = bootstrap_interval(per_prompt)
    decode[name] = (sum(per_prompt) / len(per_prompt), distinct_share([list(a) for a in zip(*draws)]))
    print(f"{name:12s} EM {decode[name][0]:.3f} [{lo:.3f}, {hi:.3f}]  distinct {decode[name][1]:.2f}")

# %% [markdown]
# Greedy decoding gives the same answer every time (distinct share exactly 1/4). The checks below
# say what the table should show, then a few answers to an open question at three temperatures:

# %%
assert decode["greedy"][1] == 0.25, "greedy decoding is deterministic: one answer per prompt"
assert decode["T=2.0"][0] < decode["greedy"][0] - 0.15, "a hot temperature should cost exact match"
assert decode["T=2.0"][1] > decode["T=0.5"][1] + 0.05, (
    "a hotter temperature gives more varied answers"
)
q = "Name three animals that people keep as pets."
for t in (0.0, 1.0, 2.0):
    print(
        f"T={t}:",
        [
            generate(chat, tok, [q], chat=True, max_new_tokens=20, temperature=t, seed=s)[0]
            for s in range(2)
        ],
    )

# %% [markdown]
# What the table shows: at low temperatures the exact match stays close to greedy's (compare the
# intervals: on 50 prompts, differences of a few points are within the noise), while the answers
# already vary (the distinct share rises above 1/4). At $T = 2$ EM collapses and almost every sample
# differs: the flattened distribution draws tokens the model itself considers unlikely. For tasks with
# one right answer (facts, arithmetic, classification) greedy is the safe default: as good, and
# reproducible.
# Sampling is for tasks where variety is the point (several drafts, creative text), and for methods
# that need several different answers to compare (best-of-n, the preference data of chapter 09). Top-p cuts the long tail of unlikely tokens that a high
# temperature would otherwise draw: at $T = 1$ it keeps most of the variety and drops the worst
# samples. Default settings of chat products (e.g. $T \approx 0.7$, $p \approx 0.9$) are a compromise,
# not a law.
#
# ## Summary
#
# The numbers of this run, printed from the variables above (so that the summary cannot drift from
# the notebook):

# %%
print(f"masking: answer CE gap {gap:.2f} nats on the reading test; EM gap {em_gap:+.3f}")
print(f"packing: padding {waste_padded:.0%} -> {waste_packed:.0%} of the positions")
print(
    f"test EM: base {em_base['all']:.3f}, SFT {LIVE_STEPS} steps {em_sft['all']:.3f}, "
    f"shipped chat model {em_chat['all']:.3f} (250 items)"
)
lora_verdict = verdict(em_full_seeds, em_lora_seeds, ("full", "LoRA"))
print(f"LoRA vs full at {LIVE_STEPS} steps, 3 seeds: {lora_verdict}")
print(
    f"new facts, ranked chat answer: zero-shot {zero_shot:.2f}, in the prompt {in_prompt:.2f}, "
    f"statements fine-tune {after['chat question']:.2f} (seen phrasing {after['seen']:.2f})"
)
print(
    f"general CE: base {ce['base']:.2f}, chat model {ce['chat model (shipped)']:.2f}; "
    f"replay {ce['SFT + replay']:.2f} vs {ce['SFT']:.2f} at 100 steps"
)
print(f"decoding EM: greedy {decode['greedy'][0]:.2f}, T=2 {decode['T=2.0'][0]:.2f}")

# %% [markdown]
# * A chat template renders turns into one sequence with special tokens; the generation prompt must
#   be a prefix of the full conversation, and the labels start right after it. SmolLM2's ChatML works
#   the same way, with a default system turn.
# * Loss on the response only: at equal steps, the masked run reached a clearly lower answer loss on
#   the reading test; on generated EM, the metric neither run optimises, the gap is printed with its
#   noise. TRL's `completion_only_loss` masks the same tokens as ours, plus the trailing newline.
# * Packing removed most padding and, with reset positions and a block-diagonal mask (chapter 02),
#   gives exactly the padded loss; TRL's packing matches ours when it packs in one map batch.
# * Full SFT taught the format and lifted held-out EM; the shipped chat model, the same recipe run
#   longer with replay, answers every skill some of the time, lists and sums least often (its card
#   gives the recipe search and the limits). At a
#   matched budget of 100 steps, full SFT learnt more than LoRA at every rate tried (the rate chosen
#   on validation, by noise at this budget); LoRA's forgetting depends on its rate (none at the
#   lowest, more than full SFT at the highest); each comparison is a verdict over three seeds.
# * Facts in the prompt beat facts fine-tuned into the weights as plain statements (the seen
#   phrasing was learnt, the chat question barely); mixed training with other people's QA pairs is
#   the remedy to test, and at this scale it helps at most partly.
# * Full SFT raised the general-text cross-entropy; replay of corpus text kept much of it, at a price
#   on the answers at equal steps; the shipped chat model, trained with replay, stays close to the
#   base model.
# * Greedy for single right answers; a moderate temperature buys variety at little cost in EM,
#   $T = 2$ destroys it; top-p trims the tail.
#
# ## Quiz
#
# 1. Where does the loss start in `<|bos|><|user|>\nWhat is 2 plus 3?<|end|>\n<|assistant|>\n5<|end|>\n`, and which tokens carry a label?
# 2. Why is `<|end|>` labelled but the newline after it not?
# 3. You pack 8 examples into one row but keep a plain causal mask and running position ids. What goes wrong?
# 4. Your fine-tuned model completes "Ada lives in" correctly but answers "Where does Ada live?" wrongly. Why, and what would you do?
# 5. With top-p = 0.9, the top token has probability 0.95. How many tokens are kept?
#
# <details><summary>Answers</summary>
#
# 1. After `<|assistant|>\n`: the tokens of `5` and the `<|end|>` carry labels; everything before is $-100$.
# 2. The model must learn to stop (emit `<|end|>`); generation stops there, so what the template writes after it is never produced.
# 3. Every example attends to the ones before it in the row (cross-talk), and positions do not start at 0,
#    so the model sees contexts it never sees at inference; the loss and the gradients differ from unpacked training.
# 4. The fact was learnt in one format (statement) and is not extractable as an answer to a question;
#    put it in the prompt (retrieval), or train on many facts in many formats (augmentation).
# 5. One: the mass before the top token is 0 < 0.9, so it is kept; the mass before the second is 0.95 ≥ 0.9.
# </details>
#
# ## Interview questions
#
# * What is instruction tuning (SFT), and how does it differ from continued pretraining?
# * Why mask the prompt in the loss? When might you not?
# * What is packing, and what must you change so that it is correct?
# * Should you inject new knowledge by fine-tuning or by retrieval? Why?
# * What do temperature and top-p do, and what would you use for a fact-answering assistant?
# * Full SFT hurt your model's general ability. What are your options?
#
# Answers, with this chapter's numbers, and the exercises are in
# [the exercises notebook](../exercises/08_instruction_tuning_exercises.ipynb).
