"""Checks for the chapter 17 exercises (temperature-scaled KL, TIES merging, n-gram decontamination).

Each check runs the student's code on cases where the common mistakes give a recognisably
wrong answer, and names the mistake.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from course_lib.course.checks import check, expect, expect_close, expect_equal


def kl_case() -> tuple[torch.Tensor, torch.Tensor]:
    """Student and teacher logits [2, 3, 7] where the usual mistakes change the answer."""
    gen = torch.Generator().manual_seed(17)
    student = torch.randn(2, 3, 7, generator=gen)
    teacher = torch.randn(2, 3, 7, generator=gen) * 3
    return student, teacher


def _kl(p_logits, q_logits, T_p, T_q):
    """Mean over positions of KL(softmax(p/T_p) ‖ softmax(q/T_q))."""
    log_p, log_q = F.log_softmax(p_logits / T_p, -1), F.log_softmax(q_logits / T_q, -1)
    return (log_p.exp() * (log_p - log_q)).sum(-1).mean()


@check("17.1 temperature-scaled KL")
def check_temperature_kl(student_fn) -> None:
    """The student's temperature_kl(student_logits, teacher_logits, T) -> T²·KL(teacher ‖ student)."""
    expect(callable(student_fn), "pass your function itself, not its result")
    s, t = kl_case()
    for T in (2.0, 4.0, 1.0):
        got = student_fn(s.clone(), t.clone(), T)
        expect(
            torch.is_tensor(got) and got.dim() == 0, "return one number: a 0-dim tensor (the mean)"
        )
        want = T**2 * _kl(t, s, T, T)
        hints = [
            (
                _kl(t, s, T, T),
                "the loss is missing the T² factor (the gradient would shrink as 1/T²)",
            ),
            (
                T**2 * _kl(s, t, T, T),
                "that is KL(student ‖ teacher): distillation uses KL(teacher ‖ student)",
            ),
            (
                T**2 * _kl(t, s, T, 1.0),
                "divide the student's logits by T too, not only the teacher's",
            ),
            (
                T**2 * _kl(t, s, 1.0, T),
                "divide the teacher's logits by T too, not only the student's",
            ),
            (T * _kl(t, s, T, T), "the factor is T², not T"),
            (
                T**2 * _kl(t, s, T, T) * 6,
                "average over the positions (batch × sequence), do not sum",
            ),
            (
                T**2 * _kl(t, s, T, T) * 7,
                "sum the KL over the vocabulary, then average over positions",
            ),
        ]
        expect_close(
            float(got),
            float(want),
            tol=1e-4,
            what=f"the loss at T = {T}",
            hints=[(float(v), m) for v, m in hints],
        )
    x = s.clone().requires_grad_()
    student_fn(x, t, 2.0).backward()
    expect(
        x.grad is not None and x.grad.abs().sum() > 0,
        "the loss must be differentiable in the student's logits",
    )


def ties_case() -> tuple[list[torch.Tensor], list[float]]:
    """Three task vectors with sign conflicts, and weights that differ."""
    gen = torch.Generator().manual_seed(170)
    tensors = [torch.randn(5, 8, generator=gen) for _ in range(3)]
    tensors[2] = tensors[2] * 3  # a big task vector: weighted and unweighted sign votes differ
    return tensors, [1.0, 0.8, 0.3]


@check("17.2 TIES merge")
def check_ties_merge(student_fn) -> None:
    """The student's ties_merge(tensors, weights, density) equals peft's `merge_utils.ties`."""
    from peft.utils import merge_utils

    from course_lib import merging

    expect(callable(student_fn), "pass your function itself, not its result")
    tensors, weights = ties_case()
    for density in (0.3, 0.6, 1.0):
        got = student_fn([t.clone() for t in tensors], list(weights), density)
        want = merge_utils.ties(tensors, torch.tensor(weights), density, "total")
        expect(
            torch.is_tensor(got) and got.shape == want.shape,
            f"return one tensor of the task vectors' shape {tuple(want.shape)}",
        )
        stacked = torch.stack([merging.trim(t, density) for t in tensors])
        w = torch.tensor(weights).view(-1, 1, 1)
        agree_weighted = merging.elect_sign(stacked * w)
        hints = [
            (
                merging.task_arithmetic([merging.trim(t, density) for t in tensors], weights),
                "you summed all trimmed values: keep only those that agree with the elected sign, and "
                "average them (disjoint merge)",
            ),
            (
                (stacked * w * merging.elect_sign(stacked)).sum(0),
                "the disjoint merge averages the agreeing values: divide by how many agree (at least 1)",
            ),
            (
                merging.disjoint_merge(stacked * w, agree_weighted),
                "elect the sign on the trimmed task vectors before weighting them (as peft does)",
            ),
            (
                merging.disjoint_merge(
                    torch.stack(tensors) * w, merging.elect_sign(torch.stack(tensors))
                ),
                "trim first: keep the `density` share of each task vector's largest |values|",
            ),
        ]
        expect_close(got, want, tol=1e-5, what=f"the merge at density {density}", hints=hints)


N_GRAM = 6


def contamination_case() -> tuple[list[str], list[str]]:
    """Training texts and evaluation texts where the usual mistakes flag different texts."""
    evals = [
        "What is the capital of Norland, where Ada Finch lives?",
        "Count down from 9 to 3.",
        "Name a pet.",
    ]
    texts = [
        "what is the CAPITAL of norland!",  # case and punctuation do not hide a leak
        "Tell me: what is the capital of Norland, please",  # the 6-gram sits inside a longer text
        "What is the capital of Eastvale?",  # five words in common are not six
        "Count down from 9 to 3",
        "Count down from 9 to 4.",
        "name a pet",  # shorter than n: the whole text is its one gram
    ]
    return texts, evals


def _grams(words: list[str], n: int, short_rule: bool = True) -> set:
    if len(words) <= n:
        return {tuple(words)} if words and short_rule else set()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def _flags(texts, evals, n, split, short_rule=True) -> list[bool]:
    seen = set().union(*(_grams(split(e), n, short_rule) for e in evals))
    return [bool(_grams(split(t), n, short_rule) & seen) for t in texts]


@check("17.3 n-gram decontamination")
def check_contaminated(student_fn) -> None:
    """The student's contaminated(texts, eval_texts, n) -> one bool per text."""
    from course_lib.synthetic import normalize

    expect(callable(student_fn), "pass your function itself, not its result")
    texts, evals = contamination_case()
    got = student_fn(list(texts), list(evals), N_GRAM)
    expect(
        isinstance(got, (list, tuple)) and len(got) == len(texts),
        f"return a list with one True/False per training text ({len(texts)})",
    )
    got = [bool(g) for g in got]
    words = lambda t: normalize(t).split()  # noqa: E731
    want = _flags(texts, evals, N_GRAM, words)
    hints = [
        (
            _flags(texts, evals, N_GRAM, str.split),
            "normalize first: lower case, keep only words and numbers",
        ),
        (
            _flags(texts, evals, N_GRAM, words, short_rule=False),
            "a text shorter than n words counts as one gram of its whole text, so an exact copy of "
            "a short evaluation prompt is caught",
        ),
        (
            [False] * len(texts),
            "compare word n-grams of each text with those of the evaluation texts",
        ),
        ([True] * len(texts), "two texts overlap only if they share a whole n-gram"),
    ]
    expect_equal(got, want, what="which texts overlap the evaluation set", hints=hints)
