"""Checks for the chapter 07 exercises (prompt tuning, prefix tuning, P-tuning).

Each check runs the student's code on cases where the common mistakes give a recognisably
wrong answer, and names the mistake.
"""

from __future__ import annotations

import torch

from course_lib.course.checks import CheckFailed, check, expect, expect_close, expect_equal

PAD = 0


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
                "padded with zeros: repeat the text's embeddings until there are n_virtual rows (as peft does)",
            ),
            (
                last,
                "repeated the last token: repeat the WHOLE text (ids * k), then cut to n_virtual",
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


def _prepend_case():
    g = torch.Generator().manual_seed(3)
    prompt = torch.randn(2, 4, generator=g)
    embeds = torch.randn(3, 5, 4, generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]])
    labels = torch.tensor([[5, 6, 7, 8, 9], [5, 6, 7, -100, -100], [5, 6, -100, -100, -100]])
    return prompt, embeds, mask, labels


@check("07.3 prepend a soft prompt")
def check_prepend(student_fn) -> None:
    """The student's prepend(prompt [n, d], embeds [b, L, d], mask [b, L], labels [b, L]) -> 3 tensors."""
    prompt, embeds, mask, labels = _prepend_case()
    out = student_fn(prompt, embeds.clone(), mask.clone(), labels.clone())
    expect(
        isinstance(out, (tuple, list)) and len(out) == 3,
        "return three tensors: (embeds, attention_mask, labels)",
    )
    e, m, y = out
    b, n = embeds.shape[0], prompt.shape[0]
    p = prompt.unsqueeze(0).expand(b, -1, -1)
    want_e = torch.cat([p, embeds], 1)
    expect(
        tuple(e.shape) == (3, 7, 4),
        f"the embeddings must be [batch, n_virtual + L, d] = (3, 7, 4), got "
        f"{tuple(e.shape)}: concatenate the prompt (expanded over the batch) "
        "along the sequence dimension",
    )
    expect_close(
        e,
        want_e,
        1e-6,
        "the embeddings",
        hints=[
            (
                torch.cat([embeds, p], 1),
                "the virtual tokens were APPENDED: prepend them (torch.cat([prompt, embeds], 1)); "
                "after the text, a causal model could not use them to predict the text",
            ),
        ],
    )
    ones = torch.ones(b, n, dtype=mask.dtype)
    expect(
        tuple(m.shape) == (3, 7),
        f"the attention mask was not extended (shape {tuple(m.shape)}): put n_virtual "
        "ones in front, so that it matches the (n_virtual + L) embeddings",
    )
    expect_equal(
        m,
        torch.cat([ones, mask], 1).tolist(),
        "the attention mask",
        hints=[
            (
                torch.cat([0 * ones, mask], 1).tolist(),
                "the virtual tokens are masked out (zeros): extend the mask with "
                "ONES, or the model never attends to the prompt",
            ),
            (
                torch.cat([mask, ones], 1).tolist(),
                "the ones were appended: the prompt's ones go in FRONT of the mask",
            ),
        ],
    )
    expect(
        tuple(y.shape) == (3, 7),
        f"the labels were not extended (shape {tuple(y.shape)}): put n_virtual -100s "
        "in front, so that labels line up with the logits",
    )
    minus = torch.full((b, n), -100, dtype=labels.dtype)
    expect_equal(
        y,
        torch.cat([minus, labels], 1).tolist(),
        "the labels",
        hints=[
            (
                torch.cat([0 * minus, labels], 1).tolist(),
                "the virtual tokens got label 0: use -100, the index the loss "
                "ignores (a virtual token has no target to predict)",
            ),
            (
                torch.cat([labels, minus], 1).tolist(),
                "the -100s were appended: they belong in FRONT, at the prompt's positions",
            ),
            (
                torch.cat([labels[:, :n], labels], 1).tolist(),
                "the virtual tokens copied real labels: use -100",
            ),
        ],
    )


def _tiny_model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=40,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=PAD,
    )
    return LlamaForCausalLM(config).eval()


@check("07.4 a soft-prompt model equal to peft's")
def check_soft_prompt_model(student_cls) -> None:
    """The student's SoftPromptModel(model, n_virtual) with .prompt, checked against peft's PromptTuningConfig."""
    import copy

    from peft import PromptTuningConfig, TaskType, get_peft_model

    base, n = _tiny_model(), 3
    ours = student_cls(copy.deepcopy(base), n)
    expect(
        hasattr(ours, "prompt") and isinstance(ours.prompt, torch.nn.Parameter),
        "store the virtual-token embeddings as an nn.Parameter named .prompt",
    )
    expect(
        tuple(ours.prompt.shape) == (n, 16),
        f".prompt must be [n_virtual, hidden] = (3, 16), got {tuple(ours.prompt.shape)}",
    )
    trainable = [name for name, p in ours.named_parameters() if p.requires_grad]
    expect(
        trainable == ["prompt"],
        f"only the prompt may be trainable, but {trainable[:4]} are: freeze the model "
        "(model.requires_grad_(False)); prompt tuning trains the prompt alone",
    )
    theirs = get_peft_model(
        copy.deepcopy(base), PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=n)
    )
    with torch.no_grad():
        ours.prompt.normal_(std=0.5)
        theirs.prompt_encoder["default"].embedding.weight.copy_(ours.prompt)
    ids = torch.tensor([[1, 5, 9, 12, 7], [1, 8, 3, PAD, PAD]])
    mask = (ids != PAD).long()
    labels = ids.masked_fill(mask == 0, -100)
    with torch.no_grad():
        want = theirs(input_ids=ids, attention_mask=mask, labels=labels)
    try:
        with torch.no_grad():
            got = ours(input_ids=ids, attention_mask=mask, labels=labels)
    except (RuntimeError, ValueError, IndexError) as error:
        raise CheckFailed(
            f"the forward pass failed ({type(error).__name__}: {str(error)[:120]}). Most often the "
            "attention mask or the labels were not extended: with n_virtual tokens in front, both "
            "need n_virtual entries in front (ones and -100s)"
        ) from None
    expect(
        tuple(got.logits.shape) == tuple(want.logits.shape),
        f"logits of shape {tuple(got.logits.shape)}, peft's {tuple(want.logits.shape)}: the model should run on "
        "[prompt; tokens] and return logits for all n_virtual + L positions",
    )
    expect(
        torch.allclose(got.logits[:, n:], want.logits[:, n:], atol=1e-5),
        "the logits on the real tokens differ from peft's: check that the prompt goes IN FRONT of the token "
        "embeddings and that the attention mask has ONES for the virtual tokens",
    )
    zero_labels = torch.cat([torch.zeros(2, n, dtype=labels.dtype), labels], 1)
    with torch.no_grad():
        zero_loss = torch.nn.functional.cross_entropy(
            want.logits[:, :-1].transpose(1, 2), zero_labels[:, 1:]
        )
    expect_close(
        got.loss,
        float(want.loss),
        1e-5,
        "the loss",
        hints={
            float(
                zero_loss
            ): "the virtual tokens got label 0 and count in the loss: give them the label -100",
        },
    )
