"""Sequence classification on the reviews: the base model with a classification head.

Taught in chapter 01 (fine-tuning vs prompting); reused by chapters 02-07 and 12
whenever a method is scored on the review task.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import torch
from transformers import AutoModelForSequenceClassification

from course_lib.models import BASE_MODEL_DIR
from course_lib.training import EpochBatches

LABELS = ("negative", "neutral", "positive")


def load_classifier(
    path: str | Path = BASE_MODEL_DIR, num_labels: int = len(LABELS), seed: int = 0, **kwargs
):
    """The pretrained base model with a fresh linear head over its last token (LlamaForSequenceClassification);
    extra keyword arguments (e.g. quantization_config) go to `from_pretrained`."""
    if num_labels < 2:
        raise ValueError(f"num_labels must be >= 2, got {num_labels}")
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        path,
        num_labels=num_labels,
        id2label=dict(enumerate(LABELS[:num_labels])) if num_labels == 3 else None,
        **kwargs,
    )
    if model.config.pad_token_id is None:
        raise ValueError(
            "the model config has no pad_token_id; the head needs it to find the last token"
        )
    return model


def label_batches(
    tokenizer,
    records: Sequence[dict],
    batch_size: int,
    seed: int = 0,
    labels: Sequence[str] = LABELS,
) -> Iterable[dict]:
    """Shuffled padded batches {input_ids, attention_mask, labels} from records {'text', 'label'}."""
    if not records or not 1 <= batch_size <= len(records):
        raise ValueError(
            f"batch_size must be in [1, {len(records)}] (the number of records), got {batch_size}"
        )
    bad = {r.get("label") for r in records} - set(labels)
    if bad:
        raise ValueError(f"unknown labels {sorted(map(str, bad))}; expected one of {list(labels)}")

    def make(rows: list[int]) -> dict:
        chunk = [records[j] for j in rows]
        enc = tokenizer([r["text"] for r in chunk], return_tensors="pt", padding=True)
        enc["labels"] = torch.tensor([labels.index(r["label"]) for r in chunk])
        return dict(enc)

    return EpochBatches(len(records), batch_size, seed, make)


@torch.no_grad()
def predict_labels(
    model, tokenizer, texts: Sequence[str], batch_size: int = 128, labels: Sequence[str] = LABELS
) -> list[str]:
    """The label the classifier gives each text."""
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not one string")
    model.eval()
    device = next(model.parameters()).device
    out: list[str] = []
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(list(texts[i : i + batch_size]), return_tensors="pt", padding=True).to(
            device
        )
        out += [labels[k] for k in model(**enc).logits.argmax(-1).tolist()]
    return out
