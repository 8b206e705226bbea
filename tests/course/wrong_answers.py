"""Realistic wrong answers for the exercise checkers, and how many are caught and named.

Each tests/course/test_checkers_chNN.py lists its own `WRONG_ANSWERS`: a wrong student answer, the
check it goes to and the words its message must contain to "name" the mistake. A test in each file
asserts every one is caught (the check fails, and not as "not done yet") and named.

    python -m tests.course.wrong_answers          # caught / named per chapter and in total

(issue 18: the target is ≥ 95 % caught and ≥ 90 % named.)
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from course_lib.course.checks import NOT_DONE, CheckFailed


@dataclass
class Wrong:
    """One wrong answer: `check(*args)` must fail with a message containing one of `names`."""

    mistake: str  # what the student did, in a few words (the test id)
    check: Callable
    args: Sequence[Any]
    names: tuple[str, ...]  # any of these words (case-insensitive) names the mistake
    kwargs: dict = field(default_factory=dict)

    @property
    def exercise(self) -> str:
        return getattr(self.check, "exercise_id", "?").split()[0]

    def run(self) -> tuple[bool, bool, str]:
        """(caught, named, message)."""
        previous = os.environ.get("COURSE_CHECKS")
        os.environ["COURSE_CHECKS"] = "raise"
        try:
            args = [a() if isinstance(a, Fresh) else a for a in self.args]
            self.check(*args, **self.kwargs)
        except CheckFailed as error:
            message = str(error)
            caught = NOT_DONE not in message
            named = caught and any(n.lower() in message.lower() for n in self.names)
            return caught, named, message
        finally:
            if previous is None:
                os.environ.pop("COURSE_CHECKS", None)
            else:
                os.environ["COURSE_CHECKS"] = previous
        return False, False, "passed (not caught)"


class Fresh:
    """An argument built anew for every run (a class, a model): Fresh(lambda: ...)."""

    def __init__(self, make: Callable[[], Any]):
        self.make = make

    def __call__(self) -> Any:
        return self.make()


def assert_caught_and_named(wrong: Wrong) -> None:
    """The test each chapter's file runs on each of its wrong answers."""
    caught, named, message = wrong.run()
    assert caught, f"{wrong.exercise} '{wrong.mistake}' was not caught: {message}"
    assert named, (
        f"{wrong.exercise} '{wrong.mistake}': the message should name the mistake "
        f"(one of {wrong.names}), got: {message}"
    )


def chapters() -> list[str]:
    """The chapter test modules that list wrong answers."""
    here = Path(__file__).parent
    return [p.stem for p in sorted(here.glob("test_checkers_ch*.py"))]


def main(argv: list[str] | None = None) -> int:
    """Print caught / named counts per chapter and in total; list what slips through."""
    verbose = "-v" in (argv or sys.argv[1:])
    total_n = total_caught = total_named = 0
    for name in chapters():
        module = importlib.import_module(f"tests.course.{name}")
        answers = getattr(module, "WRONG_ANSWERS", [])
        caught = named = 0
        for wrong in answers:
            c, n, message = wrong.run()
            caught, named = caught + c, named + n
            if verbose and not n:
                print(
                    f"  {'MISSED' if not c else 'UNNAMED'} {wrong.exercise} {wrong.mistake}: "
                    f"{message[:160]}"
                )
        total_n, total_caught, total_named = (
            total_n + len(answers),
            total_caught + caught,
            total_named + named,
        )
        print(f"{name[-4:]}: {len(answers):3d} wrong answers, caught {caught}, named {named}")
    if total_n:
        print(
            f"total: {total_n} wrong answers, caught {total_caught} ({total_caught / total_n:.0%}), "
            f"named {total_named} ({total_named / total_n:.0%})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
