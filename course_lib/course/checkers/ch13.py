"""Checks for the chapter 13 exercises (a real model: GGUF Q4_1, tokenizers, ChatML labels).

Each check runs the student's code on cases where the common mistakes give a recognisably
wrong answer, and names the mistake.
"""

from __future__ import annotations

import numpy as np
import torch

from course_lib.course.checks import check, expect, expect_close, expect_equal
from course_lib.formats import IGNORE_INDEX


def _real_tokenizer():
    """SmolLM2's tokenizer from the converted folder (loaded once)."""
    if not hasattr(_real_tokenizer, "cache"):
        from transformers import AutoTokenizer

        from course_lib.models import check_real_model_folder

        _real_tokenizer.cache = AutoTokenizer.from_pretrained(check_real_model_folder())
    return _real_tokenizer.cache


def _course_tokenizer():
    if not hasattr(_course_tokenizer, "cache"):
        from transformers import AutoTokenizer

        from course_lib.models import BASE_MODEL_DIR

        _course_tokenizer.cache = AutoTokenizer.from_pretrained(BASE_MODEL_DIR)
    return _course_tokenizer.cache


# --- 13.1: a Q4_1 block, encoded -----------------------------------------------------------------


def q4_1_blocks() -> list[torch.Tensor]:
    """Blocks of 32 weights: centred, shifted to all-positive, with an outlier, and a constant one."""
    gen = torch.Generator().manual_seed(13)
    centred = torch.randn(32, generator=gen) * 0.05
    shifted = torch.rand(32, generator=gen) * 0.3 + 0.1
    outlier = torch.randn(32, generator=gen) * 0.02
    outlier[7] = 0.4
    return [centred, shifted, outlier]


def reference_q4_1(block: torch.Tensor) -> np.ndarray:
    """The 20 bytes gguf's own quantizer writes for one block of 32 weights."""
    import gguf

    return gguf.quants.quantize(
        block.numpy()[None].astype(np.float32), gguf.GGMLQuantizationType.Q4_1
    )[0]


def _fields(raw: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(d, m, the 32 codes in GGUF's order) of one 20-byte block."""
    d, m = raw[:4].view(np.float16).astype(np.float32)
    return float(d), float(m), np.concatenate([raw[4:] & 0x0F, raw[4:] >> 4])


def _layouts(raw: np.ndarray) -> dict[str, np.ndarray]:
    """The 32 codes read from 16 packed bytes in other layouts students write."""
    lo, hi = raw[4:] & 0x0F, raw[4:] >> 4
    pairs_lo = np.stack([lo, hi], axis=1).reshape(-1)  # q_2j low, q_2j+1 high
    pairs_hi = np.stack([hi, lo], axis=1).reshape(-1)  # q_2j high (chapter 05's pack_4bit)
    return {
        "neighbours": pairs_lo,
        "neighbours, first in the high nibble": pairs_hi,
        "j / j+16 swapped": np.concatenate([hi, lo]),
    }


def _diagnose_q4_1(got: np.ndarray, want: np.ndarray, block: torch.Tensor) -> None:
    d, m, codes = _fields(got)
    d_ref, m_ref, codes_ref = _fields(want)
    lo, hi = float(block.min()), float(block.max())
    scale_hints = [
        (
            (hi - lo) / 16,
            "d = (max - min) / 16: 4 bits give 16 codes 0..15, so 15 steps: divide by 15",
        ),
        (
            max(abs(lo), abs(hi)) / 7,
            "that d is absmax / 7, the symmetric int4 of chapter 05: Q4_1 is "
            "affine, d = (max - min) / 15",
        ),
    ]
    expect_close(
        d, d_ref, tol=abs(d_ref) * 2e-3, what="the scale d (bytes 0-1, fp16)", hints=scale_hints
    )
    expect_close(
        m,
        m_ref,
        tol=abs(m_ref) * 2e-3 + 1e-7,
        what="the minimum m (bytes 2-3, fp16)",
        hints=[
            (hi, "m must be the block's minimum, not its maximum"),
            (0.0, "m is the minimum, not 0"),
        ],
    )
    if np.array_equal(codes, codes_ref):
        return
    for name, layout in _layouts(got).items():
        if np.array_equal(layout, codes_ref):
            expect(
                False,
                f"your codes are right but packed as {name}: byte j holds q_j in its low 4 bits and "
                "q_(j+16) in its high 4 bits (the first 16 weights in the low halves)",
            )
    floored = torch.floor((block - block.min()) / ((block.max() - block.min()) / 15)).clamp(0, 15)
    if (codes != floored.numpy()).sum() <= 1:
        expect(
            False,
            "the codes are truncated (floor), not rounded to the nearest level: add 0.5 first",
        )
    off = int((codes != codes_ref).sum())
    expect(
        off <= 1,
        f"{off} of the 32 codes differ from gguf's: q = round((w - m) / d), clipped to 0..15",
    )


@check("13.1 a Q4_1 block, encoded")
def check_quantize_q4_1(student_fn) -> None:
    """The student's quantize_q4_1_block(w [32]) -> 20 uint8 bytes, as gguf writes them."""
    expect(callable(student_fn), "pass your function itself, not its result")
    for block in q4_1_blocks():
        got = student_fn(block.clone())
        got = got.numpy() if torch.is_tensor(got) else np.asarray(got)
        expect(
            got.dtype == np.uint8 and got.shape == (20,),
            f"expected 20 bytes (a uint8 tensor of shape (20,)): 2 for d, 2 for m (fp16), 16 for the 32 "
            f"codes; got dtype {got.dtype}, shape {got.shape}",
        )
        _diagnose_q4_1(got, reference_q4_1(block), block)
    from course_lib.quantization import dequantize_q4_1

    block = q4_1_blocks()[1]
    back = dequantize_q4_1(torch.as_tensor(student_fn(block.clone())).to(torch.uint8))
    step = (block.max() - block.min()) / 15
    expect(
        (back - block).abs().max() <= step / 2 + 1e-3,
        "decoded with the lesson's dequantize_q4_1, every weight must lie within half a step",
    )


# --- 13.2: single-token words ---------------------------------------------------------------------

CLINIC_WORDS = ["eczema", "plaques", "amoxicillin", "cough", "fever", "dose", "rash", "asthma"]
WORLD_WORDS = ["market", "baker", "Fernwick", "parrot", "kettle", "supper", "lives", "Millbrook"]


def single_token_share_reference(tokenizer, words) -> float:
    """Share of the words that are one token where they usually stand: after a space."""
    ones = [len(tokenizer(" " + w, add_special_tokens=False)["input_ids"]) == 1 for w in words]
    return sum(ones) / len(words)


@check("13.2 single-token words")
def check_single_token_share(student_fn) -> None:
    """The student's single_token_share(tokenizer, words) on both tokenizers and two word lists."""
    expect(callable(student_fn), "pass your function itself, not its result")
    for tok_name, tok in (("course", _course_tokenizer()), ("SmolLM2", _real_tokenizer())):
        for words in (CLINIC_WORDS, WORLD_WORDS):
            want = single_token_share_reference(tok, words)
            no_space = sum(len(tok(w, add_special_tokens=False)["input_ids"]) == 1 for w in words)
            with_special = sum(len(tok(" " + w)["input_ids"]) == 1 for w in words)
            count = round(want * len(words))
            hints = [
                (
                    no_space / len(words),
                    "you tokenized the word without its leading space: inside a "
                    "sentence a word follows a space, and byte-level BPE folds that space into the token (Ġ)",
                ),
                (
                    with_special / len(words),
                    "you counted the special tokens tokenizer(...) adds by "
                    "default (the course tokenizer's <|bos|>): pass add_special_tokens=False",
                ),
                (1 - want, "you returned the share of words split into several tokens"),
            ]
            if count != want:
                hints.append((count, "return a share (a number between 0 and 1), not a count"))
            expect_close(
                student_fn(tok, words),
                want,
                tol=1e-9,
                what=f"the single-token share of {words[:2]}… with the {tok_name} tokenizer",
                hints=hints,
            )


# --- 13.3: labels on every assistant turn -----------------------------------------------------------

CONVERSATION = [
    {"role": "user", "content": "Where does Ada Crane live?"},
    {"role": "assistant", "content": "Lindenfield"},
    {"role": "user", "content": "And her pet?"},
    {"role": "assistant", "content": "a dog called Socks"},
]


def _spans(tokenizer, messages) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids of the chat and, per assistant turn, (start of its header, end incl. <|im_end|>)."""
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    spans = []
    for i, message in enumerate(messages):
        if message["role"] == "assistant":
            head = tokenizer.apply_chat_template(messages[:i], tokenize=False)
            upto = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
            start = len(tokenizer(head, add_special_tokens=False)["input_ids"])
            end = len(tokenizer(upto, add_special_tokens=False)["input_ids"]) - 1  # drop the "\n"
            spans.append((start, end))
    return ids, spans


def chatml_labels_variants(tokenizer, messages) -> dict[str, list[int]]:
    """The right labels and the labels of typical mistakes, by name."""
    ids, spans = _spans(tokenizer, messages)
    header = len(tokenizer("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"])

    def labels(turns, first=header, extra_end=0, last_token=True):
        out = [IGNORE_INDEX] * len(ids)
        for start, end in turns:
            stop = end + extra_end - (0 if last_token else 1)
            out[start + first : stop] = ids[start + first : stop]
        return out

    return {
        "right": labels(spans),
        "last turn only": labels(spans[-1:]),
        "header": labels(spans, first=0),
        "newline": labels(spans, extra_end=1),
        "no end": labels(spans, last_token=False),
        "everything": list(ids),
    }


@check("13.3 labels on every assistant turn")
def check_chatml_labels(student_fn) -> None:
    """The student's chatml_labels(tokenizer, messages) on a two-turn ChatML conversation."""
    expect(callable(student_fn), "pass your function itself, not its result")
    tok = _real_tokenizer()
    out = student_fn(tok, [dict(m) for m in CONVERSATION])
    expect(
        isinstance(out, dict) and {"input_ids", "labels"} <= set(out),
        "return {'input_ids': …, 'labels': …}",
    )
    ids, _ = _spans(tok, CONVERSATION)
    expect_equal(
        list(out["input_ids"]),
        ids,
        "the input ids of the rendered chat",
        hints=[
            (
                tok(tok.apply_chat_template(CONVERSATION, tokenize=False))["input_ids"],
                "tokenize the rendered chat with add_special_tokens=False",
            )
        ],
    )
    v = chatml_labels_variants(tok, CONVERSATION)
    expect_equal(
        list(out["labels"]),
        v["right"],
        "the labels",
        hints=[
            (
                v["last turn only"],
                "only the last reply has labels: every assistant turn is a target in a "
                "multi-turn chat (chapter 02's response_labels does the last one only)",
            ),
            (
                v["header"],
                "the '<|im_start|>assistant\\n' header is labelled: the model never has to "
                "produce it, the prompt supplies it",
            ),
            (
                v["newline"],
                "the newline after <|im_end|> is labelled: ChatML adds it between turns, "
                "the reply ends at <|im_end|>",
            ),
            (v["no end"], "<|im_end|> has no label: without it the model never learns to stop"),
            (v["everything"], "every token is labelled: mask the system and user turns with -100"),
        ],
    )
