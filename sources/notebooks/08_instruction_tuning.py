# %% [markdown]
# # 08 · Instruction tuning (supervised fine-tuning)
#
# **Measured runtime:** 109 s on a 2-core CPU (`make execute`; your machine may differ).
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
# 3. run SFT with the course loop and with TRL's `SFTTrainer` (with a LoRA adapter), and evaluate by exact match per skill;
# 4. compare knowledge injected by fine-tuning with knowledge given in the prompt;
# 5. measure what SFT costs in general language ability and what keeps it, and choose greedy, temperature and top-p decoding.
#
# **Prerequisites:** chapter 02 (chat templates, label masking, packing and its block-diagonal mask),
# chapter 03 (the training loop, forgetting and replay), chapter 04 (LoRA).

# %%
import copy
import tempfile
import time
import warnings
import torch
import course_lib
from course_lib import sft
from course_lib.models import load_model
from course_lib.data import load_jsonl
from course_lib.evaluation import accuracy, choose_many, cross_entropy, exact_match
from course_lib.formats import IGNORE_INDEX, packed_attention, padding_waste
from course_lib.generation import distinct_share, entropy_bits, generate, sampling_probs
from course_lib.plotting import plot_bars, plot_lines, plot_losses
from course_lib.training import TrainConfig, text_batches, train

device = course_lib.setup(seed=0)
base, tok = load_model("causal", device=device)
MAIN_STEPS, TRL_STEPS, FACT_STEPS = 380, 25, 60  # the chapter's three training budgets
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
# tokens the answer gets the weight $|y| / (|x| + |y|)$. The InstructGPT and Alpaca recipes mask the
# prompt; TRL does it by default for prompt-completion data.
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
# a note (the fact's statements) followed by its question, scored by the loss on the answer tokens.

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
reading_ce = {}
for mask in (True, False):
    torch.manual_seed(0)
    model = copy.deepcopy(base)
    hist = train(
        model,
        sft.sft_batches(tok, context_recs, 8, mask_prompt=mask),
        TrainConfig(lr=1e-3, max_steps=60, progress=False),
    )
    reading_ce["masked" if mask else "unmasked"] = response_ce(model, reading_batch)
    print(
        f"mask_prompt={mask}: reading-test response CE "
        f"{reading_ce['masked' if mask else 'unmasked']:.3f} ({hist.seconds:.1f} s)"
    )
gap = reading_ce["unmasked"] - reading_ce["masked"]
assert gap > 0.3, f"masking should lower the answer loss clearly at equal steps, gap only {gap:.3f}"

# %% [markdown]
# With the same steps, the same batches and the same learning rate, the masked run reaches a
# much lower loss *on the answers* (a gap of 0.60 nats; with seeds 1 and 2 we measured 0.68 and
# 0.79, so this is not luck). Without the mask only 7 % of the labelled tokens are answer; the
# rest are note and question, and the gradient mostly teaches the model to write notes.
# On the instructions, whose answers are a larger share (19 %), the maintainer's runs of the same
# comparison (13 runs: 150 to 250 steps, batches of 8 or 16, three seeds) gave gaps between −0.02 and
# 0.15: positive in 12 of the 13, but small and noisy. On large models the
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
# uses) solves the same bin-packing problem with another heuristic. The row counts differ (here TRL's
# needed a few more rows), but both remove most of the padding.

# %%
from datasets import Dataset
from trl.data_utils import pack_dataset

packed_trl = pack_dataset(
    Dataset.from_dict({"input_ids": [e["input_ids"] for e in examples]}),
    seq_length=128,
    strategy="bfd",
)
print(
    f"TRL bfd: {len(packed_trl)} rows; ours: {len(rows)} rows; TRL columns {packed_trl.column_names}"
)
waste_trl = 1 - sum(lengths) / (len(packed_trl) * 128)
print(f"padding left: TRL {waste_trl:.1%}, ours {waste_packed:.1%}")
assert waste_trl < waste_padded / 2, "TRL's packing should also remove most of the padding"

# %% [markdown]
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
# Per example it costs about a fifth less time than padded batches here (maintainer's timing on the
# 2-core CPU: 5.6 against 6.8 ms per example; the saving is smaller than the padding share because a
# row of 128 with a dense 128 × 128 mask costs more attention than a short padded batch).
#
# ## 5 · SFT from scratch with the course loop
#
# One model for the rest of the chapter: full fine-tuning of all 2 M parameters on the instructions
# plus the 400 reading exercises (listed twice, so that reading a note gets enough of the steps),
# response-masked and packed: 6 rows of 128 tokens per step, about 16 examples. Learning rate
# $10^{-3}$ with warm-up and cosine decay (`training.train`, chapter 03).

# %%
torch.manual_seed(0)
chat = copy.deepcopy(base)
hist_sft = train(
    chat,
    sft.packed_batches(tok, train_recs + 2 * context_recs, rows_per_batch=6),
    TrainConfig(lr=1e-3, max_steps=MAIN_STEPS, progress=False),
)
print(
    f"{MAIN_STEPS} steps in {hist_sft.seconds:.0f} s, final training loss {hist_sft.loss[-1]:.3f}"
)
plot_losses({"full SFT": hist_sft}, title="SFT training loss (response tokens)")

# %% [markdown]
# The loss falls steeply in the first few dozen steps: that is the format being learnt (answer,
# then `<|end|>`). The slow part afterwards is the content of the answers.
#
# ## 6 · Exact match, per skill, before and after

# %%
em_sft = sft.exact_match_by_skill(chat, tok, test_recs)
print({k: round(v, 3) for k, v in em_sft.items()})
plot_bars(
    {f"{k} base": em_base[k] for k in em_sft} | {f"{k} SFT": em_sft[k] for k in em_sft},
    title="exact match on held-out instructions",
    ylabel="exact match",
)
assert em_sft["all"] > em_base["all"] + 0.1, "SFT should raise held-out exact match by > 10 points"
for r in test_recs[::50]:
    reply = generate(chat, tok, [sft.user_text(r)], chat=True)[0]
    print(f"{r['skill']:10s} {sft.user_text(r)[:50]!r:55s} -> {reply!r}")

# %% [markdown]
# The tuned model answers in the format and stops; EM rises from about 0 to 0.18. The skills differ
# a lot: classifying a review (one word out of two) is easy, facts about people in the corpus are
# partly known, arithmetic is hard for a 2 M-parameter model that has never seen an algorithm for it
# (more steps help some skills: the maintainer's 1000-step run reached 0.27 on the validation set). A
# perfect answer format is necessary for EM and nowhere near sufficient.
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
em_lora = sft.exact_match_by_skill(lora_chat, tok, test_recs)
print(
    f"TRL + LoRA, {TRL_STEPS} steps: response CE {response_ce(lora_chat):.3f} (base {response_ce(base):.3f}),"
    f" test EM {em_lora['all']:.3f} (base {em_base['all']:.3f})"
)
assert response_ce(lora_chat) < response_ce(base) - 1.0, (
    "a short LoRA run should already teach much of the format"
)

# %% [markdown]
# A short LoRA run moves the response loss most of the way from the base model's (the largest part
# of that is the format), but 25 steps are far too few for exact answers: EM stays near zero
# (0.000), where the full-SFT model, with many times the steps and all weights, reached 0.18.
# Exact match is a harsh metric: one wrong token and the answer counts as wrong. TRL adds the conveniences (dataset formats, packing, logging, checkpoints, multi-GPU);
# the loss it optimises is the one we wrote.
#
# ## 8 · Knowledge: in the weights or in the prompt?
#
# A popular hope: fine-tune a model on your documents and it will answer questions about them. Test
# it with the 80 `new_facts` (about 20 people the corpus never mentions). Three ways to get a fact
# into an answer to the chat question ("Where does Ines Castell live?"):
#
# 1. **zero-shot**: ask the SFT model; it has never seen these people, so it can only guess;
# 2. **in the prompt** (retrieval-style, as in RAG): put the fact's statements before the question,
#    in one user turn (the note, a line break, the question); the 400 reading exercises in the SFT
#    data taught the model to use such notes;
# 3. **in the weights**: continue training the SFT model on the statements, then ask without context.

# %%
questions, answers = [f["question"] for f in facts], [f["answer"] for f in facts]
with_notes = [f"{n}\n{q}" for n, q in zip(notes, questions)]  # the facts, then the question
zero_shot = exact_match(generate(chat, tok, questions, chat=True), answers)
in_prompt = exact_match(generate(chat, tok, with_notes, chat=True), answers)
print(
    f"SFT model on the 80 new facts: zero-shot EM {zero_shot:.3f}, facts in the prompt EM {in_prompt:.3f}"
)
for q, n, a in zip(questions[:3], notes, generate(chat, tok, with_notes[:3], chat=True)):
    print(f"{n} | {q} -> {a}")
assert in_prompt > zero_shot + 0.3, (
    "a model trained to read notes should use facts given in the prompt"
)


# %% [markdown]
# Now the weights. The statements are plain sentences ("Ines Castell lives in Stonebridge."); we train
# the chat model on them as text, the way one would fine-tune on documents, and probe three ways:
# the **seen** phrasing ("Ines Castell lives in" → rank the candidate towns), an unseen
# **paraphrase** ("Ines Castell has a house in"), and the **chat question** (generated, EM).

# %%
def probe(model) -> dict:
    cands = [f["candidates"] for f in facts]
    return {
        "seen": accuracy(choose_many(model, tok, [f["probe_seen"] for f in facts], cands), answers),
        "paraphrase": accuracy(
            choose_many(model, tok, [f["probe_paraphrase"] for f in facts], cands), answers
        ),
        "chat question": exact_match(generate(model, tok, questions, chat=True), answers),
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
print("before:", before, "\nafter: ", after, f"\nin the prompt: {in_prompt:.3f}")

# %% [markdown]
# What the claims are, as checks: the statements must have been learnt (else the experiment says
# nothing); what the chat question gains must be far below what the seen phrasing gains; and the
# chat question must still lag far behind the fact given in the prompt. (An earlier version asserted
# "the chat EM does not rise by 0.05", a margin of four questions out of 80 that failed on another
# machine: with 80 items the standard error of an EM near 0.05 is about 0.025, so only gaps of
# several tenths are claims here.)

# %%
gain = {k: after[k] - before[k] for k in ("seen", "chat question")}
n_chat = {k: round(d["chat question"] * len(questions)) for k, d in (("before", before), ("after", after))}
print(
    f"gain, seen phrasing: {gain['seen']:+.3f}; gain, chat question: {gain['chat question']:+.3f} "
    f"({n_chat['before']} -> {n_chat['after']} of {len(questions)} questions)"
)
assert after["seen"] > before["seen"] + 0.3, (
    "training on the statements should teach the seen phrasing"
)
assert gain["chat question"] < gain["seen"] - 0.3, (
    "the statements should teach the chat answers far less than the phrasing they show"
)
assert after["chat question"] < in_prompt - 0.2, (
    "facts in the weights should not beat facts in the prompt here"
)
plot_bars(
    {
        "zero-shot": zero_shot,
        "fine-tuned: seen phrasing": after["seen"],
        "fine-tuned: paraphrase": after["paraphrase"],
        "fine-tuned: chat question": after["chat question"],
        "in the prompt": in_prompt,
    },
    title="new facts: in the weights vs in the prompt",
    ylabel="accuracy / EM",
)

# %% [markdown]
# The fine-tuned model has learnt the *sentences*: it completes the seen phrasing far above chance
# (0.75, from 0.12), and even the held-out paraphrase (0.62): a statement-shaped probe
# transfers to another statement. The *chat question* gains nothing beyond noise (the counts out of
# 80 are printed above; plain-text steps even erode the chat behaviour, and the general CE below
# rises too), because "X lives in Y" and "Where does X live? → Y" are different token sequences
# and nothing in the fine-tuning connects them. This is the effect that
# Allen-Zhu & Li (*Physics of Language Models, Part 3.1*, 2023) study in detail: knowledge stored in one
# format is extractable in another only if the training data showed many facts in many forms
# (augmentation). We did not measure their remedy here (it needs rewriting every fact in several
# question and statement forms). The fact given in the prompt
# is used directly, needs no training per fact, and can be updated by changing a document: that is why
# retrieval (RAG) is the default for knowledge, and fine-tuning for behaviour and format.
#
# ## 9 · What SFT costs: general language ability
#
# The cross-entropy on general corpus text (`corpus_val`, 200 documents) measures how well the model
# still models ordinary text. Full SFT moved all weights towards chat answers:

# %%
ce = {
    "base": cross_entropy(base, tok, general),
    f"full SFT {MAIN_STEPS} steps": cross_entropy(chat, tok, general),
    "+ facts fine-tune": cross_entropy(informed, tok, general),
    f"TRL LoRA {TRL_STEPS} steps": cross_entropy(lora_chat, tok, general),
}
print({k: round(v, 3) for k, v in ce.items()})
assert ce[f"full SFT {MAIN_STEPS} steps"] > ce["base"] + 0.5, (
    "full SFT should damage general-text modelling"
)

# %% [markdown]
# An honest finding: full SFT at this learning rate damages the base ability a lot (cross-entropy from
# 0.44 to 2.30 nats per token, a perplexity several times higher). A large model fine-tuned gently
# on a small instruction set changes far less, but the direction is the same, and chapter 03 named
# it: catastrophic forgetting. The chat model does not need to write corpus documents, yet the damage
# is real and shows up in everything not in the SFT data.
#
# What keeps it? Chapter 03's cure, **replay**: mix some general text into the SFT batches (its loss on
# every token). Two short runs on the instructions, 150 steps of 8, the same seed, one with 300 corpus
# documents shuffled in:

# %%
corpus = [r["text"] for r in load_jsonl("corpus_sample")[:300]]
short, resp = {}, {}
for name, batches in [
    ("SFT, 150 steps", sft.sft_batches(tok, train_recs, 8)),
    ("SFT + replay, 150 steps", sft.mixed_batches(tok, train_recs, corpus, 8)),
]:
    torch.manual_seed(0)
    short[name] = copy.deepcopy(base)
    train(short[name], batches, TrainConfig(lr=1e-3, max_steps=150, progress=False))
    ce[name], resp[name] = cross_entropy(short[name], tok, general), response_ce(short[name])
    print(f"{name}: general CE {ce[name]:.3f}, instruction response CE {resp[name]:.3f}")
assert ce["SFT + replay, 150 steps"] < ce["SFT, 150 steps"] - 0.2, (
    "replay should keep general ability"
)

# %% [markdown]
# Replay keeps most of the general ability (general CE 0.51 against 1.58, base 0.44), at a price
# on the answers (response CE 1.59 against 1.29: about a quarter of each batch is now corpus
# text, so the answers get fewer updates). Other measures from the
# maintainer's experiments (not rerun here, they take minutes): LoRA on all linear layers (r 16,
# lr $3 \cdot 10^{-3}$, 600 steps) ended at general CE 1.56 against full SFT's 3.21 at 600 steps,
# with EM 0.21 against 0.26, so a low-rank update forgets less and learns less; a lower learning rate
# does the same trade. Replay is the one that buys general ability back almost for free.
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
# And on whole answers: 50 validation prompts (every second one, 10 per skill), 4 samples each, EM (mean over all samples) and the share
# of distinct answers per prompt (1/4 = always the same answer, 1 = four different ones).
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
    decode[name] = (
        exact_match(sum(draws, []), refs * 4),
        distinct_share([list(a) for a in zip(*draws)]),
    )
    print(f"{name:12s} EM {decode[name][0]:.3f}  distinct answers {decode[name][1]:.2f}")

# %% [markdown]
# Greedy decoding gives the same answer every time (distinct share exactly 1/4). The checks below
# say what the table should show, then a few answers to an open question at three temperatures:

# %%
assert decode["greedy"][1] == 0.25, "greedy decoding is deterministic: one answer per prompt"
assert decode["T=2.0"][0] < decode["greedy"][0] - 0.03, "a hot temperature should cost exact match"
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
# What the table shows: up to $T = 1$ exact match hardly moves (greedy 0.10, $T = 0.5$ 0.10; on
# 50 prompts these differ by less than the sampling noise), while the answers already vary (distinct
# share 0.71 at $T = 0.5$). At $T = 2$ EM collapses to 0.01 and almost every sample differs (0.99):
# the flattened distribution draws tokens the model itself considers unlikely. For tasks with one right
# answer (facts, arithmetic, classification) greedy is the safe default: as good, and reproducible.
# Sampling is for tasks where variety is the point (several drafts, creative text), and for methods
# that need several different answers to compare (best-of-n, the preference data of chapter 09). Top-p cuts the long tail of unlikely tokens that a high
# temperature would otherwise draw: at $T = 1$ it keeps most of the variety and drops the worst
# samples. Default settings of chat products (e.g. $T \approx 0.7$, $p \approx 0.9$) are a compromise,
# not a law.
#
# ## Summary
#
# * A chat template renders turns into one sequence with special tokens; the generation prompt
#   (`<|assistant|>\n`) must be a prefix of the full conversation, and the labels start right after it.
# * Loss on the response only: at equal steps, the masked run reached a lower answer loss (0.60 nats
#   on the reading test, where only 7 % of the tokens are answer). TRL's `completion_only_loss` masks
#   the same tokens as ours, plus the template's trailing newline.
# * Packing removed most padding (31 % → 4 % of the positions) and, with reset positions and a
#   block-diagonal mask (chapter 02), gives exactly the padded loss.
# * Full SFT taught the format and lifted held-out EM from 0.00 to 0.18; TRL + LoRA, 25 steps: 0.000.
# * Facts in the prompt (EM 0.49) beat facts fine-tuned into the weights (chat EM 0.01, though
#   the seen phrasing was learnt: 0.75): fine-tuning teaches behaviour, retrieval supplies knowledge.
# * Full SFT raised the general-text cross-entropy from 0.44 to 2.30; replay of corpus text
#   kept most of it (1.58 → 0.51 at 150 steps).
# * Greedy for single right answers; a moderate temperature buys variety at little cost in EM here,
#   $T = 2$ destroys it (0.10 → 0.01); top-p trims the tail.
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
