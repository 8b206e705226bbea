# %% [markdown]
# # 01 · Pretraining vs fine-tuning — Solutions
#
# **Measured runtime:** 56 s on a 2-core CPU (`make execute`; your machine may differ).
#
# Exercises for [the lesson](../notebooks/01_pretraining_vs_finetuning.ipynb). Each exercise says
# its level: ★ warm-up, ★★ core, ★★★ stretch. Write your code where it says so, then run the
# check cell below it: it tells you what is wrong, not only that something is.

# %%
import math
import torch
import torch.nn.functional as F
import course_lib
from course_lib.models import load_model
from course_lib.course.checkers import ch01

device = course_lib.setup(seed=0)
model, tok = load_model("causal")


# %% [markdown]
# ## Exercise 1 ★ — the next-token loss
#
# Write `next_token_loss(logits, input_ids)`: `logits` has shape `[batch, T, vocab]`, `input_ids`
# shape `[batch, T]`. Return the mean cross-entropy (nats) of predicting token $t+1$ from the logits
# at position $t$, over all predicted positions. Use `F.cross_entropy`.

# %%
def next_token_loss(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    ### BEGIN SOLUTION
    vocab = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, vocab), input_ids[:, 1:].reshape(-1))
    ### END SOLUTION


# %%
ch01.check_next_token_loss(next_token_loss)

# %% [markdown]
# ## Exercise 2 ★ — the unigram baseline
#
# Write `unigram_ce(train_ids, eval_ids, vocab_size)`: count every token of `train_ids` (a list of
# token-id lists), turn the counts into probabilities with **add-one smoothing**
# $p(v) = \frac{c(v)+1}{N + V}$, and return the mean $-\ln p$ over all tokens of `eval_ids`.

# %%
from collections import Counter


def unigram_ce(train_ids, eval_ids, vocab_size: int) -> float:
    ### BEGIN SOLUTION
    counts = Counter(t for ids in train_ids for t in ids)
    total = sum(counts.values()) + vocab_size
    tokens = [t for ids in eval_ids for t in ids]
    return -sum(math.log((counts[t] + 1) / total) for t in tokens) / len(tokens)
    ### END SOLUTION


# %%
ch01.check_unigram(unigram_ce)


# %% [markdown]
# ## Exercise 3 ★★ — greedy decoding by hand
#
# `model.generate` hides a simple loop. Write `greedy_generate(model, input_ids, n_new)`: repeat
# `n_new` times: run the model on the sequence so far, take the most likely next token, append it.
# Return the prompt followed by the new tokens, shape `[1, prompt_len + n_new]`. (No caching needed:
# the sequences are short.)

# %%
@torch.no_grad()
def greedy_generate(model, input_ids: torch.Tensor, n_new: int) -> torch.Tensor:
    ### BEGIN SOLUTION
    ids = input_ids
    for _ in range(n_new):
        next_id = model(ids).logits[:, -1].argmax(-1, keepdim=True)
        ids = torch.cat([ids, next_id], dim=1)
    return ids
    ### END SOLUTION


# %%
ch01.check_greedy(greedy_generate)


# %% [markdown]
# ## Exercise 4 ★★ — scoring a candidate answer
#
# The lesson answered probes such as *"Yara Marsh loves ___"* by ranking candidate answers. Write
# `answer_logprob(model, tok, prompt, answer)`: the log-probability the model gives to `answer`
# following `prompt`, as it would appear in running text. Tokenize the prompt with `<|bos|>` and
# the answer without special tokens, run the model once on the concatenation, and add up the
# log-probabilities of the answer's tokens.

# %%
@torch.no_grad()
def answer_logprob(model, tok, prompt: str, answer: str) -> float:
    ### BEGIN SOLUTION
    p = tok(prompt)["input_ids"]
    a = tok(" " + answer, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p + a])
    logp = torch.log_softmax(model(ids).logits[0], dim=-1)
    return sum(logp[len(p) - 1 + i, tok_id].item() for i, tok_id in enumerate(a))
    ### END SOLUTION


# %%
ch01.check_pick(answer_logprob)

# %% [markdown]
# With your function, which food does the base model think Yara Marsh loves most?

# %%
from course_lib.world.entities import FOODS

scores = {food: answer_logprob(model, tok, "Yara Marsh loves", food) for food in FOODS}
print(
    max(scores, key=scores.get),
    "| true answer:",
    course_lib.world.entities.make_world().person("Yara Marsh").food,
)

# %% [markdown]
# ## Exercise 5 ★★★ — how close does domain fine-tuning get to the floor?
#
# Every clinic note in `clinic_val.jsonl` carries `logp`, the log-probability of the generator's
# choices that produced it. (a) Compute the floor for this split: total $-\log p$ divided by the
# number of tokens a model must predict for the notes (each note is `<|bos|> text <|end|>`; what is
# predicted?). (b) Fine-tune a copy of the base model on `clinic_train` with the course loop and
# report its cross-entropy on `clinic_val` next to the floor and the base model's. How much of the
# gap did 40 steps close?

# %%
import copy
from course_lib.data import load_jsonl
from course_lib.evaluation import cross_entropy
from course_lib.training import TrainConfig, train, text_batches

notes = load_jsonl("clinic_val")
### BEGIN SOLUTION
n_tokens = sum(
    len(tok(r["text"], add_special_tokens=False)["input_ids"]) + 1 for r in notes
)  # + <|end|>
floor = -sum(r["logp"] for r in notes) / n_tokens
### END SOLUTION
ch01.check_floor(floor)

# %%
### BEGIN SOLUTION
texts = [r["text"] for r in notes]
base_ce = cross_entropy(model, tok, texts)
tuned = copy.deepcopy(model)
train(
    tuned,
    text_batches(tok, [r["text"] for r in load_jsonl("clinic_train")], batch_size=16),
    TrainConfig(lr=1e-3, max_steps=40, warmup_steps=4, progress=False),
)
tuned_ce = cross_entropy(tuned, tok, texts)
closed = (base_ce - tuned_ce) / (base_ce - floor)
print(
    f"base {base_ce:.3f}  fine-tuned {tuned_ce:.3f}  floor {floor:.3f} nats/token: {closed:.0%} of "
    "the gap closed"
)
assert floor < tuned_ce < base_ce
### END SOLUTION

# %% [markdown]
# <!-- BEGIN SOLUTION -->
# Forty steps (640 notes) close most of the gap between the base model and the floor: the notes
# are formulaic, and the model already knows how to use context. What remains is mostly the notes'
# genuine randomness in a few tokens (the numbers: ages, durations, doses) that no model can predict,
# plus what 40 steps have not yet learnt (which medicine goes with which complaint).
# <!-- END SOLUTION -->

# %% [markdown]
# ## Exercise 6 ★★ — paraphrase augmentation of new facts
#
# The lesson's fact fine-tune learns from two phrasings at most per fact and is probed with a
# third, held out. Augmentation adds training texts that restate the same facts differently.
# Write `augment_facts(facts, per_person, seed)`: return the original statements of all facts
# plus, for every person, `per_person` short profiles that join one statement of each of that
# person's facts in a random order (draw from `random.Random(seed)`). Rules that make an
# augmentation honest: keep every fact true (label-preserving), name the person, and never use
# the held-out probe's phrasing (`probe_paraphrase`), or the paraphrase score stops measuring
# generalisation.

# %%
import random


def augment_facts(facts: list[dict], per_person: int, seed: int) -> list[str]:
    ### BEGIN SOLUTION
    rng = random.Random(seed)
    by_person: dict[str, list[dict]] = {}
    for f in facts:
        by_person.setdefault(f["person"], []).append(f)
    texts = [s for f in facts for s in f["statements"]]
    for fs in by_person.values():
        for _ in range(per_person):
            sentences = [rng.choice(f["statements"]) for f in fs]
            rng.shuffle(sentences)
            texts.append(" ".join(sentences))
    return texts
    ### END SOLUTION


# %%
ch01.check_augment_facts(augment_facts)

# %% [markdown]
# Now measure it: fine-tune the base model for 80 steps on the plain statements and on the
# augmented texts (`per_person=4`), three data orders each, and compare the paraphrase accuracy
# over all 80 facts with `course_lib.uncertainty`. Is the comparison fair? Count how many fact
# mentions each run sees per step.

# %%
from course_lib.fact_injection import injection_curve
from course_lib.uncertainty import spread, verdict

facts = load_jsonl("new_facts")
### BEGIN SOLUTION
arms = {"plain": [s for f in facts for s in f["statements"]]}
arms["augmented"] = augment_facts(facts, per_person=4, seed=0)
para = {name: [] for name in arms}
for name, texts in arms.items():
    for seed in (0, 1, 2):
        hits = injection_curve(model, tok, texts, facts, 1e-3, checkpoints=(80,), seed=seed)
        para[name].append(sum(hits[80]["paraphrase"]) / len(facts))
    mentions = sum(t.count(".") for t in texts) / len(texts)  # one fact per sentence
    print(f"{name:>9}: paraphrase {spread(para[name]).fmt(3)}, {mentions:.1f} facts per text")
print(verdict(para["augmented"], para["plain"], ("augmented", "plain")))
### END SOLUTION

# %% [markdown]
# <!-- BEGIN SOLUTION -->
# At the same 80 steps the augmented run recalls more facts in the unseen phrasing, but the
# comparison is not clean: a profile states four facts, so each augmented batch carries more
# than twice as many fact mentions as a plain one. The lesson's curve shows that the plain
# fine-tune also reaches the paraphrases with more steps. In this small world every phrasing of
# an attribute was tied to the same fact in pretraining (for the corpus's 30 people), so a fact
# stored under one phrasing is reachable from the others once it is learnt well; at small
# budgets, augmentation gets there sooner. On real models, Allen-Zhu & Li (*Physics of Language
# Models 3.1*, 2023) found that knowledge becomes extractable in new phrasings mainly when the
# training data varies how it is stated; a fair test matches the number of fact mentions (or
# tokens), not the number of steps.
# <!-- END SOLUTION -->

# %% [markdown]
# ## Interview questions
#
# **Q1. What is the difference between pretraining and fine-tuning?**
#
# <!-- BEGIN SOLUTION -->
# Mechanically, nothing: both minimise next-token cross-entropy by gradient descent. They differ in
# data (broad, huge, unlabelled vs. narrow, small, often curated or labelled), in scale (the base
# model here saw ~10 M tokens; the clinic fine-tune 640 notes), in learning rate and length (fine-tuning
# uses a smaller learning rate and few steps, starting from the pretrained weights), and in purpose:
# pretraining builds general knowledge and language; fine-tuning adapts behaviour, format or domain.
# <!-- END SOLUTION -->
#
# **Q2. What is perplexity, and what is a good value?**
#
# <!-- BEGIN SOLUTION -->
# $e^{\text{cross-entropy}}$: the number of equally likely tokens the model is as unsure as. "Good"
# depends on the data's own entropy and the tokenizer (perplexities across tokenizers are not
# comparable). In the lesson: unigram ≈ 174, the base model ≈ 1.56, and the data's floor ≈ 1.55; the
# meaningful statement is the distance to the floor and to baselines, not the raw number.
# <!-- END SOLUTION -->
#
# **Q3. When do you fine-tune, when do you use retrieval (RAG), when only prompt engineering?**
#
# <!-- BEGIN SOLUTION -->
# Prompting first: it costs nothing, but it cannot add knowledge (zero-shot on new facts was at
# chance in the lesson), and small models learn little from examples in the prompt (few-shot
# sentiment stayed near chance even with single-token verbalizers and calibration; larger models
# do better, as the lesson's real-model section lets you check). Retrieval when the model needs facts that change or are many:
# it works immediately, in any phrasing, at the cost of a retriever and longer prompts. Fine-tune
# for behaviour, format, style, a domain's language, or a task with labelled data (clinic loss
# fell by several nats per token; sentiment accuracy rose far above few-shot). For facts,
# fine-tuning can match retrieval given enough steps, with the learning rate chosen on held-out
# facts, but it costs general ability and re-training when facts change; a short fine-tune falls
# far short. Compare the options at their best budgets, over seeds, before deciding.
# <!-- END SOLUTION -->
#
# **Q4. What is catastrophic forgetting and how do you detect it?**
#
# <!-- BEGIN SOLUTION -->
# Fine-tuning on new data overwrites what the model knew: in the lesson, clinic fine-tuning raised the
# general-domain perplexity. Detect it by evaluating on held-out data of the old distribution (and
# old tasks) before and after fine-tuning, not only on the new task. Remedies: a lower learning rate,
# fewer steps, replay of general data, parameter-efficient methods (LoRA changes fewer weights), EWC.
# <!-- END SOLUTION -->
