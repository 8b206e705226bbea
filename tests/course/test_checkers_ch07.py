"""The chapter 07 checkers pass the reference solutions and name the typical mistakes."""

from __future__ import annotations

import pytest
import torch

from course_lib.course.checkers import ch07
from course_lib.course.checks import CheckFailed
from course_lib.prompt_tuning import SoftPromptLM, text_init


def fails_with(check, fn, words: str) -> None:
    with pytest.raises(CheckFailed) as info:
        check(fn)
    assert words in str(info.value), f"expected the message to mention {words!r}, got: {info.value}"


def test_prefix_count():
    assert ch07.check_prefix_count(lambda n, layers, heads, kv, d: n * layers * 2 * kv * d)
    fails_with(
        ch07.check_prefix_count,
        lambda n, layers, heads, kv, d: n * layers * kv * d,
        "forgot the ×2",
    )
    fails_with(
        ch07.check_prefix_count,
        lambda n, layers, heads, kv, d: n * layers * 2 * heads * d,
        "use n_kv_heads",
    )
    fails_with(
        ch07.check_prefix_count, lambda n, layers, heads, kv, d: n * 2 * kv * d, "every layer"
    )


def test_text_init():
    assert ch07.check_text_init(text_init)

    def zero_padded(emb, ids, n):
        rows = emb.weight[ids[:n]].detach().clone()
        return (
            torch.cat([rows, torch.zeros(n - len(rows), rows.shape[1])]) if len(rows) < n else rows
        )

    fails_with(ch07.check_text_init, zero_padded, "padded with zeros")
    fails_with(ch07.check_text_init, lambda emb, ids, n: emb.weight[(ids * n)[:n]], "detach")
    fails_with(
        ch07.check_text_init,
        lambda emb, ids, n: emb.weight[(ids * n)[-n:] if len(ids) > n else (ids * n)[:n]].detach(),
        "FIRST n_virtual",
    )


def prefix_attention(q, k, v, prefix_k, prefix_v, shift=True, scaled=True, prefix=True):
    """One causal head with a prefix of keys and values; switches for the typical mistakes."""
    length = q.shape[0]
    keys = torch.cat([prefix_k, k]) if prefix else k
    values = torch.cat([prefix_v, v]) if prefix else v
    width = keys.shape[0]
    allowed = torch.ones(length, width, dtype=torch.bool).tril(
        diagonal=width - length if shift else 0
    )
    scores = q @ keys.T / (q.shape[-1] ** 0.5 if scaled else 1.0)
    return torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1) @ values


def test_prefix_attention():
    assert ch07.check_prefix_attention(prefix_attention)

    def with_prefix_queries(q, k, v, pk, pv):
        return prefix_attention(torch.cat([pk, q]), torch.cat([pk, k]), torch.cat([pv, v]), pk, pv)

    fails_with(
        ch07.check_prefix_attention,
        lambda *a: prefix_attention(*a, shift=False),
        "not shifted by n",
    )
    fails_with(
        ch07.check_prefix_attention, lambda *a: prefix_attention(*a, scaled=False), "1/sqrt(d)"
    )
    fails_with(
        ch07.check_prefix_attention,
        lambda *a: prefix_attention(*a, prefix=False),
        "prefix is not used",
    )
    fails_with(ch07.check_prefix_attention, with_prefix_queries, "never queries")


def real_token_loss(logits, ids, mask, n, cut="front", shift=True, padding=False):
    """The loss on the real tokens of a prompt-tuned model; switches for the typical mistakes."""
    length = ids.shape[1]
    logits = logits[:, n:] if cut == "front" else logits[:, :length]
    if shift:
        logits, ids, mask = logits[:, :-1], ids[:, 1:], mask[:, 1:]
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids, reduction="none")
    return nll.mean() if padding else nll[mask.bool()].mean()


def test_real_token_loss():
    assert ch07.check_real_token_loss(real_token_loss)
    fails_with(
        ch07.check_real_token_loss,
        lambda *a: real_token_loss(*a, cut="back"),
        "the LAST L",
    )
    fails_with(ch07.check_real_token_loss, lambda *a: real_token_loss(*a, shift=False), "no shift")
    fails_with(
        ch07.check_real_token_loss,
        lambda *a: real_token_loss(*a, padding=True),
        "padding is scored",
    )
    fails_with(ch07.check_real_token_loss, with_first_token, "first real token")
    fails_with(ch07.check_real_token_loss, uncut, "cut them off first")


def with_first_token(logits, ids, mask, n):
    """Also scores the first real token, from the last virtual position (peft's training loss)."""
    nll = torch.nn.functional.cross_entropy(
        logits[:, n - 1 : -1].transpose(1, 2), ids, reduction="none"
    )
    return nll[mask.bool()].mean()


def uncut(logits, ids, mask, n):
    """The plain causal-LM loss, which does not know about the virtual positions."""
    return torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:])


def test_the_loss_reference_is_the_models_own_loss(tiny_llama):
    """real_token_loss on a SoftPromptLM's logits = the model's loss with -100 for the prompt and
    for the first real token (nothing before it to predict it from, in a plain model)."""
    model = tiny_llama(vocab=20, max_position_embeddings=64, pad_token_id=0, eval_mode=True)
    soft = SoftPromptLM(model, n_virtual=3)
    ids = torch.tensor([[1, 4, 9, 2, 7], [1, 5, 3, 0, 0]])
    mask = (ids != 0).long()
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, 0] = -100
    with torch.no_grad():
        out = soft(input_ids=ids, attention_mask=mask, labels=labels)
    assert torch.allclose(real_token_loss(out.logits, ids, mask, 3), out.loss, atol=1e-6)


# --- realistic wrong answers (issue 18, item 7): each caught, its message naming the mistake ----
# (counted over all chapters by `python -m tests.course.wrong_answers`)

from tests.course.wrong_answers import Wrong, assert_caught_and_named  # noqa: E402


def _h8_text_init(mode: str):
    def fn(embedding, ids, n):
        ids = list(ids)
        ids = (ids * (n // len(ids) + 1))[:n]
        if mode == "attached":
            return embedding.weight[ids]
        if mode == "view":
            return embedding.weight.detach()[:n].clone()
        return embedding.weight[ids].detach()  # no clone needed? (indexing copies)

    return fn


def _h8_prefix_attn(mode: str):
    import torch

    def fn(q, k, v, pk, pv):
        keys, values = torch.cat([pk, k]), torch.cat([pv, v])
        L, n = q.shape[0], pk.shape[0]
        allowed = torch.ones(L, n + L, dtype=torch.bool).tril(diagonal=n)
        if mode == "unshifted_mask":
            allowed = torch.ones(L, n + L, dtype=torch.bool).tril()
        if mode == "appended":
            keys, values = torch.cat([k, pk]), torch.cat([v, pv])
        scores = q @ keys.T / (1.0 if mode == "unscaled" else q.shape[-1] ** 0.5)
        return torch.softmax(scores.masked_fill(~allowed, float("-inf")), -1) @ values

    return fn


def _h8_real_loss(mode: str):
    import torch.nn.functional as F

    def fn(logits, ids, mask, n):
        x = logits[:, n:-1] if mode != "first_L" else logits[:, : ids.shape[1] - 1]
        y, m = ids[:, 1:], mask[:, 1:].bool()
        nll = F.cross_entropy(x.transpose(1, 2), y, reduction="none")
        if mode == "padding":
            return nll.mean()
        if mode == "per_seq":
            return ((nll * m).sum(1) / m.sum(1)).mean()
        return nll[m].mean()

    return fn


WRONG_ANSWERS = [
    Wrong(
        "no ×2 for keys and values",
        ch07.check_prefix_count,
        [lambda n, L, h, kv, d: n * L * kv * d],
        ("×2",),
    ),
    Wrong(
        "n_heads instead of n_kv_heads",
        ch07.check_prefix_count,
        [lambda n, L, h, kv, d: n * L * 2 * h * d],
        ("n_kv_heads",),
    ),
    Wrong(
        "one layer",
        ch07.check_prefix_count,
        [lambda n, L, h, kv, d: n * 2 * kv * d],
        ("every layer",),
    ),
    Wrong(
        "hidden size instead of kv width",
        ch07.check_prefix_count,
        [lambda n, L, h, kv, d: n * L * 2 * h * d // 1],
        ("n_kv_heads",),
    ),
    Wrong(
        "still attached to the embedding",
        ch07.check_text_init,
        [_h8_text_init("attached")],
        ("detach",),
    ),
    Wrong(
        "first n rows of the table",
        ch07.check_text_init,
        [_h8_text_init("view")],
        ("repeat", "rows"),
    ),
    Wrong(
        "mask not shifted by n",
        ch07.check_prefix_attention,
        [_h8_prefix_attn("unshifted_mask")],
        ("tril(diagonal=n)",),
    ),
    Wrong(
        "scores not scaled",
        ch07.check_prefix_attention,
        [_h8_prefix_attn("unscaled")],
        ("sqrt(d)",),
    ),
    Wrong(
        "prefix appended after the keys",
        ch07.check_prefix_attention,
        [_h8_prefix_attn("appended")],
        ("appended",),
    ),
    Wrong(
        "first L logits kept", ch07.check_real_token_loss, [_h8_real_loss("first_L")], ("FIRST",)
    ),
    Wrong("padding scored", ch07.check_real_token_loss, [_h8_real_loss("padding")], ("padding",)),
    Wrong(
        "mean per sequence first",
        ch07.check_real_token_loss,
        [_h8_real_loss("per_seq")],
        ("per sequence",),
    ),
]


@pytest.mark.parametrize("wrong", WRONG_ANSWERS, ids=lambda w: f"{w.exercise} {w.mistake}")
def test_wrong_answer_is_caught_and_named(wrong):
    assert_caught_and_named(wrong)
