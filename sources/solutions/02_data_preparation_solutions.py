# %% [markdown]
# # 02 · Data preparation — Solutions
#
# **Measured runtime:** 9 s on a 2-core CPU (`make execute`; your machine may differ).
#
# Exercises for [the lesson](../notebooks/02_data_preparation.ipynb). Each exercise says its level:
# ★ warm-up, ★★ core, ★★★ stretch. Write your code where it says so, then run the check cell below
# it: it tells you what is wrong, not only that something is.

# %%
import html
import random
import re
from collections import defaultdict
import torch
import course_lib
from course_lib.course.checkers import ch02

device = course_lib.setup(seed=0)


# %% [markdown]
# ## Exercise 1 ★ — clean a scraped text
#
# Write `clean(text)`: unescape HTML entities (`&amp;` → `&`), replace every tag `<...>` by a space,
# collapse every run of whitespace to one space, and strip the ends. Mind the order: a scraped
# text may contain *escaped* tags (`&lt;b&gt;`).

# %%
def clean(text: str) -> str:
    ### BEGIN SOLUTION
    text = re.sub(r"<[^>]+>", " ", html.unescape(text))
    return re.sub(r"\s+", " ", text).strip()
    ### END SOLUTION


# %%
ch02.check_clean(clean)


# %% [markdown]
# ## Exercise 2 ★★ — the LSH S-curve
#
# With MinHash signatures of $b \cdot r$ values cut into $b$ bands of $r$ rows, write
# `p_candidate(s, bands, rows)`: the probability that two texts of Jaccard similarity $s$ agree on
# all rows of at least one band.

# %%
def p_candidate(s: float, bands: int, rows: int) -> float:
    ### BEGIN SOLUTION
    return 1 - (1 - s**rows) ** bands
    ### END SOLUTION


# %%
ch02.check_lsh_probability(p_candidate)

# %% [markdown]
# Then: with 128 hashes, compare $(b, r) \in \{(64, 2), (32, 4), (16, 8)\}$ at $s = 0.8$ and
# $s = 0.3$. Which would you choose to find pairs above a threshold of 0.8, and why?

# %%
### BEGIN SOLUTION
for b, r in [(64, 2), (32, 4), (16, 8)]:
    print(
        f"b={b:2d} r={r}: P(0.8)={p_candidate(0.8, b, r):.3f}  P(0.3)={p_candidate(0.3, b, r):.3f}"
    )
### END SOLUTION

# %% [markdown]
# <!-- BEGIN SOLUTION -->
# 32 × 4. It finds essentially every pair at 0.8 (P ≈ 1.000) and makes only about 23 % of the pairs
# at 0.3 candidates; candidates are verified exactly, so a false candidate costs one comparison,
# not an error. 64 × 2 makes almost every pair a candidate (P(0.3) ≈ 1.0: no saving over brute
# force); 16 × 8 misses about 5 % of the pairs at 0.8, and those errors are never recovered. The
# step of each curve sits near $(1/b)^{1/r}$: 0.125, 0.42, 0.71.
# <!-- END SOLUTION -->

# %% [markdown]
# ## Exercise 3 ★★ — a stratified, seeded split
#
# Write `split(records, ratios, seed)`: records are dicts with a `"label"`; return one list per
# ratio. Every record lands in exactly one part, each class keeps its share in every part (cut
# each class separately), and the same seed gives the same split.

# %%
def split(records, ratios, seed):
    ### BEGIN SOLUTION
    rng, by_label = random.Random(seed), defaultdict(list)
    for r in records:
        by_label[r["label"]].append(r)
    parts = [[] for _ in ratios]
    for label in sorted(by_label):
        items = rng.sample(by_label[label], len(by_label[label]))
        cuts = [round(sum(ratios[: i + 1]) * len(items)) for i in range(len(ratios))]
        for i, (lo, hi) in enumerate(zip([0] + cuts[:-1], cuts)):
            parts[i] += items[lo:hi]
    return parts
    ### END SOLUTION


# %%
ch02.check_split(split)


# %% [markdown]
# ## Exercise 4 ★★ — loss only on the response
#
# Write `mask_labels(prompt_ids, response_ids)` returning `(input_ids, labels)`: the input is the
# prompt followed by the response; the labels equal the input on the response (including its final
# end-of-turn token) and are `-100` on the prompt. Then measure what the mask changes: the loss of
# the base model on one instruction example with and without it.

# %%
def mask_labels(prompt_ids, response_ids):
    ### BEGIN SOLUTION
    return list(prompt_ids) + list(response_ids), [-100] * len(prompt_ids) + list(response_ids)
    ### END SOLUTION


# %%
ch02.check_mask(mask_labels)

# %%
from course_lib.models import load_model
from course_lib.data import load_jsonl

model, tok = load_model("causal", device=device)
msgs = load_jsonl("instructions_train")[3]["messages"]
### BEGIN SOLUTION
prompt = tok.apply_chat_template(
    msgs[:1], tokenize=True, add_generation_prompt=True, return_dict=True
)["input_ids"]
full = tok.apply_chat_template(msgs, tokenize=True, return_dict=True)["input_ids"]
ids, labels = mask_labels(prompt, full[len(prompt) : -1])  # drop the template's final newline
x, y = torch.tensor([ids], device=device), torch.tensor([labels], device=device)
with torch.no_grad():
    masked, unmasked = model(input_ids=x, labels=y).loss, model(input_ids=x, labels=x).loss
print(msgs, f"\nloss on the response only {masked:.2f}, on everything {unmasked:.2f} nats/token")
### END SOLUTION

# %% [markdown]
# <!-- BEGIN SOLUTION -->
# Both losses are high because the base model has never seen the chat format: its role tokens are
# untrained, so it cannot yet tell that an answer follows. The numbers also average over different
# tokens: the unmasked loss is mostly about the prompt (about four fifths of the tokens), the masked
# one only about the answer, the quantity SFT should lower. Training on the unmasked loss would
# spend most of the gradient on modelling the user's questions. Chapter 08 measures what the mask
# does to exact match after SFT.
# <!-- END SOLUTION -->

# %% [markdown]
# ## Exercise 5 ★★★ — pack without cross-talk
#
# Write `packed_mask(doc_lengths)` for documents packed into one row: return `position_ids` of shape
# `[1, L]` that restart at 0 for each document, and a boolean `mask` of shape `[1, 1, L, L]` that is
# `True` where query position $i$ may attend to key position $j$: the same document and $j \le i$.
# The check also runs the base model: a packed document must give the same logits as alone.

# %%
def packed_mask(doc_lengths):
    ### BEGIN SOLUTION
    doc = torch.repeat_interleave(torch.arange(len(doc_lengths)), torch.tensor(doc_lengths))
    pos = torch.cat([torch.arange(n) for n in doc_lengths])
    causal = torch.ones(len(doc), len(doc), dtype=torch.bool).tril()
    return pos[None], ((doc[:, None] == doc[None, :]) & causal)[None, None]
    ### END SOLUTION


# %%
ch02.check_packed(packed_mask)
a, b = tok("Nina Crane has a dog.")["input_ids"], tok("Yara Marsh lives in Fernwick.")["input_ids"]
pos, mask = packed_mask([len(a), len(b)])
with torch.no_grad():
    packed = model(
        input_ids=torch.tensor([a + b], device=device),
        position_ids=pos.to(device),
        attention_mask=mask.to(device),
    ).logits[0, len(a) :]
    alone = model(input_ids=torch.tensor([b], device=device)).logits[0]
assert torch.allclose(packed, alone, atol=1e-4), (
    "the packed document does not compute what it computes alone"
)

# %% [markdown]
# ## Interview questions
#
# **Q1. How do you find near-duplicates in 100 million documents?**
#
# <!-- BEGIN SOLUTION -->
# Shingle each document (word or character n-grams), compute a MinHash signature (k minima of k
# hash functions; equal minima estimate Jaccard similarity), and use LSH banding so that only
# documents sharing a band bucket are compared; verify candidates exactly (or by the signature
# estimate), and keep one document per connected group. Cost is near-linear only if few pairs
# become candidates: choose bands × rows so that the S-curve $1-(1-s^r)^b$ steps just below the
# threshold (in the lesson, 32 × 2 sent a tenth of all pairs to verification, still quadratic;
# 20 × 3 kept nearly every true pair with a tenth of those candidates), and set the
# threshold by measuring precision and recall on a labelled sample: in the lesson, on short
# templated reviews, 0.5 gave recall 0.95 at precision 0.38 and 0.6 gave precision 0.76 at recall
# 0.70. Exact dedup (hash of normalised text) first, it is cheap. Suffix arrays find repeated
# substrings instead (Lee et al. 2022, *Deduplicating Training Data Makes Language Models Better*).
# <!-- END SOLUTION -->
#
# **Q2. Quality or quantity: what matters more in fine-tuning data?**
#
# <!-- BEGIN SOLUTION -->
# Both, and the ratio is measurable. In the lesson, 750 clean reviews beat 3,000 reviews with 40 %
# flipped labels, but 3,000 with 10 % noise beat 750 clean ones (three flip seeds, both outside
# the noise); 30 % noise cost the large set more than 10 points. Random symmetric flips below
# 2/3 (three classes) leave the best decision unchanged: they cost sample efficiency, and a
# neural fine-tune trained too long can memorise them. For instruction tuning, small curated sets go a long way (LIMA: 1,000 examples),
# because SFT mostly teaches format and behaviour on top of pretrained knowledge. Systematic label
# errors are worse than random ones: they teach the wrong rule. Remove duplicates and leakage first;
# they make every measurement lie.
# <!-- END SOLUTION -->
#
# **Q3. Why do you mask the loss to the response in SFT, and what is packing?**
#
# <!-- BEGIN SOLUTION -->
# The goal is to learn to produce answers given prompts, $p(\text{response} \mid \text{prompt})$;
# prompt tokens are inputs, not targets. Setting their labels to −100 removes them from the
# cross-entropy average (in the lesson's instruction data, only 19 % of tokens are response tokens,
# so an unmasked loss is mostly about the questions). Keep the end-of-turn token as a target, or
# the model never learns to stop. Packing concatenates several examples into one full-length row
# to avoid padding (12.7 % of positions were padding in random order here, 0.9 % when sorted by
# length); without resetting position ids and blocking attention between examples, an example
# attends to the previous one (logits differed by up to 4.8 in the lesson; with the block mask,
# by 4e-6).
# <!-- END SOLUTION -->
#
# **Q4. 8:1:1 or 7:1:2? And how do you split?**
#
# <!-- BEGIN SOLUTION -->
# The test share buys precision of the final estimate: the standard error of an accuracy $p$ on $n$
# examples is $\sqrt{p(1-p)/n}$; doubling the test set narrows it by √2. With ~1,500 examples,
# 10 % gives ±6.3 points (95 %) at 80 % accuracy, 20 % gives ±4.4; so small datasets favour 7:1:2,
# large ones give a smaller share to test (1 % of 100,000, n = 1,000, still gives ±2.5 points;
# ±0.8 needs about 9,600 items). Split after deduplication, stratified by label, with a fixed seed, and by
# *group* (user, document, product) when examples of one group are correlated. Never tune on test.
# <!-- END SOLUTION -->
