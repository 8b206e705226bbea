"""The chapter 07 checkers pass the reference solutions and name the typical mistakes."""

from __future__ import annotations

import pytest
import torch

from course_lib.course.checkers import ch07
from course_lib.course.checks import CheckFailed
from course_lib.prompt_tuning import SoftPromptLM, prepend_soft_prompt, text_init


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


def test_prepend():
    assert ch07.check_prepend(prepend_soft_prompt)

    def variant(appended=False, no_mask=False, zero_mask=False, no_labels=False, zero_labels=False):
        def fn(prompt, embeds, mask, labels):
            b, n = embeds.shape[0], prompt.shape[0]
            p = prompt.unsqueeze(0).expand(b, -1, -1)
            e = torch.cat([embeds, p], 1) if appended else torch.cat([p, embeds], 1)
            m = mask if no_mask else torch.cat([torch.full((b, n), 0 if zero_mask else 1), mask], 1)
            y = (
                labels
                if no_labels
                else torch.cat([torch.full((b, n), 0 if zero_labels else -100), labels], 1)
            )
            return e, m, y

        return fn

    assert ch07.check_prepend(variant())
    fails_with(ch07.check_prepend, variant(appended=True), "APPENDED")
    fails_with(ch07.check_prepend, variant(no_mask=True), "attention mask was not extended")
    fails_with(ch07.check_prepend, variant(zero_mask=True), "masked out")
    fails_with(ch07.check_prepend, variant(no_labels=True), "labels were not extended")
    fails_with(ch07.check_prepend, variant(zero_labels=True), "use -100")


class Student(torch.nn.Module):
    """A configurable soft-prompt model: correct by default, with the typical mistakes on request."""

    def __init__(self, model, n, freeze=True, zero_labels=False, no_labels=False):
        super().__init__()
        self.model = model.requires_grad_(not freeze)
        self.prompt = torch.nn.Parameter(torch.randn(n, model.get_input_embeddings().embedding_dim))
        self.zero_labels, self.no_labels = zero_labels, no_labels

    def forward(self, input_ids, attention_mask=None, labels=None):
        e, m, y = prepend_soft_prompt(
            self.prompt, self.model.get_input_embeddings()(input_ids), attention_mask, labels
        )
        if self.zero_labels:
            y = y.masked_fill(torch.arange(y.shape[1]) < self.prompt.shape[0], 0)
        return self.model(inputs_embeds=e, attention_mask=m, labels=labels if self.no_labels else y)


def test_soft_prompt_model():
    assert ch07.check_soft_prompt_model(SoftPromptLM)
    assert ch07.check_soft_prompt_model(Student)
    fails_with(
        ch07.check_soft_prompt_model, lambda m, n: Student(m, n, freeze=False), "freeze the model"
    )
    fails_with(
        ch07.check_soft_prompt_model, lambda m, n: Student(m, n, zero_labels=True), "label -100"
    )
    fails_with(
        ch07.check_soft_prompt_model, lambda m, n: Student(m, n, no_labels=True), "not extended"
    )
