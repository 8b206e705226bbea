"""Sequence classification on the reviews: batches of labelled texts and the classifier's predictions
(the model itself is `models.load_model("classifier")`: the base model with a classification head).

Taught in chapter 01 (fine-tuning vs prompting); reused by chapters 02-07 and 12
whenever a method is scored on the review task.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch

from course_lib.training import EpochBatches
from course_lib.world.documents import LABELS


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
