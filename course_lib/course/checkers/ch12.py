"""Checks for the chapter 12 exercises (choosing a method).

Each check runs the student's code on cases where the common mistakes give a recognisably
wrong answer, and names the mistake.
"""

from __future__ import annotations

import copy

import torch

from course_lib.course.checks import check, expect, expect_equal

LORA_RANK, PROMPT_TOKENS = 8, 20


def _models():
    """A full-trainable copy of the base model and a LoRA q,v r=8 peft model (built once, cached)."""
    if not hasattr(_models, "cache"):
        from peft import LoraConfig, get_peft_model

        from course_lib.models import load_model

        base, _ = load_model("causal")
        torch.manual_seed(0)
        lora = get_peft_model(
            copy.deepcopy(base),
            LoraConfig(
                r=LORA_RANK,
                lora_alpha=16,
                task_type="CAUSAL_LM",
                target_modules=["q_proj", "v_proj"],
            ),
        )
        _models.cache = (base.requires_grad_(True), lora)
    return _models.cache


@check("12.1 count trainable parameters")
def check_count_trainable(student_fn) -> None:
    """The student's count_trainable(model): trainable parameters, a tied tensor counted once."""
    full, lora = _models()
    n_all = sum(p.numel() for p in full.parameters())
    tied = full.get_input_embeddings().weight.numel()
    n_lora = sum(p.numel() for p in lora.parameters() if p.requires_grad)
    n_lora_all = sum(p.numel() for p in lora.parameters())
    expect_equal(
        student_fn(lora),
        n_lora,
        "trainable parameters of the LoRA q,v r=8 model",
        hints=[
            (
                n_lora_all,
                "you counted every parameter, the frozen base too: count only those with requires_grad",
            ),
            (
                n_lora_all + tied,
                "you counted every parameter (frozen ones too) and the tied embedding twice",
            ),
            (
                n_lora + tied,
                "you added the LM head, which is the tied embedding listed a second time by state_dict() "
                "(and frozen here): count each tensor once, and only trainable ones",
            ),
            (n_lora // 2, "you counted only lora_A (or only lora_B): LoRA trains both matrices"),
        ],
    )
    expect_equal(
        student_fn(full),
        n_all,
        "trainable parameters of the fully trainable base model",
        hints=[
            (
                n_all + tied,
                "the embedding matrix is tied to the LM head: it is ONE tensor, count each tensor once "
                "(model.parameters() yields it once; state_dict() lists it under two names)",
            ),
        ],
    )


@check("12.2 artefact size")
def check_artefact_bytes(student_fn) -> None:
    """The student's artefact_bytes(model): bytes of the trainable tensors in their own dtype."""
    _, lora = _models()
    n = sum(p.numel() for p in lora.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in lora.parameters())
    expect_equal(
        student_fn(lora),
        4 * n,
        "the fp32 LoRA adapter's bytes",
        hints=[
            (
                n,
                "that is the number of parameters, not bytes: multiply each tensor by its element_size()",
            ),
            (
                4 * n_all,
                "you counted the frozen base weights too: an adapter artefact holds only the trained tensors",
            ),
            (2 * n, "an fp32 tensor takes 4 bytes per element, not 2: use element_size()"),
        ],
    )
    half = copy.deepcopy(lora).to(torch.bfloat16)
    expect_equal(
        student_fn(half),
        2 * n,
        "the same adapter in bf16",
        hints=[
            (
                4 * n,
                "bf16 weights take 2 bytes each, not 4: use tensor.element_size() instead of a constant",
            ),
            (
                2 * n_all,
                "you counted the frozen base weights too: an adapter artefact holds only the trained tensors",
            ),
        ],
    )


PARETO_CASE = {  # method: (trainable parameters, accuracy); higher accuracy is better
    "full": (2_000_000, 0.95),
    "freeze": (700_000, 0.90),
    "LoRA": (25_000, 0.91),
    "adapters": (26_000, 0.89),
    "IA3": (3_600, 0.80),
    "prompt": (3_800, 0.70),
    "prefix": (30_000, 0.88),
}


def _front(results: dict, score_sign: int = 1) -> list[str]:
    """Names not dominated (cost <= and score_sign·score >=, one of them strictly), sorted."""
    keep = []
    for name, (c, s) in results.items():
        if not any(
            c2 <= c and score_sign * s2 >= score_sign * s and (c2 < c or s2 != s)
            for other, (c2, s2) in results.items()
            if other != name
        ):
            keep.append(name)
    return sorted(keep)


@check("12.3 Pareto front")
def check_pareto(student_fn) -> None:
    """The student's pareto_front(results): methods no other method beats on both cost and accuracy."""
    out = student_fn(dict(PARETO_CASE))
    expect(
        isinstance(out, (list, tuple, set)),
        f"return a list of method names, got {type(out).__name__}",
    )
    got = set(out)
    expect_equal(
        sorted(got),
        _front(PARETO_CASE),
        "the Pareto-optimal methods",
        hints=[
            (
                _front(PARETO_CASE, score_sign=-1),
                "you minimised accuracy (treated it like a cost): higher accuracy is "
                "better, keep the methods with the highest accuracy for their cost",
            ),
            (
                sorted(PARETO_CASE),
                "nothing was removed: drop every method that another beats on both axes",
            ),
            (
                ["full"],
                "you kept only the best score: a cheaper method that no one beats at its cost is optimal too",
            ),
            (
                ["IA3"],
                "you kept only the cheapest: a better score at a higher cost is a different "
                "trade-off, keep it",
            ),
            (
                sorted(_front(PARETO_CASE) + ["freeze"]),
                "freeze is dominated: LoRA has fewer parameters AND higher accuracy",
            ),
        ],
    )
    tie = student_fn({"a": (10, 0.5), "b": (10, 0.6), "c": (20, 0.6)})
    expect_equal(
        sorted(tie),
        ["b"],
        "ties: b beats a (same cost, better score) and c (same score, cheaper)",
        hints=[
            (
                ["a", "b", "c"],
                "a method is dominated when another is no worse on both axes and "
                "strictly better on one: use <= and >= with one strict",
            )
        ],
    )
    twins = student_fn({"a": (10, 0.6), "b": (10, 0.6), "c": (20, 0.7)})
    expect_equal(
        sorted(twins),
        ["a", "b", "c"],
        "two methods with the same cost and score: neither is STRICTLY better, both stay",
        hints=[
            (
                ["c"],
                "identical methods removed each other: 'no worse on both axes' is not enough, "
                "the other method must also be strictly better on at least one",
            )
        ],
    )


def lora_bytes(hidden: int, layers: int, r: int = LORA_RANK) -> int:
    """bf16 bytes of a LoRA r adapter on q_proj and v_proj (square hidden×hidden layers)."""
    return layers * 2 * r * (hidden + hidden) * 2


def prompt_bytes(hidden: int, n_virtual: int = PROMPT_TOKENS) -> int:
    """bf16 bytes of a soft prompt of n_virtual tokens."""
    return n_virtual * hidden * 2


def reference_recommend_with_storage(
    params_b, gpu_gib, n_examples, task, n_tasks, hidden, layers, budget_kb
) -> str:
    """recommend(), plus: many tasks and a LoRA adapter over the per-task budget -> prompt tuning or
    prompting."""
    from course_lib.choosing import recommend

    method = recommend(params_b, gpu_gib, n_examples, task, n_tasks).method
    if (
        n_tasks > 1
        and method in ("LoRA", "QLoRA")
        and lora_bytes(hidden, layers) > budget_kb * 1000
    ):
        return (
            "prompt tuning"
            if prompt_bytes(hidden) <= budget_kb * 1000
            else "prompting (few-shot or retrieval)"
        )
    return method


STORAGE_CASES = [  # (params_b, gpu_gib, n_examples, task, n_tasks, hidden, layers, budget_kb)
    (7, 24, 5_000, "classification", 100, 4096, 32, 10_000),  # adapter 8.4 MB fits 10 MB -> LoRA
    (7, 24, 5_000, "classification", 100, 4096, 32, 1_000),  # 8.4 MB > 1 MB, prompt 164 kB fits
    (7, 24, 5_000, "classification", 100, 4096, 32, 100),  # even the prompt is too big
    (7, 24, 5_000, "classification", 1, 4096, 32, 100),  # one task: no per-task storage problem
    (13, 24, 5_000, "domain", 20, 5120, 40, 1_000),  # QLoRA, adapter 13 MB > 1 MB -> prompt
    (0.5, 80, 50_000, "instruction", 1, 1024, 24, 10),  # full fine-tuning stays
    (7, 24, 20, "classification", 100, 4096, 32, 1_000),  # too few examples: prompting first
    # budgets between kB and KiB: the adapter (8,388,608 B) exceeds 8,300 kB but not 8,300 KiB;
    # the prompt (163,840 B) exceeds 160 kB but fits 160 KiB
    (7, 24, 5_000, "classification", 100, 4096, 32, 8_300),
    (7, 24, 5_000, "classification", 100, 4096, 32, 160),
]


@check("12.4 a storage rule for the decision procedure")
def check_recommend_with_storage(student_fn) -> None:
    """The student's recommend_with_storage(...) -> method name, on the given cases."""
    from course_lib.choosing import recommend

    for case in STORAGE_CASES:
        want = reference_recommend_with_storage(*case)
        plain = recommend(*case[:5]).method
        got = student_fn(*case)
        if got == want:
            continue
        p, g, n, task, k, hidden, layers, kb = case
        lora_kb = lora_bytes(hidden, layers) / 1000
        in_kib = [lora_bytes(hidden, layers) > kb * 1024, prompt_bytes(hidden) <= kb * 1024]
        kib_answer = (
            plain
            if not (k > 1 and plain in ("LoRA", "QLoRA") and in_kib[0])
            else ("prompt tuning" if in_kib[1] else "prompting (few-shot or retrieval)")
        )
        if got == kib_answer:
            raise_msg = (
                f"the budget is {kb} kB = {kb * 1000:,} bytes (1 kB = 1000 bytes); you used "
                f"{kb * 1024:,} (KiB, 1024 bytes): compare the bytes with budget_kb × 1000"
            )
        elif got == plain:
            raise_msg = (
                f"for {k} tasks with {kb} kB per task you kept recommend()'s {plain!r}, but a LoRA "
                f"adapter needs {lora_kb:,.0f} kB: apply the storage rule"
            )
        elif k == 1 and want == plain:
            raise_msg = (
                "the storage rule is for many tasks sharing one base (n_tasks > 1); one task keeps "
                "recommend()'s answer"
            )
        elif plain not in ("LoRA", "QLoRA") and want == plain:
            raise_msg = (
                f"recommend() says {plain!r} here; the rule only replaces LoRA/QLoRA (it is about adapter "
                "storage), so keep the earlier rules' answer"
            )
        elif want == "prompt tuning":
            raise_msg = (
                f"a 20-token soft prompt takes {prompt_bytes(hidden) / 1000:,.0f} kB in bf16 "
                f"(20 × hidden × 2 bytes) and fits {kb} kB: recommend 'prompt tuning'"
            )
        else:
            raise_msg = (
                f"expected {want!r}: check the sizes in bytes (bf16 = 2 bytes; LoRA q,v: layers × 2 × r × "
                f"2·hidden) against budget_kb × 1000"
            )
        expect(False, f"case {case}: got {got!r}. {raise_msg}")
