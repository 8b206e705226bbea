# %% [markdown]
# # 01 · Pretraining vs fine-tuning
#
# **Measured runtime:** 131 s on a 2-core CPU (`make execute`; your machine may differ).
#
# A language model is trained twice. **Pretraining** teaches it the language and the world from a
# lot of general text; **fine-tuning** continues the same training on a little data of the task
# or domain you care about. In this chapter you do both for real, on the course's small Llama.
#
# **You will learn to**
# 1. write the one objective behind both: next-token cross-entropy, by hand and with transformers;
# 2. pretrain a model from scratch and read its loss against two yardsticks: a unigram model and the *entropy floor* of the data;
# 3. fine-tune for a new domain and measure what it gains (and what it starts to forget);
# 4. decide between prompting, retrieval and fine-tuning from measurements, not slogans.
#
# **Prerequisites:** chapter 00; PyTorch tensors; what a softmax is.

# %%
import copy
import math
import torch
import torch.nn.functional as F
import course_lib
from course_lib.models import load_model, new_model
from course_lib.build.base_model import generator_entropy
from course_lib.data import load_jsonl
from course_lib.world.datasets import corpus_documents
from course_lib.evaluation import (
    cross_entropy,
    perplexity,
    unigram_cross_entropy,
    choose_many,
    accuracy,
)
from course_lib.generation import generate
from course_lib.training import TrainConfig, train, pack_tokens, lm_batches, text_batches
from course_lib.plotting import plot_losses, plot_bars

device = course_lib.setup(seed=0)

# %% [markdown]
# ## 1 · One objective: predict the next token
#
# A causal language model reads tokens $x_1,\dots,x_T$ and at every position outputs a distribution
# $p_\theta(\cdot \mid x_{<t})$ over the vocabulary. Pretraining and fine-tuning both minimise the
# same loss, the average negative log-likelihood of each next token:
#
# $$\mathcal{L}(\theta) = -\frac{1}{T-1}\sum_{t=2}^{T} \log p_\theta(x_t \mid x_{<t}).$$
#
# Measured in nats per token. $e^{\mathcal{L}}$ is the **perplexity**: the model is as unsure as if it
# chose uniformly among that many tokens. What differs between pretraining and fine-tuning is only
# *the data* (and usually the learning rate and the number of steps).

# %%
model, tok = load_model("causal", device=device)
text = "Yara Marsh lives in Fernwick."
ids = tok(text, return_tensors="pt")["input_ids"].to(device)
print(tok.convert_ids_to_tokens(ids[0]))

# %% [markdown]
# The tokenizer added `<|bos|>` and split the sentence into byte-level BPE pieces (`Ġ` marks a
# leading space). Now the loss by hand: the logits at position $t$ predict token $t+1$, so logits
# and targets are **shifted by one** against each other.

# %%
logits = model(ids).logits  # [1, T, vocab]
by_hand = F.cross_entropy(logits[0, :-1], ids[0, 1:])
library = model(ids, labels=ids).loss  # transformers shifts internally
print(f"by hand {by_hand.item():.4f}   transformers {library.item():.4f}")
assert torch.allclose(by_hand, library, atol=1e-5), "the hand-written loss must equal the library's"

# %% [markdown]
# ## 2 · Pretraining from scratch (one minute of it)
#
# A fresh model of exactly the base model's architecture, random weights. Before training it is
# close to uniform over the vocabulary, so its loss should be near $\ln(\text{vocab size}) = \ln 1399 \approx 7.24$.

# %%
val_docs = list(corpus_documents("val", 300))
val_texts = [d["text"] for d in val_docs]
scratch = new_model(tok, seed=0).to(device)
before = cross_entropy(scratch, tok, val_texts)
print(f"random init: {before:.2f} nats/token  (ln {len(tok)} = {math.log(len(tok)):.2f})")
print("sample:", generate(scratch, tok, ["Yara Marsh lives in"], chat=False, max_new_tokens=15)[0])

# %% [markdown]
# Pretraining data is packed: documents are concatenated (each ends with `<|end|>`) and cut into
# blocks of 128 tokens, so no compute is wasted on padding. 120 steps × 32 blocks ≈ 0.5 M tokens;
# the shipped base model saw about 8 M.

# %%
docs = [d["text"] for d in corpus_documents("train", 15_000)]
blocks = pack_tokens(tok(docs)["input_ids"], block_size=128, eos_id=tok.eos_token_id)
cfg = TrainConfig(lr=3e-3, max_steps=120, warmup_steps=12, eval_every=40)
hist = train(
    scratch,
    lm_batches(blocks, batch_size=32),
    cfg,
    eval_fn=lambda m: cross_entropy(m, tok, val_texts[:100]),
)
after = cross_entropy(scratch, tok, val_texts)
print(f"after {cfg.max_steps} steps: {after:.2f} nats/token ({hist.seconds:.0f} s)")
print("sample:", generate(scratch, tok, ["Yara Marsh lives in"], chat=False, max_new_tokens=25)[0])

# %% [markdown]
# The loss curve: a steep fall while the model learns which tokens are frequent, then a slow
# descent while it learns the world's facts and grammar.

# %%
plot_losses({"from scratch": hist}, title="Pretraining a fresh model")
assert after < before - 4.0, (
    f"pretraining should cut the loss by > 4 nats/token, got {before:.2f} -> {after:.2f}"
)

# %% [markdown]
# ## 3 · How good is the shipped base model? Two yardsticks
#
# * **Unigram model**: predicts every token with its overall frequency, ignoring context. Any
#   model worth the name must beat it by far.
# * **The entropy floor.** The course generated every document itself and knows the probability
#   of each random choice that produced it, so $-\log p_{\text{generator}}(\text{doc})$ is known
#   exactly. Summed over the split and divided by its tokens it is the generator's entropy rate,
#   the loss a perfect model would reach. No model can go below it (strictly, our number is an upper
#   bound on the floor: two choice sequences that happen to produce the same text are counted
#   apart). Real corpora have no such number; here you can see how much room is left.

# %%
train_ids = [x[1:] + [tok.eos_token_id] for x in tok(docs)["input_ids"]]
val_ids = [x[1:] + [tok.eos_token_id] for x in tok(val_texts)["input_ids"]]
yardsticks = {
    "unigram": unigram_cross_entropy(train_ids, val_ids, len(tok)),
    "1 min from scratch": after,
    "base model": cross_entropy(model, tok, val_texts),
    "floor (generator)": generator_entropy(val_docs, tok),
}
for k, v in yardsticks.items():
    print(f"{k:>20}: {v:.3f} nats/token   perplexity {math.exp(v):7.2f}")

# %% [markdown]
# As a picture (the floor is the data's own entropy; no model can go below it):

# %%
plot_bars(yardsticks, title="Validation loss on the general corpus", ylabel="nats / token")
y = yardsticks
assert y["floor (generator)"] <= y["base model"] < y["1 min from scratch"] < y["unigram"], (
    "ordering broken"
)
assert y["base model"] <= 0.5 * y["unigram"], (
    "the base model must beat the unigram model by 2x at least"
)

# %% [markdown]
# The base model is within a small distance of the floor. Where is the rest? Mostly in the
# world's **facts**: which town each of the 30 people lives in, their pets and favourite foods.
# The generator knows them; the model had to memorise them from text. Its model card
# (`data/base_model/README.md`) reports the share of facts it ranks first.

# %% [markdown]
# ## 4 · Fine-tuning for a new domain: clinic notes
#
# The clinic notes use words the corpus never contains (`amoxicillin`, `PRN`, `O/E`). The tokenizer
# was trained on the corpus, so it needs many more pieces per word for them: the first symptom
# of a domain shift.

# %%
clinic_train = [r["text"] for r in load_jsonl("clinic_train")]
clinic_val = [r["text"] for r in load_jsonl("clinic_val")]


def tokens_per_word(texts):
    return sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts) / sum(
        len(t.split()) for t in texts
    )


print(
    f"tokens per word: corpus {tokens_per_word(val_texts):.2f}, clinic {tokens_per_word(clinic_val):.2f}"
)
print(clinic_val[0])

# %% [markdown]
# Before fine-tuning, measure the base model on both domains, then train a copy on clinic notes
# for 60 steps (lr 1e-3, half of pretraining's peak, from the pretrained weights):

# %%
clinic_before = perplexity(model, tok, clinic_val)
general_before = perplexity(model, tok, val_texts)
print(f"base model perplexity: general {general_before:.2f}, clinic {clinic_before:.1f}")

# %% [markdown]
# Fine-tuning = the same training loop, started from the pretrained weights, on the domain data,
# with a smaller learning rate and far fewer steps. We train a copy and keep the base model intact.

# %%
clinic_model = copy.deepcopy(model)
cfg = TrainConfig(lr=1e-3, max_steps=60, warmup_steps=6)
hist_clinic = train(clinic_model, text_batches(tok, clinic_train, batch_size=16), cfg)
clinic_after = perplexity(clinic_model, tok, clinic_val)
general_after = perplexity(clinic_model, tok, val_texts)
print(
    f"after fine-tuning ({hist_clinic.seconds:.0f} s): clinic {clinic_before:.1f} -> {clinic_after:.2f}, "
    f"general {general_before:.2f} -> {general_after:.2f}"
)

# %% [markdown]
# The two effects this section claims, as checks that fail if the experiment stops working:

# %%
assert clinic_after < clinic_before / 5, (
    "domain fine-tuning should cut clinic perplexity at least 5-fold"
)
assert general_after > general_before, "expected some forgetting of the general domain"

# %% [markdown]
# The domain perplexity falls by a large factor in a few seconds of training, because the model
# already knows how text works and only has to learn the new vocabulary and format. The general
# perplexity rises: **catastrophic forgetting** in miniature. Chapter 03 measures it properly and
# cures it with replay of general data.

# %% [markdown]
# ## 5 · Prompting vs fine-tuning on a task
#
# Task: label a product review `positive`, `negative` or `neutral`. Without training, the only way
# to tell a base model the task is the prompt. **Few-shot prompting** shows it solved examples, then
# the query; we read its answer by comparing the probabilities of the three labels after
# `Sentiment:`.

# %%
from course_lib.prompting import few_shot_prompt
from course_lib.world.documents import LABELS

rev_train, rev_test = load_jsonl("reviews_train"), load_jsonl("reviews_test")[:300]
by_label = [[r for r in rev_train if r["label"] == lab][:2] for lab in LABELS]
shots = [r for pair in zip(*by_label) for r in pair]  # 6 shots, labels interleaved
print(few_shot_prompt(shots[:3], rev_test[0]["text"]))

# %% [markdown]
# Now score all 300 test reviews this way and count which answers the model gives:

# %%
from collections import Counter

gold = [r["label"] for r in rev_test]
few_shot = choose_many(
    model, tok, [few_shot_prompt(shots, r["text"]) for r in rev_test], [LABELS] * len(rev_test)
)
acc_few = accuracy(few_shot, gold)
print(
    f"few-shot prompting accuracy: {acc_few:.1%} (chance 33.3%); answers given: {dict(Counter(few_shot))}"
)

# %% [markdown]
# The base model never saw a labelled review, nor the words *positive*, *negative* and *neutral*
# (its tokenizer spells them letter by letter). Prompting a model this small cannot teach it a task;
# it answers almost everything the same way. Large models do far better at few-shot learning
# (Brown et al., 2020, *Language Models are Few-Shot Learners*), but the gap to fine-tuning on
# enough labelled data remains on most tasks.
#
# **Fine-tuning** for classification usually swaps the language-model head for a small
# classification head: `AutoModelForSequenceClassification` loads the same pretrained body and adds
# a fresh linear layer that maps the last token's hidden state to 3 scores; everything is then
# trained with cross-entropy on the labels.

# %%
from course_lib.classification import label_batches, predict_labels

clf, _ = load_model("classifier", device=device)  # the base model + a fresh 3-way head
hist_rev = train(
    clf,
    label_batches(tok, rev_train, batch_size=32),
    TrainConfig(lr=5e-4, max_steps=300, warmup_steps=30),
)
acc_tuned = accuracy(predict_labels(clf, tok, [r["text"] for r in rev_test]), gold)
print(f"fine-tuned accuracy: {acc_tuned:.1%} ({hist_rev.seconds:.0f} s of training)")

# %% [markdown]
# For reference, a bag-of-words logistic regression on the same training reviews. It cannot see
# word order, so it cannot tell *"the lid is great, but the handle is awful"* (negative) from
# *"the lid is awful, but the handle is great"* (positive):

# %%
from course_lib.baselines import bag_of_words_accuracy

acc_bow = bag_of_words_accuracy(rev_train, rev_test)
print(f"bag of words: {acc_bow:.1%}   few-shot: {acc_few:.1%}   fine-tuned: {acc_tuned:.1%}")
assert acc_few < 0.45, "few-shot prompting of the small base model should stay near chance"
assert acc_tuned > 0.9 and acc_tuned > acc_bow + 0.2, (
    "the fine-tuned model should clearly beat bag-of-words"
)

# %% [markdown]
# The learning rate matters. When this chapter was written, the same 300-step fine-tune reached
# 96 % with lr 2e-4 and 99.7 % with lr 1e-3, but only 59 % with lr 2e-3, the peak learning rate of
# pretraining: too large a step wrecks the pretrained features. Try it. Fine-tuning needs a smaller learning rate than
# pretraining; chapter 03 returns to this.

# %% [markdown]
# ## 6 · Facts in the prompt vs facts in the weights
#
# `new_facts` holds 80 facts about 20 people of whom the corpus says nothing. (Their names are
# those of one-off visitors who turn up in corpus documents with different, random facts each time,
# so the model knows the names as words but nothing about these people.) Three ways to make the
# model answer a probe such as *"Ines Castell lives in ___"*:
#
# | method | what the model gets |
# |---|---|
# | zero-shot | only the probe: it has to guess |
# | retrieval (facts in the prompt) | the fact's statements pasted before the probe |
# | fine-tuning (facts in the weights) | trained on the statements; at test time, only the probe |
#
# Each probe comes in the **seen** phrasing (the one used in training) and an unseen **paraphrase**
# (a phrasing the corpus uses for other people, never for this fact). Answers are scored by ranking
# all candidate values.

# %%
from course_lib.prompting import retrieval_prompt

facts = load_jsonl("new_facts")
cands = [f["candidates"] for f in facts]
answers = [f["answer"] for f in facts]


def probe_acc(m, kind, with_facts=False):
    prompts = [retrieval_prompt(f["statements"], f[kind]) if with_facts else f[kind] for f in facts]
    return accuracy(choose_many(m, tok, prompts, cands), answers)


chance = sum(1 / len(c) for c in cands) / len(cands)
print(facts[0]["statements"], "|", facts[0]["probe_seen"], "|", facts[0]["probe_paraphrase"])

# %% [markdown]
# Fine-tune a copy of the base model on the 80 facts' statements (a few seconds), then score all
# three methods on both phrasings:

# %%
fact_texts = [s for f in facts for s in f["statements"]]
fact_model = copy.deepcopy(model)
hist_facts = train(
    fact_model,
    text_batches(tok, fact_texts, batch_size=16),
    TrainConfig(lr=1e-3, max_steps=80, warmup_steps=8),
)
table = {
    "zero-shot": (probe_acc(model, "probe_seen"), probe_acc(model, "probe_paraphrase")),
    "retrieval": (probe_acc(model, "probe_seen", True), probe_acc(model, "probe_paraphrase", True)),
    "fine-tuned": (probe_acc(fact_model, "probe_seen"), probe_acc(fact_model, "probe_paraphrase")),
}
print(f"{'method':>12} {'seen':>7} {'paraphrase':>11}   (chance {chance:.1%})")
for k, (s, p) in table.items():
    print(f"{k:>12} {s:7.1%} {p:11.1%}")

# %% [markdown]
# The same table as a plot:

# %%
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(6.4, 3.4))
for i, kind in enumerate(["seen phrasing", "paraphrase"]):
    ax.bar([j + 0.38 * i for j in range(3)], [v[i] for v in table.values()], width=0.38, label=kind)
ax.axhline(chance, ls="--", color="grey", label="chance")
ax.set_xticks([j + 0.19 for j in range(3)], list(table))
ax.set_ylabel("accuracy")
ax.legend(fontsize=8)
ax.set_title("New facts: prompt vs weights");

# %% [markdown]
# And the claims of this section, checked:

# %%
z, r, f = table["zero-shot"], table["retrieval"], table["fine-tuned"]
assert max(z) < chance + 0.15, "zero-shot should be near chance: the facts are new"
assert min(r) > 0.8, "facts in the prompt should be answered reliably in both phrasings"
assert f[0] > 0.7, "fine-tuning should store most facts in their trained phrasing"
assert f[0] - f[1] >= 0.05 and r[1] > f[1] + 0.1, (
    "expected the paraphrase gap of fine-tuning, not of retrieval"
)

# %% [markdown]
# What the table says:
#
# * **Prompting cannot add knowledge.** Zero-shot is at chance level: no prompt wording makes a model
#   know a fact it never saw.
# * **Retrieval works immediately and in any phrasing**: the model only has to copy from its context.
#   It costs a longer prompt at every call and a retriever that finds the right text. It also relies
#   on a skill learnt in pretraining: copying facts from context. Our corpus teaches it with its
#   visitor documents, which restate facts seen earlier in the same document. (While this chapter was
#   written, the new people first had invented names such as "Emrys Tamsin", which the tokenizer
#   splits into single letters; retrieval then reached only about 50 %: the small model copies
#   reliably only for names it knows as tokens.)
# * **Fine-tuning stores facts in the weights**, but the knowledge is tied to the phrasing it was
#   trained on; the paraphrase probe scores lower. This matches larger-scale findings (e.g. Allen-Zhu
#   & Li, *Physics of Language Models 3.1*, 2023: knowledge is extractable only when the training
#   data states it in varied ways); the fix is to train on many paraphrases (an exercise of this chapter),
#   and chapter 08 injects knowledge through instruction tuning.
#
# ## Summary
# * Pretraining and fine-tuning optimise the same next-token cross-entropy; they differ in data,
#   learning rate and length.
# * A loss means little alone: compare it with a unigram model and, where you can, with the entropy of the data.
# * Fine-tuning adapts fast to a new domain or task but starts to forget the old one.
# * Few-shot prompting a small base model does not solve a task that fine-tuning solves in seconds;
#   retrieval beats fine-tuning for injecting facts that must be recalled in any phrasing.

# %% [markdown]
# ## Quiz
#
# 1. The loss of a model at random initialisation is about 7.2 nats/token here. Why that number?
# 2. Why can no model get below the generator's entropy on this data?
# 3. Clinic perplexity drops far more than general perplexity rises. Why is that not a reason to
#    ignore the rise?
# 4. A colleague says "just put it in the prompt" for 10,000 product facts. What does the table in
#    section 6 say, and what would you add?
#
# <details><summary>Answers</summary>
#
# 1. A fresh model's logits are near zero, so its predictions are near uniform over the 1399 tokens of the vocabulary: $\ln 1399 = 7.24$.
# 2. The entropy is the expected surprise of the data's own random choices; a model can at best
#    know the generating distribution exactly, and then its cross-entropy equals the entropy (Gibbs' inequality).
# 3. The rise is forgetting of everything the model was pretrained for; a few more steps or a higher
#    learning rate make it much larger (chapter 03), and a deployed model usually needs both skills.
# 4. Retrieval recalls facts reliably in any phrasing, but 10,000 facts do not fit in a context, so
#    you need a retriever that selects the few relevant ones per query. Fine-tuning makes recall
#    cheap at inference but needs paraphrased training data to generalise.
# </details>
#
# ## Interview questions
# * What is the difference between pretraining and fine-tuning, mechanically and in purpose?
# * What is perplexity, and what is a good perplexity?
# * When would you fine-tune, when use retrieval (RAG), and when only prompt engineering?
# * What is catastrophic forgetting and how do you detect it?
#
# Answers are in the chapter's solutions; practise first with
# [the exercises](../exercises/01_pretraining_exercises.ipynb).
