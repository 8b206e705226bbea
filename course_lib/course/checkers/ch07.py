"""Checks for the chapter 07 exercises (prompt tuning, prefix tuning, P-tuning).

Each check runs the student's code on cases where the common mistakes give a recognisably
wrong answer, and names the mistake.
"""

from __future__ import annotations

import torch

from course_lib.course.checks import CheckFailed, check, expect, expect_close, expect_equal


@check("07.1 prefix parameter count")
def check_prefix_count(student_fn) -> None:
    """The student's prefix_param_count(n_virtual, n_layers, n_heads, n_kv_heads, head_dim)."""
    n, layers, heads, kv, d = 10, 6, 8, 2, 16  # grouped-query attention: 8 query heads, 2 kv heads
    want = n * layers * 2 * kv * d
    expect_equal(
        student_fn(n, layers, heads, kv, d),
        want,
        "prefix parameters for 10 virtual tokens, 6 layers, 8 heads, 2 kv heads, head_dim 16",
        hints=[
            (
                n * layers * kv * d,
                "you forgot the ×2: every layer gets a key AND a value per virtual token",
            ),
            (
                n * layers * 2 * heads * d,
                "the prefix lives in the key/value cache, which has n_kv_heads heads "
                "(2 here), not n_heads (8): use n_kv_heads",
            ),
            (
                n * layers * heads * d,
                "two mistakes: use n_kv_heads, not n_heads, and count keys AND values (×2)",
            ),
            (
                n * 2 * kv * d,
                "multiply by the number of layers: prefix tuning injects a prefix into every layer",
            ),
            (
                n * kv * d,
                "that is one layer's keys only: ×2 for keys and values, ×n_layers for every layer",
            ),
        ],
    )
    expect_equal(
        student_fn(20, 4, 4, 4, 48),
        20 * 4 * 2 * 4 * 48,
        "the count for the course model (20 tokens)",
    )


@check("07.2 text initialisation")
def check_text_init(student_fn) -> None:
    """The student's text_init(embedding, token_ids, n_virtual): rows of the embedding, repeated or cut."""
    torch.manual_seed(7)
    emb = torch.nn.Embedding(12, 5)
    ids = [3, 7, 1]
    out = student_fn(emb, ids, 7)
    want = emb.weight[[3, 7, 1, 3, 7, 1, 3]].detach()
    expect(isinstance(out, torch.Tensor), f"return a tensor, got {type(out).__name__}")
    padded = torch.cat([emb.weight[ids].detach(), torch.zeros(4, 5)])
    last = emb.weight[[3, 7, 1, 1, 1, 1, 1]].detach()
    expect_close(
        out,
        want,
        1e-6,
        "the 7 initial prompt vectors for 3 text tokens",
        hints=[
            (
                padded,
                "padded with zeros: repeat the text's embeddings until there are n_virtual rows "
                "(as peft does)",
            ),
            (
                last,
                "repeated the last token: repeat the WHOLE text (ids * k), then cut to n_virtual",
            ),
            (
                emb.weight[:7].detach(),
                "those are the first n_virtual rows of the embedding TABLE: take the rows of the "
                "text's token ids, embedding.weight[ids]",
            ),
        ],
    )
    short = student_fn(emb, [3, 7, 1, 5, 9], 2)
    expect_close(
        short,
        emb.weight[[3, 7]].detach(),
        1e-6,
        "2 vectors from a 5-token text",
        hints=[
            (
                emb.weight[[5, 9]].detach(),
                "keep the FIRST n_virtual tokens of a text that is too long, not the last",
            ),
        ],
    )
    expect(
        not out.requires_grad,
        "the result is still attached to the embedding matrix's graph: return "
        "emb.weight[ids].detach().clone(), a fresh tensor to become the prompt",
    )
    before = emb.weight.detach().clone()
    student_fn(emb, [3, 7], 2).add_(1.0)
    expect(
        torch.equal(emb.weight.detach(), before),
        "changing the returned prompt changed the embedding matrix: return a copy (.detach().clone())",
    )


def _attention_case():
    """One head: L = 4 real tokens, a prefix of n = 2, head size d = 8."""
    g = torch.Generator().manual_seed(8)
    q, k, v = (torch.randn(4, 8, generator=g) for _ in range(3))
    prefix_k, prefix_v = (torch.randn(2, 8, generator=g) for _ in range(2))
    return q, k, v, prefix_k, prefix_v


def _attend(q, keys, values, allowed, scaled=True, dim=-1):
    """softmax(q keysᵀ / sqrt(d), masked to `allowed`) @ values."""
    scores = q @ keys.T / (q.shape[-1] ** 0.5 if scaled else 1.0)
    return torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=dim) @ values


@check("07.3 attention with a prefix")
def check_prefix_attention(student_fn) -> None:
    """The student's prefix_attention(q, k, v, prefix_k, prefix_v) for one causal head, [L, d]."""
    q, k, v, pk, pv = _attention_case()
    length, n, d = q.shape[0], pk.shape[0], q.shape[1]
    try:
        out = student_fn(q.clone(), k.clone(), v.clone(), pk.clone(), pv.clone())
    except NotImplementedError:  # a RuntimeError too: the untouched stub
        raise
    except RuntimeError as error:
        raise CheckFailed(
            f"a shape mismatch ({error}): with a prefix there are n + L keys and values "
            "(torch.cat([prefix_k, k])), but still L queries, so the scores are [L, n + L] and "
            "the mask must be [L, n + L] too"
        ) from None
    expect(hasattr(out, "shape"), f"return a tensor, got {type(out).__name__}")
    expect(
        tuple(out.shape) != (n + length, d),
        "the output has n + L rows: the virtual tokens are keys and values only, never queries "
        "(they are not in the sequence); return one row per real token, [L, d]",
    )
    expect_equal(tuple(out.shape), (length, d), "the output's shape [L, d]")
    keys, values = torch.cat([pk, k]), torch.cat([pv, v])
    allowed = torch.ones(length, n + length, dtype=torch.bool).tril(diagonal=n)
    unshifted = torch.ones(length, n + length, dtype=torch.bool).tril()
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    expect_close(
        out,
        _attend(q, keys, values, allowed),
        1e-5,
        "the attention output",
        hints=[
            (
                _attend(q, keys, values, unshifted),
                "the causal mask is not shifted by n: real token i may see all n prefix "
                "positions plus real tokens 0..i, i.e. torch.ones(L, n + L).tril(diagonal=n)",
            ),
            (
                _attend(q, keys, values, torch.ones_like(allowed)),
                "no causal mask: a real token must not attend to the real tokens after it "
                "(the prefix it may always see)",
            ),
            (_attend(q, keys, values, allowed, scaled=False), "scale the scores by 1/sqrt(d)"),
            (
                _attend(q, k, v, causal),
                "the prefix is not used (or it was appended after the real keys, where the "
                "causal mask hides it): put prefix_k and prefix_v IN FRONT of the keys and values",
            ),
            (
                _attend(q, torch.cat([k, pk]), torch.cat([v, pv]), allowed),
                "the prefix was appended after the real keys: put prefix_k and prefix_v IN FRONT "
                "(torch.cat([prefix_k, k])), where the mask tril(diagonal=n) expects them",
            ),
            (
                _attend(q, keys, values, allowed, dim=0),
                "the softmax runs over the queries: normalise each row, over the keys (dim=-1)",
            ),
        ],
    )


def _loss_case():
    """Logits of a prompt-tuned model: batch 2, n = 3 virtual tokens, L = 5, vocabulary 11."""
    g = torch.Generator().manual_seed(9)
    logits = torch.randn(2, 3 + 5, 11, generator=g)
    ids = torch.tensor([[1, 4, 9, 2, 7], [1, 5, 3, 0, 0]])
    return logits, ids, (ids != 0).long(), 3


def _nll(logits, targets, mask):
    """Per-token cross-entropy of `logits` [b, T, V] against `targets` [b, T], kept where mask."""
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    return nll, mask.bool()


@check("07.4 the loss of a prompt-tuned model")
def check_real_token_loss(student_fn) -> None:
    """The student's real_token_loss(logits [b, n+L, V], ids [b, L], mask [b, L], n_virtual)."""
    logits, ids, mask, n = _loss_case()
    try:
        got = student_fn(logits.clone(), ids.clone(), mask.clone(), n)
    except NotImplementedError:  # a RuntimeError too: the untouched stub
        raise
    except (RuntimeError, ValueError) as error:
        raise CheckFailed(
            f"a shape mismatch ({error}): the logits have n_virtual extra positions in front; "
            "cut them off first (logits[:, n_virtual:]), then shift as for any causal LM"
        ) from None
    nll, keep = _nll(logits[:, n:-1], ids[:, 1:], mask[:, 1:])
    want = float(nll[keep].mean())
    length = ids.shape[1]
    wrong_end, _ = _nll(logits[:, : length - 1], ids[:, 1:], mask[:, 1:])
    with_first, keep_first = _nll(logits[:, n - 1 : -1], ids, mask)
    unshifted, keep_all = _nll(logits[:, n:], ids, mask)
    per_sequence = torch.stack([row[k].mean() for row, k in zip(nll, keep)]).mean()
    expect_close(
        got,
        want,
        1e-4,
        "the mean cross-entropy on the real tokens",
        hints=[
            (
                float(wrong_end[keep].mean()),
                "you kept the FIRST L - 1 positions, which are mostly the prompt's; the real "
                "tokens' logits are the LAST L: logits[:, n_virtual:]",
            ),
            (
                float(with_first[keep_first].mean()),
                "you also scored the first real token, predicted from the last virtual position "
                "(what peft's training loss does); to compare with the base model, score tokens "
                "1..L-1 only: logits[:, n_virtual:-1] against input_ids[:, 1:]",
            ),
            (
                float(unshifted[keep_all].mean()),
                "no shift: the logit at position t predicts token t + 1, so compare "
                "logits[:, n_virtual:-1] with input_ids[:, 1:]",
            ),
            (
                float(nll.mean()),
                "the padding is scored too: keep only positions where the mask is 1",
            ),
            (
                float(per_sequence),
                "averaged per sequence first: average over all real tokens of the batch at once",
            ),
        ],
    )
