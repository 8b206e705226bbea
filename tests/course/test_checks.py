"""Tests of course_lib.course.checks, the framework behind every exercise check cell."""

from __future__ import annotations

import hashlib
import hmac
import json

import numpy as np
import pytest
import torch

from course_lib.course import checks
from course_lib.course.checks import (
    RESULTS,
    CheckFailed,
    check,
    expect,
    expect_close,
    expect_equal,
    expect_shape,
)

UNIGRAM_HINTS = {
    1.0986: "you forgot the add-one smoothing",
    -0.9163: "the sign is flipped: cross-entropy is -mean log p",
}


@pytest.fixture(autouse=True)
def fresh_results():
    """Each test starts with an empty RESULTS."""
    RESULTS.clear()
    yield
    RESULTS.clear()


@check("01.2 unigram cross-entropy")
def check_unigram(student_fn):
    expect(callable(student_fn), "pass your function itself, not its result")
    out = student_fn([[1, 2]], [[1]], 3)
    expect_close(
        out, 0.9163, tol=1e-3, what="unigram cross-entropy of a tiny example", hints=UNIGRAM_HINTS
    )


def failure_message(check_fn, *args) -> str:
    """Run a check that must fail; return its message."""
    with pytest.raises(CheckFailed) as info:
        check_fn(*args)
    return str(info.value)


# --- @check ------------------------------------------------------------------------------------


def test_passing_check_prints_tick_returns_true_and_records(capsys):
    assert check_unigram(lambda *a: 0.91629) is True, "a passing check must return True"
    assert capsys.readouterr().out == "✔ 01.2 unigram cross-entropy: passed\n", (
        "a passing check must print exactly '✔ <id>: passed'"
    )
    assert RESULTS == [
        ("01.2 unigram cross-entropy", True, "✔ 01.2 unigram cross-entropy: passed")
    ], f"the pass must be recorded in RESULTS, got {RESULTS}"
    assert RESULTS[0].exercise == "01.2 unigram cross-entropy" and RESULTS[0].passed


def test_failing_check_prefixes_message_prints_nothing_and_records(capsys):
    message = failure_message(check_unigram, 0.9163)
    assert message == "✘ 01.2 unigram cross-entropy: pass your function itself, not its result", (
        f"a failed expect() must be re-raised with the '✘ <id>: ' prefix, got {message!r}"
    )
    assert capsys.readouterr().out == "", "a failing check must not print anything itself"
    assert RESULTS == [("01.2 unigram cross-entropy", False, message)], (
        f"the failure must be recorded with its message, got {RESULTS}"
    )


def test_check_failed_is_an_assertion_error():
    assert issubclass(CheckFailed, AssertionError), "CheckFailed must subclass AssertionError"


def test_not_implemented_error_means_not_done_yet():
    def unfinished(*args):
        raise NotImplementedError("Exercise: write your solution here")

    message = failure_message(check_unigram, unfinished)
    assert message == (
        "✘ 01.2 unigram cross-entropy: not done yet — "
        "replace the raise NotImplementedError with your code"
    ), f"an unfinished exercise must say 'not done yet', got {message!r}"
    assert RESULTS[-1].passed is False, "an unfinished exercise must be recorded as failed"


def test_student_exception_is_wrapped_with_its_type_and_cause():
    def buggy(*args):
        return {}["missing"]

    with pytest.raises(CheckFailed) as info:
        check_unigram(buggy)
    assert (
        str(info.value) == "✘ 01.2 unigram cross-entropy: your code raised KeyError: 'missing'"
    ), f"the student's exception must be named in the message, got {str(info.value)!r}"
    assert isinstance(info.value.__cause__, KeyError), (
        "the student's exception must be kept as __cause__ so its traceback is shown"
    )


def test_graded_block_collects_the_result_and_signs_it():
    checks.arm_grading([__name__])
    with checks.graded("01.2 unigram cross-entropy"):
        check_unigram(lambda *a: 0.9163)
    record = checks.signed_record("one-time key")
    want_mac = hmac.new(b"one-time key", record["body"].encode(), hashlib.sha256).hexdigest()
    assert record["mac"] == want_mac, "the record must be signed with HMAC-SHA256 of the key"
    body = json.loads(record["body"])
    assert body["results"] == [
        {
            "exercise": "01.2 unigram cross-entropy",
            "passed": True,
            "message": "✔ 01.2 unigram cross-entropy: passed",
        }
    ], f"the graded block must collect the check's result, got {body}"
    assert body["finished"] and body["replaced"] == [], f"got {body}"


def test_graded_block_records_a_failure_and_lets_it_raise():
    checks.arm_grading([__name__])
    with pytest.raises(CheckFailed), checks.graded("01.2 unigram cross-entropy"):
        check_unigram(lambda *a: 1.0986)
    body = json.loads(checks.signed_record("k")["body"])
    assert [r["passed"] for r in body["results"]] == [False], f"got {body}"
    assert body["results"][0]["message"].startswith("✘ 01.2 unigram cross-entropy: you forgot")


def test_graded_block_notices_a_replaced_checker(monkeypatch):
    checks.arm_grading([__name__])
    monkeypatch.setattr(checks, "expect_close", lambda *args, **kwargs: None)
    with checks.graded("01.2 unigram cross-entropy"):
        check_unigram(lambda *a: 0.9163)
    body = json.loads(checks.signed_record("k")["body"])
    assert "course_lib.course.checks.expect_close" in body["replaced"], (
        f"a monkeypatched check helper must be reported, got {body['replaced']}"
    )


def test_an_object_that_equals_everything_does_not_pass():
    class AlwaysEqual:
        def __eq__(self, other):
            return True

    AlwaysEqual.__module__ = "__main__"  # as if defined in a notebook
    with pytest.raises(CheckFailed, match="class AlwaysEqual defined in your notebook"):
        expect_equal(AlwaysEqual(), 7, "the count")
    with pytest.raises(CheckFailed, match="class AlwaysEqual defined in your notebook"):
        expect_close([AlwaysEqual()], [1.0], 1e-6, "the values")


# --- expect_close on numbers -------------------------------------------------------------------


@pytest.mark.parametrize("wrong, diagnosis", list(UNIGRAM_HINTS.items()))
def test_hint_is_chosen_for_a_near_wrong_value(wrong, diagnosis):
    message = failure_message(check_unigram, lambda *a: wrong + 2e-4)
    assert message.startswith(f"✘ 01.2 unigram cross-entropy: {diagnosis}"), (
        f"a value close to {wrong} must be diagnosed as {diagnosis!r}, got {message!r}"
    )


def test_far_wrong_value_gets_expected_got_message():
    message = failure_message(check_unigram, lambda *a: 2.5)
    assert message == (
        "✘ 01.2 unigram cross-entropy: expected unigram cross-entropy of a tiny "
        "example ≈ 0.9163, got 2.5"
    ), f"got {message!r}"


@pytest.mark.parametrize(
    "value",
    [
        0.9163,
        0.9170,
        np.float32(0.9163),
        torch.tensor(0.9163),
        torch.tensor([0.9163], requires_grad=True),
    ],
)
def test_expect_close_accepts_numbers_within_tol(value):
    expect_close(value, 0.9163, tol=1e-3, what="the loss")


def test_expect_close_scalar_rejects_non_numbers():
    with pytest.raises(
        CheckFailed,
        match=r"expected the loss to be a single number, got a tensor "
        r"of shape \(3,\)",
    ):
        expect_close(torch.ones(3), 1.0, tol=1e-3, what="the loss")
    with pytest.raises(CheckFailed, match="expected the loss to be a single number, got NoneType"):
        expect_close(None, 1.0, tol=1e-3, what="the loss")


def test_expect_close_nan_fails():
    with pytest.raises(CheckFailed, match="got nan"):
        expect_close(float("nan"), 1.0, tol=1e-3, what="the loss")


# --- expect_close on tensors and arrays --------------------------------------------------------


def test_expect_close_tensor_passes_and_accepts_numpy():
    target = torch.tensor([[0.1, 0.2], [0.3, 0.4]])
    expect_close(target + 1e-5, target, tol=1e-4, what="the probabilities")
    expect_close(target.numpy(), target, tol=1e-4, what="the probabilities")
    expect_close(target, target.numpy(), tol=1e-4, what="the probabilities")


def test_expect_close_tensor_shape_mismatch_message():
    with pytest.raises(CheckFailed) as info:
        expect_close(torch.zeros(3, 2), torch.zeros(2, 3), tol=1e-4, what="the logits")
    assert str(info.value) == "expected the logits with shape (2, 3), got (3, 2)", (
        f"a wrong shape must be reported before any value, got {str(info.value)!r}"
    )


def test_expect_close_tensor_names_the_worst_entry():
    target = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(CheckFailed) as info:
        expect_close(torch.tensor([[1.0, 2.0], [3.0, 5.0]]), target, tol=1e-3, what="the logits")
    assert str(info.value) == (
        "expected the logits ≈ the reference values within 0.001, "
        "but at index (1, 1) got 5 instead of 4"
    ), f"got {str(info.value)!r}"


def test_expect_close_tensor_hints_as_list_of_pairs():
    target = torch.tensor([0.2, 0.3, 0.5])
    unnormalised = torch.tensor([2.0, 3.0, 5.0])
    hints = [(unnormalised, "you forgot to normalise"), (0.0, "everything is zero")]
    with pytest.raises(CheckFailed, match="^you forgot to normalise"):
        expect_close(unnormalised, target, tol=1e-4, what="the probabilities", hints=hints)
    with pytest.raises(CheckFailed, match="^everything is zero"):
        expect_close(torch.zeros(3), target, tol=1e-4, what="the probabilities", hints=hints)


# --- expect_shape and expect_equal -------------------------------------------------------------


def test_expect_shape():
    expect_shape(torch.zeros(4, 7), (4, 7), what="the batch")
    expect_shape(torch.zeros(4, 7), (None, 7), what="the batch")
    with pytest.raises(CheckFailed) as info:
        expect_shape(torch.zeros(4, 7), (4, 8), what="the batch")
    assert str(info.value) == "expected the batch with shape (4, 8), got (4, 7)", (
        f"got {info.value}"
    )
    with pytest.raises(CheckFailed, match="expected the batch to be a tensor with shape"):
        expect_shape([1, 2], (2,), what="the batch")


def test_expect_equal():
    expect_equal("Paris", "Paris", what="the answer")
    expect_equal(torch.tensor([1, 2]), [1, 2], what="the token ids")
    with pytest.raises(CheckFailed) as info:
        expect_equal(
            [2, 1], [1, 2], what="the token ids", hints=[([2, 1], "the order is reversed")]
        )
    assert str(info.value) == (
        "the order is reversed (expected the token ids = [1, 2], got [2, 1])"
    ), f"got {str(info.value)!r}"
    with pytest.raises(CheckFailed) as info:
        expect_equal("paris", "Paris", what="the answer")
    assert str(info.value) == "expected the answer = 'Paris', got 'paris'", (
        f"got {str(info.value)!r}"
    )
