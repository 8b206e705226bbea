"""The checker framework behind the exercise check cells: `@check` plus a few `expect_*` helpers.

Used by every chapter's exercises. A chapter's check module reads like this:

    @check("01.2 unigram cross-entropy")
    def check_unigram(student_fn):
        expect(callable(student_fn), "pass your function itself, not its result")
        expect_close(student_fn([[1, 2]], [[1]], 3), 0.9163, tol=1e-3, what="the cross-entropy",
                     hints={1.0986: "you forgot the add-one smoothing"})

A passing check prints "✔ <id>: passed". A failing one says "✘ <id>: what is wrong" in one
line and nothing more: in a notebook kernel it prints that line (stderr, shown in red) and returns
False, so "Run All" goes on to the next exercise; elsewhere (scripts, pytest) it raises
CheckFailed with that message, and IPython shows a raised CheckFailed as that one line too
(`_render_traceback_`), never the checker's code (which holds the reference answer).
`COURSE_CHECKS=raise` or `=report` in the environment overrides the choice. An unfinished
exercise (its NotImplementedError reached the check, even inside a checker's own `except`) says
"not done yet". Every result goes into RESULTS.

For the instructor's grader (course_lib.course.grading) there are three more hooks, used only by
the cells it injects: `arm_grading` (run before any student code: remembers the checker
functions), `graded` (a `with` block around one check call: collects its result and notices a
replaced checker) and `sign` (emits that result as display data signed with a one-time key the
grader sends only in that cell). The grader trusts nothing else: not printed lines, not files.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import hashlib
import hmac
import json
import numbers
import os
import sys
import traceback
import types
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

SIGNED_MIME = "application/vnd.course.check-result+json"
NOT_DONE = "not done yet — replace the raise NotImplementedError with your code"


class CheckFailed(AssertionError):
    """A check found a mistake; the message tells the student what is wrong."""

    def _render_traceback_(self) -> list[str]:
        """What IPython shows for it: the message alone, no traceback through the checker."""
        return str(self).splitlines() or [type(self).__name__]


def failures_raise() -> bool:
    """Whether a failing check raises CheckFailed (scripts, tests) rather than reporting it.

    In a notebook kernel it reports (prints the ✘ line, returns False) so that the next cells
    still run; COURSE_CHECKS=raise or COURSE_CHECKS=report in the environment decides instead.
    """
    mode = os.environ.get("COURSE_CHECKS", "auto").strip().lower()
    if mode in ("raise", "report"):
        return mode == "raise"
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    return get_ipython is None or get_ipython() is None


def _unfinished(error: BaseException) -> bool:
    """Whether a NotImplementedError (an exercise stub) is in the chain behind `error`."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, NotImplementedError):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


_LIBRARY_PARTS = ("course_lib", "site-packages", "dist-packages", f"python{sys.version_info[0]}.")


def _where(error: BaseException) -> str:
    """' (your line: `code`)' for the innermost frame of the student's own code, or ''."""
    frames = traceback.extract_tb(error.__traceback__)
    own = [f for f in frames if not any(part in f.filename for part in _LIBRARY_PARTS)]
    if not own or not own[-1].line:
        return ""
    return f" (in your code, line {own[-1].lineno}: `{own[-1].line.strip()[:100]}`)"


class Result(NamedTuple):
    """One run of a check: which exercise, whether it passed, the message shown."""

    exercise: str
    passed: bool
    message: str


RESULTS: list[Result] = []


def _record(exercise: str, passed: bool, message: str) -> None:
    """Append a result to RESULTS (and to the grader's collection inside a `graded` block)."""
    result = Result(exercise, passed, message)
    RESULTS.append(result)
    _collect(result)


_GONE = object()
# What the checks lean on, "module" or "module:Class" -> the attributes watched (None: all).
# A replaced one is reported for review only: libraries patch some functions themselves (torch's
# compiler wraps torch.manual_seed), so the list stays with what comparisons go through.
# The checker modules themselves are checked in full, and strictly.
WATCHED: dict[str, list[str] | None] = {
    "builtins": None,
    "math": None,
    "torch": ["allclose", "equal", "isclose", "as_tensor", "tensor", "is_tensor", "linalg"],
    "torch:Tensor": ["__eq__", "__ne__", "__float__", "__bool__", "tolist", "item", "allclose"],
    "numpy": ["allclose", "isclose", "array_equal", "asarray"],
}


def _objects(names: dict[str, list[str] | None] | list[str]) -> dict[str, object]:
    """'name.attr' -> object for the attributes of the named modules or classes (and their code);
    a dict gives the attributes to take (None: all of them)."""
    wanted = names if isinstance(names, dict) else dict.fromkeys(names)
    found: dict[str, object] = {}
    for name, attrs in wanted.items():
        module_name, _, class_name = name.partition(":")
        holder = sys.modules.get(module_name)
        if holder is not None and class_name:
            holder = getattr(holder, class_name, None)
        if holder is None:
            continue
        found[name] = holder
        namespace = vars(holder)
        for attr in namespace if attrs is None else [a for a in attrs if a in namespace]:
            value = namespace[attr]
            if holder is builtins and (attr.startswith("_") or attr == "input"):
                continue  # IPython rebinds _, __, ___ and input for every cell
            found[f"{name}.{attr}"] = value
            if isinstance(value, types.FunctionType):  # the code too, and a @check's inner one
                found[f"{name}.{attr}.__code__"] = value.__code__
                inner = vars(value).get("__wrapped__")
                if isinstance(inner, types.FunctionType):
                    found[f"{name}.{attr}.__wrapped__.__code__"] = inner.__code__
    return found


def _replaced(pristine: dict[str, object], names) -> list[str]:
    """Keys of `pristine` whose object is now a different one, or gone."""
    now = _objects(names)
    return sorted(key for key, value in pristine.items() if now.get(key, _GONE) is not value)


def _grading_hooks():
    """arm_grading, graded and sign, sharing one private state (a closure, not module globals)."""
    state: dict = {"collect": None, "last": None, "checkers": [], "pristine": {}, "watched": {}}

    def collect(result: Result) -> None:
        if state["collect"] is not None:
            state["collect"].append(result)

    def arm_grading(checker_modules: list[str]) -> None:
        """Import the checkers and remember every function of them (the grader runs this first)."""
        for name in checker_modules:
            __import__(name)
        state["checkers"] = [__name__, *checker_modules]
        state["pristine"] = _objects(state["checkers"])
        state["watched"] = _objects(WATCHED)

    def tampering() -> tuple[list[str], list[str]]:
        """(replaced checker objects, replaced library functions) since arm_grading."""
        return _replaced(state["pristine"], state["checkers"]), _replaced(state["watched"], WATCHED)

    @contextlib.contextmanager
    def graded(exercise: str) -> Iterator[None]:
        """Collect the result of the check call inside the block, for `sign`."""
        if not state["pristine"]:
            raise RuntimeError("graded() needs arm_grading() first (the grader runs both)")
        before = tampering()
        state["collect"], finished = [], False
        try:
            yield
            finished = True
        except CheckFailed:
            finished = True
            raise
        finally:
            collected, state["collect"] = state["collect"], None
            after = tampering()
            state["last"] = {
                "exercise": exercise,
                "results": [r._asdict() for r in collected],
                "finished": finished,
                "replaced": sorted(set(before[0]) | set(after[0])),
                "watched": sorted(set(before[1]) | set(after[1])),
            }

    def signed_record(key: str) -> dict:
        """The last `graded` block's record as {"body": json, "mac": HMAC-SHA256 with `key`}."""
        body = json.dumps(state["last"], sort_keys=True, ensure_ascii=False)
        state["last"] = None
        mac = hmac.new(key.encode(), body.encode(), hashlib.sha256).hexdigest()
        return {"body": body, "mac": mac}

    def sign(key: str) -> None:
        """Show the signed record of the last `graded` block as display data (the grader reads it)."""
        from IPython.display import display

        display({SIGNED_MIME: signed_record(key)}, raw=True)

    return collect, arm_grading, graded, signed_record, sign


_collect, arm_grading, graded, signed_record, sign = _grading_hooks()


def _fail(exercise_id: str, message: str, error: BaseException) -> bool:
    """Record a failed check, then raise CheckFailed(message) or, in a notebook, print it."""
    _record(exercise_id, False, message)
    if failures_raise():
        if isinstance(error, CheckFailed) and str(error) == message:
            raise error
        raise CheckFailed(message) from error
    print(message, file=sys.stderr)
    return False


def check(exercise_id: str) -> Callable:
    """Decorator for the exercise check cells: report ✔/✘ for `exercise_id` and record the result."""

    def decorate(check_fn: Callable) -> Callable:
        @functools.wraps(check_fn)
        def run(*args, **kwargs) -> bool:
            failure = f"✘ {exercise_id}: "
            try:
                check_fn(*args, **kwargs)
            except CheckFailed as error:
                if _unfinished(error):  # a checker's `except RuntimeError` met the stub
                    error = CheckFailed(failure + NOT_DONE)
                message = str(error)
                if not message.startswith("✘ "):  # not yet prefixed by a nested check
                    message = failure + message
                    error.args = (message,)
                return _fail(exercise_id, message, error)
            except NotImplementedError as error:
                return _fail(exercise_id, failure + NOT_DONE, error)
            except Exception as error:
                message = f"{failure}your code raised {type(error).__name__}: {error}"
                return _fail(exercise_id, message + _where(error), error)
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


def _snapshot(value: Any) -> Any:
    """A copy of a tensor / array / list / tuple / dict (nested) to compare with later; numbers
    and strings by value, other objects (models, tokenizers) by identity."""
    if hasattr(value, "detach") and hasattr(value, "clone"):
        return ("tensor", value.detach().clone())
    if type(value).__module__ == "numpy" and hasattr(value, "copy"):
        return ("array", value.copy())
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [_snapshot(v) for v in value], list(value))
    if isinstance(value, dict):
        return ("dict", {k: _snapshot(v) for k, v in value.items()}, dict(value))
    if isinstance(value, (int, float, str, bytes, bool)) or value is None:
        return ("value", value)
    return ("object", value)


def _unchanged(before: Any, value: Any) -> bool:
    """Whether `value` still equals its `_snapshot` (same shapes, values, items and keys)."""
    if before is None:
        return True
    kind = before[0]
    if kind in ("value", "object"):  # a number must stay equal, another object the same one
        return value == before[1] if kind == "value" else value is before[1]
    if kind == "tensor":
        import torch

        now = value.detach()
        old = before[1]
        return (
            now.shape == old.shape
            and now.dtype == old.dtype
            and bool(torch.equal(now.nan_to_num(0.0), old.nan_to_num(0.0)))
            if now.is_floating_point()
            else now.shape == old.shape and bool(torch.equal(now, old))
        )
    if kind == "array":
        import numpy as np

        return value.shape == before[1].shape and bool(np.array_equal(value, before[1]))
    if kind == "dict":
        return set(value) == set(before[1]) and all(
            _unchanged(before[1][k], value[k]) for k in value
        )
    return len(value) == len(before[1]) and all(_unchanged(b, v) for b, v in zip(before[1], value))


def call_unchanged(fn: Callable, *args: Any, names: tuple[str | None, ...] = ()) -> Any:
    """fn(*args), failing the check if fn changed one of its arguments in place.

    A function that edits its input (`x -= x.min()`, `w.add_(…)`, `labels[i] = …`,
    `rows.append(…)`) corrupts the caller's data: the next use of the same tensor is wrong.
    `names` names the positional arguments for the message (None: not watched).
    """
    watched = [
        (i, names[i] if i < len(names) else f"argument {i + 1}", _snapshot(a))
        for i, a in enumerate(args)
        if (i >= len(names) or names[i] is not None)
        and (isinstance(a, (list, tuple, dict)) or hasattr(a, "detach") or hasattr(a, "__array__"))
    ]
    out = fn(*args)
    for i, name, before in watched:
        if not _unchanged(before, args[i]):
            raise CheckFailed(
                f"your function changed its input {name} in place (an in-place operation such "
                "as `x -= …`, `x.add_(…)`, `x[i] = …` or `.append(…)` on the argument): the "
                f"caller's {name} must stay as it was; compute on a copy (`x = x - …`, "
                "`x.clone()`, `list(x)`)"
            )
    return out


def _no_stand_in(value: Any, what: str) -> None:
    """Fail if `value` (or an item of it) is an object of a class defined in the notebook itself.

    Such an object can claim to equal anything (an `__eq__` that returns True); an answer is a
    number, a string, a list, a tensor or an array.
    """
    if isinstance(value, Mapping):
        items = [*value.keys(), *value.values()]
    else:
        items = list(value) if isinstance(value, (list, tuple, set, frozenset)) else []
    for item in [value, *items]:
        if type(item).__module__ == "__main__":
            raise CheckFailed(
                f"expected {what} to be a number, string, list, tensor or array, got an object "
                f"of the class {type(item).__name__} defined in your notebook"
            )


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
    _no_stand_in(value, what)
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
    _no_stand_in(value, what)
    if value == target:
        return
    for wrong, diagnosis in _pairs(hints):
        if value == wrong:
            raise CheckFailed(
                f"{diagnosis} (expected {what} = {_short(target)}, got {_short(value)})"
            )
    raise CheckFailed(f"expected {what} = {_short(target)}, got {_short(value)}")
