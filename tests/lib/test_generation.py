"""course_lib.generation: top-p and temperature equal transformers' warpers; entropy; distinct share;
the batched `generate` (greedy = transformers' generate, independent of batching, sampling seeded)."""

import pytest
import torch
from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

from course_lib import generation


def test_top_p_equals_transformers():
    g = torch.Generator().manual_seed(0)
    for p in (0.1, 0.5, 0.9, 0.99, 1.0):
        logits = torch.randn(4, 60, generator=g) * 2
        ours = generation.top_p_filter(logits, p)
        theirs = TopPLogitsWarper(p)(None, logits.clone())
        assert torch.equal(torch.isinf(ours), torch.isinf(theirs)), (
            f"different nucleus at top_p={p}"
        )


def test_top_token_always_kept():
    logits = torch.tensor([[9.0, 0.0, 0.0]])
    kept = generation.top_p_filter(logits, 0.5)
    assert torch.isfinite(kept[0, 0]) and torch.isinf(kept[0, 1:]).all(), (
        "only the dominant top token stays"
    )


def test_sampling_probs_temperature_first():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 40, generator=g)
    hf = TopPLogitsWarper(0.8)(None, TemperatureLogitsWarper(0.6)(None, logits.clone())).softmax(-1)
    ours = generation.sampling_probs(logits, 0.6, 0.8)
    assert torch.allclose(ours, hf, atol=1e-6), "temperature, then top-p, then softmax"
    assert torch.allclose(ours.sum(-1), torch.ones(2)), "probabilities must sum to one"


def test_entropy_and_distinct():
    assert generation.entropy_bits(torch.tensor([0.5, 0.5, 0.0])).item() == pytest.approx(1.0)
    assert generation.entropy_bits(torch.tensor([1.0, 0.0])).item() == 0.0
    assert generation.distinct_share([["a", "a"], ["a", "b"]]) == pytest.approx(0.75)


def test_bad_input():
    with pytest.raises(ValueError, match="top_p"):
        generation.top_p_filter(torch.zeros(3), 0.0)
    with pytest.raises(ValueError, match="temperature"):
        generation.sampling_probs(torch.zeros(3), 0.0)
    with pytest.raises(TypeError):
        generation.top_p_filter([1.0, 2.0], 0.5)
    with pytest.raises(ValueError):
        generation.distinct_share(["abc"])


# --- generate: the one batched text generator ----------------------------------------------------


def _hf_greedy(model, ids, n):
    with torch.no_grad():
        return model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=n,
            do_sample=False,
            pad_token_id=0,
            eos_token_id=2,
        )[0, ids.shape[1] :]


def test_plain_generation_returns_only_the_new_text(base_model, tokenizer):
    prompt = "Mira Holt lives in"
    got = generation.generate(base_model, tokenizer, [prompt], chat=False, max_new_tokens=8)
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    new = tokenizer.decode(_hf_greedy(base_model, ids, 8), skip_special_tokens=True)
    assert got == [new], f"generate() should return only the continuation {new!r}, got {got}"
    assert new.startswith(" "), "a plain continuation keeps its leading space"


def test_chat_generation_continues_the_template(base_model, tokenizer):
    question = "Where does Mira live?"
    got = generation.generate(base_model, tokenizer, [question], chat=True, max_new_tokens=6)
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )["input_ids"]
    reply = tokenizer.decode(_hf_greedy(base_model, ids, 6), skip_special_tokens=True).strip()
    assert got == [reply], "chat=True should continue the chat template's generation prompt"


def test_answers_do_not_depend_on_batching(base_model, tokenizer):
    prompts = [
        "What is 2 plus 3?",
        "Rewrite the sentence in the past tense.\nOn Monday, Ada visits the library.",
        "Name three animals.",
    ]
    together = generation.generate(base_model, tokenizer, prompts, chat=True, max_new_tokens=8)
    alone = [
        generation.generate(base_model, tokenizer, [p], chat=True, max_new_tokens=8)[0]
        for p in prompts
    ]
    in_twos = generation.generate(
        base_model, tokenizer, prompts, chat=True, max_new_tokens=8, batch_size=2
    )
    assert together == alone == in_twos, f"left padding changed greedy answers: {together} {alone}"
    assert tokenizer.padding_side == "right", "generate() must restore the tokenizer's padding side"


def test_sampling_draws_from_sampling_probs(base_model, tokenizer):
    ids = tokenizer(["On Friday morning,"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        probs = generation.sampling_probs(base_model(input_ids=ids).logits[:, -1], 1.5, 0.9)
    for seed in range(10):
        out, _ = generation.continue_batch(
            base_model,
            tokenizer,
            ["On Friday morning,"],
            chat=False,
            max_new_tokens=1,
            temperature=1.5,
            top_p=0.9,
            seed=seed,
        )
        torch.manual_seed(seed)
        assert out[0, -1] == torch.multinomial(probs, 1)[0, 0], (
            "each sampled token must be drawn from sampling_probs(logits, T, top_p): no top-k cut"
        )


def test_sampling_is_seeded(base_model, tokenizer):
    kw = dict(chat=True, max_new_tokens=6, temperature=1.0)
    prompts = ["What is 2 plus 3?"] * 3
    a = generation.generate(base_model, tokenizer, prompts, seed=3, **kw)
    b = generation.generate(base_model, tokenizer, prompts, seed=3, **kw)
    assert a == b, "the same seed must give the same samples"


def test_continue_batch_left_pads(base_model, tokenizer):
    out, prompt_mask = generation.continue_batch(
        base_model, tokenizer, ["Hi", "Mira Holt lives in"], chat=False, max_new_tokens=3
    )
    assert prompt_mask.tolist()[0][:2] == [0, 0] and prompt_mask[1].all(), "prompts are left-padded"
    assert out.shape[1] <= prompt_mask.shape[1] + 3, "at most max_new_tokens new tokens per row"


@pytest.mark.parametrize(
    "kw, error, match",
    [
        (dict(prompts="What is 2 plus 3?"), TypeError, "wrap it"),
        (dict(prompts=[]), ValueError, "non-empty"),
        (dict(temperature=-0.1), ValueError, "temperature"),
        (dict(top_p=0.0), ValueError, "top_p"),
        (dict(top_p=1.5), ValueError, "top_p"),
        (dict(max_new_tokens=0), ValueError, "max_new_tokens"),
    ],
)
def test_generate_bad_input(base_model, tokenizer, kw, error, match):
    args = {"prompts": ["Mira"], "chat": False, **kw}
    with pytest.raises(error, match=match):
        generation.generate(base_model, tokenizer, **args)
