# %% [markdown]
# # 02 · Data preparation
#
# **Measured runtime:** 94 s on a 2-core CPU (`make execute`; your machine may differ).
#
# A fine-tune can only be as good as its data. This chapter takes a "scraped" copy of the course's
# reviews through the whole pipeline (cleaning, deduplication, balancing, splitting) and then
# turns the instruction data into what a trainer consumes: formats, chat templates, loss masks,
# packed batches. Two experiments put numbers on the two mistakes that cost the most: noisy labels,
# and duplicates leaking from the training set into the test set.
#
# **You will learn to**
# 1. clean text and labels, and remove exact and near duplicates (MinHash + LSH, from scratch, checked against brute force and `datasketch`);
# 2. measure how label noise and class imbalance hurt, and how much clean data is worth;
# 3. show how train/test leakage inflates a score, and remove it;
# 4. build stratified 8:1:1 and 7:1:2 splits and know what the test size buys you;
# 5. render chat templates, mask the loss to the response, pack sequences without cross-talk, and do all of it with the `datasets` library.
#
# **Prerequisites:** chapter 01.

# %%
import random
from collections import Counter
import torch
import course_lib
from course_lib.data import load_jsonl
from course_lib.dataprep import (
    clean_text,
    clean_records,
    dedup_exact,
    shingles,
    jaccard,
    minhash_params,
    minhash_signature,
    lsh_probability,
    lsh_candidates,
    near_duplicate_pairs,
    decontaminate,
    balance_classes,
    stratified_split,
    accuracy_standard_error,
    flip_labels,
)
from course_lib.world.messy import messy_reviews, near_duplicate_variant
from course_lib.baselines import bag_of_words_accuracy, bag_of_words_predict
from course_lib.plotting import plot_lines

device = course_lib.setup(seed=0)

# %% [markdown]
# ## 1 · Raw data is messy
#
# Real fine-tuning data is scraped, exported from a database, or written by annotators, and arrives
# with markup, odd spacing, labels spelt five ways, empty rows and copies. `messy_reviews` makes such
# a "scraped" version of 1,500 clean training reviews. Because we made the mess ourselves, each row
# carries an `issue` field saying what was done to it; we use it only to *check* the pipeline,
# never inside it.

# %%
reviews = load_jsonl("reviews_train")[:1500]
raw = messy_reviews(reviews, seed=0)
print(
    len(reviews), "clean reviews ->", len(raw), "raw rows;", dict(Counter(r["issue"] for r in raw))
)
for r in raw[:5]:
    print(repr(r["text"][:90]), "|", repr(r["label"]))

# %% [markdown]
# ## 2 · Cleaning
#
# Three rules, in this order: unescape HTML entities (`&amp;` → `&`), drop tags, normalise Unicode
# (NFKC, e.g. the ligature `ﬁ` → `fi`) and whitespace. Labels are mapped to the three canonical
# names; rows with an unknown label, or too short (< 4 words) or too long (> 60 words) to be a
# review, are dropped and counted: **always report what a filter removed**, or you will not notice
# when it removes half your data.

# %%
print(clean_text("  <p>The lid &amp; the\n handle are ﬁne</p> "))
clean, dropped = clean_records(raw)
print(f"{len(raw)} -> {len(clean)} rows; dropped: {dict(dropped)}")
junk = sum(r["issue"] == "junk" for r in raw)
assert sum(dropped.values()) >= junk, "every junk row must be dropped"
assert all(r["label"] in {"positive", "negative", "neutral"} for r in clean)
assert not any("<" in r["text"] or "  " in r["text"] for r in clean), "markup or double spaces left"

# %% [markdown]
# ## 3 · Exact duplicates
#
# Two rows are "the same text" if they are equal after normalisation (lower case, no punctuation,
# single spaces). Hash the normalised text and keep the first row of each hash. Copies inflate what
# the model sees of some examples (it memorises them) and, worse, can sit in both the training and
# the test split (section 5).

# %%
exact = dedup_exact(clean)
print(f"{len(clean)} -> {len(exact)} rows after exact dedup ({len(clean) - len(exact)} removed)")
sources = Counter(r["source"] for r in exact if r["source"] is not None)
print("clean reviews still present more than once:", sum(n > 1 for n in sources.values()))
assert len(clean) - len(exact) >= sum(r["issue"] == "exact duplicate" for r in raw) * 0.8

# %% [markdown]
# Some copies survive: they are *near* duplicates (another brand name, another filler phrase),
# which no hash of the text can catch.
#
# ## 4 · Near duplicates: MinHash and LSH
#
# **Similarity.** Cut each text into its set of word 3-grams ("shingles"); two texts $A$, $B$ are
# similar if the **Jaccard similarity** $J(A,B) = |A \cap B| / |A \cup B|$ is high. Comparing all
# pairs costs $n^2/2$ comparisons: fine for 1,500 rows, hopeless for 10 million documents.
#
# **MinHash.** Apply a random hash function $h$ to every shingle and keep the minimum. The shingle
# that attains the minimum over $A \cup B$ is equally likely to be any element of the union, and
# both minima are equal exactly when it lies in the intersection, so
#
# $$P\big[\min h(A) = \min h(B)\big] = J(A, B).$$
#
# With $k$ independent hash functions, the share of equal minima estimates $J$ with standard error
# $\sqrt{J(1-J)/k}$. The $k$ minima are the text's *signature*.

# %%
a, rng = exact[0]["text"], random.Random(1)
b = next(
    v
    for v in (near_duplicate_variant(a, rng) for _ in range(20))
    if jaccard(shingles(a), shingles(v)) < 0.9
)
sa, sb = shingles(a), shingles(b)
params = minhash_params(num_perm=256, seed=0)
estimate = (minhash_signature(sa, params) == minhash_signature(sb, params)).mean()
print(a, "\n" + b)
print(f"Jaccard {jaccard(sa, sb):.3f}   MinHash estimate with 256 hashes {estimate:.3f}")
assert abs(estimate - jaccard(sa, sb)) < 4 * (0.25 / 256) ** 0.5, (
    "MinHash estimate too far from Jaccard"
)

# %% [markdown]
# **LSH (banding).** Cut each signature of $k = b \cdot r$ values into $b$ bands of $r$ rows and
# put texts whose band is identical into the same bucket; only texts sharing a bucket in some band
# become candidate pairs, which are then verified exactly. A pair with similarity $s$ becomes a
# candidate with probability
#
# $$P(s) = 1 - (1 - s^r)^b ,$$
#
# an S-curve that rises steeply near $(1/b)^{1/r}$. Choosing $b$ and $r$ places the step below
# the threshold you care about.

# %%
s = [i / 50 for i in range(51)]
plot_lines(
    s,
    {
        f"b={b_}, r={r_}": [lsh_probability(x, b_, r_) for x in s]
        for b_, r_ in [(32, 2), (16, 4), (8, 8)]
    },
    title="LSH: probability that a pair becomes a candidate",
    xlabel="Jaccard similarity",
    ylabel="P(candidate)",
);

# %% [markdown]
# The course's default is $k = 64$ hashes in $b = 32$ bands of $r = 2$ rows: a pair at $s = 0.5$
# is a candidate with probability $1 - 0.75^{32} = 0.9999$. The price sits on the left of the
# curve: its step is at $(1/32)^{1/2} \approx 0.18$, so a pair at $s = 0.2$ still becomes a
# candidate with probability 0.73. First the ground truth, by brute force over every pair:

# %%
import time
from datasketch import MinHash, MinHashLSH

texts = [r["text"] for r in exact]
sets = [shingles(t) for t in texts]
t0 = time.perf_counter()
brute = {
    (i, j)
    for i in range(len(sets))
    for j in range(i + 1, len(sets))
    if jaccard(sets[i], sets[j]) >= 0.5
}
t1 = time.perf_counter()
ours = {(i, j) for i, j, _ in near_duplicate_pairs(texts, threshold=0.5)}
t2 = time.perf_counter()
print(
    f"brute force: {len(brute)} pairs in {t1 - t0:.1f} s;  MinHash+LSH: {len(ours)} pairs in {t2 - t1:.1f} s"
)

# %% [markdown]
# LSH saves work only if few pairs become candidates. Count them for four bandings against all
# $n(n-1)/2$ pairs, with the recall of the true pairs at $s \ge 0.5$ (20 × 3 needs 60 hashes):

# %%
n_pairs = len(sets) * (len(sets) - 1) // 2
print(f"all pairs: {n_pairs:,}\nbanding  step  P(0.5)  P(0.2)  candidates  share  recall  seconds")
banding = {}
for b_, r_ in [(32, 2), (20, 3), (16, 4), (8, 8)]:
    t0 = time.perf_counter()
    sig = [minhash_signature(st, minhash_params(b_ * r_, seed=0)) for st in sets]
    cand = lsh_candidates(sig, bands=b_)
    hits = {p for p in cand if jaccard(sets[p[0]], sets[p[1]]) >= 0.5}
    banding[b_, r_] = (len(cand), len(hits & brute) / len(brute))
    print(
        f"{b_:3d} × {r_}  {(1 / b_) ** (1 / r_):.2f}  {lsh_probability(0.5, b_, r_):6.3f}  "
        f"{lsh_probability(0.2, b_, r_):6.3f}  {len(cand):10,d}  {len(cand) / n_pairs:5.1%}  "
        f"{banding[b_, r_][1]:6.2f}  {time.perf_counter() - t0:7.2f}"
    )

# %% [markdown]
# Short templated reviews share many 3-grams, so 32 × 2 sends a tenth of all pairs to exact
# verification: its cost still grows with $n^2$, and the `ours == brute` check below holds almost
# by construction. 20 × 3 puts the step just below the threshold and keeps nearly every true pair
# for a tenth of the candidates; 16 × 4 and 8 × 8 are cheaper still but miss many pairs at 0.5.
# That is the trade-off banding offers: fewer candidates (time) against recall near the threshold.

# %%
assert banding[32, 2][0] > 5 * banding[20, 3][0], "32 x 2 should make many more candidates"
assert banding[32, 2][1] == 1.0 and banding[20, 3][1] > 0.9, "both should keep the true pairs"
assert banding[8, 8][1] < 0.5, "8 x 8 puts the step far above 0.5 and misses most pairs"

# %% [markdown]
# Now the same search with `datasketch`, first letting it choose the banding for the threshold,
# then with ours:

# %%
sigs = []
for st in sets:
    sigs.append(MinHash(num_perm=64, seed=0))
    sigs[-1].update_batch([x.encode() for x in st])


def datasketch_pairs(**kw):
    lsh = MinHashLSH(num_perm=64, **kw)
    for i, m in enumerate(sigs):
        lsh.insert(i, m)
    cand = {(min(i, j), max(i, j)) for i in range(len(sigs)) for j in lsh.query(sigs[i]) if i != j}
    return (lsh.b, lsh.r), {p for p in cand if jaccard(sets[p[0]], sets[p[1]]) >= 0.5}


for kw in [dict(threshold=0.5), dict(params=(32, 2))]:
    (b_, r_), found = datasketch_pairs(**kw)
    print(f"datasketch {kw}: b={b_}, r={r_}, finds {len(found & brute)} of {len(brute)} pairs")
assert ours == brute, "our LSH should find exactly the brute-force pairs at this setting"
assert len(found & brute) >= 0.95 * len(brute), (
    "datasketch with the same banding should find the same pairs"
)

# %% [markdown]
# Given only `threshold=0.5`, datasketch picks its own banding by minimising a weighted sum of the
# false-positive and false-negative probabilities; it chooses fewer, longer bands, and misses some
# pairs near the threshold. With the same 32 × 2 banding it finds what ours finds (its hash
# functions differ, so not necessarily the identical set). The pure-Python brute force takes
# seconds here; at a million documents ($5 \cdot 10^{11}$ pairs) it would take days. LSH is
# near-linear only when its step sits close to the threshold, so that the candidates are a small
# share of all pairs; with 32 × 2 on this data they are a tenth of them, still quadratic.
#
# **Where to set the threshold?** We know which rows are copies of the same clean review (the
# `source` field), so we can measure precision (found pairs that are real copies) and recall (real
# copies found) for each threshold:

# %%
src = [r["source"] for r in exact]
true = {
    (i, j)
    for i in range(len(src))
    for j in range(i + 1, len(src))
    if src[i] is not None and src[i] == src[j]
}
print(f"copy pairs left after exact dedup: {len(true)}")
print("threshold  found  precision  recall")
for th in [0.4, 0.5, 0.6, 0.7, 0.8]:
    found = {(i, j) for i, j, _ in near_duplicate_pairs(texts, threshold=th)}
    print(
        f"{th:9.1f} {len(found):6d} {len(found & true) / max(1, len(found)):10.2f} "
        f"{len(found & true) / len(true):7.2f}"
    )

# %% [markdown]
# No threshold is both precise and complete. Our reviews are short and built from a small
# vocabulary, so two *different* reviews of the same product ("the price is standard to be
# honest" / "the price is sturdy to be honest") share most of their 3-grams, while a copy with a
# new filler phrase loses half of its. On web text, with long documents, thresholds around 0.7–0.8
# on 5-gram shingles are common; on short, templated text you must measure, as here. For the
# training set, a false positive costs one example; for **decontaminating a test set** (next
# section) a false positive costs little, so a low threshold is the right choice there. Little is
# not nothing: the removed clean rows are the test items most similar to training, so dropping
# them shrinks $n$ and tilts the test set towards harder items (a slightly pessimistic score).
# Report how many clean rows were removed.
#
# ## 5 · Leakage: duplicates that inflate the test score
#
# Experiment: a classifier (logistic regression on word uni- and bigrams) is trained on 600 reviews
# and tested on 450 test reviews, and on the same test set with 150 near-copies of *training*
# reviews mixed in, as happens when data are deduplicated after splitting, or not at all.

# %%
test_reviews = load_jsonl("reviews_test")[:450]
train600 = reviews[:600]
rng = random.Random(1)
leaked = [{**r, "text": near_duplicate_variant(r["text"], rng)} for r in rng.sample(train600, 150)]
acc_clean = bag_of_words_accuracy(train600, test_reviews, ngram=2)
acc_leaky = bag_of_words_accuracy(train600, test_reviews + leaked, ngram=2)
acc_leaked_only = bag_of_words_accuracy(train600, leaked, ngram=2)
print(
    f"clean test {acc_clean:.1%}   with 25% leaked rows {acc_leaky:.1%}   on the leaked rows alone "
    f"{acc_leaked_only:.1%}"
)

# %% [markdown]
# Now decontaminate: drop every test row that near-duplicates some training row (threshold 0.5),
# and score again.

# %%
kept, removed = decontaminate(test_reviews + leaked, train600, threshold=0.5)
caught = sum(r in removed for r in leaked)
acc_decont = bag_of_words_accuracy(train600, kept, ngram=2)
print(
    f"decontamination removed {len(removed)} rows ({caught} of {len(leaked)} leaked, "
    f"{len(removed) - caught} clean test rows of {len(test_reviews)}); accuracy {acc_decont:.1%}"
)
assert acc_leaky > acc_clean + 0.03, "leaked training copies should inflate the score"
assert caught >= 0.9 * len(leaked), "near-duplicate search should catch the leaked rows"
assert abs(acc_decont - acc_clean) < 0.02, (
    "after decontamination the score should be the honest one again"
)

# %% [markdown]
# The leaked rows are answered almost perfectly because the model has seen them: the inflated score
# measures memory, not generalisation. Exact matching alone would have caught only the copies that
# differ in case and punctuation:

# %%
train_hashes = {r["text"].lower().rstrip(".!").strip() for r in train600}
naive = sum(r["text"].lower().rstrip(".!").strip() in train_hashes for r in leaked)
print(f"exact matching catches {naive} of {len(leaked)} leaked rows; MinHash+LSH caught {caught}")
assert naive < 0.6 * caught

# %% [markdown]
# The same problem at scale is **benchmark contamination**: test sets of public benchmarks found in
# pretraining corpora (the GPT-3 paper, Brown et al. 2020, §4, measured 13-gram overlaps for this
# reason). Deduplicate *before* splitting, and check the test split against everything you train on.
#
# ## 6 · Label noise: quality vs quantity
#
# Flip a share of the training labels to a wrong class at random and train on them: with 750
# reviews, and with four times as many. Which labels flip is random, so each point is run with
# three flip seeds (mean ± sd; `course_lib.uncertainty`).

# %%
from course_lib.uncertainty import spread, differs

test1000 = load_jsonl("reviews_test")
train_all, labels = load_jsonl("reviews_train"), ["negative", "neutral", "positive"]
rates, flip_seeds = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5], [0, 1, 2]
runs = {  # runs[n][i] = accuracies over the flip seeds at rates[i]
    n: [
        [
            bag_of_words_accuracy(flip_labels(train_all[:n], p, labels, seed=s), test1000, ngram=2)
            for s in flip_seeds
        ]
        for p in rates
    ]
    for n in (750, 3000)
}
for n, per_rate in runs.items():
    print(f"{n:4d} reviews:", "  ".join(spread(a).fmt(3) for a in per_rate))

# %% [markdown]
# The same numbers as a picture (error bars: ± 1 sd over the flip seeds), with the two claims we
# want to test: noise hurts, and how much clean data is worth against noisy data.

# %%
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(6.4, 3.6))
for n, per_rate in runs.items():
    sp = [spread(a) for a in per_rate]
    ax.errorbar([100 * p for p in rates], [x.mean for x in sp], yerr=[x.sd for x in sp],
                fmt="o-", capsize=3, label=f"{n} training reviews")
ax.set(title="Accuracy vs label noise (bag of n-grams)", xlabel="labels flipped (%)",
       ylabel="test accuracy")
ax.legend(fontsize=8);

# %% [markdown]
# Each claim is checked against the noise of the flip seeds (`differs`: the 95 % interval of the
# difference excludes zero), and the verdicts are printed:

# %%
small, big = runs[750], runs[3000]
for name, a, b in [
    ("3000 clean vs 3000 at 30% noise", big[0], big[3]),
    ("750 clean vs 3000 at 40% noise", small[0], big[4]),
    ("3000 at 10% noise vs 750 clean", big[1], small[0]),
    ("750 clean vs 3000 at 30% noise", small[0], big[3]),
]:
    print(f"{name}: {spread(a).mean:.3f} vs {spread(b).mean:.3f}, differs: {differs(a, b)}")
assert spread(big[0]).mean - spread(big[3]).mean > 0.1 and differs(big[0], big[3])
assert spread(small[0]).mean > spread(big[4]).mean and differs(small[0], big[4])
assert spread(big[1]).mean > spread(small[0]).mean and differs(big[1], small[0])

# %% [markdown]
# What the curve supports, and no more: 750 clean labels beat 3,000 labels of which 40 % are
# flipped, while 3,000 labels with 10 % flipped beat 750 clean ones. So clean data is worth a
# multiple of its size in noisy data only when the noise is heavy; at light noise, more data
# wins. "Quality beats quantity" (e.g. LIMA, Zhou et al. 2023: 1,000 carefully chosen examples
# for instruction tuning) is a claim about this *ratio*; measure it for your task.
#
# Why does 50 % noise still beat chance? With three classes and flips spread evenly over the
# two wrong ones, the true label stays the most frequent label of any given text as long as less
# than 2/3 of the labels flip, so the best decision does not move: random noise costs sample
# efficiency, not the asymptote. Two caveats: this is a linear model with one pass of fitting; a
# neural fine-tune can **memorise** noisy labels if trained long (early stopping on clean
# validation data matters there). And random flips are the mildest kind of noise; systematic
# errors (an annotator who always calls *okay* negative) bias the model instead of slowing it.
#
# ## 7 · Augmentation: only if it keeps the label
#
# Augmentation makes new training rows by transforming old ones. It is safe only when the
# transformation cannot change the label, and on this task the label is decided by a few
# judgement words. `swap_judgements` replaces each judgement word with another one: from the
# same polarity list (label-preserving), or from all judgement words, as a generic synonym or
# word-replacement augmenter would (label-changing: the copy keeps a label that is often wrong).
# Two copies per review, on 750 reviews, three augmentation seeds:

# %%
from course_lib.dataprep import swap_judgements

print(swap_judgements(train_all[1]["text"], random.Random(0), keep_polarity=True))
print(swap_judgements(train_all[1]["text"], random.Random(0), keep_polarity=False))
aug = {"no augmentation": [], "label-preserving": [], "label-changing": []}
for seed in flip_seeds:
    rng, base = random.Random(seed), train_all[:750]
    for name, keep in [("label-preserving", True), ("label-changing", False)]:
        copies = [{**r, "text": swap_judgements(r["text"], rng, keep)} for r in base for _ in "ab"]
        aug[name].append(bag_of_words_accuracy(base + copies, test1000, ngram=2))
    aug["no augmentation"].append(spread(small[0]).mean)  # 750 clean reviews, measured above
for name, accs in aug.items():
    print(f"{name:>17}: {spread(accs).fmt(3) if len(set(accs)) > 1 else f'{accs[0]:.3f}'}")

# %% [markdown]
# The label-preserving copies teach the model that the other words of a review do not matter
# and the judgement does; the label-changing copies are label noise the augmenter made itself,
# systematic rather than random. The same holds wherever a label depends on a detail: perturbing
# the numbers of a text whose answer is computed from them, or swapping "before" and "after" in
# a temporal question, changes the label.

# %%
base_acc = aug["no augmentation"][0]
assert min(aug["label-preserving"]) > base_acc, "label-preserving copies should help, every seed"
assert max(aug["label-changing"]) < base_acc - 0.05, "label-changing copies should hurt"
#
# ## 8 · Class balance
#
# Take a skewed training set (about 73 % positive, 19 % neutral, 8 % negative) and score by **macro-F1**
# (the mean of the per-class F1 scores) on the balanced test set, with the course's local `f1`
# metric module. Two fixes: down-sample the big classes, or keep every example and weight the loss
# by inverse class frequency (`class_weight="balanced"`).

# %%
from course_lib.evaluation import load_metric

f1 = load_metric("f1")
keep = {"positive": 1.0, "neutral": 0.25, "negative": 0.1}
rng = random.Random(0)
skewed = [r for r in train_all if rng.random() < keep[r["label"]]]
texts_test, ids = [r["text"] for r in test1000], {lab: i for i, lab in enumerate(labels)}


def scores(train, weight=None):
    pred = bag_of_words_predict(train, texts_test, ngram=2, class_weight=weight)
    p, y = [ids[x] for x in pred], [ids[r["label"]] for r in test1000]
    per_class = [
        f1.compute(predictions=p, references=y, average="macro", labels=[i])["f1"] for i in range(3)
    ]
    return round(f1.compute(predictions=p, references=y, average="macro")["f1"], 3), [
        round(x, 2) for x in per_class
    ]


print("skewed counts:", dict(Counter(r["label"] for r in skewed)))

# %% [markdown]
# Three training sets, one test set: the skewed one as it is, down-sampled to its rarest class,
# and weighted.

# %%
res = {
    "skewed": scores(skewed),
    "down-sampled": scores(balance_classes(skewed)),
    "class-weighted": scores(skewed, "balanced"),
}
print(f"{'training set':>15} macro-F1   F1 per class {labels}")
for k, (m, pc) in res.items():
    print(f"{k:>15} {m:8.3f}   {pc}")
assert res["class-weighted"][0] > res["skewed"][0] + 0.03, "weighting should raise macro-F1"
assert res["class-weighted"][1][0] > res["skewed"][1][0] + 0.1, (
    "the rare negative class should gain most"
)

# %% [markdown]
# The skewed model mostly ignores the rare class. Down-sampling raises the rare class's F1 but
# throws data away: here the other classes lose more than the rare one gains, and macro-F1 is
# lower than with no fix at all (compare the printed rows). Weighting keeps every example and
# raises macro-F1. With a neural classifier the same choice exists: a weighted
# `CrossEntropyLoss(weight=...)`, or a sampler that draws classes equally.
#
# ## 9 · Splits: 8:1:1 and 7:1:2
#
# Split **after** cleaning and deduplication, with a fixed seed, and **stratified** (each class
# keeps its share in every split). Validation picks hyperparameters and the checkpoint; the test
# split is touched once, at the end.

# %%
cleaned = exact
for ratios in [(0.8, 0.1, 0.1), (0.7, 0.1, 0.2)]:
    parts = stratified_split(cleaned, ratios, seed=0)
    shares = [
        {lab: round(Counter(r["label"] for r in p)[lab] / len(p), 3) for lab in labels}
        for p in parts
    ]
    print(ratios, [len(p) for p in parts], shares[2])
    assert sum(len(p) for p in parts) == len(cleaned)
    assert len({r["id"] for p in parts for r in p}) == len(cleaned), "a row in two splits"

# %% [markdown]
# Why give the test set 20 % instead of 10 %? An accuracy $p$ measured on $n$ examples has standard
# error $\sqrt{p(1-p)/n}$. With our ~1,550 cleaned reviews:

# %%
n = len(cleaned)
for share in (0.1, 0.2):
    se = accuracy_standard_error(0.8, int(share * n))
    print(
        f"test share {share:.0%}: n = {int(share * n)}, accuracy 80% ± {1.96 * se:.1%} (95% interval)"
    )

# %% [markdown]
# Doubling the test set narrows the interval by $\sqrt 2$. With a small dataset that difference
# decides whether two models can be told apart at all, so 7:1:2 is common there. With 100,000
# examples, the interval of a 1 % or 10 % test split, and the test size a ±0.8-point interval needs:

# %%
for n_test in (1_000, 10_000):
    half = 1.96 * accuracy_standard_error(0.8, n_test)
    print(f"100,000 examples, test share {n_test / 100_000:.0%}: n = {n_test:,}, 80% ± {half:.1%}")
need = round(1.96**2 * 0.8 * 0.2 / 0.008**2)
print(f"±0.8 points needs n = {need:,} test examples")
assert 0.02 < 1.96 * accuracy_standard_error(0.8, 1_000) < 0.03

# %% [markdown]
# So 1 % of 100,000 gives about ±2.5 points, and ±0.8 needs about a tenth of the data. Whether
# that is enough depends on the differences you need to resolve: two models 2 points apart are
# not told apart by a 1,000-item test set.
#
# ## 10 · Formats
#
# Four shapes of fine-tuning data, all in `data/`:
#
# | format | fields | used for |
# |---|---|---|
# | classification | `text`, `label` | a classifier head (ch 01, 03) |
# | Alpaca-style instruction | `instruction`, `input`, `output` | SFT with a prompt template |
# | chat messages | `messages`: list of `{role, content}` | SFT with a chat template (ch 08) |
# | preference pairs | `prompt`, `chosen`, `rejected` | reward models, DPO (ch 09) |

# %%
from course_lib.formats import (
    alpaca_prompt,
    alpaca_to_messages,
    preference_to_conversations,
    response_labels,
)

instr = load_jsonl("instructions_train")
rec = next(r for r in instr if r["input"])
print(alpaca_prompt(rec) + rec["output"])
print(alpaca_to_messages(rec))
print(preference_to_conversations(load_jsonl("preferences_train")[0]))
assert all(alpaca_to_messages(r) == r["messages"] for r in instr), (
    "the two formats must hold the same data"
)

# %% [markdown]
# ## 11 · Chat templates and the loss on the response only
#
# A chat model sees a conversation rendered as one string by the tokenizer's **chat template**
# (a Jinja program stored in `tokenizer_config.json`). Ours marks each turn with a role token and
# ends it with `<|end|>`. `add_generation_prompt=True` appends the assistant's role token: the
# place where the model starts answering.

# %%
from course_lib.models import load_model

model, tok = load_model("causal", device=device)
msgs = [{"role": "system", "content": "Answer briefly."}] + rec["messages"]
print(tok.apply_chat_template(msgs, tokenize=False))
print(repr(tok.apply_chat_template(msgs[:-1], tokenize=False, add_generation_prompt=True)[-20:]))

# %% [markdown]
# In supervised fine-tuning the model should learn to *answer*, not to predict the user's
# question. So the labels are the input ids on the assistant's tokens and $-100$ everywhere else
# ($-100$ is the `ignore_index` of PyTorch's cross-entropy: those positions add nothing to the
# loss). From scratch: render the prompt with the generation prompt, render the full chat, and
# mask the prompt's length. The reply's `<|end|>` keeps its label: it is how the model learns to
# stop.

# %%
out = response_labels(tok, msgs)
shown = [
    (tok.decode([i]), "learn" if lab != -100 else "-")
    for i, lab in zip(out["input_ids"], out["labels"])
]
print(shown[-8:])
lib = tok.apply_chat_template(
    msgs, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
)
assert [lab != -100 for lab in out["labels"]] == [bool(m) for m in lib["assistant_masks"]]

# %% [markdown]
# The library check uses the template's `{% generation %}` markers, which make
# `apply_chat_template(..., return_assistant_tokens_mask=True)` return exactly the assistant
# tokens; TRL's `SFTTrainer` uses the same mechanism (`assistant_only_loss=True`). On the whole
# training set:

# %%
n_same, n_learn, n_all = 0, 0, 0
for r in instr:
    o = response_labels(tok, r["messages"])
    m = tok.apply_chat_template(
        r["messages"], tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    n_same += [lab != -100 for lab in o["labels"]] == [bool(x) for x in m["assistant_masks"]]
    n_learn, n_all = n_learn + sum(lab != -100 for lab in o["labels"]), n_all + len(o["labels"])
print(
    f"masks equal on {n_same}/{len(instr)} examples; {n_learn / n_all:.0%} of the tokens carry a label"
)
assert n_same == len(instr)

# %% [markdown]
# Only about a fifth of the tokens are the answer. Without the mask, most of the gradient would go
# into modelling questions. Chapter 08 measures what the mask does to the fine-tuned model.
#
# Two traps before you reuse this on real data. **Multi-turn chats.** `response_labels` masks by
# prefix, so it labels only the *last* assistant turn; every example above is single-turn, which
# is why the two masks agreed. TRL's `assistant_only_loss=True` trains every assistant turn. A
# two-turn chat shows the difference:

# %%
two_turn = rec["messages"] + [
    {"role": "user", "content": "And in one word?"},
    {"role": "assistant", "content": "Yes."},
]
last_only = sum(lab != -100 for lab in response_labels(tok, two_turn)["labels"])
every_turn = tok.apply_chat_template(
    two_turn, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
)["assistant_masks"]
print(f"tokens with a label: last turn only {last_only}, every assistant turn {sum(every_turn)}")
assert sum(every_turn) > last_only

# %% [markdown]
# **Templates without generation markers.** The assistant mask exists only because *our*
# template wraps each reply in `{% generation %}` … `{% endgeneration %}`. Many real templates do
# not. SmolLM2-135M-Instruct, the real model of chapter 13 (converted offline into
# `data/real_model/`), uses the **ChatML** template (`<|im_start|>role … <|im_end|>`), without the
# markers: asking it for the assistant mask returns all zeros (with only a logged warning), and a
# trainer relying on it would train on nothing, or fall back to training on everything.

# %%
from course_lib.models import REAL_MODEL_DIR

if REAL_MODEL_DIR.exists():  # built by `make real-model` (CI builds it before the tests)
    _, real_tok = load_model("smollm2")
    print(real_tok.apply_chat_template(two_turn, tokenize=False))
    real_mask = real_tok.apply_chat_template(
        two_turn, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )["assistant_masks"]
    real_labels = response_labels(real_tok, two_turn)["labels"]
    print(f"ChatML: template mask labels {sum(real_mask)} tokens; masking by prefix labels "
          f"{sum(lab != -100 for lab in real_labels)} (the last reply and its <|im_end|>)")
else:
    real_tok = None
    print("data/real_model/ is missing: run `make real-model` to see the real ChatML template")

# %% [markdown]
# Masking by prefix works with any template whose prompt renders as a prefix of the full chat;
# the marker-based mask needs markers. Note also that ChatML adds no `<|bos|>` token, while our
# tokenizer does: a pipeline that adds one itself *and* lets the tokenizer add one feeds the model
# a double BOS it never saw in training, one of the classic silent template mismatches.
#
# The tokenizer itself matters as much as the template. Chapter 01 measured that the course's
# tokenizer, trained on the general corpus, needs about 4 pieces per clinic word. SmolLM2's
# tokenizer (49,152 tokens, trained on web text) on the same notes:

# %%
clinic_val = [r["text"] for r in load_jsonl("clinic_val")]


def tokens_per_word(t, texts):
    return sum(len(t(x, add_special_tokens=False)["input_ids"]) for x in texts) / sum(
        len(x.split()) for x in texts
    )


print(f"course tokenizer ({len(tok)} tokens): {tokens_per_word(tok, clinic_val):.2f} per word")
if real_tok is not None:
    print(f"SmolLM2 ({len(real_tok)}): {tokens_per_word(real_tok, clinic_val):.2f} per word")
    print(real_tok.tokenize(clinic_val[0])[:24])

# %% [markdown]
# A larger vocabulary trained on broader text knows more of the clinic words (`eczema`,
# `plaques`), but still splits numbers into single digits and abbreviations into letters:
# domain data costs more tokens per word than the text a tokenizer was trained on.
#
# ## 12 · Padding and packing
#
# A batch must be rectangular. **Padding** fills short sequences up to the longest one in the batch;
# the padded positions cost compute and teach nothing. **Packing** concatenates examples into
# full-length rows instead.

# %%
from course_lib.formats import padding_waste, packed_attention

lengths = [len(response_labels(tok, r["messages"])["input_ids"]) for r in instr]
print(f"lengths {min(lengths)}..{max(lengths)} tokens")
print(
    f"padding waste, batches of 16 in data order: {padding_waste(lengths, 16):.1%}; "
    f"sorted by length: {padding_waste(sorted(lengths), 16):.1%}"
)

# %% [markdown]
# Sorting (or bucketing, `group_by_length=True` in `TrainingArguments`) removes most of the waste
# here because our examples are similar in length; on real chat data lengths vary by 100× and
# packing matters much more.
#
# Packing has a catch: with a plain causal mask, the second example in a row attends to the first.
# The fix is to restart the position ids at every example and to use a block-diagonal causal mask,
# so each example sees only itself. Then a packed row computes exactly what the examples compute
# alone:

# %%
a, b = (
    tok(instr[0]["messages"][0]["content"])["input_ids"],
    tok(instr[1]["messages"][0]["content"])["input_ids"],
)
ids = torch.tensor([a + b], device=device)
pos, mask = packed_attention([len(a), len(b)])
with torch.no_grad():
    alone = model(input_ids=torch.tensor([b], device=device)).logits[0]
    naive = model(input_ids=ids).logits[0, len(a) :]
    isolated = model(
        input_ids=ids, position_ids=pos.to(device), attention_mask=mask.to(device)
    ).logits[0, len(a) :]
print(
    f"max |logit difference| vs the example alone: naive packing {(naive - alone).abs().max():.3f}, "
    f"with reset positions + block mask {(isolated - alone).abs().max():.1e}"
)
assert torch.allclose(isolated, alone, atol=1e-4) and not torch.allclose(naive, alone, atol=1e-2)

# %% [markdown]
# transformers ships the first half as `DataCollatorWithFlattening` (one row, position ids reset,
# `-100` on each example's first label); with FlashAttention-2 the reset position ids alone are
# enough to isolate the examples. Many pretraining pipelines pack naively on purpose (documents
# separated by an end token): at 2,048+ tokens per row the cross-talk costs little. For short SFT
# examples, isolate them.

# %%
from transformers import DataCollatorWithFlattening

print(DataCollatorWithFlattening()([{"input_ids": [5, 6, 7]}, {"input_ids": [8, 9]}]))

# %% [markdown]
# ## 13 · The same pipeline with 🤗 `datasets`
#
# Everything above works on Python lists. The `datasets` library does the same on Arrow tables
# that live on disk (memory-mapped, so a 100 GB corpus does not have to fit in RAM), with caching
# and multiprocessing. The course's JSONL files load with the generic `json` builder: no download.

# %%
from datasets import load_dataset
from course_lib.data import DATA_DIR

ds = load_dataset("json", data_files={"train": str(DATA_DIR / "reviews_train.jsonl")})["train"]
ds = ds.map(lambda r: {"text": clean_text(r["text"])})
ds = ds.map(lambda r: {"n_words": len(r["text"].split())})  # on the cleaned text
ds = ds.filter(lambda r: 4 <= r["n_words"] <= 60)  # the rule of section 2
ds = ds.class_encode_column("label")
print(ds)
print(ds.features["label"])

# %% [markdown]
# `train_test_split` stratifies by a `ClassLabel` column; check that the label shares agree:

# %%
splits = ds.train_test_split(test_size=0.2, stratify_by_column="label", seed=0)
shares = {
    k: [round(v.count(i) / len(v), 3) for i in range(3)]
    for k, v in ((k, splits[k]["label"]) for k in splits)
}
print(splits, shares)
assert max(abs(x - y) for x, y in zip(shares["train"], shares["test"])) < 0.01, (
    "stratification failed"
)

# %% [markdown]
# An Arrow dataset is saved as a folder of Arrow files plus its features and split names, and
# loaded back memory-mapped:

# %%
import tempfile
from datasets import load_from_disk

with tempfile.TemporaryDirectory() as folder:
    splits.save_to_disk(folder)
    back = load_from_disk(folder)
print(back["test"][0])
assert back["test"][:] == splits["test"][:], "save_to_disk / load_from_disk must round-trip"

# %% [markdown]
# `map` can also tokenize and build labels in one pass (`batched=True` for speed); the result
# is what `Trainer` and TRL consume. Chapter 03 and chapter 08 do exactly that.
#
# ## Summary
#
# * Clean, then deduplicate (exactly, then nearly), then split; report what every filter removed.
# * MinHash estimates Jaccard similarity from signatures; LSH banding finds similar pairs without
#   comparing all of them. Set the threshold by measuring precision and recall on your data.
# * Leaked near-copies of training rows inflated a test score by several points here; decontaminate
#   the test set against everything you train on.
# * Label noise costs accuracy steadily (three flip seeds per point); clean data beats four times
#   as much data with 40 % noise, but loses to it at 10 % noise: measure the ratio for your task.
# * Augment only with transformations that keep the label: label-preserving copies helped here,
#   label-changing ones hurt as much as heavy label noise.
# * LSH trades candidates (time) against recall near the threshold: place the banding's step just
#   below the threshold and count the candidates.
# * Weight or re-sample rare classes and score them with macro-F1.
# * Mask the loss to the response (keeping the end token); check what your template's mask does on
#   multi-turn chats and whether it has generation markers at all; pack without cross-talk.
#
# ## Quiz
#
# 1. Why deduplicate *before* splitting into train and test?
# 2. A pair of texts has Jaccard similarity 0.5. What is the chance that LSH with 16 bands of 4 rows makes it a candidate?
# 3. Your classifier's accuracy went from 80 % to 90 % after adding a scraped dataset to *both* train and test. What do you check first?
# 4. Why does the `<|end|>` token of the reply keep its label?
#
# <details><summary>Answers</summary>
#
# 1. Otherwise copies of one example land on both sides, and the test score rewards memorisation (section 5).
# 2. $1 - (1 - 0.5^4)^{16} = 1 - 0.9375^{16} \approx 0.64$: 16×4 puts the step too high for this threshold; 32×2 gives 0.9999.
# 3. Overlap between the new training and test rows (exact and near duplicates); then whether the new test rows are easier than the old ones. Report the score on the old test set too.
# 4. Generation stops when the model emits it; a model never trained to produce it rambles on.
#
# </details>
#
# ## Interview questions
#
# * How do you find near-duplicates in 100 million documents?
# * How much data do you need to fine-tune, and does quality or quantity matter more?
# * Why mask the loss to the response in SFT? What is packing, and what can go wrong with it?
# * 8:1:1 or 7:1:2: how do you choose the split?
#
# Answers: [solutions/02_data_preparation_solutions.ipynb](../solutions/02_data_preparation_solutions.ipynb).
# Exercises: [exercises/02_data_preparation_exercises.ipynb](../exercises/02_data_preparation_exercises.ipynb).
