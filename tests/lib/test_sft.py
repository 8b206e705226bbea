"""course_lib.sft: response-only labels, padded and packed batches, exact match per skill."""

import pytest
import torch

from course_lib import sft
from course_lib.data import load_jsonl


@pytest.fixture(scope="module")
def lm_and_tok(base_model, tokenizer):
    return base_model, tokenizer


def test_labels_only_on_the_response(lm_and_tok):
    _, tok = lm_and_tok
    record = load_jsonl("instructions_val")[0]
    ex = sft.sft_example(tok, record)
    learnt = tok.decode([t for t, l in zip(ex["input_ids"], ex["labels"]) if l != -100])
    assert learnt == record["output"] + "<|end|>", (
        f"labels should be the reply and its end token, got {learnt!r}"
    )
    full = sft.sft_example(tok, record, mask_prompt=False)
    assert full["labels"] == full["input_ids"], "mask_prompt=False trains on every token"


def test_batches_pad_labels_with_ignore(lm_and_tok):
    _, tok = lm_and_tok
    batch = next(iter(sft.sft_batches(tok, load_jsonl("instructions_val"), batch_size=8)))
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all(), (
        "padding must carry label −100"
    )
    assert (batch["input_ids"][batch["attention_mask"] == 0] == tok.pad_token_id).all()


def test_exact_match_by_skill_keys(lm_and_tok):
    lm, tok = lm_and_tok
    records = load_jsonl("instructions_val")[::20]
    scores = sft.exact_match_by_skill(lm, tok, records, max_new_tokens=4)
    assert set(scores) == {r["skill"] for r in records} | {"all"}
    assert all(0 <= v <= 1 for v in scores.values())


def test_bad_input(lm_and_tok):
    lm, tok = lm_and_tok
    with pytest.raises(ValueError, match="batch_size"):
        sft.sft_batches(tok, load_jsonl("instructions_val")[:2], batch_size=3)
    with pytest.raises(ValueError, match="skill"):
        sft.exact_match_by_skill(lm, tok, [{"text": "x"}])


def test_pack_examples_keeps_every_example(lm_and_tok):
    _, tok = lm_and_tok
    examples = [sft.sft_example(tok, r) for r in load_jsonl("instructions_val")[:20]]
    rows = sft.pack_examples(examples, max_length=128)
    assert all(len(r["input_ids"]) <= 128 for r in rows), "rows must not exceed max_length"
    assert sum(len(r["lengths"]) for r in rows) == len(examples), (
        "every example is packed exactly once"
    )
    assert sorted(t for r in rows for t in r["input_ids"]) == sorted(
        t for e in examples for t in e["input_ids"]
    )
    for r in rows:
        starts = [i for i, p in enumerate(r["position_ids"]) if p == 0]
        assert len(starts) == len(r["lengths"]), "position ids restart at 0 for every example"
    assert len(rows) < len(examples), "packing puts several examples in a row"
    with pytest.raises(ValueError, match="longer than max_length"):
        sft.pack_examples(examples, max_length=8)


def test_mixed_batches_add_general_text(lm_and_tok):
    _, tok = lm_and_tok
    batches = sft.mixed_batches(
        tok, load_jsonl("instructions_val")[:8], ["Ada lives in Fernwick."] * 8, 16
    )
    batch = next(iter(batches))
    full_rows = ((batch["labels"] == batch["input_ids"]) | (batch["attention_mask"] == 0)).all(1)
    assert full_rows.sum() == 8, (
        "the general texts are learnt on every token, the chats only on the reply"
    )
    with pytest.raises(ValueError, match="texts"):
        sft.mixed_batches(tok, load_jsonl("instructions_val")[:8], "one string", 4)


def test_packed_batches_give_the_padded_loss(lm_and_tok):
    lm, tok = lm_and_tok
    records = load_jsonl("instructions_val")[:12]
    batches = sft.packed_batches(tok, records, rows_per_batch=1, max_length=512)
    batch = next(iter(batches))
    n = batch["input_ids"].shape[1]
    assert batch["attention_mask"].shape == (1, 1, n, n), "one block-diagonal [L, L] mask per row"
    assert (batch["labels"] != -100).sum() == sum(
        (torch.tensor(sft.sft_example(tok, r)["labels"]) != -100).sum() for r in records
    ), "only the replies carry labels"
    padded = sft.pad_examples([sft.sft_example(tok, r) for r in records], tok.pad_token_id)
    with torch.no_grad():
        packed_loss, padded_loss = lm(**batch).loss, lm(**padded).loss
    assert torch.allclose(packed_loss, padded_loss, atol=1e-5), (
        "a packed row must give the padded loss (cross-talk between examples?): "
        f"{packed_loss:.5f} vs {padded_loss:.5f}"
    )
    with pytest.raises(ValueError, match="rows_per_batch"):
        sft.packed_batches(tok, records, rows_per_batch=50)


def test_packed_batches_pad_short_rows_safely(lm_and_tok):
    lm, tok = lm_and_tok
    batch = next(
        iter(
            sft.packed_batches(
                tok, load_jsonl("instructions_val")[:40], rows_per_batch=4, max_length=96
            )
        )
    )
    assert (batch["labels"][batch["input_ids"] == tok.pad_token_id] == -100).all(), (
        "padding carries label −100"
    )
    with torch.no_grad():
        loss = lm(**batch).loss
    assert torch.isfinite(loss), "a padded tail must not leave an attention row empty (NaN)"


def test_packed_batches_replay_texts_with_every_token_labelled(lm_and_tok):
    """Replay: general documents are packed in with the loss on every token (chapter 08, §9)."""
    _, tok = lm_and_tok
    records = load_jsonl("instructions_val")[:20]
    texts = [r["text"] for r in load_jsonl("corpus_sample")[:10]]
    plain = sft.packed_batches(tok, records, rows_per_batch=1, max_length=128)
    mixed = sft.packed_batches(tok, records, rows_per_batch=1, max_length=128, texts=texts)
    learnt = lambda bs: sum(int((b["labels"] != -100).sum()) for b in bs)  # noqa: E731
    text_tokens = sum(
        len(tok(t + tok.eos_token, truncation=True, max_length=128)["input_ids"]) for t in texts
    )
    assert learnt(mixed) - learnt(plain) == text_tokens, "every replayed token should carry a label"
    with pytest.raises(ValueError, match="texts"):
        sft.packed_batches(tok, records, rows_per_batch=1, texts="one string")


def test_train_sft_full_and_lora_see_the_same_batches(lm_and_tok):
    """A matched budget: one seed gives both methods the same first batch, hence the same first loss."""
    lm, tok = lm_and_tok
    records = load_jsonl("instructions_train")[:40]
    before = [p.detach().clone() for p in lm.parameters()]
    full, h_full = sft.train_sft(lm, tok, records, method="full", steps=2, rows_per_batch=2)
    lora, h_lora = sft.train_sft(lm, tok, records, method="lora", steps=2, rows_per_batch=2)
    assert abs(h_full.loss[0] - h_lora.loss[0]) < 1e-4, (
        "LoRA starts as the base model (B = 0), so on the same batch its first loss equals full SFT's"
    )
    assert not any("lora" in n for n, _ in full.named_parameters())
    trainable = [n for n, p in lora.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable), "LoRA trains only the adapter"
    assert all(torch.equal(p, q) for p, q in zip(lm.parameters(), before)), "base must stay as is"
    with pytest.raises(ValueError, match="method"):
        sft.train_sft(lm, tok, records, method="prefix", steps=1)
    with pytest.raises(ValueError, match="steps"):
        sft.train_sft(lm, tok, records, steps=0)
