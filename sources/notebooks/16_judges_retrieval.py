# %% [markdown]
# # 16 · LLM judges and a real retriever
#
# **Measured runtime:** 67 s on a 2-core CPU (`make execute`; your machine may differ).
#
# Two everyday tools of fine-tuning practice, measured against the course world's known truth.
# **Retrieval**: chapters 01 and 08 compared fine-tuning with an *oracle* that pasted the right fact
# into the prompt. A real retriever has to find that fact among thousands of notes, and it fails in
# ways an oracle never does. **LLM judges**: a model that grades answers is how most fine-tunes are
# evaluated today; here the gold reward of chapter 09 says how often the judge is right, and where
# it is biased.
#
# **You will learn to**
# 1. write BM25 from scratch (Robertson–Spärck Jones idf, $k_1$, $b$) and check it against a library;
# 2. measure recall@k, and what it becomes as answer accuracy, against the oracle of chapter 01;
# 3. find which questions a lexical retriever fails (name collisions, paraphrases), and compare
#    retrieval, fine-tuning and both, over seeds;
# 4. measure an LLM judge's agreement with a gold reward, its position, verbosity and politeness
#    bias, and what swap-and-average fixes;
# 5. decide when a judge is good enough, with intervals, against the noise of human labels.
#
# **Prerequisites:** chapter 01 (facts in the prompt vs in the weights), 09 (the gold reward and the
# reward model), 13 (SmolLM2 and its chat template).

# %%
import numpy as np
import matplotlib.pyplot as plt
import course_lib

device = course_lib.setup(seed=0)  # first: it quiets the imports below
from collections import Counter
from rank_bm25 import BM25Okapi
from course_lib import judges, sweeps
from course_lib.data import load_jsonl
from course_lib.evaluation import wilson_interval
from course_lib.models import load_model
from course_lib.retrieval import BM25, QUERY_FORMS, answer_hits, failure_kind, gold_note
from course_lib.retrieval import recall_at_k, retrieved_prompts, tokenize, world_notes
from course_lib.reward_model import score
from course_lib.uncertainty import bootstrap_interval, differs, spread, verdict


def share(hits) -> str:
    """'62% [51%, 72%]': a share of 0/1 items with its Wilson 95 % interval."""
    low, high = wilson_interval(int(sum(hits)), len(hits))
    return f"{sum(hits) / len(hits):.0%} [{low:.0%}, {high:.0%}]"


# %% [markdown]
# ## 1 · The notes
#
# The collection a retriever searches: one note per new fact of chapter 01 (its two statements:
# "Ines Castell lives in Stonebridge. Ines Castell's home is in Stonebridge."), hidden among 3,000
# documents of the course corpus and 300 clinic notes. The haystack is not innocent: the corpus's
# one-off visitors carry the same names as the new-fact people, with *other*, random facts
# ("A visitor called Ines Castell came to Lindenfield …"). Real collections are like that: two
# people called J. Smith, an old version of a policy next to the new one.

# %%
notes = world_notes()
facts = load_jsonl("new_facts")
gold = [gold_note(f, notes) for f in facts]
print(len(notes), "notes:", dict(Counter(n["kind"] for n in notes)))
print(notes[gold[0]]["text"])
namesakes = [n["text"][:90] for n in notes if facts[0]["person"] in n["text"] and "person" not in n]
print(f"other notes naming {facts[0]['person']}: {len(namesakes)}, e.g. {namesakes[0]!r}")

# %% [markdown]
# ## 2 · BM25 from scratch
#
# BM25 scores a document $d$ for a query $q$ by the query's words that occur in it:
#
# $$\text{score}(q, d) = \sum_{t \in q} \text{idf}(t)\,
#   \frac{f(t,d)\,(k_1 + 1)}{f(t,d) + k_1\left(1 - b + b\,\frac{|d|}{\text{avgdl}}\right)},
# \qquad \text{idf}(t) = \ln\frac{N - n_t + 0.5}{n_t + 0.5}$$
#
# $f(t,d)$ is how often $t$ occurs in $d$, $|d|$ the document's length in words, avgdl the mean
# length, $N$ the number of documents and $n_t$ how many contain $t$. The idf is Robertson and
# Spärck Jones's weight: rare words count, a word in most documents counts little (negative above
# $N/2$; libraries clip it, `rank_bm25` to $\epsilon$ times the mean idf). $k_1$ (1.2–2) saturates
# repetition: the tenth "Castell" adds little. $b$ (0.75) discounts long documents. The class in
# `course_lib/retrieval.py` is these lines, with an inverted index so a query touches only the
# documents that contain its words. The check: every score equals `rank_bm25.BM25Okapi`'s.

# %%
docs = [tokenize(n["text"]) for n in notes]
index = BM25(docs, k1=1.5, b=0.75, idf="okapi")
reference = BM25Okapi(docs, k1=1.5, b=0.75, epsilon=0.25)
worst = 0.0
for f in facts[:20]:
    for form in QUERY_FORMS:
        q = tokenize(f[form])
        worst = max(worst, float(np.abs(index.scores(q) - reference.get_scores(q)).max()))
print(f"largest difference from rank_bm25 over {20 * len(QUERY_FORMS)} queries: {worst:.1e}")
assert worst < 1e-9, "BM25 should equal rank_bm25's BM25Okapi"
q = tokenize(facts[0]["question"])
print({t: round(index.idf.get(t, 0.0), 2) for t in q})

# %% [markdown]
# The idf line shows why BM25 finds a person at all: "ines" and "castell" are rare (idf ≈ 5–6),
# "where", "does" and "live" are common and weigh little.
#
# ## 3 · Recall@k
#
# A retriever is good when the right note is among the first $k$ it returns: **recall@k**, the
# share of queries whose gold note is in the top $k$. Three kinds of query: the chat **question**
# ("Where does Ines Castell live?"), the statement phrasing the note uses (**seen**: "Ines Castell
# lives in") and a **paraphrase** the note does not use ("Ines Castell has a house in"). Intervals:
# Wilson 95 % over the 80 facts.

# %%
ks = [1, 2, 3, 5, 10]
rankings = {form: [index.top_k(tokenize(f[form]), max(ks)) for f in facts] for form in QUERY_FORMS}
recall = {form: {k: recall_at_k(rankings[form], gold, k) for k in ks} for form in QUERY_FORMS}
for form in QUERY_FORMS:
    print(f"{form:>16}: " + "  ".join(f"@{k} {share(recall[form][k])}" for k in (1, 3, 10)))

# %%
fig, ax = plt.subplots(figsize=(6, 3.2))
for form in QUERY_FORMS:
    mean = [np.mean(recall[form][k]) for k in ks]
    ci = [wilson_interval(sum(recall[form][k]), len(facts)) for k in ks]
    err = [[m - lo for m, (lo, hi) in zip(mean, ci)], [hi - m for m, (lo, hi) in zip(mean, ci)]]
    ax.errorbar(ks, mean, yerr=err, fmt="o-", capsize=3, label=form)
ax.set(xscale="log", xticks=ks, xticklabels=ks, xlabel="k", ylabel="recall@k (95% CI)")
ax.legend(fontsize=8)
plt.show()
r1 = {form: np.mean(recall[form][1]) for form in QUERY_FORMS}
assert r1["probe_seen"] > r1["probe_paraphrase"] + 0.25, "words shared with the note find it"
assert min(np.mean(recall[form][10]) for form in QUERY_FORMS) > 0.85, "top-10 holds nearly all"

# %% [markdown]
# ## 4 · What fails, and why
#
# For every query whose first note is wrong, `failure_kind` says what came first instead: another
# note of the **same person** (the right person, the wrong fact: the query's content words did not
# match), a **name collision** (a note that names the person, or shares a first name or surname,
# but is about a namesake), or something else.

# %%
kinds = {form: Counter(failure_kind(f, r[0], notes) for f, r in zip(facts, rankings[form]))
         for form in QUERY_FORMS}
for form, c in kinds.items():
    print(f"{form:>16}: {dict(c)}")
for f, r in list(zip(facts, rankings["probe_paraphrase"]))[:2]:
    print(f"{f['probe_paraphrase']!r} -> {notes[r[0]]['text'][:70]!r}")
assert kinds["probe_paraphrase"]["same person, other fact"] > kinds["probe_seen"][
    "same person, other fact"] + 8, "paraphrases miss the note's words"

# %% [markdown]
# Both failure modes are the lexical retriever's classic ones. A **paraphrase** shares no content
# word with the note ("has a house in" vs "lives in", "home"), so among the person's notes BM25 has
# nothing to go on. A **name collision** wins because the name is the rarest, heaviest part of every
# query, and a namesake's document repeats it. Dense (embedding) retrievers fix the first and not
# the second; metadata filters and re-rankers fix the second.
#
# ## 5 · From recall to answers
#
# Retrieval is judged by the answers it enables. The course's base model answers each probe by
# ranking the candidates (chapter 01's scoring), after the top-$k$ notes pasted before it, the best
# one last. $k$ is a hyper-parameter, chosen on chapter 01's 10 dev people and reported on the other
# 10 (40 facts); the oracle (the gold note alone) is chapter 01's comparison.

# %%
model, tok = load_model("causal", device=device)
people = list(dict.fromkeys(f["person"] for f in facts))
dev = [f["person"] in set(people[:10]) for f in facts]
answers = {}
for form in ("probe_seen", "probe_paraphrase"):
    for k in (0, 1, 3):
        prompts = retrieved_prompts(facts, form, index, notes, k)
        answers[form, k] = answer_hits(model, tok, facts, prompts)
    oracle = [notes[g]["text"] + " " + f[form] for g, f in zip(gold, facts)]
    answers[form, "oracle"] = answer_hits(model, tok, facts, oracle)

# %%
def split(hits, on_dev: bool) -> list[int]:
    return [h for h, d in zip(hits, dev) if d == on_dev]


k_best = max((1, 3), key=lambda k: np.mean(split(answers["probe_paraphrase", k], True)))
print(f"k chosen on the dev people (paraphrase): {k_best}")
for form in ("probe_seen", "probe_paraphrase"):
    row = {k: share(split(answers[form, k], False)) for k in (0, 1, 3, "oracle")}
    print(f"{form:>16} (test, 40 facts): " + "  ".join(f"{k}: {v}" for k, v in row.items()))

# %% [markdown]
# The gap between the oracle and BM25 is the price of real retrieval. Paired over the same 80 facts
# (dev and test: nothing is chosen here), with a bootstrap interval of the difference:

# %%
gap = {}
for form in ("probe_seen", "probe_paraphrase"):
    diff = [o - h for o, h in zip(answers[form, "oracle"], answers[form, k_best])]
    gap[form] = (np.mean(diff), bootstrap_interval(diff))
    print(f"{form:>16}: oracle − BM25 top-{k_best} = {gap[form][0]:+.2f} "
          f"(95% CI {gap[form][1][0]:+.2f} to {gap[form][1][1]:+.2f})")
    assert gap[form][1][0] > 0, "the oracle should beat the real retriever"
zero = np.mean(answers["probe_paraphrase", 0])
assert np.mean(answers["probe_paraphrase", k_best]) > zero + 0.2, "retrieval beats no retrieval"

# %% [markdown]
# ## 6 · Retrieval vs fine-tuning vs both
#
# Chapter 01 fine-tuned the model on the 80 facts' statements (lr $10^{-3}$, chosen on the dev
# people). The shipped sweep `ch16_rag_vs_ft` repeats that fine-tune for 40 and 160 steps over three
# data orders, then asks each tuned model the probes alone, after BM25's notes, and after the oracle
# note. Test people, mean ± sd over the seeds:

# %%
rag = sweeps.load("ch16_rag_vs_ft")
kinds_cols = ("k0", f"k{k_best}", "oracle")
cols = [f"test_{kind}_{c}" for kind in ("seen", "paraphrase") for c in kinds_cols]
print(sweeps.table(rag, cols, digits=2).to_string())
base = {c: np.mean(split(answers[f"probe_{c.split('_')[1]}", k], False))
        for c, k in ((f"test_seen_k{k_best}", k_best), (f"test_paraphrase_k{k_best}", k_best))}
print("the base model with retrieval, for comparison:", {c: round(float(v), 2) for c, v in base.items()})

# %% [markdown]
# One live run of the cheaper arm (40 steps, data order 0), placed in the shipped spread:

# %%
live = sweeps.run_one(sweeps.get_spec("ch16_rag_vs_ft"), "40 steps", 0)
for c in ("test_paraphrase_k0", f"test_paraphrase_k{k_best}"):
    print(f"{c}: " + sweeps.place(live[c], rag, "40 steps", c))

# %% [markdown]
# The claims, each against the seed spread (the base model's retrieval number is one deterministic
# run on 40 facts: its Wilson interval is the noise to beat):

# %%
kb = f"k{k_best}"
para = {arm: {c: sweeps.values(rag, arm, f"test_paraphrase_{c}") for c in ("k0", kb)}
        for arm in rag["arms"]}
rag_only = base[f"test_paraphrase_{kb}"]
lo, hi = wilson_interval(round(rag_only * 40), 40)
print(f"paraphrase, base model + BM25 top-{k_best}: {rag_only:.2f} [{lo:.2f}, {hi:.2f}]")
for arm, p in para.items():
    ft, both = spread(p["k0"]).fmt(2), spread(p[kb]).fmt(2)
    print(f"{arm:>9}: fine-tuned {ft}, fine-tuned + BM25 {both}")
    print("           " + verdict(p[kb], p["k0"], ("with BM25", "without")))

# %%
assert min(para["160 steps"]["k0"]) > hi, "160 steps of fine-tuning beat BM25 on paraphrases"
assert max(para["40 steps"]["k0"]) < min(para["160 steps"]["k0"]), "40 steps store far less"
assert max(para["40 steps"]["k0"]) < lo, "after 40 steps, the base model with BM25 does better"
assert differs(para["160 steps"]["k0"], para["160 steps"][kb]) and spread(
    para["160 steps"][kb]).mean < spread(para["160 steps"]["k0"]).mean, "the notes mislead it"
oracle40 = sweeps.values(rag, "40 steps", "test_seen_oracle")
assert max(oracle40) < np.mean(split(answers["probe_seen", "oracle"], False)) - 0.2, (
    "the 40-step model reads the oracle note worse than the base model")

# %% [markdown]
# Three readings. With enough steps, fine-tuning stores these 80 facts so well that it answers even
# the paraphrases better than the base model does with BM25's notes, because BM25 misses the
# paraphrased note (section 4) while the tuned weights do not need to find it. After 40 steps the
# facts are not stored yet and the base model with BM25 is the better tool; the 40-step model even
# reads the oracle's note worse than the base model did (compare the oracle column with section
# 5): half-way through, the fine-tune has disturbed the skill of copying from the context without
# yet storing the facts. And "both" is not the best of both: the 160-step model, which knows the
# answer, is pulled off it by the retrieved notes, namesakes' contradicting facts and the person's
# other facts, while the oracle's note leaves it right. Retrieved text overrides what the weights
# know, so a retriever's precision matters as much as its recall. The price of fine-tuning is not
# in this table: every new fact needs a training run, and chapter 01 measured what it costs the
# model's other knowledge.

# %% [markdown]
# ## 7 · A judge's yardstick: the gold reward
#
# Now the judges. Chapter 09's preference test set holds 500 pairs of answers to world questions;
# the gold reward (correct +2, polite +0.5, rude −1.5, −0.1 per word beyond 12) says which is
# better. The annotators' labels (`chosen`) were drawn with noise. Their agreement with the gold
# reward is the bar a judge is compared with: a judge as good as the labels is as good as the data
# one would otherwise pay people for.

# %%
pairs = judges.gold_pairs(load_jsonl("preferences_test"))
annotators = [int(p["x_better"]) for p in pairs]
print(f"{len(pairs)} pairs; the annotators agree with the gold reward on {share(annotators)}")
print(pairs[0])

# %% [markdown]
# ## 8 · The reward model as a judge
#
# Chapter 09's reward model scores each answer alone, so it is a **pointwise** judge: it prefers $x$
# when $r(x) > r(y)$, and it cannot have a position bias. Two constructed sets test its other biases,
# each pair built so that the gold reward prefers $y$: **verbosity** ($x$ is $y$'s right answer
# plus 25 neutral words) and **politeness** ($x$ is polite but wrong, $y$ plain and right). A judge
# without bias picks $x$ in none of them.

# %%
rm, rm_tok = load_model("trained_reward", device=device)


def rm_prefers_x(pairs) -> list[bool]:
    q = [p["question"] for p in pairs]
    sx = score(rm, rm_tok, q, [p["x"] for p in pairs])
    return (sx > score(rm, rm_tok, q, [p["y"] for p in pairs])).tolist()


rm_agree = judges.agreement(rm_prefers_x(pairs), pairs)
print(f"reward model agrees with the gold reward on {share(rm_agree)}")
bias = {kind: judges.bias_pairs(kind, 100) for kind in judges.BIAS_KINDS}
rm_bias = {kind: [int(v) for v in rm_prefers_x(b)] for kind, b in bias.items()}
for kind, b in bias.items():
    print(f"{kind:>10}: picks the worse answer in {share(rm_bias[kind])}, e.g. {b[0]['x']!r}")
assert np.mean(rm_bias["politeness"]) > 0.5, "the reward model prefers polite-but-wrong"

# %% [markdown]
# ## 9 · SmolLM2 as a pairwise judge, and its position bias
#
# The real model of chapter 13 is asked in its ChatML template which of two answers is better; its
# verdict is the log-odds of its next token, $\log p(\text{A}) - \log p(\text{B})$ (no sampling, no
# parsing). **Position bias** is measured by asking twice with the order swapped: a consistent judge
# names the same answer both times. **Swap-and-average** uses both: the preference for $x$ is
# $\tfrac12[s(x, y) - s(y, x)]$, so a constant pull towards "A" cancels. This live run is sample 0 of
# the shipped sweep `ch16_judges` (40 pairs).

# %%
real, real_tok = load_model("smollm2", device=device)
sample = pairs[:40]
print(judges.pairwise_prompt(real_tok, sample[0]["question"], sample[0]["x"], sample[0]["y"]))
qs, xs, ys = ([p[k] for p in sample] for k in ("question", "x", "y"))
ab = judges.pairwise_logodds(real, real_tok, qs, xs, ys)
ba = judges.pairwise_logodds(real, real_tok, qs, ys, xs)
pos = judges.position_bias(ab, ba)
print(f"P(first shown wins) {pos['p_first']:.2f}; the winner flips with the order in "
      f"{pos['flip_rate']:.0%} of pairs")
orders = {"x first": ab, "y first": -ba, "swap-and-average": judges.swap_and_average(ab, ba)}
for name, s in orders.items():
    print(f"{name:>17}: agrees with gold on {share(judges.agreement((s > 0).tolist(), sample))}")
assert pos["p_first"] > 0.8, "SmolLM2 should mostly answer 'A' whatever the answers"

# %% [markdown]
# Read the three lines together. Shown in the dataset's order (the annotators' choice first) the
# judge looks excellent, because it answers "A" almost always and the first answer is usually the
# better one: a pure position bias scores like the labels. Swapped, it collapses. Only the swapped
# average measures what the judge sees in the answers.
#
# ## 10 · The sweep: three samples, pointwise judging, and biases
#
# The shipped sweep ran the same on three disjoint samples of 40 pairs (120 in all), plus pointwise
# judging ("Is this a good answer? yes/no", log-odds of yes) with and without the right answer
# given in the prompt (reference-guided judging), and 20 verbosity and 20 politeness pairs per seed:

# %%
jud = sweeps.load("ch16_judges")
assert abs(jud["results"]["pairwise"]["0"]["p_first"] - pos["p_first"]) < 0.06, "live = shipped"
n = jud["config"]["pairs_per_seed"]


def pooled(arm: str, metric: str, per_seed: int) -> str:
    hits = sum(round(v * per_seed) for v in sweeps.values(jud, arm, metric))
    return share([1] * hits + [0] * (per_seed * len(jud["seeds"]) - hits))


for arm, metric in [("pairwise", "p_first"), ("pairwise", "agree_swapped"),
                    ("pointwise", "agree_plain"), ("pointwise", "agree_reference")]:
    print(f"{arm:>9} {metric:>16}: {pooled(arm, metric, n)} (seeds: "
          f"{sweeps.summary(jud, arm, metric).fmt(2)})")
m = jud["config"]["bias_pairs_per_kind"]
for kind in judges.BIAS_KINDS:
    worse = pooled("bias", f"{kind}_picks_worse_swapped", m)
    print(f"{kind:>10} picks the worse, swap-averaged: {worse}")

# %%
plain, ref = (sweeps.values(jud, "pointwise", f"agree_{k}") for k in ("plain", "reference"))
print("pointwise, over the samples: " + verdict(ref, plain, ("with the reference", "without")))
for kind in judges.BIAS_KINDS:
    picks = sum(round(v * m) for v in sweeps.values(jud, "bias", f"{kind}_picks_worse_swapped"))
    assert wilson_interval(picks, 3 * m)[0] > 0.5, f"SmolLM2 should show a {kind} bias"

# %% [markdown]
# How to read these lines: each share pools the three samples (Wilson interval over all of them),
# and the seed spread beside it shows how much one sample of 40 can mislead. Reference-guided
# judging gives the judge what it lacks here, the facts of the course world (the people are
# invented, so SmolLM2 cannot know where they live); the verdict line says whether that helped
# beyond the noise of three samples. The bias lines are measured after swap-and-average, so they
# are free of the position bias: a judge without a verbosity or politeness bias would pick the
# worse answer in none of those pairs, one that cannot tell the answers apart about half the time.
# SmolLM2 picks the padded answer in most verbosity pairs and the polite wrong answer in nearly
# all politeness pairs (both asserted above chance): biases that follow the content, which no
# reordering removes. The reward model had the politeness bias too, but not the verbosity one.
#
# ## 11 · When is a judge good enough?
#
# A judge replaces labels, so compare it with the labels: the annotators agree with the gold reward
# on the share printed in section 7. Two questions, each with an interval: is the judge above
# chance, and is it as good as the labels?

# %%
agree = {"annotators": annotators, "reward model": rm_agree}
hits = sum(round(v * n) for v in sweeps.values(jud, "pointwise", "agree_reference"))
agree["SmolLM2, reference-guided"] = [1] * hits + [0] * (3 * n - hits)
hits = sum(round(v * n) for v in sweeps.values(jud, "pairwise", "agree_swapped"))
agree["SmolLM2, pairwise swapped"] = [1] * hits + [0] * (3 * n - hits)
for name, a in agree.items():
    lo, hi = wilson_interval(sum(a), len(a))
    above = "above chance" if lo > 0.5 else "below chance" if hi < 0.5 else "within chance"
    print(f"{name:>26}: {share(a)} on {len(a)} pairs, {above}")
paired = [a - r for a, r in zip(annotators, rm_agree)]
low, high = bootstrap_interval(paired)
print(f"annotators − reward model: {np.mean(paired):+.2f} "
      f"(paired 95% CI {low:+.2f} to {high:+.2f})")
assert wilson_interval(sum(rm_agree), len(rm_agree))[0] > 0.5, "the reward model beats chance"
assert low > 0, "the labels should beat the reward model trained on them"

# %% [markdown]
# ## Summary
#
# * BM25 is twenty lines: a Robertson–Spärck Jones idf, a saturating term frequency ($k_1$) and a
#   length discount ($b$); ours equals `rank_bm25` to machine precision.
# * Recall@k falls sharply from the oracle's 100 %: queries that use the note's words find it,
#   paraphrases and namesakes do not. Answer accuracy follows recall, and the oracle's advantage
#   over BM25 is measured with a paired interval above.
# * Fine-tuning and retrieval answer different needs; the sweep shows what the tuned model does
#   with and without notes, over three seeds.
# * An LLM judge must be measured like any classifier: against a gold label, with intervals, in both
#   orders. SmolLM2-135M as a pairwise judge is mostly a position bias; swap-and-average removes the
#   bias and reveals how little is left. The course's reward model beats chance but not the labels,
#   and it prefers polite wrong answers to plain right ones (chapter 09's reward hacking, seen from
#   the judge's side).
#
# ## Quiz
#
# 1. Why is BM25's idf negative for a word in more than half the documents, and what do libraries do?
# 2. A judge agrees with the gold label 85 % of the time when the better answer is shown first. What
#    else must you measure before you trust it?
# 3. Why does a name collision beat the right note in BM25?
# 4. What does swap-and-average cancel, and what can it not fix?
#
# <details><summary>Answers</summary>
#
# 1. $\ln\frac{N - n + 0.5}{n + 0.5} < 0$ when $n > N/2$: such a word is evidence *against* a
#    document; `rank_bm25` replaces it by $\epsilon$ × the mean idf, Lucene uses $\ln(1 + \dots)$.
# 2. The reverse order: a judge that always says "A" scores exactly that 85 % when the better answer
#    comes first (section 9). Measure both orders, report the flip rate and the swapped average.
# 3. The person's name is the rarest part of the query, so its idf dominates the score; a namesake's
#    document that repeats the name outranks the right note whose other words do not match.
# 4. A constant preference for one position. It cannot fix a judge that does not know the answer
#    (SmolLM2 on invented people), nor a bias that follows the content (length, politeness).
#
# </details>
#
# ## Interview questions
#
# * How would you evaluate a retriever, and how do you attribute a RAG system's errors to retrieval
#   or to the reader?
# * Explain BM25's parameters $k_1$ and $b$.
# * What biases do LLM judges have, and how do you measure and reduce them?
# * When is an LLM judge good enough to replace human labels?
# * Should you combine retrieval with fine-tuning on the same facts?
#
# **Exercises:** [solutions/16_judges_retrieval_solutions.ipynb](../solutions/16_judges_retrieval_solutions.ipynb)
# (the exercise version is in `exercises/`).
