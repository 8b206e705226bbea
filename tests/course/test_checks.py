"""Tests of course_lib.course.checks, the framework behind every exercise check cell."""

from __future__ import annotations

import hashlib
import hmac
import json
import os

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
from course_lib.data import ROOT

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
    assert str(info.value).startswith(
        "✘ 01.2 unigram cross-entropy: your code raised KeyError: 'missing' (in your code, line "
    ), f"the student's exception must be named in the message, got {str(info.value)!r}"
    assert str(info.value).endswith('`return {}["missing"]`)'), (
        f"the message must quote the student's failing line, got {str(info.value)!r}"
    )
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


# --- what a student sees in a notebook (issue 18, item 8) ---------------------------------------


def test_failing_check_reports_one_line_without_raising_in_a_notebook(monkeypatch, capsys):
    monkeypatch.setenv("COURSE_CHECKS", "report")
    assert check_unigram(lambda *a: 1.0986) is False, "a failing check in a notebook returns False"
    captured = capsys.readouterr()
    assert captured.err == (
        "✘ 01.2 unigram cross-entropy: you forgot the add-one smoothing "
        "(expected unigram cross-entropy of a tiny example ≈ 0.9163, got 1.0986)\n"
    ), f"a failing check must print exactly its one ✘ line (stderr), got {captured!r}"
    assert captured.out == "", f"nothing else may be printed, got {captured.out!r}"
    assert RESULTS[-1].passed is False, "the failure must still be recorded"


def test_unfinished_check_reports_not_done_without_raising_in_a_notebook(monkeypatch, capsys):
    monkeypatch.setenv("COURSE_CHECKS", "report")

    def unfinished(*args):
        raise NotImplementedError("Exercise: write your solution here")

    assert check_unigram(unfinished) is False
    assert "not done yet" in capsys.readouterr().err


def test_checks_raise_outside_a_kernel_and_report_inside_one(monkeypatch):
    monkeypatch.delenv("COURSE_CHECKS", raising=False)
    assert checks.failures_raise(), "outside IPython (pytest, scripts) a failing check raises"

    class Shell:  # stands in for a running kernel
        pass

    ipython = pytest.importorskip("IPython")
    monkeypatch.setattr(ipython, "get_ipython", lambda: Shell())
    assert not checks.failures_raise(), "inside a kernel a failing check must not raise"
    monkeypatch.setenv("COURSE_CHECKS", "raise")
    assert checks.failures_raise(), "COURSE_CHECKS=raise must win over the kernel"


def test_ipython_renders_a_check_failure_as_its_message_only():
    message = failure_message(check_unigram, lambda *a: 1.0986)
    try:
        check_unigram(lambda *a: 1.0986)
    except CheckFailed as error:
        rendered = error._render_traceback_()
    assert rendered == [message], f"IPython must show the one message only, got {rendered}"
    assert not any("expect_close" in line or "Traceback" in line for line in rendered)


def test_ipython_shell_shows_no_checker_source(capsys):
    """A real IPython shell running a failing check shows one line, not the checker's code."""
    shell_module = pytest.importorskip("IPython.core.interactiveshell")
    shell = shell_module.InteractiveShell.instance()
    try:
        shell.user_ns["check_unigram"] = check_unigram
        shell.run_cell("import os; os.environ['COURSE_CHECKS'] = 'raise'")
        shell.run_cell("check_unigram(lambda *a: 1.0986)")
        raised = capsys.readouterr()
        shell.run_cell("os.environ['COURSE_CHECKS'] = 'auto'")
        result = shell.run_cell("ok = check_unigram(lambda *a: 1.0986)")
        reported = capsys.readouterr()
    finally:
        os.environ.pop("COURSE_CHECKS", None)
        shell_module.InteractiveShell.clear_instance()
    shown = raised.out + raised.err
    assert "you forgot the add-one smoothing" in shown, f"the message must be shown: {shown!r}"
    for leak in ("expect_close", "UNIGRAM_HINTS", "Traceback", "check_fn(*args"):
        assert leak not in shown, f"a raised check failure shows checker code ({leak!r}):\n{shown}"
    assert result.error_in_exec is None, "in a shell (auto mode) a failing check must not raise"
    assert shell.user_ns["ok"] is False
    assert reported.err.startswith("✘ 01.2 unigram cross-entropy: you forgot"), reported


def test_stub_behind_a_checkers_runtime_error_handler_says_not_done():
    @check("99.1 merge")
    def check_merge(student_fn):
        try:
            student_fn()
        except RuntimeError as error:  # NotImplementedError is a RuntimeError
            raise CheckFailed(f"a shape mismatch ({error})") from None

    def stub():
        raise NotImplementedError("Exercise: write your solution here")

    message = failure_message(check_merge, stub)
    assert message == "✘ 99.1 merge: " + checks.NOT_DONE, (
        f"an untouched exercise must be told 'not done yet', not a shape mismatch: {message!r}"
    )
    assert "shape mismatch" in failure_message(check_merge, lambda: torch.ones(2) @ torch.ones(3))


def test_graded_block_records_a_reported_failure(monkeypatch):
    monkeypatch.setenv("COURSE_CHECKS", "report")
    checks.arm_grading([__name__])
    with checks.graded("01.2 unigram cross-entropy"):
        assert check_unigram(lambda *a: 1.0986) is False
    body = json.loads(checks.signed_record("k")["body"])
    assert body["finished"] and [r["passed"] for r in body["results"]] == [False], body


# --- every untouched exercise of the course says "not done yet" --------------------------------


def _untouched_checks(path):
    """(check call, message) for each check of an untouched exercises notebook whose arguments
    are functions or classes (its definition cells are run, nothing else but the first cell)."""
    import ast

    import nbformat

    cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    definitions = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)
    namespace: dict = {}
    for n, cell in enumerate(cells):
        if n == 0 or all(isinstance(s, definitions) for s in ast.parse(cell.source).body):
            exec(compile(cell.source, str(path), "exec"), namespace)  # a class stub must not raise
    found = []
    for cell in cells:
        for stmt in ast.parse(cell.source).body:
            call = getattr(stmt, "value", None)
            func = getattr(call, "func", None)
            if not (isinstance(func, ast.Attribute) and func.attr.startswith("check_")):
                continue
            names = {n.id for a in call.args for n in ast.walk(a) if isinstance(n, ast.Name)}
            if names <= set(namespace):  # not a result computed by an experiment cell
                before = len(RESULTS)
                shown = eval(compile(ast.Expression(call), str(path), "eval"), namespace)
                assert shown is False and len(RESULTS) == before + 1, ast.unparse(call)
                found.append((ast.unparse(call), RESULTS[-1].message))
    return found


@pytest.mark.parametrize(
    "path",
    sorted((ROOT / "exercises").glob("*_exercises.ipynb")),
    ids=lambda p: p.name[:2],
)
def test_untouched_exercises_say_not_done_and_do_not_stop_the_notebook(path, monkeypatch):
    monkeypatch.setenv("COURSE_CHECKS", "report")
    found = _untouched_checks(path)
    assert found, f"{path.name}: no check could be called on the untouched stubs"
    wrong = [f"{call}: {message}" for call, message in found if checks.NOT_DONE not in message]
    assert not wrong, "an untouched exercise must be told 'not done yet':\n" + "\n".join(wrong)


# --- inputs changed in place --------------------------------------------------------------------


@check("99.2 merge")
def check_pure_merge(student_fn):
    w, a = torch.ones(2, 2), torch.full((2, 2), 0.5)
    expect_close(checks.call_unchanged(student_fn, w, a, names=("W", "A")), w + a, 1e-6, "W + A")


def test_call_unchanged_names_an_argument_changed_in_place():
    assert check_pure_merge(lambda w, a: w + a)
    message = failure_message(check_pure_merge, lambda w, a: w.add_(a))
    assert "changed its input W in place" in message, message
    rows = [{"ids": [1, 2]}]

    def appends(r):
        r[0]["ids"].append(3)
        return r

    with pytest.raises(CheckFailed, match="changed its input rows in place"):
        checks.call_unchanged(appends, rows, names=("rows",))
    assert checks.call_unchanged(lambda r: [dict(x) for x in r], rows, names=("rows",)) == rows
    with pytest.raises(CheckFailed, match="changed its input x in place"):
        checks.call_unchanged(lambda x: x.__setitem__(0, 7), np.zeros(3), names=("x",))
    assert (
        checks.call_unchanged(lambda x, k: x * k, torch.ones(2), 3, names=("x", None)) is not None
    )
