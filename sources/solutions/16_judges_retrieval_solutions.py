# %% [markdown]
# # 16 · LLM judges and a real retriever — Solutions
#
# **Measured runtime:** 7 s on a 2-core CPU (`make execute`; your machine may differ).
#
# Exercises for [the lesson](../notebooks/16_judges_retrieval.ipynb). Each exercise says its level:
# ★ warm-up, ★★ core, ★★★ stretch. Write your code where it says so, then run the check cell below
# it: it tells you what is wrong, not only that something is.

# %%
import math
import numpy as np
import course_lib
from course_lib.course.checkers import ch16
from course_lib.data import load_jsonl
from course_lib.retrieval import BM25, failure_kind, gold_note, tokenize, world_notes

device = course_lib.setup(seed=0)
notes = world_notes()
facts = load_jsonl("new_facts")
gold = [gold_note(f, notes) for f in facts]
docs = [tokenize(n["text"]) for n in notes]


# %% [markdown]
# ## Exercise 1 ★ — the Robertson–Spärck Jones idf
#
# Write `rsj_idf(n_docs, doc_freq)`: $\ln\frac{N - n + 0.5}{n + 0.5}$ for a word that occurs in
# $n$ of $N$ documents. Then print the idf of a rare and a common word of the notes.

# %%
def rsj_idf(n_docs: int, doc_freq: int) -> float:
    ### BEGIN SOLUTION
    return math.log((n_docs - doc_freq + 0.5) / (doc_freq + 0.5))
    ### END SOLUTION


# %%
ch16.check_rsj_idf(rsj_idf)
for word in ("castell", "in", "a"):
    n = sum(word in set(d) for d in docs)
    print(f"{word!r}: in {n} of {len(docs)} notes, idf {rsj_idf(len(docs), n):+.2f}")

# %% [markdown]
# ## Exercise 2 ★★ — BM25 scores
#
# Write `bm25_scores(docs, query, k1, b)`: the BM25 score of every tokenized document for a
# tokenized query, with the raw RSJ idf of exercise 1 (a word in no document adds nothing; a word
# repeated in the query counts each time):
#
# $$\text{score}(q, d) = \sum_{t \in q} \text{idf}(t)\,
#   \frac{f(t,d)\,(k_1 + 1)}{f(t,d) + k_1\left(1 - b + b\,\frac{|d|}{\text{avgdl}}\right)}$$
#
# The check compares it with course_lib's `BM25(idf="rsj")` on a small collection; the cell after it
# runs yours on the notes and ranks the first fact's question.

# %%
def bm25_scores(docs: list[list[str]], query: list[str], k1: float = 1.5, b: float = 0.75):
    ### BEGIN SOLUTION
    lengths = np.array([len(d) for d in docs], dtype=float)
    norm = k1 * (1 - b + b * lengths / lengths.mean())
    out = np.zeros(len(docs))
    for t in query:
        f = np.array([d.count(t) for d in docs], dtype=float)
        n = int((f > 0).sum())
        if n:
            out += rsj_idf(len(docs), n) * f * (k1 + 1) / (f + norm)
    return out
    ### END SOLUTION


# %%
ch16.check_bm25_scores(bm25_scores)
query = tokenize(facts[0]["question"])
mine = bm25_scores(docs[:400], query)
print("equal to BM25(idf='rsj'):", np.allclose(mine, BM25(docs[:400], idf="rsj").scores(query)))
print("best note:", notes[int(np.argmax(mine))]["text"][:90])

# %% [markdown]
# ## Exercise 3 ★★ — swap-and-average
#
# A judge is a function `judge(question, first, second)` returning the log-odds that the **first**
# answer is better. Write `debiased_prefers_x(judge, pairs)`: for each pair (`question`, `x`,
# `y`), ask the judge in both orders and return `True` when $s(x, y) - s(y, x) > 0$. The check uses
# a toy judge with a strong pull towards the first answer.

# %%
def debiased_prefers_x(judge, pairs: list[dict]) -> list[bool]:
    ### BEGIN SOLUTION
    out = []
    for p in pairs:
        ab = judge(p["question"], p["x"], p["y"])
        ba = judge(p["question"], p["y"], p["x"])
        out.append(ab - ba > 0)
    return out
    ### END SOLUTION


# %%
ch16.check_debiased(debiased_prefers_x)
toy = ch16.biased_judge(pull=3.0)
one_order = [toy(p["question"], p["x"], p["y"]) > 0 for p in ch16.JUDGE_PAIRS]
print("one order:", one_order, "| swap-and-average:", debiased_prefers_x(toy, ch16.JUDGE_PAIRS))

# %% [markdown]
# ## Exercise 4 ★ — recall@k, and what it misses
#
# Write `recall_at_k(rankings, gold, k)`: the share of queries whose gold document is among the
# first `k` of its ranking. Then measure it for the paraphrased probes and count why the misses at
# $k = 1$ miss (`failure_kind`).

# %%
def recall_at_k(rankings: list[list[int]], gold: list[int], k: int) -> float:
    ### BEGIN SOLUTION
    return sum(g in list(r)[:k] for r, g in zip(rankings, gold)) / len(gold)
    ### END SOLUTION


# %%
ch16.check_recall_at_k(recall_at_k)
index = BM25(docs)
rankings = [index.top_k(tokenize(f["probe_paraphrase"]), 5) for f in facts]
print({k: recall_at_k(rankings, gold, k) for k in (1, 3, 5)})
misses = [failure_kind(f, r[0], notes) for f, r in zip(facts, rankings)]
print({kind: misses.count(kind) for kind in sorted(set(misses))})

# %% [markdown]
# **What would you change first?** *(answer in a sentence or two)* Given the failure counts above,
# which fix would raise recall@1 for the paraphrased probes most: stemming, a dense retriever, or a
# filter on the person's name?
#
# <!-- BEGIN SOLUTION -->
# Both kinds of miss are large. "Same person, other fact" (the right person's other notes came first) is the paraphrase problem: "has a house in" shares no word with "lives in … home", which stemming does not fix and a dense retriever trained on paraphrases would. "Name collision" (a namesake's note came first) is not a wording problem at all: the name matched perfectly, in the wrong person's document; a filter on the entity (metadata) or a re-ranker that reads the whole note fixes it, a dense retriever does not. So: a dense retriever or a re-ranker for the first, entity metadata for the second; stemming helps neither much.
# <!-- END SOLUTION -->

# %% [markdown]
# ## Interview questions
#
# **Q1. How do you evaluate a retriever, and how do you tell a RAG system's retrieval errors from its reader's?**
#
# <!-- BEGIN SOLUTION -->
# Measure the retriever alone with recall@k on queries whose relevant document you know, then the reader with the right document given (an oracle), then the two together. In chapter 16, BM25 over 3,380 notes put the right note first for 68 % [57 %, 77 %] of the 80 probes phrased like the note but only 20 % [13 %, 30 %] of the paraphrased ones (Wilson 95 %), and in the top 3 for 96 % and 56 %. The course model answered the test people's paraphrased probes 90 % [77 %, 96 %] right with the oracle's note and 42 % [29 %, 58 %] with BM25's top 3 (k chosen on the dev people); paired over the 80 facts the oracle's advantage was +0.42 (bootstrap 95 % CI +0.31 to +0.54). The gap between oracle and retrieved is retrieval's share of the errors; the gap between the oracle and 100 % is the reader's. Then read the misses: for the paraphrases, 37 of 80 first hits were namesakes' notes and 27 the person's other facts.
# <!-- END SOLUTION -->
#
# **Q2. Explain BM25's k1 and b.**
#
# <!-- BEGIN SOLUTION -->
# A term's contribution is idf · f(k1 + 1) / (f + k1(1 − b + b|d|/avgdl)). k1 controls saturation: with k1 = 0 only presence counts, as k1 grows the score approaches idf · f (linear in repetitions); 1.2–2 is usual, so the tenth repetition of a word adds little. b controls length normalisation: b = 0 ignores length, b = 1 divides the term frequency by the document's relative length; 0.75 is usual. The idf is Robertson–Spärck Jones's ln((N − n + 0.5)/(n + 0.5)), negative for words in more than half the documents, which libraries clip (rank_bm25 to 0.25 × the mean idf; Lucene uses ln(1 + …)). The course's implementation equals rank_bm25's BM25Okapi to 1e-15 on the chapter's notes.
# <!-- END SOLUTION -->
#
# **Q3. What biases do LLM judges have, and how do you measure and reduce them?**
#
# <!-- BEGIN SOLUTION -->
# Position bias (preferring the first or second answer), verbosity bias (longer answers), politeness or style bias, and self-preference (a model favouring its own outputs). Measure each on pairs whose truth you know, built to differ in one thing: swap the order and count how often the verdict flips; pad a right answer with neutral words; make the polite answer the wrong one. In chapter 16, SmolLM2-135M asked "which is better, A or B" answered "A" in both orders for every one of 120 pairs (P(first wins) = 100 %), so shown in the dataset's order (the better answer usually first) it agreed with the gold reward on 88 % of a 40-pair sample, and on 12 % with the order reversed. Swap-and-average, ½[s(x, y) − s(y, x)], cancels the constant pull and left 52 % [43 %, 60 %] on 120 pairs: chance. After swapping it still picked the padded answer in 85 % [74 %, 92 %] of verbosity pairs and the polite wrong answer in 100 % [94 %, 100 %] of politeness pairs: biases that follow the content, which no reordering removes. The course's reward model has no position bias (it scores each answer alone) and no verbosity bias here (8 of 100), but preferred the polite wrong answer in 89 of 100 pairs. Reduce them with reference answers, rubrics, a stronger judge, or by calibrating on pairs with known truth, and re-measure.
# <!-- END SOLUTION -->
#
# **Q4. When is an LLM judge good enough to replace human labels?**
#
# <!-- BEGIN SOLUTION -->
# When its agreement with the truth, measured with an interval, is not worse than that of the labels it replaces, on the distribution it will be used on, in both presentation orders, and its biases do not line up with what you optimise (a judge that likes politeness rewards polite wrong answers in RLHF). In chapter 16 the annotators agreed with the gold reward on 89 % [86 %, 91 %] of 500 test pairs; the reward model trained on such labels on 71 % [66 %, 74 %], above chance but below the labels (paired difference +0.18, bootstrap 95 % CI +0.13 to +0.23); SmolLM2 reached 62 % [54 %, 71 %] pointwise when the right answer was in the prompt (reference-guided) and 57 % [49 %, 66 %] without it (on 120 pairs; the difference, +0.05 with a 95 % CI of −0.09 to +0.19 over the three samples, is within noise), and 52 % [43 %, 60 %] pairwise after swap-and-average. None is good enough to replace the labels here; the reward model is good enough to rank candidates roughly (best-of-n), with its politeness bias in mind.
# <!-- END SOLUTION -->
#
# **Q5. Should you combine retrieval with fine-tuning on the same facts?**
#
# <!-- BEGIN SOLUTION -->
# Not blindly: measure it. In chapter 16's sweep (3 data orders), the course model fine-tuned for 160 steps on the 80 facts' statements answered the test people's paraphrased probes 0.97 ± 0.01 right on its own, but only 0.48 ± 0.02 with BM25's top 3 notes pasted in front (difference −0.49, 95 % CI −0.54 to −0.44), while the oracle's note kept it at 1.00: the retrieved namesakes' contradicting facts and the person's other notes overrode what the weights knew. After 40 steps the facts were not stored (0.18 ± 0.03) and the model even read the oracle note worse (0.37 ± 0.05 on the seen probes) than the base model (0.90). So retrieved text dominates parametric knowledge; combining the two pays only with a precise retriever (entity filters, re-ranking), and a fine-tune must be checked for what it does to in-context reading.
# <!-- END SOLUTION -->
