# %% [markdown]
# # 10 · Evaluation and deployment
#
# **Measured runtime:** 67 s on a 2-core CPU (`make execute`; your machine may differ).
#
# A fine-tuned model is only as good as the numbers that say so, and only useful once it runs
# somewhere. This chapter first takes the usual metrics apart (each one computed by hand and then
# through `evaluate`, with the course's own local metric modules), shows where each one misleads,
# then scores the course's chat model, the base model and a LoRA adapter on every course task in one
# call. The second half ships a model: merge an adapter, save it, reload it without peft, shrink the
# chat model to int8, and serve several adapters from one base model in one batch.
#
# **You will learn to**
# 1. compute perplexity, accuracy/F1, exact match, BLEU and ROUGE by hand and check them against `evaluate`;
# 2. say what each metric rewards and show, with numbers, where BLEU/ROUGE and perplexity mislead;
# 3. score a model or adapter on every course task with one harness call and read the table;
# 4. merge a LoRA adapter, save it as safetensors, reload it with plain transformers, and prove nothing changed;
# 5. quantize the merged model to int8 and measure size, latency and score honestly; serve several adapters from one base.
#
# **Prerequisites:** chapters 04 (LoRA, peft) and 05 (absmax quantization); chapter 08's SFT batches help.

# %%
import copy
import math
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path
import torch
import torch.nn.functional as F
import matplotlib.pyplot as plt
import course_lib
from course_lib import deploy, harness
from course_lib.models import load_model
from course_lib.data import load_jsonl
from course_lib.evaluation import (
    available_metrics,
    load_metric,
    perplexity,
    wilson_interval,
)
from course_lib.generation import generate
from course_lib.measure import folder_bytes, median_seconds, saved_bytes, tensor_bytes
from course_lib.sft import pad_examples, sft_batches, sft_example, user_text
from course_lib.training import TrainConfig, train, text_batches

device = course_lib.setup(seed=0)
base, tok = load_model("causal", device=device)
chat, _ = load_model("chat", device=device)  # the shipped chat model (data/chat_model/README.md)
warnings.filterwarnings("ignore", message=".*(gradient_checkpointing|past_key_values|deprecated).*")

# %% [markdown]
# ## 1 · The models to evaluate
#
# An evaluation chapter needs a model that can do the task. The main subject is the course's **chat
# model**, `load_model("chat")`: the base model after chapter 08's full SFT recipe, run for longer
# than a lesson can afford and with general text replayed in its batches (chapter 08, §9), so that
# it keeps its language model (`make chat-model` rebuilds it; its model card,
# `data/chat_model/README.md`, gives the recipe, the build time and the exact match per skill with
# intervals). Beside it we train two small LoRA adapters on the frozen base model (peft, all linear
# layers, $r = 16$):
#
# * **clinic**: plain next-token training on clinic notes, a domain the base model has never seen;
# * **instruct**: a short SFT run on `instructions_train` (chat template, loss on the answer only,
#   `course_lib.sft.sft_batches`). It is too short to answer well; sections 6 and 8 use it only to
#   show that merging and multi-adapter serving change *nothing*, which any adapter shows.
#
# Both are saved with `save_pretrained`, which writes only the adapter weights.

# %%
from peft import LoraConfig, PeftModel, get_peft_model

lora_cfg = LoraConfig(
    task_type="CAUSAL_LM", r=16, lora_alpha=32, target_modules="all-linear", lora_dropout=0.0
)
INSTRUCT_STEPS, CLINIC_STEPS = 100, 30
work = Path(tempfile.mkdtemp())
t0 = time.perf_counter()
instruct = get_peft_model(copy.deepcopy(base), lora_cfg)
train(
    instruct,
    sft_batches(tok, load_jsonl("instructions_train"), 16),
    TrainConfig(lr=3e-3, max_steps=INSTRUCT_STEPS, progress=False),
)
clinic = get_peft_model(copy.deepcopy(base), lora_cfg)
clinic_texts = [r["text"] for r in load_jsonl("clinic_train")]
train(
    clinic,
    text_batches(tok, clinic_texts, 16),
    TrainConfig(lr=3e-3, max_steps=CLINIC_STEPS, progress=False),
)
instruct.save_pretrained(work / "instruct")
clinic.save_pretrained(work / "clinic")
print(f"trained both adapters in {time.perf_counter() - t0:.1f} s")

# %% [markdown]
# A training loss going down is not an evaluation: it is measured on the data the adapter was fitted
# to. Everything below uses held-out data only (`*_val`, `*_test`, `new_facts`).

# %% [markdown]
# ## 2 · Perplexity, by hand and from the model's loss
#
# For a corpus of $N$ predicted tokens (padding excluded), the mean cross-entropy and the perplexity are
#
# $$\mathrm{CE} = \frac{1}{N}\sum_{t=1}^{N} -\log p_\theta(x_t \mid x_{<t}), \qquad \mathrm{PPL} = e^{\mathrm{CE}}.$$
#
# Perplexity is the effective number of equally likely next tokens. Three details matter: the
# logits at position $t$ predict the token at $t+1$ (shift by one), padding must not count, and the
# average runs over **tokens of the whole corpus**, not over sequences. Hugging Face's
# `model(labels=...)` shifts internally and ignores label $-100$, so with padding labelled $-100$ its
# loss is exactly our pooled CE.

# %%
texts = [r["text"] + tok.eos_token for r in load_jsonl("corpus_val")[:16]]
enc = tok(texts, return_tensors="pt", padding=True)
with torch.no_grad():
    logits = base(**enc).logits
target, mask = enc["input_ids"][:, 1:], enc["attention_mask"][:, 1:].bool()
token_ce = F.cross_entropy(
    logits[:, :-1].transpose(1, 2), target, reduction="none"
)  # [batch, len-1]
ce_by_hand = token_ce[mask].mean()
labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
with torch.no_grad():
    ce_hf = base(**enc, labels=labels).loss
assert torch.allclose(ce_by_hand, ce_hf, atol=1e-5)
assert math.isclose(
    math.exp(ce_by_hand),
    perplexity(base, tok, [r["text"] for r in load_jsonl("corpus_val")[:16]]),
    rel_tol=1e-4,
)
print(
    f"mean token CE {ce_by_hand:.4f} nats = HF loss {ce_hf:.4f};  perplexity {math.exp(ce_by_hand):.3f}"
)

# %% [markdown]
# The course's `evaluation.perplexity` and the model's own loss agree with the hand computation.
# Now the two common mistakes: averaging the **per-sequence** perplexities (short, hard sequences
# weigh as much as long ones, and by Jensen's inequality the mean of exponentials exceeds the
# exponential of the mean), and letting padding positions into the mean.

# %%
per_seq_ce = (token_ce * mask).sum(1) / mask.sum(1)
ppl_pooled = math.exp(ce_by_hand)
ppl_mean_of_seqs = per_seq_ce.exp().mean().item()
ppl_with_padding = token_ce.mean().exp().item()  # padding targets are garbage (pad after pad)
print(
    f"pooled {ppl_pooled:.3f} | mean of per-sequence PPLs {ppl_mean_of_seqs:.3f} | padding counted "
    f"{ppl_with_padding:.3f}"
)
print(f"padding share of positions: {1 - mask.float().mean():.1%}")
assert ppl_mean_of_seqs > ppl_pooled * 1.01, (
    "averaging sequence perplexities should overstate PPL here"
)
assert abs(ppl_with_padding - ppl_pooled) > 0.01 * ppl_pooled, (
    "counting padding should change the number"
)

# %% [markdown]
# The direction of the padding error depends on the setup. Here it *inflates* perplexity, because
# `<|pad|>` never occurred in pretraining and the model gives it almost no probability. In many Llama
# fine-tunes the pad token is the EOS token, which the model predicts easily after a finished text,
# and predicting "pad after pad" is easier still: there, counting padding *deflates* perplexity and
# makes the model look better than it is. Either way the fix is the same: label padding $-100$.
#
# **Why perplexity is not enough.** It measures how well the model predicts *the reference text*,
# token by token. It says nothing about whether the model, left to generate, produces the right
# answer in the right format. The harness in section 5 shows this directly: the base model has a
# low general-text CE and still scores zero exact match on instructions.
#
# ## 3 · Accuracy and F1
#
# For classification-style outputs: accuracy $= \frac{1}{n}\sum_i [\hat y_i = y_i]$; for one class $c$,
# $P_c = \frac{TP_c}{TP_c + FP_c}$, $R_c = \frac{TP_c}{TP_c + FN_c}$, $F1_c = \frac{2 P_c R_c}{P_c + R_c} = \frac{2TP_c}{2TP_c + FP_c + FN_c}$;
# macro-F1 averages $F1_c$ over classes with equal weight, so a rare class counts as much as a frequent one.
#
# Our task has three real classes: the chat model reads 300 held-out product reviews
# (`reviews_test`, balanced over positive, negative and neutral) after the instruction it was trained
# with, and answers with one word. Beside it, the laziest classifier: always the most frequent label of
# the *training* reviews.

# %%
reviews = load_jsonl("reviews_test")[:300]
ask = "Is this review positive, negative or neutral?"
prompts_rv = [f"{ask}\n{r['text']}" for r in reviews]
pred_chat = generate(chat, tok, prompts_rv, chat=True, max_new_tokens=6)
gold = [r["label"] for r in reviews]
majority = Counter(r["label"] for r in load_jsonl("reviews_train")).most_common(1)[0][0]
pred_const = [majority] * len(gold)
classes = sorted(set(gold) | set(pred_chat))  # an answer outside the labels is a class of its own
ids = {c: i for i, c in enumerate(classes)}
outside = sum(p not in set(gold) for p in pred_chat)
print("gold:", Counter(gold), "| predicted:", Counter(pred_chat), "| outside the labels:", outside)


# %% [markdown]
# By hand first, then through the local `accuracy` and `f1` modules (`load_metric` points
# `evaluate.load` at `course_lib/metrics/<name>/`, never at the Hub):

# %%
def macro_f1(pred, gold):
    labels = sorted(set(gold) | set(pred))
    f1s = []
    for c in labels:
        tp = sum(p == c and g == c for p, g in zip(pred, gold))
        fp, fn = (
            sum(p == c and g != c for p, g in zip(pred, gold)),
            sum(p != c and g == c for p, g in zip(pred, gold)),
        )
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return sum(f1s) / len(f1s)


print("local metrics:", available_metrics())
acc_metric, f1_metric = load_metric("accuracy"), load_metric("f1")
f1_of = {}
for name, pred in [("chat model", pred_chat), (f"always {majority!r}", pred_const)]:
    acc = acc_metric.compute(predictions=[ids[p] for p in pred], references=[ids[g] for g in gold])[
        "accuracy"
    ]
    f1 = f1_metric.compute(
        predictions=[ids[p] for p in pred], references=[ids[g] for g in gold], average="macro"
    )["f1"]
    assert math.isclose(acc, sum(p == g for p, g in zip(pred, gold)) / len(gold)) and math.isclose(
        f1, macro_f1(pred, gold)
    )
    f1_of[name] = (acc, f1)
    print(f"{name:22s} accuracy {acc:.3f}  macro-F1 {f1:.3f}")

# %% [markdown]
# The constant classifier is right on its third of the reviews, so its accuracy is about 1/3; its
# macro-F1 is about half that, because two of the three classes get $F1_c = 0$ and the third only
# $2p/(1+p)$ with $p \approx 1/3$. Macro-F1 asks for every class to be found, which accuracy does not. The
# checks:

# %%
(acc_chat, f1_chat), (acc_const, f1_const) = f1_of.values()
acc_lo, acc_hi = wilson_interval(round(acc_chat * len(gold)), len(gold))
print(f"chat model accuracy {acc_chat:.3f} (95 % interval {acc_lo:.3f}-{acc_hi:.3f})")
assert acc_lo > acc_const, "the chat model should beat a constant beyond its interval"
assert f1_const < acc_const - 0.1, "a constant answer has a far lower macro-F1 than accuracy"

# %% [markdown]
# Compare the predicted label counts with the gold ones (printed above): a class the model rarely
# predicts has a low recall, and pulls macro-F1 below accuracy even when the classes are balanced;
# with imbalanced classes the two part ways further. Report both, and the interval: with 300 reviews
# the 95 % interval of an accuracy is about ±0.06 wide. (The chat model's accuracy is far from
# perfect: reviews with negation and mixed aspects are hard for a 2 M-parameter model.)
#
# ## 4 · Exact match, BLEU and ROUGE on generated answers
#
# Now generations. The chat model answers the 250 held-out instructions greedily. **Exact match** is
# 1 if the prediction equals the reference (after an agreed normalisation), else 0: right for
# short factual answers, merciless for anything else.

# %%
test = load_jsonl("instructions_test")
t0 = time.perf_counter()
replies = generate(chat, tok, [user_text(r) for r in test], chat=True, max_new_tokens=32)
print(f"{len(test)} greedy answers in {time.perf_counter() - t0:.1f} s")
em = load_metric("exact_match")
em_lib = em.compute(predictions=replies, references=[r["output"] for r in test])["exact_match"]
em_hand = sum(p.strip() == r["output"].strip() for p, r in zip(replies, test)) / len(test)
assert math.isclose(em_lib, em_hand)
for r, p in list(zip(test, replies))[::50]:
    print(f"[{r['skill']:10s}] ref {r['output'][:45]!r:48s} got {p[:45]!r}")
em_lo, em_hi = wilson_interval(round(em_lib * len(test)), len(test))
print(f"exact match (strict) {em_lib:.3f}, 95 % Wilson interval {em_lo:.3f}-{em_hi:.3f}")

# %% [markdown]
# An exact match is a share of $n$ yes/no outcomes, so it carries a binomial uncertainty; the Wilson
# interval (`evaluation.wilson_interval`) is the honest one to print beside it, since it stays inside
# $[0, 1]$ and is not empty at 0 or $n$ right. With 250 items it is several points wide: two models
# whose EMs differ by 0.03 on this set are not ranked by it.
#
# Exact match is strict on purpose, but how strict is a choice: a trailing full stop or a capital
# letter turns a right answer into a zero. The local module exposes the usual normalisations;
# always say which ones you used.

# %%
refs = [r["output"] for r in test]
variants = {
    "strict": {},
    "ignore case": {"ignore_case": True},
    "ignore case + punctuation": {"ignore_case": True, "ignore_punctuation": True},
}
em_by_variant = {
    k: em.compute(predictions=replies, references=refs, **v)["exact_match"]
    for k, v in variants.items()
}
print({k: round(v, 3) for k, v in em_by_variant.items()})
toy = em.compute(predictions=["Bean stew.", "rabbit"], references=["bean stew", "rabbit"])[
    "exact_match"
]
toy_norm = em.compute(
    predictions=["Bean stew.", "rabbit"],
    references=["bean stew", "rabbit"],
    ignore_case=True,
    ignore_punctuation=True,
)["exact_match"]
assert (toy, toy_norm) == (0.5, 1.0)
assert em_by_variant["ignore case + punctuation"] - em_by_variant["strict"] < 0.05, (
    "the chat model answers in the references' own format: normalising should change little"
)

# %% [markdown]
# ### BLEU by hand
#
# BLEU (Papineni et al., 2002) scores n-gram overlap with the reference, at corpus level:
#
# $$p_n = \frac{\sum_{\text{sent}}\sum_{g \in \text{n-grams}} \min\big(\mathrm{count}_\text{cand}(g), \mathrm{count}_\text{ref}(g)\big)}{\sum_{\text{sent}}\sum_{g} \mathrm{count}_\text{cand}(g)}, \qquad
# \mathrm{BP} = \begin{cases}1 & c > r\\ e^{1 - r/c} & c \le r\end{cases}, \qquad
# \mathrm{BLEU} = \mathrm{BP}\cdot\exp\Big(\tfrac{1}{4}\sum_{n=1}^{4}\log p_n\Big).$$
#
# The **clipping** (min) stops "the the the" from scoring; the **geometric** mean makes one zero
# precision zero the score; the **brevity penalty** stops short, precise candidates from winning
# ($c$, $r$: total candidate and reference lengths). We score the 50 *rewrite* answers (put a
# sentence in the past tense), where the answer is a whole sentence.

# %%
import re


def tokens(text):
    return re.findall(r"\w+|[^\w\s]", text)  # the local module's tokenizer


def ngram_counts(toks, n):
    return Counter(tuple(toks[i : i + n]) for i in range(len(toks) - n + 1))


def bleu_by_hand(cands, refs, max_order=4):
    cands, refs = [tokens(c) for c in cands], [tokens(r) for r in refs]
    p = []
    for n in range(1, max_order + 1):
        clipped = sum(
            sum((ngram_counts(c, n) & ngram_counts(r, n)).values()) for c, r in zip(cands, refs)
        )
        p.append(clipped / sum(sum(ngram_counts(c, n).values()) for c in cands))
    c_len, r_len = sum(map(len, cands)), sum(map(len, refs))
    bp = 1.0 if c_len > r_len else math.exp(1 - r_len / c_len)
    return bp * math.exp(sum(map(math.log, p)) / max_order) if min(p) > 0 else 0.0, p, bp


# %% [markdown]
# Two systems on the same 50 rewrite prompts: the chat model, and a trivial baseline that
# returns the input sentence unchanged (present tense, so always wrong). Hand-made and library BLEU
# must agree to the last digit.

# %%
rewrite = [(r, p) for r, p in zip(test, replies) if r["skill"] == "rewrite"]
rw_refs, rw_preds = [r["output"] for r, _ in rewrite], [p for _, p in rewrite]
rw_copy = [r["input"] for r, _ in rewrite]  # a "model" that returns the input unchanged
bleu = load_metric("bleu")
for name, preds in [("chat model", rw_preds), ("copy the input", rw_copy)]:
    lib = bleu.compute(predictions=preds, references=rw_refs)
    mine, p, bp = bleu_by_hand(preds, rw_refs)
    assert math.isclose(lib["bleu"], mine, abs_tol=1e-12) and math.isclose(
        lib["brevity_penalty"], bp
    )
    print(f"{name:17s} BLEU {mine:.3f}  p1..p4 {[round(x, 3) for x in p]}  BP {bp:.3f}")


# %% [markdown]
# ### ROUGE by hand
#
# ROUGE (Lin, 2004), as our local module defines it: lower-cased whitespace tokens;
# ROUGE-N overlap $= \sum_g \min(\mathrm{count}_\text{pred}(g), \mathrm{count}_\text{ref}(g))$ over n-grams,
# $P = \text{overlap}/|\text{pred n-grams}|$, $R = \text{overlap}/|\text{ref n-grams}|$, $F = 2PR/(P+R)$;
# ROUGE-L uses the longest common subsequence (LCS) instead of the overlap. Scores are averaged
# over examples (BLEU pools over the corpus instead).

# %%
def f_measure(overlap, n_pred, n_ref):
    return 0.0 if overlap == 0 else 2 * overlap / (n_pred + n_ref)  # = 2PR/(P+R)


def lcs(a, b):
    row = [0] * (len(b) + 1)
    for x in a:
        prev, row = row, [0]
        for j, y in enumerate(b, 1):
            row.append(prev[j - 1] + 1 if x == y else max(prev[j], row[j - 1]))
    return row[-1]


def rouge_by_hand(pred, ref):
    p, r = pred.lower().split(), ref.lower().split()
    out = {
        f"rouge{n}": f_measure(
            sum((ngram_counts(p, n) & ngram_counts(r, n)).values()),
            max(len(p) - n + 1, 0),
            max(len(r) - n + 1, 0),
        )
        for n in (1, 2)
    }
    return out | {"rougeL": f_measure(lcs(p, r), len(p), len(r))}


# %% [markdown]
# Same two systems, ROUGE through the local module, checked example by example against the hand version:

# %%
rouge = load_metric("rouge")
rouge_scores = {}
for name, preds in [("chat model", rw_preds), ("copy the input", rw_copy)]:
    lib = rouge.compute(predictions=preds, references=rw_refs)
    hand = [rouge_by_hand(p, r) for p, r in zip(preds, rw_refs)]
    for k in lib:
        assert math.isclose(lib[k], sum(h[k] for h in hand) / len(hand), abs_tol=1e-12), k
    rouge_scores[name] = lib
    print(f"{name:17s}", {k: round(v, 3) for k, v in lib.items()})

# %% [markdown]
# ### Where overlap metrics mislead
#
# The "copy the input" baseline never does the task (not one sentence is put in the past tense,
# so its exact match is zero), yet BLEU and ROUGE give it a high score, because most of the words
# of the answer are already in the question. A wrong answer that shares the reference's words beats
# a right answer in other words. Measured on a single fact:

# %%
em_copy = em.compute(predictions=rw_copy, references=rw_refs)["exact_match"]
bleu_copy = bleu.compute(predictions=rw_copy, references=rw_refs)["bleu"]
print(
    f"copy-the-input: exact match {em_copy:.2f}, BLEU {bleu_copy:.3f}, ROUGE-L "
    f"{rouge_scores['copy the input']['rougeL']:.3f}"
)
assert em_copy == 0 and bleu_copy > 0.3 and rouge_scores["copy the input"]["rougeL"] > 0.6
ref = "Umar Cole has a rabbit as a pet."
wrong, right = "Umar Cole has a dog as a pet.", "His pet is a rabbit."
for name, pred in [("wrong, same words", wrong), ("right, other words", right)]:
    s = rouge.compute(predictions=[pred], references=[ref])
    b = bleu.compute(predictions=[pred], references=[ref], smooth=True)["bleu"]
    print(
        f"{name:19s} ROUGE-1 {s['rouge1']:.3f}  ROUGE-L {s['rougeL']:.3f}  BLEU(smoothed) {b:.3f}"
    )
assert (
    rouge.compute(predictions=[wrong], references=[ref])["rouge1"]
    > rouge.compute(predictions=[right], references=[ref])["rouge1"] + 0.3
)

# %% [markdown]
# Rule of thumb: use exact match (or a task-specific checker) when there is one right answer,
# BLEU/ROUGE only as a rough signal for long free-form text, and never as the only number.
#
# ## 5 · One harness for every course task
#
# `course_lib.harness.evaluate_all(model, tok, n)` scores a model (or a peft model with its active
# adapter) on every course task at once: general-text and clinic CE (lower is better), exact match
# per skill on held-out instructions (a skill-stratified subset, so every skill is scored for any
# `n` ≥ 5), new-fact recall (multiple choice, trained and paraphrased
# probe), and the mean gold reward of greedy answers to preference prompts. One call per model,
# same data, same settings: that is what makes a comparison fair.

# %%
N_EVAL = 100  # examples per task; the instructions: 20 per skill
table, seconds = {}, {}
for name, model in [("base", base), ("chat model", chat), ("clinic LoRA", clinic)]:
    t0 = time.perf_counter()
    table[name] = harness.evaluate_all(model.eval(), tok, n=N_EVAL)
    seconds[name] = time.perf_counter() - t0
print(f"{'task':18s}" + "".join(f"{name:>15s}" for name in table))
for key in table["base"]:
    print(f"{key:18s}" + "".join(f"{table[name].get(key, float('nan')):15.3f}" for name in table))
print("seconds per call:", {k: round(v, 1) for k, v in seconds.items()})

# %% [markdown]
# Each EM cell is a share of few items: 20 per skill, 100 in all. Their Wilson intervals, for the
# chat model:

# %%
per_skill = N_EVAL // 5
b, cm, cli = table["base"], table["chat model"], table["clinic LoRA"]
right = {}
for key in [k for k in cm if k.startswith("EM ")]:
    n_items = N_EVAL if key == "EM all" else per_skill
    right[key] = round(cm[key] * n_items)
    lo, hi = wilson_interval(right[key], n_items)
    print(f"{key:16s} {right[key]:3d} / {n_items:3d} = {cm[key]:.2f}   95 % interval {lo:.2f}-{hi:.2f}")

# %% [markdown]
# The same per skill and per model, as a picture (bars: exact match; whiskers: Wilson 95 %
# intervals over the 20 items of each skill):

# %%
em_keys = [k for k in cm if k.startswith("EM ") and k != "EM all"]
fig, ax = plt.subplots(figsize=(7.5, 3.4))
for i, (name, scores) in enumerate(table.items()):
    x = [j + (i - 1) * 0.27 for j in range(len(em_keys))]
    ems = [scores[k] for k in em_keys]
    bounds = [wilson_interval(round(e * per_skill), per_skill) for e in ems]
    yerr = [[e - lo for e, (lo, _) in zip(ems, bounds)], [hi - e for e, (_, hi) in zip(ems, bounds)]]
    ax.bar(x, ems, width=0.27, yerr=yerr, capsize=3, label=name, color=f"C{i}")
ax.set_xticks(range(len(em_keys)), [k.removeprefix("EM ") for k in em_keys])
ax.set_ylabel("exact match (20 items per skill)")
ax.set_ylim(0, 1.05)
ax.legend(fontsize=8)
ax.set_title("One harness, three models: exact match per skill, Wilson 95 % intervals")
plt.tight_layout()

# %% [markdown]
# What the table shows, checked with margins: the chat model is far above the base model and gets
# every skill right some of the time, rewriting nearly always and the number skills (lists, sums)
# least often (its model card shows why); with general text replayed in its training it kept a
# general-text CE close to the base model's; the clinic adapter learned its domain; the base model
# models text well and follows no instructions:

# %%
skills = [k for k in right if k != "EM all"]
assert len(skills) == 5, f"the harness should score all five skills, got {skills}"
assert right["EM rewrite"] >= per_skill - 5, "the chat model should rewrite sentences almost always"
assert cm["EM all"] > b["EM all"] + 0.2, "the chat model should be far above the base model"
print("skills with no right answer:", [k for k in skills if right[k] == 0] or "none")
MIN_RIGHT = 1  # of 20 per skill: every skill answered (the weakest gets a few)
assert min(right[k] for k in skills) >= MIN_RIGHT, f"every skill should be answered: {right}"
assert cm["general CE"] < b["general CE"] + 0.3, "replay should keep general-text CE near the base"
assert cli["clinic CE"] < b["clinic CE"] - 1.0, "the clinic adapter should learn the clinic domain"
assert b["general CE"] < 1.0 and b["EM all"] < 0.05, (
    "the base model: low perplexity, no instruction following"
)
print(
    f"chat model: EM {cm['EM all']:.2f} (base {b['EM all']:.2f}); general CE "
    f"{cm['general CE']:.2f} (base {b['general CE']:.2f}); facts seen {cm['facts seen']:.2f}"
)

# %% [markdown]
# Read the table by rows. The chat model is the only one that answers instructions. Its general-text
# CE is the row that tells whether that cost the language model: full SFT on instructions alone
# forgets (chapter 08 §9; an earlier build of this model, trained without replay, had a general CE
# above a uniform guess), and evaluating only the task you trained for would hide that cost. Its
# skills differ widely (the intervals above say how far the differences can be trusted); a skill at
# zero would be a finding to report, not to hide by averaging: "EM all" alone would not show it.
# Its "facts" rows are near chance: those are facts about people it
# never read about, probed by ranking 8 candidates, and no SFT teaches them. The clinic adapter wins
# its own task by a wide margin and nothing else. The base model's row is the "perplexity is not
# enough" lesson in one line: the best general-text CE and an exact match of zero, because it never
# learned to answer in the format. `n` is a budget knob: `N_EVAL` examples per task keep this
# notebook fast; for a report use all held-out data (the model card scores all 250 test
# instructions), and remember that with 20 items per skill one answer moves a skill's EM by 0.05.
#
# ## 6 · Deployment: merge, save, reload without peft
#
# A LoRA layer computes $W x + \frac{\alpha}{r} B A x$. **Merging** folds the update into the weight once,
#
# $$W' = W + \tfrac{\alpha}{r}\, B A \quad (B \in \mathbb{R}^{d_\text{out}\times r},\ A \in \mathbb{R}^{r\times d_\text{in}}),$$
#
# so serving costs exactly what the base model costs: no extra matmuls, no peft at inference time.
# peft's `merge_and_unload` does this for every adapted layer and returns a plain transformers model.

# %%
ref_layer = instruct.base_model.model.model.layers[0].self_attn.q_proj
W, A, B = (
    ref_layer.base_layer.weight,
    ref_layer.lora_A["default"].weight,
    ref_layer.lora_B["default"].weight,
)
W_merged_by_hand = W + ref_layer.scaling["default"] * (B @ A)
prompts = [user_text(r) for r in test[::25]]
chat_texts = [
    tok.apply_chat_template(
        [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
    )
    for p in prompts
]
tok.padding_side = "left"
enc = tok(chat_texts, return_tensors="pt", padding=True, add_special_tokens=False)
with torch.no_grad():
    logits_adapter = instruct(**enc).logits
replies_adapter = generate(instruct, tok, prompts, chat=True)
merged = deploy.merge_adapter(copy.deepcopy(instruct))
assert torch.allclose(merged.model.layers[0].self_attn.q_proj.weight, W_merged_by_hand, atol=1e-6)
print(
    type(merged).__name__,
    "| peft left inside:",
    any("lora" in n for n, _ in merged.named_modules()),
)

# %% [markdown]
# Save with `save_pretrained` (safetensors) and reload with `AutoModelForCausalLM` (what
# `load_model("causal", folder)` does), the way a server that has never heard of peft would. The
# reloaded model must give the same logits and the same greedy text as the unmerged adapter.

# %%
deploy.save_model(merged, tok, work / "merged")
served, served_tok = load_model("causal", work / "merged")  # plain transformers, no peft
with torch.no_grad():
    logits_served = served(**enc).logits
max_diff = (logits_served - logits_adapter).abs().max().item()
assert torch.allclose(logits_served, logits_adapter, atol=1e-4), max_diff
assert generate(served, served_tok, prompts, chat=True) == replies_adapter
print(
    f"max |logit difference| adapter vs merged+reloaded: {max_diff:.2e}; greedy answers identical"
)
adapter_bytes = folder_bytes(work / "instruct", "*.safetensors")
merged_bytes = folder_bytes(work / "merged", "*.safetensors")
print(
    f"on disk: adapter {adapter_bytes / 1e6:.2f} MB, merged model {merged_bytes / 1e6:.2f} MB "
    f"({merged_bytes / adapter_bytes:.1f}x)"
)
assert adapter_bytes < 0.2 * merged_bytes, (
    "the adapter should be a small fraction of the merged model"
)

# %% [markdown]
# The difference is float rounding ($W + \Delta W$ summed once versus $Wx + \Delta W x$ summed per
# call). Note the sizes: with $r = 16$ on every linear layer of a model this small, the adapter is a
# sizeable fraction of the model; on a 7 B model the same adapter would be well under 1 %.
#
# ## 7 · Post-training int8 quantization of the chat model
#
# **Weight-only int8, per output channel** (chapter 05's absmax, one scale per row):
# $s_i = \max_j |W_{ij}| / 127$, $q_{ij} = \mathrm{round}(W_{ij}/s_i) \in [-127, 127]$, and the layer computes
# $(x\, q^\top) \odot s^\top$. A per-row scale keeps one loud row from wasting the others' precision.
# `course_lib.deploy.Int8Linear` does exactly this.
#
# **PyTorch dynamic quantization** (`torch.ao.quantization.quantize_dynamic`) stores int8 weights
# too, and in addition quantizes each *activation* to 8 bits on the fly, per call, so that the
# matmul itself runs in integer arithmetic. In torch 2.13 it still ships, but the source marks it
# deprecated (warning: "torch.ao.quantization is deprecated … please migrate to torchao"); torchao is
# not installed here, so we use the old API with a per-channel weight config and say so.

# %%
int8_mine = deploy.quantize_linears(chat)  # weight-only, from scratch (lm_head stays tied fp32)
int8_torch = deploy.torch_dynamic_int8(chat)  # torch: int8 weights + dynamic int8 activations
w = chat.model.layers[0].mlp.up_proj.weight
qw = int8_torch.model.layers[0].mlp.up_proj.weight()  # torch's quantized weight
q, s = deploy.quantize_per_channel(w)
print(
    qw.qscheme(),
    "| torch scale / our scale:",
    (qw.q_per_channel_scales().float() / s.squeeze()).mean().item(),
)
step_gap = (qw.dequantize() - deploy.dequantize_per_channel(q, s)).abs().max() / s.max()
assert step_gap <= 1.0 + 1e-4, "both quantizers agree to within one quantization step"

# %% [markdown]
# torch's symmetric int8 uses the range $[-128, 127]$ and a scale $\max|W|/127.5$ (read
# `torch/ao/quantization/observer.py`), ours $\max|W|/127$: the ratio printed above is $127/127.5$,
# and the dequantized weights agree to within one step. Now size, speed and score, each against fp32.

# %%
models = {
    "fp32": chat,
    "int8 weight-only (ours)": int8_mine,
    "int8 dynamic (torch)": int8_torch,
}
sizes = {k: saved_bytes(m) for k, m in models.items()}  # torch.save of the state_dict
batch = tok(chat_texts, return_tensors="pt", padding=True, add_special_tokens=False)
lat_fwd, lat_gen = {}, {}
with torch.no_grad():
    for k, m in models.items():
        lat_fwd[k] = median_seconds(lambda: m(**batch), repeats=9)
        lat_gen[k] = median_seconds(
            lambda: m.generate(**batch, max_new_tokens=16, do_sample=False, pad_token_id=0),
            repeats=3,
        )
for k in models:
    print(
        f"{k:24s} {sizes[k] / 1e6:5.2f} MB  forward {lat_fwd[k] * 1e3:6.1f} ms  generate(16) "
        f"{lat_gen[k] * 1e3:6.0f} ms"
    )
assert (
    sizes["int8 weight-only (ours)"] < 0.45 * sizes["fp32"]
    and sizes["int8 dynamic (torch)"] < 0.5 * sizes["fp32"]
)

# %% [markdown]
# Size is the sure win. Now the score of each version of the chat model on the 250 test
# instructions, three ways: the share of greedy answers identical to the fp32 model's, the exact
# match (with its Wilson interval), and the answer CE (the teacher-forced loss on the reference
# answers of the 350 validation and test instructions: a mean over every answer token, so it moves
# smoothly, while a greedy answer flips only when a top token changes somewhere). We use the answer
# CE rather than the general-text CE because answering is this model's job; its general-text CE is
# already above a uniform guess (section 5), where small changes mean little.

# %%
score, fp_preds = {}, None
prompts_test, refs_test = [user_text(r) for r in test], [r["output"] for r in test]
answers = load_jsonl("instructions_val") + test
answer_batch = pad_examples([sft_example(tok, r) for r in answers], tok.pad_token_id)
for k, m in models.items():
    preds = generate(m, tok, prompts_test, chat=True)
    with torch.no_grad():
        answer_ce = m(**answer_batch).loss.item()
    fp_preds = fp_preds or preds
    em_k = em.compute(predictions=preds, references=refs_test, ignore_case=True)["exact_match"]
    score[k] = (
        sum(p == q for p, q in zip(preds, fp_preds)) / len(preds),
        em_k,
        answer_ce,
    )
    lo, hi = wilson_interval(round(em_k * len(test)), len(test))
    print(
        f"{k:24s} same answer as fp32 {score[k][0]:.3f}   EM {em_k:.3f} ({lo:.3f}-{hi:.3f})   "
        f"answer CE {score[k][2]:.4f}"
    )

# %%
fp_ce = score["fp32"][2]
cost_ours = score["int8 weight-only (ours)"][2] - fp_ce
cost_torch = score["int8 dynamic (torch)"][2] - fp_ce
print(f"answer CE cost: weight-only {cost_ours:+.5f}, dynamic {cost_torch:+.5f} nats")
assert abs(cost_ours) < 0.002, "weight-only per-channel int8 should be near lossless"
assert cost_torch > 0.003 and cost_torch > 3 * abs(cost_ours), "activation quantization costs more"

# %% [markdown]
# And the speed, stated as measured (the medians from the timing cell above):

# %%
speedup = lat_fwd["fp32"] / lat_fwd["int8 dynamic (torch)"]
verdict = "faster" if speedup > 1.1 else ("slower" if speedup < 0.9 else "about as fast")
print(
    f"torch dynamic int8 forward is {speedup:.2f}x the speed of fp32 here: {verdict}; "
    f"ours {lat_fwd['fp32'] / lat_fwd['int8 weight-only (ours)']:.2f}x (it dequantizes in "
    "Python, so no speed-up is expected)"
)

# %% [markdown]
# What int8 buys and costs, as measured above:
#
# * **Size:** the linear weights shrink 4×; the whole checkpoint less, because the tied embedding
#   (1399 × 192) stays fp32 and this tiny model has a large embedding share.
# * **Score:** the three views disagree in size, not in direction. A CE that moves by a fraction of a
#   percent can go with a visible share of flipped answers: a flip needs only one near-tie between
#   the two most likely tokens anywhere in an answer, and a greedy answer that flips may flip to
#   another right answer or to a wrong one (compare the EMs and their intervals). Quantizing the
#   activations as well (torch's dynamic mode) costs more than weight-only int8 (the printed answer-CE
#   costs), for two reasons: one
#   scale per activation tensor is coarse when a few activation features are large, and on x86 torch's
#   dynamic `Linear` quantizes activations with `reduce_range=True` (read
#   `torch/ao/nn/quantized/dynamic/modules/linear.py`: it calls `quantized.linear_dynamic(...,
#   reduce_range=True)`), so they get a 7-bit range, 128 levels instead of 256.
# * **Speed:** whatever the line above measured on this machine, and it depends on the CPU, the
#   thread count and the batch: on a 2 M-parameter model the matmuls are tiny, so Python and kernel
#   overheads weigh as much as the arithmetic, and the from-scratch layer (which turns its int8
#   weights back into floats on every call) cannot use integer kernels at all. Do not quote a
#   speed-up you have not measured on your own hardware; on large models, where reading the weights
#   dominates, int8 kernels typically pay off.
#
# What people deploy in practice is weight-only, like ours, but at 4 bits with smarter rounding:
# **GPTQ** (rounds the weights column by column and corrects the rest of the row for the error, using
# second-order statistics of calibration activations), **AWQ** (scales the few input channels with
# large activations up before rounding, so their weights lose less), and llama.cpp's **GGUF** formats
# (blocks of 32 weights with a scale, and a minimum or a second-level scale; chapter 13 decodes one).
# One pitfall when an adapter meets a quantized model: a QLoRA adapter was trained against the
# *dequantized* 4-bit base, so merge it into a 16-bit copy of that dequantized base (or keep it
# unmerged). Merging into the original 16-bit weights gives a model the adapter never saw, and
# merging and then re-quantizing to 4 bits rounds the small update $\tfrac{\alpha}{r}BA$ away in part.
#
# ## 8 · Serving several adapters from one base model
#
# Merging gives one model per task. If you serve many tasks, keep **one** base model and many
# small adapters instead: peft's `load_adapter` adds a named adapter, `set_adapter` switches, and
# passing `adapter_names=[...]` (one name per row, `"__base__"` for none) runs a **mixed batch**
# in one forward: every LoRA layer computes the base output once and adds each row's own
# $\frac{\alpha}{r} B A x$ (peft 0.21.2, `LoraLayer._mixed_batch_forward`).

# %%
server = PeftModel.from_pretrained(copy.deepcopy(base), work / "instruct", adapter_name="instruct")
server.load_adapter(work / "clinic", adapter_name="clinic")
server.eval()
mix_texts = chat_texts[:2] + [clinic_texts[0][:60], clinic_texts[1][:60]]
mix = tok(mix_texts, return_tensors="pt", padding=True, add_special_tokens=False)
single = {}
with torch.no_grad():
    for name in ["instruct", "clinic"]:
        server.set_adapter(name)
        single[name] = server(**mix).logits
    with server.disable_adapter():
        single["__base__"] = server(**mix).logits

# %% [markdown]
# Now the same four rows in **one** forward pass, each routed to its own adapter (or none):

# %%
route = ["instruct", "__base__", "clinic", "instruct"]
with torch.no_grad():
    mixed = server(**mix, adapter_names=route).logits
for i, name in enumerate(route):
    assert torch.allclose(mixed[i], single[name][i], atol=1e-5), (i, name)
print("mixed batch rows equal the single-adapter runs:", route)
print(
    "max |difference| over all rows:",
    max((mixed[i] - single[n][i]).abs().max().item() for i, n in enumerate(route)),
)

# %% [markdown]
# Finally, the memory bill for serving $N$ tasks: one base plus $N$ adapters, against $N$ merged copies.

# %%
base_bytes = tensor_bytes(base)
lora_bytes = tensor_bytes(p for n, p in server.named_parameters() if "lora_" in n) / 2  # per adapter
for n_tasks in [2, 10, 100]:
    shared, copies = base_bytes + n_tasks * lora_bytes, n_tasks * base_bytes
    print(
        f"{n_tasks:3d} tasks: base + adapters {shared / 1e6:7.1f} MB   merged copies "
        f"{copies / 1e6:7.1f} MB  ({copies / shared:.1f}x)"
    )
assert 10 * base_bytes > 2 * (base_bytes + 10 * lora_bytes)
print(f"one adapter = {lora_bytes / base_bytes:.1%} of the base model")

# %% [markdown]
# Merged or unmerged? **Merge** when one model serves one task: zero inference overhead and no peft
# dependency (section 6). **Keep adapters separate** when one deployment serves many tasks or
# customers: one copy of the base in memory, adapters swapped or mixed per row, at the price of the
# extra low-rank matmuls in every adapted layer. (Production servers such as vLLM and LoRAX batch
# rows with different adapters the same way, with fused kernels.)
#
# ## Summary
#
# * Perplexity $= e^{\text{mean token CE}}$, pooled over the corpus's real tokens; we matched it to the
#   model's own loss and showed that averaging per-sequence perplexities or counting padding gives
#   another number. It measures prediction of reference text, not task success.
# * Accuracy/macro-F1 (on three real classes: a constant answer keeps a third of the accuracy and half
#   of that in macro-F1), exact match, BLEU and ROUGE, each computed by hand and equal to the local
#   `evaluate` modules, with a Wilson interval beside every share. Exact match's normalisation is a
#   choice to report; BLEU and ROUGE gave a high score to a baseline that copies the input and never
#   does the task.
# * One harness call per model put the base model, the shipped chat model and a clinic adapter side
#   by side on every course task, every skill scored (a stratified subset): the chat model answers
#   the skills it learnt, fails at the number skills (visible only per skill) and paid in general-text
#   CE, the clinic adapter wins its task, and the base model has the lowest CE with zero exact match.
# * Merging a LoRA adapter and reloading it with plain transformers gave the same logits (to
#   float rounding) and the same greedy text.
# * Int8 on the chat model: size down by more than half; weight-only per-channel int8 moved the
#   answer CE far less than dynamic activation quantization (7-bit activations on x86); flipped answers and EM are
#   the views a user sees; the speed change is whatever your machine measures, not a textbook promise.
# * One base model served two adapters and the base in one mixed batch (`adapter_names=`), equal row by row to
#   separate runs; ten tasks cost far less memory as adapters than as merged copies.
#
# ## Quiz
#
# 1. A corpus has two sequences: 10 tokens with mean CE 1.0 and 90 tokens with mean CE 2.0. What is its perplexity?
# 2. Why can a model with a lower perplexity than another have a lower exact match?
# 3. A candidate is an exact, correct prefix of the reference, half its length. What are its $p_n$ and its BLEU?
# 4. After `merge_and_unload`, what do you still need peft for at inference time?
# 5. What does torch's dynamic quantization quantize that our weight-only int8 does not, and what did it cost here?
#
# <details><summary>Answers</summary>
#
# 1. Pool the tokens: $\mathrm{CE} = (10 \cdot 1 + 90 \cdot 2)/100 = 1.9$, $\mathrm{PPL} = e^{1.9} \approx 6.69$ (not the mean of $e^1$ and $e^2$, 5.05).
# 2. Perplexity scores predicting the reference tokens under teacher forcing; exact match scores the whole greedy
#    generation, format included. The base model here has the lowest CE and an EM of about zero.
# 3. All $p_n = 1$ (every n-gram matches), but $c = r/2$, so $\mathrm{BP} = e^{1-2} \approx 0.37$ and BLEU $\approx 0.37$.
# 4. Nothing: the result is a plain transformers model, reloaded with `AutoModelForCausalLM` (section 6).
# 5. The activations, per call, with one scale per tensor (on x86 in a 7-bit range, `reduce_range=True`).
#    In section 7 it moved the chat model's answer CE far more than weight-only int8 did.
# </details>
#
# ## Interview questions
#
# * How would you evaluate a fine-tuned LLM?
# * Why isn't perplexity enough?
# * Merged or unmerged adapters in serving: what are the trade-offs?
# * How do you serve many LoRA adapters at once?
# * What does int8 quantization buy, and what does it cost?
#
# Answers, with this chapter's numbers, and the exercises are in
# [the exercises notebook](../exercises/10_evaluation_deployment_exercises.ipynb).
