"""Tests of course_lib.formats: Alpaca and chat formats, response masking, packing."""

from __future__ import annotations

import pytest
import torch

from course_lib.data import load_jsonl
from course_lib.formats import (
    IGNORE_INDEX,
    alpaca_prompt,
    alpaca_to_messages,
    packed_attention,
    padding_waste,
    preference_to_conversations,
    response_labels,
)

RECORDS = load_jsonl("instructions_train")[:120]


def test_alpaca_formats():
    rec = {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"}
    p = alpaca_prompt(rec)
    assert "### Input:\n2 and 3" in p and p.endswith("### Response:\n"), (
        "prompt must end where the answer starts"
    )
    assert "### Input" not in alpaca_prompt({**rec, "input": ""}), (
        "no Input section for an empty input"
    )
    assert all(alpaca_to_messages(r) == r["messages"] for r in RECORDS), (
        "alpaca_to_messages must reproduce the dataset's own messages field"
    )
    with pytest.raises(ValueError, match="lacks"):
        alpaca_prompt({"instruction": "x"})


def test_preference_conversation_format():
    c = preference_to_conversations({"prompt": "Q?", "chosen": "A.", "rejected": "B."})
    assert c["prompt"][0]["role"] == "user" and c["chosen"][0] == {
        "role": "assistant",
        "content": "A.",
    }


def test_response_labels_match_the_templates_assistant_mask(tokenizer):
    for r in RECORDS:
        out = response_labels(tokenizer, r["messages"])
        lib = tokenizer.apply_chat_template(
            r["messages"], tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        assert out["input_ids"] == lib["input_ids"], "token ids must equal apply_chat_template's"
        ours = [lab != IGNORE_INDEX for lab in out["labels"]]
        assert ours == [bool(m) for m in lib["assistant_masks"]], (
            "labels must be set exactly on the assistant's tokens (reply + <|end|>), -100 elsewhere"
        )
    first = response_labels(tokenizer, RECORDS[0]["messages"])
    assert (
        tokenizer.convert_ids_to_tokens([t for t in first["labels"] if t != IGNORE_INDEX])[-1]
        == "<|end|>"
    ), "the end-of-turn token must be learnt, or the model never learns to stop"


def test_response_labels_bad_input(tokenizer):
    with pytest.raises(ValueError, match="end with the assistant"):
        response_labels(tokenizer, [{"role": "user", "content": "hi"}])


def test_padding_waste():
    assert padding_waste([2, 4], 2) == pytest.approx(0.25), (
        "one batch padded to 4: 2 of 8 positions wasted"
    )
    assert padding_waste([3, 3, 1], 1) == 0
    with pytest.raises(ValueError):
        padding_waste([], 2)


def test_packed_attention_isolates_documents(base_model, tokenizer):
    a = tokenizer("Yara Marsh lives in Fernwick.")["input_ids"]
    b = tokenizer("Nina Crane has a dog.")["input_ids"]
    pos, mask = packed_attention([len(a), len(b)])
    assert pos.tolist() == [list(range(len(a))) + list(range(len(b)))], (
        "positions restart at each document"
    )
    with torch.no_grad():
        packed = base_model(
            input_ids=torch.tensor([a + b]), attention_mask=mask, position_ids=pos
        ).logits[0, len(a) :]
        alone = base_model(input_ids=torch.tensor([b])).logits[0]
    assert torch.allclose(packed, alone, atol=1e-4), (
        "a packed document must see nothing of its neighbour"
    )
