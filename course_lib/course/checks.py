"""The checker framework behind the exercise check cells: `@check` plus a few `expect_*` helpers.

Used by every chapter's exercises. A chapter's check module reads like this:

    @check("01.2 unigram cross-entropy")
    def check_unigram(student_fn):
        expect(callable(student_fn), "pass your function itself, not its result")
        expect_close(student_fn([[1, 2]], [[1]], 3), 0.9163, tol=1e-3, what="the cross-entropy",
                     hints={1.0986: "you forgot the add-one smoothing"})

A passing check prints "✔ <id>: passed"; a failing one raises CheckFailed("✘ <id>: what is
wrong"). Every result goes into RESULTS and, when COURSE_CHECK_LOG names a file, into that
file as one JSON line (read by the instructor's grading tool).
"""

from __future__ import annotations

import functools
import json
import numbers
import os
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

LOG_ENV = "COURSE_CHECK_LOG"
NOT_DONE = "not done yet — replace the raise NotImplementedError with your code"


class CheckFailed(AssertionError):
    """A check found a mistake; the message tells the student what is wrong."""


class Result(NamedTuple):
    """One run of a check: which exercise, whether it passed, the message shown."""

    exercise: str
    passed: bool
    message: str


RESULTS: list[Result] = []


def _record(exercise: str, passed: bool, message: str) -> None:
    """Append a result to RESULTS and, if COURSE_CHECK_LOG is set, to that JSON-lines file."""
    RESULTS.append(Result(exercise, passed, message))
    log_path = os.environ.get(LOG_ENV)
    if log_path:
        with open(log_path, "a", encoding="utf-8") as log:
            line = {"exercise": exercise, "passed": passed, "message": message}
            log.write(json.dumps(line, ensure_ascii=False) + "\n")


def check(exercise_id: str) -> Callable:
    """Decorator for the exercise check cells: report ✔/✘ for `exercise_id` and record the result."""

    def decorate(check_fn: Callable) -> Callable:
        @functools.wraps(check_fn)
        def run(*args, **kwargs) -> bool:
            failure = f"✘ {exercise_id}: "
            try:
                check_fn(*args, **kwargs)
            except CheckFailed as error:
                message = str(error)
                if not message.startswith("✘ "):  # not yet prefixed by a nested check
                    message = failure + message
                    error.args = (message,)
                _record(exercise_id, False, message)
                raise
            except NotImplementedError as error:
                _record(exercise_id, False, failure + NOT_DONE)
                raise CheckFailed(failure + NOT_DONE) from error
            except Exception as error:
                message = f"{failure}your code raised {type(error).__name__}: {error}"
                _record(exercise_id, False, message)
                raise CheckFailed(message) from error
            message = f"✔ {exercise_id}: passed"
            _record(exercise_id, True, message)
            print(message)
            return True

        run.exercise_id = exercise_id
        return run

    return decorate


def expect(condition: Any, message: str) -> None:
    """Fail the check with `message` unless `condition` holds (used by the exercise check cells)."""
    if not condition:
        raise CheckFailed(message)


def _fmt(value: Any) -> str:
    """A number for messages: 6 significant digits for floats."""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _short(value: Any, limit: int = 200) -> str:
    """repr() cut to `limit` characters, for messages."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + " …"


def _pairs(hints: Mapping | list | None) -> list[tuple[Any, str]]:
    """Hints as (wrong value, diagnosis) pairs, given as a dict or a list of pairs."""
    if hints is None:
        return []
    return list(hints.items()) if isinstance(hints, Mapping) else list(hints)


def _as_tensor(value: Any, what: str):
    """`value` as a float64 CPU tensor (from a tensor, array, list or number)."""
    import torch

    try:
        return torch.as_tensor(value).detach().to("cpu", torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise CheckFailed(f"expected {what} to be a tensor, got {type(value).__name__}") from None


def _tensors_close(value, target, tol: float) -> bool:
    """Same shape (a 0-d target broadcasts) and every entry within `tol`."""
    import torch

    if target.dim() == 0:
        target = target.expand_as(value)
    return value.shape == target.shape and torch.allclose(value, target, rtol=0, atol=tol)


def _expect_close_scalar(value: Any, target: float, tol: float, what: str, hints) -> None:
    """expect_close for a single number."""
    try:
        number = float(value.detach() if hasattr(value, "detach") else value)
    except (TypeError, ValueError, RuntimeError):
        shape = getattr(value, "shape", None)
        got = f"a tensor of shape {tuple(shape)}" if shape is not None else type(value).__name__
        raise CheckFailed(f"expected {what} to be a single number, got {got}") from None
    if abs(number - target) <= tol:
        return
    for wrong, diagnosis in _pairs(hints):
        if abs(number - float(wrong)) <= tol:
            raise CheckFailed(f"{diagnosis} (expected {what} ≈ {_fmt(target)}, got {_fmt(number)})")
    raise CheckFailed(f"expected {what} ≈ {_fmt(target)}, got {_fmt(number)}")


def _expect_close_tensor(value: Any, target: Any, tol: float, what: str, hints) -> None:
    """expect_close for tensors and arrays: shape first, then every entry within tol."""
    import torch

    got, want = _as_tensor(value, what), _as_tensor(target, what)
    expect_shape(got, tuple(want.shape), what)
    if _tensors_close(got, want, tol):
        return
    for wrong, diagnosis in _pairs(hints):
        if _tensors_close(got, _as_tensor(wrong, what), tol):
            raise CheckFailed(f"{diagnosis} ({what} is not within {tol} of the expected values)")
    difference = (got - want).abs().nan_to_num(nan=float("inf"))
    index = tuple(int(i) for i in torch.unravel_index(difference.argmax(), want.shape))
    wrong, right = _fmt(got[index].item()), _fmt(want[index].item())
    if not index:  # a 0-d tensor
        raise CheckFailed(f"expected {what} ≈ {right}, got {wrong}")
    raise CheckFailed(
        f"expected {what} ≈ the reference values within {tol}, but at index {index} "
        f"got {wrong} instead of {right}"
    )


def expect_close(
    value: Any, target: Any, tol: float, what: str, hints: Mapping | list | None = None
) -> None:
    """Fail unless `value` ≈ `target` within `tol` (numbers, tensors, arrays); used by the check cells.

    `hints` maps a typical wrong value to its diagnosis, shown when `value` is close to it
    (for tensors, a list of (tensor, diagnosis) pairs).
    """
    if isinstance(target, numbers.Real) and not isinstance(target, bool):
        _expect_close_scalar(value, target, tol, what, hints)
    else:
        _expect_close_tensor(value, target, tol, what, hints)


def expect_shape(tensor: Any, shape: tuple[int | None, ...], what: str) -> None:
    """Fail unless `tensor` has `shape` (None matches any size); used by the exercise check cells."""
    wanted = tuple(shape)
    if not hasattr(tensor, "shape"):
        raise CheckFailed(
            f"expected {what} to be a tensor with shape {wanted}, got {type(tensor).__name__}"
        )
    got = tuple(tensor.shape)
    if len(got) != len(wanted) or any(w is not None and g != w for g, w in zip(got, wanted)):
        raise CheckFailed(f"expected {what} with shape {wanted}, got {got}")


def expect_equal(value: Any, target: Any, what: str, hints: Mapping | list | None = None) -> None:
    """Fail unless `value` == `target` exactly (strings, ints, lists); used by the exercise check cells."""
    if hasattr(value, "tolist"):  # tensors, arrays and NumPy scalars compare as plain Python values
        value = value.tolist()
    if value == target:
        return
    for wrong, diagnosis in _pairs(hints):
        if value == wrong:
            raise CheckFailed(
                f"{diagnosis} (expected {what} = {_short(target)}, got {_short(value)})"
            )
    raise CheckFailed(f"expected {what} = {_short(target)}, got {_short(value)}")
