"""Tests of course_lib.prompt_tuning: the from-scratch soft prompt equals peft's PromptTuningConfig."""

from __future__ import annotations

import copy

import pytest
import torch

from course_lib.formats import IGNORE_INDEX
from course_lib.prompt_tuning import (
    SoftPromptLM,
    copy_prompt_from_peft,
    copy_prompt_to_peft,
    prefix_param_count,
    prefix_projection_param_count,
    prepend_soft_prompt,
    text_init,
)

# 4 query heads and 2 key/value heads of head_dim 4 (grouped-query attention, like peft must handle)
TINY = dict(
    vocab=50, heads=4, kv_heads=2, max_position_embeddings=64, pad_token_id=0, eval_mode=True
)


def batch():
    ids = torch.tensor([[1, 5, 9, 12, 7], [1, 8, 3, 0, 0]])
    mask = (ids != 0).long()
    return ids, mask, ids.masked_fill(mask == 0, IGNORE_INDEX)


def test_prepend_puts_the_prompt_in_front_and_extends_mask_and_labels():
    prompt, embeds = torch.randn(3, 4), torch.randn(2, 5, 4)
    _, mask, labels = batch()
    e, m, y = prepend_soft_prompt(prompt, embeds, mask, labels)
    assert e.shape == (2, 8, 4), "embeddings must grow by n_virtual positions"
    assert torch.equal(e[:, :3], prompt.expand(2, -1, -1)) and torch.equal(e[:, 3:], embeds), (
        "prompt goes in front"
    )
    assert torch.equal(m[:, :3], torch.ones(2, 3, dtype=m.dtype)) and torch.equal(m[:, 3:], mask), (
        "the mask needs ones (attend to the prompt) in front"
    )
    assert torch.all(y[:, :3] == IGNORE_INDEX) and torch.equal(y[:, 3:], labels), (
        "virtual tokens get label -100"
    )


def test_prepend_without_mask_and_labels_returns_none():
    e, m, y = prepend_soft_prompt(torch.randn(2, 4), torch.randn(1, 3, 4))
    assert e.shape == (1, 5, 4) and m is None and y is None, "mask and labels are optional"


def test_from_scratch_equals_peft_prompt_tuning(tiny_llama):
    from peft import PromptTuningConfig, TaskType, get_peft_model

    base = tiny_llama(**TINY)
    theirs = get_peft_model(
        copy.deepcopy(base), PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=4)
    )
    ours = SoftPromptLM(copy.deepcopy(base), 4)
    copy_prompt_from_peft(ours, theirs)
    ids, mask, labels = batch()
    a = ours(input_ids=ids, attention_mask=mask, labels=labels)
    b = theirs(input_ids=ids, attention_mask=mask, labels=labels)
    assert a.logits.shape == b.logits.shape == (2, 9, 50), (
        "both return logits for n_virtual + L positions"
    )
    assert torch.allclose(a.logits, b.logits, atol=1e-6), "same prompt, same logits as peft"
    assert torch.allclose(a.loss, b.loss, atol=1e-6), (
        "same loss as peft (virtual labels are -100 in both)"
    )
    with torch.no_grad():
        ours.prompt.mul_(2.0)
    copy_prompt_to_peft(ours, theirs)
    assert torch.equal(theirs.prompt_encoder["default"].embedding.weight, ours.prompt), (
        "copy back into peft"
    )


def test_only_the_prompt_trains_and_gets_gradients(tiny_llama):
    soft = SoftPromptLM(tiny_llama(**TINY), 3)
    ids, mask, labels = batch()
    soft(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
    trainable = [n for n, p in soft.named_parameters() if p.requires_grad]
    assert trainable == ["prompt"], f"only the prompt may be trainable, got {trainable}"
    assert soft.prompt.grad is not None and soft.prompt.grad.abs().sum() > 0, (
        "the prompt must get a gradient"
    )


def test_text_init_repeats_and_cuts_like_peft():
    emb = torch.nn.Embedding(10, 4)
    out = text_init(emb, [2, 5], 5)
    assert torch.equal(out, emb.weight[[2, 5, 2, 5, 2]]), (
        "repeat the text's embeddings to n_virtual rows"
    )
    assert torch.equal(text_init(emb, [1, 2, 3], 2), emb.weight[[1, 2]]), (
        "cut a long text to its first tokens"
    )
    assert not out.requires_grad and out.data_ptr() != emb.weight.data_ptr(), "a detached copy"


def test_cross_entropy_scores_a_soft_prompt_model_on_the_real_tokens(tiny_llama, tokenizer):
    from course_lib.evaluation import cross_entropy, token_losses

    base = tiny_llama(**dict(TINY, vocab=len(tokenizer)))
    soft = SoftPromptLM(base, 3, init=torch.zeros(3, 16))
    texts = ["Mira lives in Brookmere.", "Ada Crane keeps a cat named Socks."]
    assert token_losses(soft, tokenizer, texts)[1] == token_losses(base, tokenizer, texts)[1], (
        "the virtual positions are never scored: the same real tokens are counted"
    )
    ids = tokenizer([texts[0] + tokenizer.eos_token], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = soft(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, 3:]
    hand = torch.nn.functional.cross_entropy(logits[:-1], ids[0, 1:]).item()
    assert cross_entropy(soft, tokenizer, texts[:1]) == pytest.approx(hand, rel=1e-5), (
        "the loss must be read from the last L logits (after the 3 virtual positions)"
    )
    assert (
        abs(cross_entropy(soft, tokenizer, texts) - cross_entropy(base, tokenizer, texts)) > 1e-4
    ), "the prompt must change the loss"


def test_prefix_counts_match_peft(tiny_llama):
    from peft import PrefixTuningConfig, TaskType, get_peft_model

    base = tiny_llama(**TINY)  # 4 query heads, 2 kv heads of head_dim 4: kv_dim 8
    for projection in (False, True):
        cfg = PrefixTuningConfig(
            task_type=TaskType.CAUSAL_LM,
            num_virtual_tokens=5,
            prefix_projection=projection,
            encoder_hidden_size=12,
        )
        model = get_peft_model(copy.deepcopy(base), cfg)
        n = sum(p.numel() for p in model.parameters() if p.requires_grad)
        want = (
            prefix_projection_param_count(5, 2, 8, 12)
            if projection
            else prefix_param_count(5, 2, 2, 4)
        )
        assert n == want, (
            f"projection={projection}: peft trains {n} parameters, the formula says {want}"
        )


@pytest.mark.parametrize(
    "call, error, words",
    [
        (
            lambda new_lm: prepend_soft_prompt(torch.randn(3), torch.randn(1, 2, 3)),
            ValueError,
            "2-D",
        ),
        (
            lambda new_lm: prepend_soft_prompt(torch.randn(2, 3), torch.randn(1, 2, 4)),
            ValueError,
            "hidden size",
        ),
        (lambda new_lm: prepend_soft_prompt([[0.0]], torch.randn(1, 2, 1)), TypeError, "tensors"),
        (
            lambda new_lm: prepend_soft_prompt(
                torch.randn(2, 3), torch.randn(1, 2, 3), torch.ones(1, 3)
            ),
            ValueError,
            "attention_mask",
        ),
        (lambda new_lm: text_init(torch.randn(5, 3), [1], 2), TypeError, "nn.Embedding"),
        (lambda new_lm: text_init(torch.nn.Embedding(5, 3), [], 2), ValueError, "empty"),
        (lambda new_lm: text_init(torch.nn.Embedding(5, 3), [1], 0), ValueError, "n_virtual"),
        (lambda new_lm: SoftPromptLM(torch.nn.Linear(2, 2), 3), TypeError, "causal LM"),
        (
            lambda new_lm: SoftPromptLM(new_lm(), 2, init=torch.zeros(3, 16)),
            ValueError,
            "init must have shape",
        ),
        (lambda new_lm: prefix_param_count(10, 0, 2, 4), ValueError, "n_layers"),
        (lambda new_lm: prefix_projection_param_count(10, 2, 8, 0), ValueError, "encoder_hidden"),
        (
            lambda new_lm: copy_prompt_from_peft(SoftPromptLM(new_lm(), 2), new_lm()),
            ValueError,
            "PromptTuningConfig",
        ),
        (lambda new_lm: copy_prompt_to_peft("not a model", new_lm()), TypeError, "SoftPromptLM"),
    ],
)
def test_bad_inputs_are_explained(call, error, words, tiny_llama):
    with pytest.raises(error) as info:
        call(lambda: tiny_llama(**TINY))
    assert words in str(info.value), f"the message should mention {words!r}: {info.value}"
