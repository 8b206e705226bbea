# %% [markdown]
# # 01 · Pretraining vs fine-tuning
#
# **Measured runtime:** 120 s on a 2-core CPU (`make execute`; your machine may differ).
#
# A language model is trained twice. **Pretraining** teaches it the language and the world from a
# lot of general text; **fine-tuning** continues the same training on a little data of the task
# or domain you care about. In this chapter you do both for real, on the course's small Llama.
#
# **You will learn to**
# 1. write the one objective behind both: next-token cross-entropy, by hand and with transformers;
# 2. pretrain a model from scratch and read its loss against two yardsticks: a unigram model and the *entropy floor* of the data;
# 3. fine-tune for a new domain and measure what it gains (and what it starts to forget);
# 4. decide between prompting, retrieval and fine-tuning from measurements, not slogans;
# 5. read a comparison over seeds: mean ± sd, error bars, and "within noise" when it is.
#
# **Prerequisites:** chapter 00; PyTorch tensors; what a softmax is.

# %%
import copy
import json
import math
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
import course_lib
from course_lib.models import load_model, new_model
from course_lib.build.base_model import generator_entropy
from course_lib.data import DATA_DIR, load_jsonl
from course_lib.world.datasets import corpus_documents
from course_lib.evaluation import (
    cross_entropy,
    unigram_cross_entropy,
    accuracy,
)
from course_lib.generation import generate
from course_lib.training import TrainConfig, train, pack_tokens, lm_batches, text_batches
from course_lib.plotting import plot_losses, plot_bars
from course_lib import sweeps
from course_lib.uncertainty import spread, differs, verdict

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
# ## 2 · Pretraining from scratch (60 steps of it)
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
# blocks of 128 tokens, so no compute is wasted on padding. We train 60 steps of 32 blocks at a
# peak learning rate of 3e-3 and compare the tokens seen with the shipped base model's.

# %%
docs = [d["text"] for d in corpus_documents("train", 15_000)]
blocks = pack_tokens(tok(docs)["input_ids"], block_size=128, eos_id=tok.eos_token_id)
cfg = TrainConfig(lr=3e-3, max_steps=60, warmup_steps=6, eval_every=20)
hist = train(
    scratch,
    lm_batches(blocks, batch_size=32),
    cfg,
    eval_fn=lambda m: cross_entropy(m, tok, val_texts[:100]),
)
after = cross_entropy(scratch, tok, val_texts)
card = json.loads((DATA_DIR / "base_model" / "metrics.json").read_text())
print(f"after {cfg.max_steps} steps: {after:.2f} nats/token ({hist.seconds:.0f} s)")
print(f"tokens seen: {cfg.max_steps * 32 * 128:,} here, {card['tokens_seen']:,} by the base model")
print("sample:", generate(scratch, tok, ["Yara Marsh lives in"], chat=False, max_new_tokens=25)[0])

# %% [markdown]
# The loss curve: a steep fall while the model learns which tokens are frequent, then a slower
# descent while it learns grammar and the world's facts.

# %%
plot_losses({"from scratch": hist}, title="Pretraining a fresh model")
assert after < before - 2.5, (  # 7.22 -> 3.60 measured at 60 steps (2 threads)
    f"pretraining should cut the loss by > 2.5 nats/token, got {before:.2f} -> {after:.2f}"
)

# %% [markdown]
# ## 3 · How good is the shipped base model? Three yardsticks
#
# * **Uniform guess**: $\ln V$, the loss of a model that knows nothing, not even the vocabulary's
#   frequencies.
# * **Unigram model**: predicts every token with its overall frequency, ignoring context. Any
#   model worth the name must beat it by far.
# * **The generator's entropy.** The course generated every document itself and knows the
#   probability of each random choice that produced it, so $-\log p_{\text{generator}}(\text{doc})$
#   is known exactly. Summed over the split and divided by its tokens it estimates the data's
#   entropy rate, the loss a perfect model would reach. Strictly it is an **upper bound** on that
#   floor (two choice sequences that produce the same text are counted apart), so a model could in
#   principle go slightly below it; it should not go noticeably below. Real corpora have no such
#   number; here you can see how much room is left.

# %%
train_ids = [x[1:] + [tok.eos_token_id] for x in tok(docs)["input_ids"]]
val_ids = [x[1:] + [tok.eos_token_id] for x in tok(val_texts)["input_ids"]]
yardsticks = {
    "uniform (ln V)": math.log(len(tok)),
    "unigram": unigram_cross_entropy(train_ids, val_ids, len(tok)),
    "60 steps from scratch": after,
    "base model": cross_entropy(model, tok, val_texts),
    "generator entropy": generator_entropy(val_docs, tok),
}
for k, v in yardsticks.items():
    print(f"{k:>20}: {v:.3f} nats/token   perplexity {math.exp(v):7.2f}")

# %% [markdown]
# As a picture:

# %%
plot_bars(yardsticks, title="Validation loss on the general corpus", ylabel="nats / token")
y = yardsticks
assert y["base model"] < y["60 steps from scratch"] < y["unigram"] < y["uniform (ln V)"], "ordering"
assert y["base model"] <= 0.5 * y["unigram"], "the base model must beat the unigram model by 2x"
assert abs(y["base model"] - y["generator entropy"]) < 0.05, "base model near the entropy bound"

# %% [markdown]
# The base model is within a few thousandths of a nat of the generator's entropy. Where the
# small rest sits cannot be read from these numbers; the model card
# (`data/base_model/README.md`) reports that the base model ranks the true value first for every
# one of the corpus's 120 (person, attribute) facts, so it is not in the facts it was asked about.

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


corpus_tpw, clinic_tpw = tokens_per_word(val_texts), tokens_per_word(clinic_val)
print(f"tokens per word: corpus {corpus_tpw:.2f}, clinic {clinic_tpw:.2f}")
print(clinic_val[0])

# %% [markdown]
# Before fine-tuning, measure the base model on both domains, in nats per token (perplexity in
# brackets):

# %%
clinic_before = cross_entropy(model, tok, clinic_val)
general_before = cross_entropy(model, tok, val_texts)
print(f"base model: general {general_before:.2f} nats ({math.exp(general_before):.2f}), "
      f"clinic {clinic_before:.2f} nats ({math.exp(clinic_before):,.0f})")

# %% [markdown]
# Fine-tuning = the same training loop, started from the pretrained weights, on the domain data,
# with a smaller learning rate and far fewer steps: 60 steps at lr 1e-3, a third of the peak used
# in section 2. We train a copy and keep the base model intact.

# %%
clinic_model = copy.deepcopy(model)
cfg = TrainConfig(lr=1e-3, max_steps=60, warmup_steps=6)
hist_clinic = train(clinic_model, text_batches(tok, clinic_train, batch_size=16), cfg)
clinic_after = cross_entropy(clinic_model, tok, clinic_val)
general_after = cross_entropy(clinic_model, tok, val_texts)
print(
    f"after fine-tuning ({hist_clinic.seconds:.0f} s): clinic {clinic_before:.2f} -> "
    f"{clinic_after:.2f} nats, general {general_before:.2f} -> {general_after:.2f} nats"
)

# %% [markdown]
# One run is one data order. The shipped sweep `ch01_clinic` ran the same recipe with three data
# orders (`make sweep NAME=ch01_clinic` rebuilds it); the live run should fall inside it:

# %%
clinic_rec = sweeps.load("ch01_clinic")
print(sweeps.table(clinic_rec, ["clinic_loss", "general_loss"]).to_string())
general_100 = cross_entropy(clinic_model, tok, val_texts[:100])  # the sweep's 100 documents
print(sweeps.place(general_100, clinic_rec, "lr=1e-3", "general_loss"))

# %% [markdown]
# The two effects this section claims, as checks that fail if the experiment stops working:

# %%
base_100 = cross_entropy(model, tok, val_texts[:100])
general_rise = sweeps.summary(clinic_rec, "lr=1e-3", "general_loss").mean - base_100
print(f"general loss rise: {general_rise:.2f} nats/token (mean of the sweep); "
      f"the 60-step model of section 2: {after:.2f}")
assert clinic_after < clinic_before - 5, "domain fine-tuning should cut the clinic loss by > 5 nats"
assert general_rise > 1.0, "this recipe should cost the general domain more than 1 nat/token"

# %% [markdown]
# The clinic loss falls by several nats per token in seconds, because the model already knows how
# text works and only has to learn the new vocabulary and format. The price is large: the general
# loss rises by the amount printed above; compare the result with the 60-step model trained from
# scratch in section 2. This learning rate and step count **wreck the general domain**: catastrophic forgetting,
# and not a small one. A smaller learning rate, fewer steps, or replay of general data keep much
# more; chapter 03 measures that trade-off.

# %% [markdown]
# ## 5 · Prompting vs fine-tuning on a task
#
# Task: label a product review `positive`, `negative` or `neutral`. Without training, the only way
# to tell a base model the task is the prompt. **Few-shot prompting** shows it solved examples,
# then the query; we read its answer by comparing the probabilities of the labels after
# `Sentiment:`. Which examples are shown is a random draw, so it gets a seed like any other.
# A first attempt, with the label names themselves:

# %%
from collections import Counter
from course_lib.prompting import (
    few_shot_prompt, pick_shots, label_logprobs, next_token_logprobs, calibrate,
    VERBALIZER, CONTENT_FREE,
)
from course_lib.world.documents import LABELS

rev_train, rev_test = load_jsonl("reviews_train"), load_jsonl("reviews_test")[:200]
gold = [r["label"] for r in rev_test]
shots = pick_shots(rev_train, per_label=2, seed=0)  # 6 solved examples
print(few_shot_prompt(shots[:2], rev_test[0]["text"]))
print({lab: tok.tokenize(" " + lab) for lab in LABELS})

# %% [markdown]
# **Mistake: multi-token label words scored by their summed log-probability.** The tokenizer
# spells the three labels in 4 to 5 pieces each, and a sum of log-probabilities over more pieces
# is more negative: the scores compare the labels' lengths and spellings as much as the review.
# Dividing by the number of pieces (length normalisation) is the usual repair. Both, on 200 test
# reviews:

# %%
prompts = [few_shot_prompt(shots, r["text"]) for r in rev_test]
sums, lengths = label_logprobs(model, tok, prompts)
strawman = {}
for name, scores in [("summed", sums), ("length-normalised", sums / lengths)]:
    pred = [LABELS[k] for k in scores.argmax(-1).tolist()]
    strawman[name] = accuracy(pred, gold)
    print(f"{name:>18}: accuracy {strawman[name]:.1%}, answers {dict(Counter(pred))}")
print(f"majority class share: {max(Counter(gold).values()) / len(gold):.1%}")

# %% [markdown]
# A fair few-shot baseline removes both handicaps. **Single-token verbalizers**: let the
# examples answer with words the model knows as one token, `good`, `bad` and `fine`, so one
# forward pass scores all three and no answer is longer than another. **Contextual calibration**
# (Zhao et al. 2021, *Calibrate Before Use*): a prompt makes the model favour some label whatever
# the review says; measure that bias on content-free inputs ("N/A", "[MASK]", "-") and divide it
# out, $\hat y = \arg\max_y p(y \mid x) / \bar p(y \mid \text{content-free})$. Three shot draws:

# %%
words = [VERBALIZER[lab] for lab in LABELS]
fair = {"single-token": [], "single-token, calibrated": []}
for seed in (0, 1, 2):
    draw = pick_shots(rev_train, per_label=2, seed=seed)
    query = [few_shot_prompt(draw, r["text"], VERBALIZER) for r in rev_test]
    lp = next_token_logprobs(model, tok, query, words)
    free = [few_shot_prompt(draw, t, VERBALIZER) for t in CONTENT_FREE]
    cf = next_token_logprobs(model, tok, free, words)
    for name, scores in [("single-token", lp), ("single-token, calibrated", calibrate(lp, cf))]:
        fair[name].append(accuracy([LABELS[k] for k in scores.argmax(-1).tolist()], gold))
for name, accs in fair.items():
    print(f"{name:>25}: {spread(accs)}")

# %% [markdown]
# With fair scoring the base model is still near chance: the failure is not the scoring's, and
# the negative result is now a strong one. A 2 M-parameter model trained on 10 M tokens of a
# synthetic world has not learnt to learn from examples in its context; section 7 runs the same
# prompts on a 135 M-parameter real model. Large models do far better at
# few-shot learning (Brown et al., 2020, *Language Models are Few-Shot Learners*), but the gap
# to fine-tuning on enough labelled data remains on most tasks.
#
# **Fine-tuning** for classification usually swaps the language-model head for a small
# classification head: `AutoModelForSequenceClassification` loads the same pretrained body and
# adds a fresh linear layer that maps the last token's hidden state to 3 scores; everything is
# then trained with cross-entropy on the labels. Its learning rate is a hyper-parameter, chosen
# on `reviews_val`, never on the test set, here with short runs: the shipped sweep
# `ch01_classifier_lr` trained 100 steps at three learning rates, three seeds each (head
# initialisation and data order):

# %%
clf_rec = sweeps.load("ch01_classifier_lr")
print(sweeps.table(clf_rec, ["val_accuracy", "test_accuracy"]).to_string())
chosen = max(clf_rec["arms"], key=lambda a: sweeps.summary(clf_rec, a, "val_accuracy").mean)
lr_clf = clf_rec["config"]["lrs"][chosen]
print(f"chosen on validation: {chosen}")
fig, ax = plt.subplots(figsize=(5.6, 3.2))
sp = [sweeps.summary(clf_rec, a, "test_accuracy") for a in clf_rec["arms"]]
ax.errorbar(list(clf_rec["config"]["lrs"].values()), [s.mean for s in sp],
            yerr=[s.sd for s in sp], fmt="o-", capsize=3)
ax.set(xscale="log", xlabel="learning rate", ylabel="test accuracy (mean ± sd, 3 seeds)",
       title="Classifier fine-tune, 100 steps");

# %% [markdown]
# After 100 steps no learning rate has converged, and the seeds spread by several points. Which
# differences exceed that noise, on validation:

# %%
val = {a: sweeps.values(clf_rec, a, "val_accuracy") for a in clf_rec["arms"]}
for arm in clf_rec["arms"]:
    if arm != chosen:
        print(verdict(val[chosen], val[arm], (chosen, arm)))

# %% [markdown]
# The smallest rate is clearly too slow; whether 2e-3, the order of pretraining's peak, is worse
# than the chosen rate is within the noise of three seeds at this budget (fine-tuning usually
# wants a smaller rate than pretraining; chapter 03 measures it). The final model trains 200 steps
# at the chosen rate (one live run):

# %%
from course_lib.classification import label_batches, predict_labels

clf, _ = load_model("classifier", device=device)  # the base model + a fresh 3-way head
hist_rev = train(
    clf,
    label_batches(tok, rev_train, batch_size=32, seed=0),
    TrainConfig(lr=lr_clf, max_steps=200, warmup_steps=20),
)
test_all = load_jsonl("reviews_test")
pred = predict_labels(clf, tok, [r["text"] for r in test_all])
acc_tuned = accuracy(pred, [r["label"] for r in test_all])
print(f"fine-tuned, 200 steps: {acc_tuned:.1%} ({hist_rev.seconds:.0f} s of training)")

# %% [markdown]
# For reference, a bag-of-words logistic regression on the same training reviews. It cannot see
# word order, so it cannot tell *"the lid is great, but the handle is awful"* (negative) from
# *"the lid is awful, but the handle is great"* (positive):

# %%
from course_lib.baselines import bag_of_words_accuracy

acc_bow = bag_of_words_accuracy(rev_train, test_all)
best_fs = max(fair, key=lambda k: spread(fair[k]).mean)
print(f"bag of words {acc_bow:.1%} | best few-shot {spread(fair[best_fs]).fmt(3)} | "
      f"fine-tuned (200 steps, one seed) {acc_tuned:.1%}")
assert max(spread(v).mean for v in fair.values()) < 0.5, "few-shot should stay near chance here"
assert acc_tuned > 0.8 and acc_tuned > acc_bow + 0.2, "fine-tuning should clearly win"  # 89 vs 62
assert acc_tuned > max(max(v) for v in fair.values()) + 0.3, "far outside the few-shot seeds"

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
# | retrieval (facts in the prompt) | the fact's statements pasted before the probe (an oracle retriever) |
# | fine-tuning (facts in the weights) | trained on the statements; at test time, only the probe |
#
# Each probe comes in the **seen** phrasing (the one used in training) and an unseen **paraphrase**
# (a phrasing the corpus uses for other people, never for this fact). Answers are scored by ranking
# all candidate values. The fine-tune's learning rate is chosen on the facts of 10 people (dev);
# everything is reported on the other 10 (test, 40 facts).

# %%
from course_lib.fact_injection import PHRASINGS, probe_hits, split_by_person, injection_curve
from course_lib.evaluation import wilson_interval

facts = load_jsonl("new_facts")
dev_facts, test_facts = split_by_person(facts)
chance = sum(1 / len(f["candidates"]) for f in test_facts) / len(test_facts)
ref = {}
for name, paste in [("zero-shot", False), ("retrieval", True)]:
    for kind in PHRASINGS:
        hits = probe_hits(model, tok, test_facts, kind, with_facts=paste)
        ref[name, kind] = (sum(hits) / len(hits), wilson_interval(sum(hits), len(hits)))
        print(f"{name:>10} {kind:>10}: {ref[name, kind][0]:.1%} "
              f"(95% CI {ref[name, kind][1][0]:.0%}-{ref[name, kind][1][1]:.0%})")
print(facts[0]["statements"], "|", facts[0]["probe_seen"], "|", facts[0]["probe_paraphrase"])

# %% [markdown]
# Fine-tuning has a budget: how many steps, at what learning rate. Instead of one run, the
# shipped sweep `ch01_fact_injection` records the fine-tune's accuracy at 20, 40, 80 and 160
# steps (batch 16 of the 120 statements), for three learning rates and three data orders. The
# learning rate is chosen by code, on the dev people's paraphrase accuracy:

# %%
fact_rec = sweeps.load("ch01_fact_injection")
steps = fact_rec["config"]["steps"]


def curve(arm, split, kind):
    return [sweeps.summary(fact_rec, arm, f"{split}_{kind}_{s}") for s in steps]


dev_score = {a: sum(x.mean for x in curve(a, "dev", "paraphrase")) for a in fact_rec["arms"]}
fact_arm = max(dev_score, key=dev_score.get)
print({a: round(v / len(steps), 3) for a, v in dev_score.items()}, "-> chosen:", fact_arm)
print(sweeps.table(fact_rec, [f"test_paraphrase_{s}" for s in steps], digits=2).to_string())

# %% [markdown]
# The test curve of the chosen learning rate, with retrieval and chance as horizontal lines
# (error bars: ± 1 sd over the three data orders):

# %%
fig, ax = plt.subplots(figsize=(6.4, 3.6))
for kind, colour in [("seen", "C0"), ("paraphrase", "C1")]:
    sp = curve(fact_arm, "test", kind)
    ax.errorbar(steps, [x.mean for x in sp], yerr=[x.sd for x in sp], fmt="o-", capsize=3,
                color=colour, label=f"fine-tuned, {kind}")
    ax.axhline(ref["retrieval", kind][0], ls="--", color=colour, label=f"retrieval, {kind}")
ax.axhline(chance, ls=":", color="grey", label="chance")
ax.set(xscale="log", xlabel="fine-tuning steps", ylabel="test accuracy", xticks=steps,
       xticklabels=steps, title=f"New facts: weights ({fact_arm}) vs prompt")
ax.legend(fontsize=7);

# %% [markdown]
# One live run at the chosen learning rate (data order 0), placed in the shipped spread:

# %%
fact_texts = [s for f in facts for s in f["statements"]]
live = injection_curve(model, tok, fact_texts, facts, fact_rec["config"]["lrs"][fact_arm],
                       checkpoints=(steps[0], steps[-1]), seed=0)
test_rows = [f in test_facts for f in facts]
for s in (steps[0], steps[-1]):
    acc = sum(h for h, t in zip(live[s]["paraphrase"], test_rows) if t) / len(test_facts)
    print(f"step {s}: " + sweeps.place(acc, fact_rec, fact_arm, f"test_paraphrase_{s}"))

# %% [markdown]
# What the injection costs. The sweep also measured, at 40 and 160 steps, the general-domain loss
# (100 validation documents) and the recall of the corpus's own 120 facts (all known before
# fine-tuning, as the model card says), for every learning rate:

# %%
from course_lib.build.base_model import corpus_fact_recall

base_general = cross_entropy(model, tok, val_texts[:100])
base_recall = corpus_fact_recall(model, tok)
print(f"{'learning rate':>13} {'steps':>6} {'general loss':>14} {'old-fact recall':>16}")
print(f"{'base model':>13} {0:>6} {base_general:14.3f} {base_recall:16.3f}")
for arm in fact_rec["arms"]:
    for s in fact_rec["config"]["cost_steps"]:
        g = sweeps.summary(fact_rec, arm, f"general_loss_{s}")
        r = sweeps.summary(fact_rec, arm, f"old_fact_recall_{s}")
        print(f"{arm:>13} {s:>6} {g.fmt(3):>14} {r.fmt(3):>16}")

# %% [markdown]
# The claims of this section, each checked against the seed noise:

# %%
first, last = steps[0], steps[-1]
para_first = sweeps.values(fact_rec, fact_arm, f"test_paraphrase_{first}")
para_last = sweeps.values(fact_rec, fact_arm, f"test_paraphrase_{last}")
retrieval_para = ref["retrieval", "paraphrase"][0]
print(f"zero-shot {max(ref['zero-shot', k][0] for k in PHRASINGS):.1%} (chance {chance:.1%}); "
      f"retrieval paraphrase {retrieval_para:.1%}")
print(f"fine-tuned paraphrase: {first} steps {spread(para_first).fmt(3)}, "
      f"{last} steps {spread(para_last).fmt(3)}")
assert max(ref["zero-shot", k][0] for k in PHRASINGS) < chance + 0.15, "zero-shot ~ chance"
assert min(ref["retrieval", k][0] for k in PHRASINGS) > 0.7, "retrieval works in both phrasings"
assert max(para_first) < retrieval_para - 0.1, "a short fine-tune falls short of retrieval"
assert spread(para_last).mean > spread(para_first).mean + 0.3, "more steps store the facts"

# %%
cost = {a: sweeps.values(fact_rec, a, f"general_loss_{last}") for a in ("lr=3e-4", "lr=1e-3")}
print(verdict(cost["lr=1e-3"], cost["lr=3e-4"], ("general loss at lr 1e-3", "at lr 3e-4")))
assert differs(cost["lr=1e-3"], cost["lr=3e-4"]) and spread(cost["lr=1e-3"]).mean > spread(
    cost["lr=3e-4"]).mean, "the larger learning rate should cost more general loss"

# %% [markdown]
# What the curve says:
#
# * **Prompting cannot add knowledge.** Zero-shot is at chance level: no prompt wording makes a
#   model know a fact it never saw.
# * **Retrieval works immediately and in any phrasing**: the model only has to copy from its
#   context. It costs a longer prompt at every call and a retriever that finds the right text (here
#   an oracle pasted the right statements). It also relies on a skill learnt in pretraining:
#   copying facts from context, which our corpus teaches with its visitor documents, for names the
#   tokenizer knows as tokens. The new people's names were chosen that way; with names split into
#   single letters a model this small copies far less reliably, so test retrieval on your names.
#   For a real retriever in place of this oracle (BM25 over 3,380 notes with namesakes, its
#   recall@k and failures, and retrieval vs fine-tuning vs both over seeds) see
#   [chapter 16](16_judges_retrieval.ipynb), sections 3–6.
# * **Whether fine-tuning "loses" to retrieval depends on its budget.** A short fine-tune stores
#   few facts; with enough steps, at the learning rate chosen on the dev people, it reaches the
#   oracle retriever's level in the unseen phrasing too (chapter 05's LoRA on the same facts
#   agrees). An earlier version of this chapter compared retrieval with a single 80-step run at
#   a different schedule and concluded that retrieval wins: a conclusion about an under-trained
#   baseline.
# * **Injection has a price, and the selection rule hid it.** Choosing the learning rate on
#   accuracy alone picked the one that, by its last checkpoint, raised the general loss by more
#   than a nat per token and lost a large share of the facts the base model knew (the cost table
#   above); the smaller learning rate reached nearly the same paraphrase accuracy by 160 steps at
#   a fraction of that cost. Select on what you care about: here accuracy *and* what is kept.
#
# **Knowledge-injection pitfalls** seen at scale. Fine-tuning on facts the model did not know is
# learnt more slowly than on known ones, and as it is learnt it raises the model's tendency to
# hallucinate (Gekhman et al. 2024, *Does Fine-Tuning LLMs on New Knowledge Encourage
# Hallucinations?*). Knowledge stated in one phrasing is often not extractable in others unless
# the training data varies the phrasing (Allen-Zhu & Li 2023; the exercise of this chapter
# measures paraphrase augmentation). For many new facts, retrieval or continued pretraining on
# documents that state them beats supervised fine-tuning on question-answer pairs (Ovadia et al.
# 2024, *Fine-Tuning or Retrieval?*). In our small world every phrasing of an attribute was tied
# to the same fact in pretraining, which is why the paraphrase catches up with the seen phrasing.

# %% [markdown]
# ## 7 · The same few-shot prompt on a real model
#
# SmolLM2-135M-Instruct (Hugging Face, 2024) is a real open-weight model, 66 times larger than
# ours and trained on trillions of tokens of web text; the course converts it once, offline, into
# `data/real_model/` (`make real-model`; chapter 13 uses it in depth). Same verbalizers, raw and
# calibrated, one solved example per label, on the first 60 test reviews, next to our base model
# with the same prompts (95 % Wilson intervals: 60 answers are few):

# %%
from course_lib.models import REAL_MODEL_DIR

sample, one_shot = rev_test[:60], pick_shots(rev_train, per_label=1, seed=0)
query = [few_shot_prompt(one_shot, r["text"], VERBALIZER) for r in sample]
free = [few_shot_prompt(one_shot, x, VERBALIZER) for x in CONTENT_FREE]
bridge = {}

# %%
for name, kind in [("course base model", "causal"), ("SmolLM2-135M", "smollm2")]:
    if kind == "smollm2" and not REAL_MODEL_DIR.exists():
        print("data/real_model/ is missing: run `make real-model` to add the real model")
        continue
    m, t = (model, tok) if kind == "causal" else load_model("smollm2", device=device)
    lp = next_token_logprobs(m, t, query, words, batch_size=16)
    cal = calibrate(lp, next_token_logprobs(m, t, free, words))
    for how, scores in [("raw", lp), ("calibrated", cal)]:
        picks = [LABELS[k] for k in scores.argmax(-1).tolist()]
        hits = sum(p == r["label"] for p, r in zip(picks, sample))
        bridge[name, how] = (hits / len(sample), *wilson_interval(hits, len(sample)))
        print(f"{name:>18} {how:>10}: {hits}/{len(sample)} = {hits / len(sample):.0%} (95% "
              f"{bridge[name, how][1]:.0%}-{bridge[name, how][2]:.0%}), {dict(Counter(picks))}")

# %% [markdown]
# Read the answer counts first: a model that gives one label to every review has learnt nothing
# from the examples, whatever its accuracy (that is the share of that label). Then compare each
# Wilson interval with chance, one third; with 60 answers only a large difference is a finding,
# and a real model's few-shot accuracy also moves with which examples are shown (a seed, as in
# section 5). In-context learning is a capability that appears with scale and data: the course's
# small model reproduces optimisation and systems effects exactly, capability effects like this
# one only partly. On a task that matters, measure fair few-shot and a fine-tune before choosing.

# %% [markdown]
# ## Summary
# * Pretraining and fine-tuning optimise the same next-token cross-entropy; they differ in data,
#   learning rate and length.
# * A loss means little alone: compare it with the uniform guess, a unigram model and, where you
#   can, the entropy of the data.
# * Fine-tuning adapts fast to a new domain or task; with a large learning rate it also wrecks the
#   old domain (more than a nat per token here).
# * Few-shot prompting needs fair scoring (single-token verbalizers, calibration) before it is
#   judged; the small base model stays near chance with it (section 7 puts a real model beside it).
# * Retrieval beats a short fact fine-tune; a well-budgeted fine-tune matches it, at a price in
#   general loss. Compare methods at their best settings, chosen on data you do not report, over
#   several seeds.

# %% [markdown]
# ## Quiz
#
# 1. The loss of a model at random initialisation is about 7.2 nats/token here. Why that number?
# 2. Why is the generator's entropy an upper bound on the data's true entropy, and why should a
#    model still not go noticeably below it?
# 3. A few-shot baseline answers "neutral" for every review. Name two causes in the scoring, not
#    in the model, and their repairs.
# 4. A colleague says "just put it in the prompt" for 10,000 product facts. What does section 6
#    say, and what would you add?
#
# <details><summary>Answers</summary>
#
# 1. A fresh model's logits are near zero, so its predictions are near uniform over the 1399
#    tokens of the vocabulary: $\ln 1399 = 7.24$.
# 2. Two different sequences of random choices can produce the same text; the generator counts
#    them apart, so its $-\log p$ of a text is at least the true one. The true entropy is the best
#    any model can do on average (Gibbs' inequality), and the gap here is small.
# 3. Label words spelt in several tokens, scored by summed log-probability (longer spellings lose),
#    and the prompt's own bias towards one label. Use single-token verbalizers (or length
#    normalisation), and contextual calibration on content-free inputs.
# 4. Retrieval recalls facts in any phrasing immediately, but 10,000 facts do not fit in a
#    context, so you need a retriever that selects the few relevant ones per query. Fine-tuning
#    can store them too, given enough steps, at a cost in general ability and re-training when
#    facts change; compare both at their best budgets on held-out facts.
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
