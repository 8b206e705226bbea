"""The chapter 12 checkers pass the reference solutions and name the typical mistakes."""

from __future__ import annotations

import pytest

from course_lib.choosing import recommend
from course_lib.course.checkers import ch12
from course_lib.course.checks import CheckFailed


def fails_with(check, fn, words: str) -> None:
    with pytest.raises(CheckFailed) as info:
        check(fn)
    assert words in str(info.value), f"expected the message to mention {words!r}, got: {info.value}"


def test_count_trainable():
    assert ch12.check_count_trainable(
        lambda m: sum(p.numel() for p in m.parameters() if p.requires_grad)
    )
    fails_with(
        ch12.check_count_trainable,
        lambda m: sum(p.numel() for p in m.parameters()),
        "frozen base too",
    )
    fails_with(
        ch12.check_count_trainable,
        lambda m: sum(
            v.numel()
            for k, v in m.state_dict().items()
            if dict(m.named_parameters()).get(k) is None
            or dict(m.named_parameters())[k].requires_grad
        ),
        "count each tensor once",
    )
    fails_with(
        ch12.check_count_trainable,
        lambda m: sum(
            p.numel() for n, p in m.named_parameters() if p.requires_grad and "lora_B" not in n
        ),
        "only lora_A",
    )


def test_artefact_bytes():
    def ref(m):
        return sum(p.numel() * p.element_size() for p in m.parameters() if p.requires_grad)

    assert ch12.check_artefact_bytes(ref)
    fails_with(
        ch12.check_artefact_bytes,
        lambda m: sum(4 * p.numel() for p in m.parameters() if p.requires_grad),
        "2 bytes each",
    )
    fails_with(
        ch12.check_artefact_bytes,
        lambda m: sum(p.numel() * p.element_size() for p in m.parameters()),
        "frozen base weights",
    )
    fails_with(
        ch12.check_artefact_bytes,
        lambda m: sum(p.numel() for p in m.parameters() if p.requires_grad),
        "not bytes",
    )


def _front(results, sign=1):
    return ch12._front(results, sign)


def test_pareto():
    assert ch12.check_pareto(lambda r: _front(r))
    fails_with(ch12.check_pareto, lambda r: _front(r, -1), "minimised accuracy")
    fails_with(ch12.check_pareto, lambda r: list(r), "nothing was removed")
    fails_with(ch12.check_pareto, lambda r: [max(r, key=lambda k: r[k][1])], "only the best score")

    def strict_only(r):  # dominated only when strictly better on both axes: ties survive
        return [
            n
            for n, (c, s) in r.items()
            if not any(c2 < c and s2 > s for m, (c2, s2) in r.items() if m != n)
        ]

    fails_with(ch12.check_pareto, strict_only, "one strict")


def test_recommend_with_storage():
    assert ch12.check_recommend_with_storage(ch12.reference_recommend_with_storage)
    fails_with(
        ch12.check_recommend_with_storage,
        lambda p, g, n, t, k, h, l, kb: recommend(p, g, n, t, k).method,
        "apply the storage rule",
    )

    def any_task_count(p, g, n, t, k, h, l, kb):
        return ch12.reference_recommend_with_storage(p, g, n, t, max(k, 2), h, l, kb)

    fails_with(ch12.check_recommend_with_storage, any_task_count, "one task keeps")

    def always_prompt_when_small(p, g, n, t, k, h, l, kb):
        if k > 1 and ch12.lora_bytes(h, l) > kb * 1000:
            return "prompt tuning"
        return recommend(p, g, n, t, k).method

    fails_with(ch12.check_recommend_with_storage, always_prompt_when_small, "expected")


def test_storage_sizes():
    assert ch12.lora_bytes(4096, 32) == 32 * 2 * 8 * 8192 * 2, (
        "LoRA q,v r=8 on Llama-2-7B: 8.4 MB in bf16"
    )
    assert ch12.prompt_bytes(4096) == 20 * 4096 * 2


# --- realistic wrong answers (issue 18, item 7): each caught, its message naming the mistake ----
# (counted over all chapters by `python -m tests.course.wrong_answers`)

from tests.course.wrong_answers import Wrong, assert_caught_and_named  # noqa: E402


def _h8_pareto(mode: str):
    def fn(results):
        keep = []
        for name, (c, s) in results.items():
            others = [(c2, s2) for o, (c2, s2) in results.items() if o != name]
            if mode == "no_strict":
                dominated = any(c2 <= c and s2 >= s for c2, s2 in others)
            else:  # strict on both axes
                dominated = any(c2 < c and s2 > s for c2, s2 in others)
            if not dominated:
                keep.append(name)
        return sorted(keep)

    return fn


def _h8_storage(unit: int):
    from course_lib.choosing import recommend

    def fn(p, g, n, task, k, hidden, layers, kb):
        method = recommend(p, g, n, task, k).method
        lora = layers * 2 * 8 * 2 * hidden * 2
        prompt = 20 * hidden * 2
        if k > 1 and method in ("LoRA", "QLoRA") and lora > kb * unit:
            return "prompt tuning" if prompt <= kb * unit else "prompting (few-shot or retrieval)"
        return method

    return fn


WRONG_ANSWERS = [
    Wrong(
        "frozen counted",
        ch12.check_count_trainable,
        [lambda m: sum(p.numel() for p in m.parameters())],
        ("requires_grad",),
    ),
    Wrong(
        "tied embedding counted twice",
        ch12.check_count_trainable,
        [
            lambda m: (
                sum(t.numel() for t in m.state_dict().values())
                if all(p.requires_grad for p in m.parameters())
                else sum(p.numel() for p in m.parameters() if p.requires_grad)
            )
        ],
        ("tied",),
    ),
    Wrong(
        "parameters, not bytes",
        ch12.check_artefact_bytes,
        [lambda m: sum(p.numel() for p in m.parameters() if p.requires_grad)],
        ("not bytes",),
    ),
    Wrong(
        "always 4 bytes",
        ch12.check_artefact_bytes,
        [lambda m: 4 * sum(p.numel() for p in m.parameters() if p.requires_grad)],
        ("element_size",),
    ),
    Wrong("strict clause dropped", ch12.check_pareto, [_h8_pareto("no_strict")], ("strictly",)),
    Wrong(
        "strict on both axes",
        ch12.check_pareto,
        [_h8_pareto("strict_both")],
        ("strictly", "no worse"),
    ),
    Wrong(
        "KiB instead of kB", ch12.check_recommend_with_storage, [_h8_storage(1024)], ("1000", "KiB")
    ),
]


@pytest.mark.parametrize("wrong", WRONG_ANSWERS, ids=lambda w: f"{w.exercise} {w.mistake}")
def test_wrong_answer_is_caught_and_named(wrong):
    assert_caught_and_named(wrong)
