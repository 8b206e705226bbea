"""Checks for the chapter 15 exercises (debug this tutorial).

Each exercise starts from a snippet written the way popular fine-tuning tutorials write it, with
the bug they share. The student writes the fixed version; the check runs it on a case where the
tutorial's version gives a recognisably wrong answer, and names the tutorial's bug when the
student's code reproduces it.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from course_lib.course.checkers._models import tiny_llama
from course_lib.course.checks import (
    CheckFailed,
    call_unchanged,
    check,
    expect,
    expect_close,
    expect_equal,
)
from course_lib.formats import IGNORE_INDEX


@lru_cache(maxsize=1)
def course_tokenizer():
    from transformers import AutoTokenizer

    from course_lib.models import BASE_MODEL_DIR

    return AutoTokenizer.from_pretrained(BASE_MODEL_DIR)


# --- 15.1 print(model.print_trainable_parameters()) prints None --------------------------------


def _peft_model():
    """A tiny Llama with LoRA r=2 on q_proj and v_proj (peft)."""
    from peft import LoraConfig, get_peft_model

    base = tiny_llama(seed=3)
    return get_peft_model(base, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))


@check("15.1 a summary that is not None")
def check_trainable_summary(student_fn) -> None:
    """The student's trainable_summary(model) -> (trainable, total, percent) of a peft model."""
    model = _peft_model()
    out = student_fn(model)
    expect(
        out is not None,
        "your function returned None: print_trainable_parameters() PRINTS its line and returns "
        "None, which is why print(model.print_trainable_parameters()) shows 'None' after it; "
        "return the numbers (model.get_nb_trainable_parameters() gives two of them)",
    )
    expect(
        isinstance(out, (tuple, list)) and len(out) == 3,
        f"return a triple (trainable, total, percent), got {type(out).__name__}",
    )
    trainable, total = model.get_nb_trainable_parameters()
    frozen = total - trainable
    expect_equal(
        int(out[0]),
        trainable,
        "the trainable parameters (LoRA r=2 on q_proj and v_proj)",
        hints=[(total, "you counted every parameter: keep those with requires_grad")],
    )
    expect_equal(
        int(out[1]),
        total,
        "all parameters (base and adapter)",
        hints=[(frozen, "the total must include the adapter: frozen + trainable")],
    )
    expect_close(
        float(out[2]),
        100 * trainable / total,
        1e-6 * 100 * trainable / total,
        "the trainable percentage",
        hints={
            trainable / total: "that is a fraction: multiply by 100 for a percentage",
            100 * trainable / frozen: "divide by ALL parameters (adapter included), as peft does",
        },
    )


# --- 15.2 argmax over generate() ids used as class labels ---------------------------------------

LABELS = ["positive", "negative"]
PROMPT = "Review: the soup was cold. Answer positive or negative. Sentiment:"
ANSWERS = [" negative", " positive", " maybe", " positive, clearly"]


def generated_case():
    """(sequences [4, prompt + new] right-padded as generate() returns them, prompt length, want)."""
    tok = course_tokenizer()
    prompt = tok(PROMPT)["input_ids"]
    rows = [
        prompt + tok(a, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for a in ANSWERS
    ]
    width = max(map(len, rows))
    padded = [r + [tok.pad_token_id] * (width - len(r)) for r in rows]
    return torch.tensor(padded), len(prompt), ["negative", "positive", "unknown", "positive"]


def reference_labels(tok, sequences, prompt_length: int, labels) -> list[str]:
    """Decode only the new tokens; the first label the answer starts with, else 'unknown'."""
    texts = tok.batch_decode(sequences[:, prompt_length:], skip_special_tokens=True)
    return [
        next((lab for lab in labels if t.strip().lower().startswith(lab)), "unknown") for t in texts
    ]


@check("15.2 labels from generated text")
def check_labels_from_generate(student_fn) -> None:
    """The student's labels_from_generate(tok, sequences, prompt_length, labels) -> label names."""
    tok = course_tokenizer()
    sequences, n, want = generated_case()
    got = call_unchanged(
        student_fn, tok, sequences.clone(), n, list(LABELS), names=(None, "sequences")
    )
    if torch.is_tensor(got):
        got = got.tolist()
    expect(
        not (isinstance(got, list) and got and all(isinstance(g, int) for g in got)),
        "you returned integers: generate() returns TOKEN IDS [batch, prompt + new], not class "
        "scores, so argmax over them is the position of the largest token id; decode the new "
        "tokens (sequences[:, prompt_length:]) and map the text to a label",
    )
    expect(isinstance(got, list), f"return a list of label names, got {type(got).__name__}")
    full = reference_labels(tok, sequences, 0, LABELS)
    expect_equal(
        got,
        want,
        "the labels of the four answers",
        hints=[
            (
                full,
                "you decoded the whole sequence, prompt included (which names both labels): "
                "decode only the new tokens, sequences[:, prompt_length:]",
            ),
            (
                ["positive"] * 4,
                "the prompt's words were matched: decode only the new tokens, "
                "sequences[:, prompt_length:], and take the label the answer starts with",
            ),
            (
                ["negative", "positive", "unknown", "unknown"],
                "an answer with more text after the label is still that label: compare the "
                "start of the stripped text (startswith), not the whole string",
            ),
            (
                ["negative", "positive", "positive", "positive"],
                "an answer that is no label must become 'unknown', not a guess",
            ),
            (
                ["negative", "positive", "negative", "positive"],
                "an answer that is no label must become 'unknown', not a guess",
            ),
        ],
    )


# --- 15.3 datasets.map(batched=True) with a str -> str function ---------------------------------

TEXTS = [f"note {i}: " + "word " * (3 * i + 1) for i in range(10)]


@check("15.3 a batched map")
def check_truncate_batch(student_fn) -> None:
    """The student's truncate_batch(batch, max_chars), run by Dataset.map(batched=True)."""
    import datasets

    ds = datasets.Dataset.from_dict({"text": TEXTS, "label": list(range(10))})
    quiet = datasets.utils.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        out = ds.map(lambda b: student_fn(b, 12), batched=True, batch_size=4)
    except NotImplementedError:
        raise
    except Exception as error:  # any failure inside map: the same lesson
        raise CheckFailed(
            f"Dataset.map failed ({type(error).__name__}: {str(error)[:120]}): with batched=True "
            "your function gets a BATCH, a dict of LISTS (batch['text'] is a list of strings), "
            "and must return lists of the same kind: [t[:max_chars] for t in batch['text']]"
        ) from None
    finally:
        if not quiet:
            datasets.enable_progress_bars()
    expect(
        len(out) == 10,
        f"{10 - len(out)} of the 10 rows were dropped without an error: with batched=True "
        "batch['text'][:max_chars] slices the LIST of examples (keeping the first max_chars "
        "rows), not each string; truncate every string: [t[:max_chars] for t in batch['text']]",
    )
    expect_equal(out["label"], list(range(10)), "the label column (kept, in order)")
    expect_equal(
        out["text"],
        [t[:12] for t in TEXTS],
        "the truncated texts",
        hints=[
            (
                TEXTS,
                "nothing was truncated: with batched=True batch['text'] is a LIST of strings, so "
                "batch['text'][:max_chars] slices the list of examples (shorter than max_chars "
                "here, so nothing happens; longer lists lose rows), not each string",
            )
        ],
    )


# --- 15.4 Trainer fed rows without labels -------------------------------------------------------

ROWS = [[1, 5, 9, 13, 2], [1, 7, 2], [1, 4, 4, 8, 12, 16, 2]]


@check("15.4 a collator that gives the loss its labels")
def check_collate(student_fn) -> None:
    """The student's collate(rows, pad_id) -> input_ids, attention_mask, labels (right-padded)."""
    rows = [{"input_ids": list(r)} for r in ROWS]
    batch = call_unchanged(student_fn, rows, 0, names=("rows",))
    expect(isinstance(batch, dict), f"return a dict of tensors, got {type(batch).__name__}")
    expect(
        "labels" in batch,
        "the batch has no 'labels': a causal LM computes a loss only when it gets labels, so "
        "Trainer stops with 'The model did not return a loss from the inputs'; add labels = "
        "input_ids (the model shifts them itself) with -100 on the padding",
    )
    expect("attention_mask" in batch, "add the attention_mask (1 on real tokens, 0 on padding)")
    width = max(map(len, ROWS))
    ids = [r + [0] * (width - len(r)) for r in ROWS]
    mask = [[1] * len(r) + [0] * (width - len(r)) for r in ROWS]
    labels = [r + [IGNORE_INDEX] * (width - len(r)) for r in ROWS]
    expect_equal(torch.as_tensor(batch["input_ids"]), ids, "input_ids (right-padded with pad_id)")
    expect_equal(torch.as_tensor(batch["attention_mask"]), mask, "the attention_mask")
    shifted = [r[1:] + [IGNORE_INDEX] * (width - len(r) + 1) for r in ROWS]
    expect_equal(
        torch.as_tensor(batch["labels"]),
        labels,
        "the labels",
        hints=[
            (
                ids,
                "the padding is labelled (with the pad id): use -100 there, or the model "
                "learns to predict padding",
            ),
            (
                shifted,
                "the labels are shifted: do not shift them, the model shifts labels "
                "itself (labels line up with input_ids)",
            ),
        ],
    )
    model = tiny_llama(pad_token_id=0, seed=1)
    loss = model(**{k: torch.as_tensor(v) for k, v in batch.items()}).loss
    expect(loss is not None and torch.isfinite(loss), "the model must return a finite loss")


# --- 15.5 pad = eos, and a collator that masks every real eos -----------------------------------

EOS = 2  # the tutorial sets tokenizer.pad_token = tokenizer.eos_token: pad id == eos id


def eos_case():
    """A right-padded batch whose pad id is the eos id; each real text ends with an eos."""
    ids = torch.tensor([[1, 9, 8, 7, EOS, EOS, EOS], [1, 6, 5, 4, 3, 11, EOS]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1]])
    return ids, mask


@check("15.5 labels that teach the model to stop")
def check_lm_labels(student_fn) -> None:
    """The student's lm_labels(input_ids, attention_mask, pad_id) with pad_id == eos_id."""
    ids, mask = eos_case()
    got = call_unchanged(
        student_fn, ids.clone(), mask.clone(), EOS, names=("input_ids", "attention_mask")
    )
    want = ids.masked_fill(mask == 0, IGNORE_INDEX)
    expect_equal(
        torch.as_tensor(got),
        want.tolist(),
        "the labels",
        hints=[
            (
                ids.masked_fill(ids == EOS, IGNORE_INDEX).tolist(),
                "every real end-of-sequence token is masked too: with pad = eos, masking "
                "`input_ids == pad_id` (what DataCollatorForLanguageModeling does) removes each "
                "text's eos label, so the model never learns to stop; mask by the "
                "attention_mask instead",
            ),
            (ids.tolist(), "the padding is labelled: set -100 where attention_mask is 0"),
        ],
    )


# --- 15.6 perplexity averaged over per-batch losses that include padding ----------------------


def ppl_texts() -> list[str]:
    """Five held-out documents of the course world, some cut short: very different lengths."""
    from course_lib.data import load_jsonl

    docs = [r["text"] for r in load_jsonl("corpus_val")[:5]]
    keep = [None, 1, None, 2, 0]  # whole, or the first k sentences (0: the first three words)
    cut = [
        d if k is None else ". ".join(d.split(". ")[:k]) + "." if k else " ".join(d.split()[:3])
        for d, k in zip(docs, keep)
    ]
    return cut


def reference_perplexity(model, tok, texts, batch_size: int) -> float:
    """exp(summed next-token loss over all real predicted tokens / their number), padding masked."""
    total, count = 0.0, 0
    for i in range(0, len(texts), batch_size):
        enc = tok(texts[i : i + batch_size], padding=True, return_tensors="pt")
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, IGNORE_INDEX)
        with torch.no_grad():
            loss = model(**enc, labels=labels).loss
        n = int((labels[:, 1:] != IGNORE_INDEX).sum())
        total, count = total + float(loss) * n, count + n
    return math.exp(total / count)


def _perplexity_mistakes(model, tok, texts, batch_size: int) -> dict[float, str]:
    """The tutorials' numbers: padding in the labels, per-batch means, per-text perplexities."""
    with_pad, batch_means = [], []
    for i in range(0, len(texts), batch_size):
        enc = tok(texts[i : i + batch_size], padding=True, return_tensors="pt")
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, IGNORE_INDEX)
        with torch.no_grad():
            with_pad.append(float(model(**enc, labels=enc["input_ids"]).loss))
            batch_means.append(float(model(**enc, labels=labels).loss))
    per_text = [reference_perplexity(model, tok, [t], 1) for t in texts]
    return {
        math.exp(sum(with_pad) / len(with_pad)): "the padding is in the labels (labels = "
        "input_ids): every pad position is scored as a token to predict; set -100 where "
        "attention_mask is 0, and weight each batch by its number of predicted tokens",
        math.exp(sum(batch_means) / len(batch_means)): "you averaged the per-batch mean losses: "
        "batches predict different numbers of tokens, so weight each batch's loss by its number "
        "of predicted tokens (or sum token losses) before the one exp",
        sum(per_text) / len(per_text): "you averaged per-text perplexities: average the token "
        "losses over the whole corpus, then take exp once",
    }


@check("15.6 a perplexity that ignores padding")
def check_corpus_perplexity(student_fn) -> None:
    """The student's corpus_perplexity(model, tok, texts, batch_size) on texts of mixed length."""
    from course_lib.models import load_model

    model, tok = load_model("causal")
    texts = ppl_texts()
    want = reference_perplexity(model, tok, texts, 2)
    got = call_unchanged(student_fn, model, tok, list(texts), 2, names=(None, None, "texts"))
    expect_close(
        float(got),
        want,
        1e-4 * want,
        "the corpus perplexity of 5 texts in batches of 2",
        hints=_perplexity_mistakes(model, tok, texts, 2),
    )
