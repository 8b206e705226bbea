"""Chapter 13's library code: the Q4_1 decoder (against the gguf package), the answer verdict, the
Wilson interval, the notes-QA helpers, and chapter 02's response mask on a ChatML tokenizer."""

import gguf
import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from course_lib import real_model as rm
from course_lib.evaluation import wilson_interval
from course_lib.formats import IGNORE_INDEX, response_labels
from course_lib.models import REAL_MODEL_DIR, real_model_gguf
from course_lib.quantization import dequantize_q4_1


def test_q4_1_decoder_equals_gguf_on_random_and_real_blocks():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(6, 64)).astype(np.float32) + np.float32(0.3)  # offset: m matters
    raw = gguf.quants.quantize(w, gguf.GGMLQuantizationType.Q4_1)
    assert raw.shape == (6, 40), "two blocks of 20 bytes per row of 64"
    ours = dequantize_q4_1(raw)
    reference = torch.from_numpy(gguf.quants.dequantize(raw, gguf.GGMLQuantizationType.Q4_1))
    assert torch.equal(ours, reference), "dequantize_q4_1 must equal gguf's decoder exactly"
    assert (ours - torch.from_numpy(w)).abs().max() < 0.6 * (w.max() - w.min()) / 15, (
        "every weight within about half a step of the original"
    )
    tensor = next(
        t for t in gguf.GGUFReader(real_model_gguf()).tensors if t.name == "blk.3.ffn_up.weight"
    )
    reference = torch.from_numpy(gguf.quants.dequantize(tensor.data, tensor.tensor_type))
    assert torch.equal(dequantize_q4_1(tensor.data), reference), (
        "equal on a tensor of the real file"
    )


def test_q4_1_decoder_rejects_bad_input():
    with pytest.raises(TypeError, match="uint8"):
        dequantize_q4_1(torch.zeros(2, 20))
    with pytest.raises(ValueError, match="whole 20-byte"):
        dequantize_q4_1(np.zeros((2, 30), dtype=np.uint8))


def test_verdict_separates_correct_abstaining_and_wrong():
    towns = ["Fernwick", "Redcliff", "Millbrook"]
    assert rm.verdict("Yara Marsh lives in Fernwick.", "Fernwick", towns) == "correct"
    assert rm.verdict("fernwick", "Fernwick", towns) == "correct"
    assert rm.verdict("Fernwick or maybe Redcliff", "Fernwick", towns) == "wrong", "two candidates"
    assert rm.verdict("I'm not sure where she lives.", "Fernwick", towns) == "abstains"
    assert rm.verdict("She is a fictional character.", "Fernwick", towns) == "wrong"
    assert rm.verdict("He is a fisherman.", "fisher", ["fisher", "farmer"]) == "correct"
    assert rm.verdict("a catalogue", "cat", ["cat", "dog"]) == "wrong", "whole words only"


def test_wilson_interval_known_values_and_errors():
    low, high = wilson_interval(5, 10)
    assert abs(low - 0.2366) < 1e-4 and abs(high - 0.7634) < 1e-4
    assert wilson_interval(0, 60)[0] == 0 and 0.05 < wilson_interval(0, 60)[1] < 0.07
    with pytest.raises(ValueError, match="between 0 and n"):
        wilson_interval(11, 10)
    with pytest.raises(ValueError, match="n >= 1"):
        wilson_interval(0, 0)


def test_notes_helpers():
    train, heldout = rm.notes_split()
    assert len(train) == rm.NOTES["n_train"] and len(heldout) == rm.NOTES["n_heldout"]
    assert not {r["context"] for r in train} & {r["context"] for r in heldout}, "held out"
    assert rm.candidates_for(heldout[0]["messages"][0]["content"])
    with pytest.raises(ValueError, match="fact questions"):
        rm.candidates_for("What is 2 plus 3?")
    with pytest.raises(ValueError, match="messages"):
        rm.check_qa_records([{"output": "x"}])
    with pytest.raises(ValueError, match="too large"):
        rm.notes_split(400, 48)


def test_response_labels_on_chatml():
    tok = AutoTokenizer.from_pretrained(REAL_MODEL_DIR)
    chat = [{"role": "user", "content": "Where?"}, {"role": "assistant", "content": "Fernwick"}]
    ex = response_labels(tok, chat)
    learnt = [t for t, lab in zip(ex["input_ids"], ex["labels"]) if lab != IGNORE_INDEX]
    assert tok.decode(learnt) == "Fernwick<|im_end|>", (
        "labels on the reply and <|im_end|> only (not the newline ChatML adds after it)"
    )
