"""Grade a folder of filled-in exercise notebooks: run each isolated, count only signed check results.

For instructors (README, "Grading exercises"): `make grade SUBMISSIONS=path/to/folder`, i.e.
`python -m course_lib.course.grading path/to/folder`. The folder holds one sub-folder per student
with that student's `NN_*_exercises.ipynb` files.

How a pass is established (the trust model is in the README):

1. Before any student code runs, the grader reads every reference notebook in the course's
   `exercises/` and imports the checkers, so it knows each check call and its exercise id.
2. Each notebook runs in a fresh kernel, in a sandbox (course_lib.course.sandbox): a private
   scratch folder, resource limits, and as root on Linux a private mount namespace and an
   unprivileged user that can neither write the course nor read other students' work.
3. The student's check calls are removed; the grader injects its own cells: first (before the
   student's code) one that imports the checkers and remembers their functions, then at each
   check a `with graded(id):` block around the reference check call, followed by a cell that
   signs the block's result with a fresh random key (HMAC-SHA256). That key exists only in the
   grader and in that one cell, which runs after the check has finished.
4. A check counts as passed only if its signing cell shows a record with a valid signature that
   says passed, the checker was not replaced meanwhile, and the check cell itself printed the
   pass without an error. Printed "✔ … passed" lines, files and unsigned outputs count for
   nothing; a forged record is flagged.
5. Code that touches the grading machinery is flagged "needs review" (course_lib.course.review),
   as are signs of tampering seen at run time.
"""

from __future__ import annotations

import argparse
import ast
import csv
import hashlib
import hmac
import json
import os
import re
import secrets
import sys
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path

import nbformat

from course_lib.course import review, sandbox
from course_lib.course.checks import NOT_DONE, SIGNED_MIME
from course_lib.data import ROOT

EXERCISES_DIR = ROOT / "exercises"
SOLUTIONS_DIR = ROOT / "solutions"
CHECK_CALL = re.compile(r"\b(ch\d\d)\.(check_\w+)\s*\(")
CHECK_LINE = re.compile(r"^\s*ch\d\d\.check_\w+\(.*\)\s*$")
PASS_LINE = re.compile(r"✔ \d\d\.\d+[^\n]*: passed")
SYMBOLS = {"passed": "✔", "failed": "✘", "not done": "·", "not run": "–"}
CHECKS_MODULE = "course_lib.course.checks"
CHECKERS_PACKAGE = "course_lib.course.checkers"


@dataclass
class NotebookGrade:
    """The outcome of one student's notebook: how the run ended, each exercise's status, flags."""

    student: str
    notebook: str
    run: str  # "ok", "errors", "timeout", "unreadable", "crashed", "unknown", "not graded"
    detail: str = ""
    seconds: float = 0.0
    exercises: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (status, message)
    review: list[str] = field(default_factory=list)  # "needs review" findings
    isolation: str = ""

    @property
    def score(self) -> tuple[int, int]:
        """(checks passed, checks expected)."""
        return sum(s == "passed" for s, _ in self.exercises.values()), len(self.exercises)


@dataclass
class CheckCall:
    """One check call of a reference notebook: `ch04.check_dora(dora_magnitude, dora_weight)`."""

    cell_id: str
    source: str
    module: str  # "ch04"
    exercise: str


@dataclass
class Reference:
    """A course exercises notebook as the grader needs it, read before any student code runs."""

    path: Path
    calls: list[CheckCall]
    code: list[list[str]]  # code cells of the exercises (and solutions) notebook, for review

    @property
    def exercises(self) -> list[str]:
        """Exercise ids in order, each once."""
        return list(dict.fromkeys(c.exercise for c in self.calls))

    @property
    def modules(self) -> list[str]:
        """Checker modules the notebook uses ("course_lib.course.checkers.ch04")."""
        return list(dict.fromkeys(f"{CHECKERS_PACKAGE}.{c.module}" for c in self.calls))


def _check_statements(source: str) -> list[tuple[ast.stmt, str, str]]:
    """Top-level statements `chNN.check_x(...)` of a cell: (statement, module, function)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    found = []
    for stmt in tree.body:
        call = stmt.value if isinstance(stmt, ast.Expr) else None
        func = call.func if isinstance(call, ast.Call) else None
        if (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and re.fullmatch(r"ch\d\d", func.value.id)
            and func.attr.startswith("check_")
        ):
            found.append((stmt, func.value.id, func.attr))
    return found


def load_reference(path: Path, solutions_dir: Path = SOLUTIONS_DIR) -> Reference:
    """Read a course exercises notebook: its check calls (with exercise ids) and its code."""
    nb = nbformat.read(path, as_version=4)
    calls = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for stmt, module, function in _check_statements(cell.source):
            checker = getattr(import_module(f"{CHECKERS_PACKAGE}.{module}"), function)
            calls.append(
                CheckCall(
                    cell.id, ast.get_source_segment(cell.source, stmt), module, checker.exercise_id
                )
            )
    code = [review.code_cells(nb)]
    solution = solutions_dir / path.name.replace("_exercises.ipynb", "_solutions.ipynb")
    if solution.exists():
        code.append(review.code_cells(nbformat.read(solution, as_version=4)))
    return Reference(path, calls, code)


def load_references(exercises_dir: Path = EXERCISES_DIR) -> dict[str, Reference]:
    """Every exercises notebook of the course, by file name."""
    solutions_dir = Path(exercises_dir).parent / "solutions"
    return {
        p.name: load_reference(p, solutions_dir)
        for p in sorted(Path(exercises_dir).glob("*_exercises.ipynb"))
    }


def reference_notebook(name: str, exercises_dir: Path = EXERCISES_DIR) -> Path | None:
    """The course's exercises notebook a submission belongs to: same file name, else same NN prefix."""
    exact = exercises_dir / name
    if exact.exists():
        return exact
    prefix = re.match(r"(\d\d)_", name)
    if prefix:
        matches = sorted(exercises_dir.glob(f"{prefix.group(1)}_*_exercises.ipynb"))
        if len(matches) == 1:
            return matches[0]
    return None


def expected_checks(reference: Path) -> list[str]:
    """Exercise ids checked by a reference notebook, in order."""
    return load_reference(reference).exercises


# --- preparing the notebook to run ---------------------------------------------------------


def strip_check_calls(source: str) -> str:
    """A cell without its top-level `chNN.check_x(...)` statements (the grader runs its own)."""
    statements = _check_statements(source)
    lines = source.splitlines(keepends=True)
    if statements:
        drop = {n for stmt, _, _ in statements for n in range(stmt.lineno - 1, stmt.end_lineno)}
    else:  # not parseable: drop lines that are a whole check call
        drop = {n for n, line in enumerate(lines) if CHECK_LINE.match(line)}
    return "".join(line for n, line in enumerate(lines) if n not in drop).strip("\n")


@dataclass
class Injected:
    """The grader's cells for one check call: ids, the one-time key, the exercise."""

    call: CheckCall
    check_id: str
    sign_id: str
    key: str


def _grader_cell(source: str, cell_id: str, role: str):
    cell = nbformat.v4.new_code_cell(source)
    cell.id, cell.metadata = cell_id, {"course_grader": role}
    return cell


def prepare(student_nb, reference: Reference) -> tuple[object, list[Injected], str]:
    """The notebook to run: the grader's first cell, the student's cells without check calls,
    and the grader's check and signing cells where the reference has its check calls.

    Returns (notebook, injected check cells, id of the first cell).
    """
    tag = secrets.token_hex(4)  # cell ids a student cannot guess
    checks = f"__import__({CHECKS_MODULE!r}, fromlist=['graded'])"
    prelude_id = f"grader-{tag}-start"
    cells = [_grader_cell(f"{checks}.arm_grading({reference.modules!r})", prelude_id, "start")]
    injected: list[Injected] = []

    def inject(call: CheckCall) -> None:
        n = len(injected)
        item = Injected(call, f"grader-{tag}-check-{n}", f"grader-{tag}-sign-{n}", "")
        item.key = secrets.token_hex(32)
        checker = f"__import__('{CHECKERS_PACKAGE}.{call.module}', fromlist=['check'])"
        statement = checker + call.source[len(call.module) :]
        body = "\n".join("    " + line for line in statement.splitlines())
        cells.append(
            _grader_cell(
                f"with {checks}.graded({call.exercise!r}):\n{body}", item.check_id, "check"
            )
        )
        cells.append(_grader_cell(f"{checks}.sign({item.key!r})", item.sign_id, "sign"))
        injected.append(item)

    by_cell: dict[str, list[CheckCall]] = {}
    for call in reference.calls:
        by_cell.setdefault(call.cell_id, []).append(call)
    done = set()
    for cell in student_nb.cells:
        cell_id = cell.get("id")
        if cell.cell_type == "code" and cell_id in by_cell and cell_id not in done:
            done.add(cell_id)
            rest = strip_check_calls(cell.source)
            if rest.strip():
                cell.source = rest
                cells.append(cell)
            for call in by_cell[cell_id]:
                inject(call)
        else:
            cells.append(cell)
    for cell_id, calls in by_cell.items():  # check cells the student deleted: at the end
        if cell_id not in done:
            for call in calls:
                inject(call)
    nb = nbformat.v4.new_notebook(metadata=student_nb.metadata)
    nb.cells = cells
    return nb, injected, prelude_id


# --- reading the results back ---------------------------------------------------------------


def _texts(cell) -> str:
    """All text a cell showed (streams, plain-text results, error messages)."""
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", "") or "")
        parts.append(str(out.get("data", {}).get("text/plain", "")))
        if out.get("output_type") == "error":
            parts.append(f"{out.get('ename')}: {out.get('evalue')}")
    return "".join(parts)


def _error(cell) -> str:
    """'Name: message' of the cell's error output, or ''."""
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            return f"{out.get('ename')}: {out.get('evalue', '')}"[:300]
    return ""


def _signed(cell, key: str) -> tuple[list[dict], int]:
    """(records with a valid signature, number of signed-looking outputs that fail) in a cell."""
    valid, forged = [], 0
    for out in cell.get("outputs", []):
        payload = out.get("data", {}).get(SIGNED_MIME)
        if payload is None:
            continue
        body, mac = (
            (payload.get("body"), payload.get("mac")) if isinstance(payload, dict) else ("", "")
        )
        want = hmac.new(key.encode(), str(body).encode(), hashlib.sha256).hexdigest()
        if isinstance(body, str) and isinstance(mac, str) and hmac.compare_digest(mac, want):
            valid.append(json.loads(body))
        else:
            forged += 1
    return valid, forged


def _names(keys: list[str]) -> str:
    """'ch04.expect_close, builtins.print' from fingerprint keys (code objects folded in)."""
    names = [
        k.split(".__code__")[0].split(".__wrapped__")[0].removeprefix(f"{CHECKERS_PACKAGE}.")
        for k in keys
    ]
    unique = list(dict.fromkeys(names))
    return ", ".join(unique[:4]) + (" …" if len(unique) > 4 else "")


def judge(item: Injected, check_cell, sign_cell) -> tuple[str, str, list[str]]:
    """(status, message, review flags) of one injected check from its two executed cells."""
    exercise, flags = item.call.exercise, []
    if check_cell is None or sign_cell is None:
        return "not run", "the notebook stopped before this check ran", flags
    records, forged = _signed(sign_cell, item.key)
    if forged:
        flags.append(f"{exercise}: an output imitating a signed check result (bad signature)")
    if not records:
        if sign_cell.get("execution_count") is None and not sign_cell.get("outputs"):
            return "not run", "the notebook stopped before this check ran", flags
        why = _error(sign_cell) or _error(check_cell) or "no signed result"
        return "failed", f"✘ {exercise}: the grader's check did not complete ({why})", flags
    if len(records) > 1 or records[0].get("exercise") != exercise:
        flags.append(f"{exercise}: more than one signed record, or one for another exercise")
        return "failed", f"✘ {exercise}: not graded: conflicting check records", flags
    record = records[0]
    if record.get("replaced"):
        names = _names(record["replaced"])
        flags.append(f"{exercise}: the check machinery was replaced at run time ({names})")
        return "failed", f"✘ {exercise}: not graded: the checker was changed ({names})", flags
    if record.get("watched"):
        names = _names(record["watched"])
        flags.append(f"{exercise}: library functions the checks use were replaced ({names})")
    results = [r for r in record.get("results", []) if r.get("exercise") == exercise]
    if not results and not record.get("finished"):  # it raised before the checker ran
        error = _error(check_cell)
        status = "not done" if error.startswith("NameError") else "failed"
        return status, f"✘ {exercise}: the check could not run: {error}", flags
    if len(results) != 1:
        flags.append(f"{exercise}: the check call did not report exactly one result")
        return "failed", f"✘ {exercise}: the check did not report a result", flags
    result = results[0]
    if result.get("passed") is True:
        if _error(check_cell) or f"✔ {exercise}: passed" not in _texts(check_cell):
            flags.append(f"{exercise}: the check cell's output does not match its signed record")
            return (
                "failed",
                f"✘ {exercise}: not graded: the check's output and record differ",
                flags,
            )
        return "passed", str(result.get("message", "")), flags
    message = str(result.get("message", ""))
    return ("not done" if NOT_DONE in message else "failed"), message, flags


def runtime_flags(executed, grader_ids: set[str]) -> list[str]:
    """Signs of forgery in the student's own cells: signed-looking outputs, imitated pass lines."""
    flags = []
    for cell in executed.cells:
        if cell.cell_type != "code" or cell.get("id") in grader_ids:
            continue
        outputs = cell.get("outputs", [])
        if any(SIGNED_MIME in out.get("data", {}) for out in outputs):
            flags.append("a student cell shows output imitating a signed check result")
        if PASS_LINE.search(_texts(cell)) and not CHECK_CALL.search(cell.source):
            line = PASS_LINE.search(_texts(cell)).group(0)
            flags.append(f"a student cell without a check call printed {line!r}")
    return flags


def for_the_record(executed, injected: list[Injected], prelude_id: str):
    """The executed notebook as the instructor reads it: grader cells back to the check calls."""
    by_check = {i.check_id: i for i in injected}
    drop = {prelude_id} | {i.sign_id for i in injected}
    cells = []
    for cell in executed.cells:
        if cell.get("id") in drop:
            continue
        if cell.get("id") in by_check:
            cell.source = by_check[cell.id].call.source
        cells.append(cell)
    executed.cells = cells
    return executed


# --- grading ------------------------------------------------------------------------------


def _out_of_memory(error: str) -> bool:
    return error.startswith("MemoryError") or "can't allocate memory" in error


def grade_notebook(
    path: Path,
    student: str,
    out_dir: Path,
    limits: sandbox.Limits | None = None,
    references: dict[str, Reference] | None = None,
    plan: dict | None = None,
    exercises_dir: Path = EXERCISES_DIR,
) -> NotebookGrade:
    """Run one submitted notebook in the sandbox and grade its checks from their signed records."""
    limits = limits or sandbox.Limits()
    grade = NotebookGrade(student, path.name, "ok", isolation="user" if plan else "none")
    references = references if references is not None else load_references(exercises_dir)
    match = reference_notebook(path.name, exercises_dir)
    reference = references.get(match.name) if match else None
    if reference is None:
        grade.run = "unknown"
        grade.detail = f"no exercises notebook in the course matches {path.name!r}"
        return grade
    grade.exercises = {
        e: ("not run", "the notebook stopped before this check ran") for e in reference.exercises
    }
    try:
        student_nb = nbformat.read(path, as_version=4)
        student_code = review.code_cells(student_nb)
    except Exception as error:  # not JSON, not a notebook: say so, go on
        grade.run, grade.detail = "unreadable", f"{type(error).__name__}: {str(error)[:200]}"
        return grade
    grade.review = review.review(student_code, reference.code)
    nb, injected, prelude_id = prepare(student_nb, reference)
    execution = sandbox.run_isolated(nb, limits, plan)
    grade.seconds = execution.seconds
    if execution.status != "ok":
        grade.run, grade.detail = execution.status, execution.detail
    if execution.notebook is None:
        return grade
    executed = nbformat.from_dict(execution.notebook)
    cells = {c.get("id"): c for c in executed.cells}
    executed_ids = {i for i, c in cells.items() if c.get("execution_count") is not None}
    for item in injected:
        check_cell = cells.get(item.check_id) if item.check_id in executed_ids else None
        sign_cell = cells.get(item.sign_id) if item.sign_id in executed_ids else None
        status, message, flags = judge(item, check_cell, sign_cell)
        grade.exercises[item.call.exercise] = (status, message)
        grade.review += flags
    grader_ids = {prelude_id} | {i.check_id for i in injected} | {i.sign_id for i in injected}
    grade.review += runtime_flags(executed, grader_ids)
    if prelude_id not in executed_ids or _error(cells[prelude_id]):
        grade.run = grade.run if grade.run != "ok" else "crashed"
        grade.detail = (
            grade.detail or f"the grader's first cell failed: {_error(cells[prelude_id])}"
        )
    student_errors = [
        _error(c) for c in executed.cells if c.get("id") not in grader_ids and _error(c)
    ]
    if any(_out_of_memory(e) for e in student_errors):
        grade.run = "crashed"
        grade.detail = f"out of memory (limit {limits.memory_gb:g} GiB per process)"
    elif grade.run == "ok" and (
        student_errors
        or any(_error(cells[i.check_id]) for i in injected if i.check_id in executed_ids)
    ):
        grade.run = "errors"
        grade.detail = (student_errors or ["a check failed"])[0]
    out_dir.mkdir(parents=True, exist_ok=True)
    nbformat.write(for_the_record(executed, injected, prelude_id), out_dir / path.name)
    return grade


def students(folder: Path) -> list[Path]:
    """Student sub-folders (hidden ones and those starting with '_' skipped)."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def _needed_paths() -> list[Path]:
    """What the sandbox user must reach: the course and the Python that runs the notebooks."""
    return [Path(sys.prefix), Path(sys.base_prefix), ROOT, Path(sys.executable).resolve().parent]


def user_isolation_possible() -> bool:
    """Whether "user" isolation can be tried: root on Linux, a free user id, and a course and
    Python that user may enter (not, e.g., a clone inside a 0700 `mktemp -d` folder)."""
    if not (sys.platform.startswith("linux") and os.geteuid() == 0):
        return False
    ids = sandbox.sandbox_ids()
    return ids is not None and not sandbox.unenterable(_needed_paths(), *ids)


def choose_isolation(isolation: str, hide: list[Path], limits: sandbox.Limits) -> dict | None:
    """The sandbox plan for `isolation` ("auto", "user", "none"); None means same user.

    "user" needs root on Linux and a free user id; "auto" tries it with a small probe notebook
    and falls back to "none" with a warning.
    """
    if isolation not in ("auto", "user", "none"):
        raise ValueError(f"isolation must be 'auto', 'user' or 'none', got {isolation!r}")
    if isolation == "none":
        return None
    problem, plan = "", None
    if not user_isolation_possible():
        problem = (
            f"it needs root on Linux, a free user id in {sandbox.SANDBOX_UIDS}, and a course and "
            "Python in folders that user may enter (chmod o+x them, e.g. a `mktemp -d` folder)"
        )
    else:
        needed = _needed_paths()
        plan = sandbox.isolation_plan(hide + [Path.home()], needed, sandbox.sandbox_ids())
        probe = nbformat.v4.new_notebook()
        probe.cells = [nbformat.v4.new_code_cell(f"import {CHECKS_MODULE}")]
        test = sandbox.run_isolated(
            probe, sandbox.Limits(timeout=120, memory_gb=limits.memory_gb), plan
        )
        error = _error(test.notebook["cells"][0]) if test.notebook else ""
        if test.status != "ok" or error:
            problem = f"a probe notebook failed in it ({test.detail or error})"
            plan = None
    if problem:
        if isolation == "user":
            raise RuntimeError(f"isolation 'user' is not available here: {problem}")
        print(
            f"warning: grading without user isolation ({problem}): each notebook runs as you, "
            "can read what you can read, and the course's files are only watched for changes. "
            "For high-stakes grading run this inside a container or VM.",
            file=sys.stderr,
        )
        return None
    return plan


def grade_folder(
    folder: str | Path,
    timeout: int = 300,
    out: str | Path | None = None,
    exercises_dir: Path = EXERCISES_DIR,
    *,
    memory_gb: float | None = None,
    isolation: str = "auto",
    course_root: Path = ROOT,
) -> list[NotebookGrade]:
    """Grade every student's notebooks under `folder`; write grades.csv, grades.md and review.md.

    `isolation`: "auto" (user isolation when possible), "user" or "none". Without user isolation
    the files under `course_root` are compared before and after each notebook; a notebook that
    changed them is flagged and grading stops, so no later grade depends on the change.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(
            f"{folder} is not a folder; pass the folder that holds one sub-folder per student"
        )
    if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    limits = sandbox.Limits(timeout=timeout, **({"memory_gb": memory_gb} if memory_gb else {}))
    out = Path(out) if out is not None else folder / "_grades"
    references = load_references(Path(exercises_dir))  # before any student code runs
    out.mkdir(parents=True, exist_ok=True)  # so that the sandbox hides it too
    grades: list[NotebookGrade] = []
    sandbox.subreaper(True)
    sandbox.not_dumpable(True)
    try:
        plan = choose_isolation(isolation, [folder.resolve(), out.resolve()], limits)
        stopped = ""
        for student_dir in students(folder):
            notebooks = sorted(student_dir.glob("*.ipynb"))
            if not notebooks:
                grades.append(
                    NotebookGrade(
                        student_dir.name, "-", "unknown", "no .ipynb files in this folder"
                    )
                )
            for path in notebooks:
                if stopped:
                    grades.append(NotebookGrade(student_dir.name, path.name, "not graded", stopped))
                    continue
                print(f"grading {student_dir.name}/{path.name} …", end=" ", flush=True)
                before = sandbox.course_snapshot(course_root) if plan is None else {}
                grade = grade_notebook(
                    path,
                    student_dir.name,
                    out / student_dir.name,
                    limits,
                    references,
                    plan,
                    Path(exercises_dir),
                )
                if plan is None:
                    changed = sandbox.changed_files(before, sandbox.course_snapshot(course_root))
                    if changed:
                        shown = ", ".join(changed[:5]) + (" …" if len(changed) > 5 else "")
                        grade.review.append(f"the course's files changed while it ran: {shown}")
                        stopped = (
                            f"grading stopped: {student_dir.name}/{path.name} changed the "
                            f"course's files ({shown}); restore them (git status) and grade again"
                        )
                        print(stopped, file=sys.stderr)
                print(f"{grade.run}, {grade.seconds:.0f} s", flush=True)
                grades.append(grade)
    finally:
        sandbox.not_dumpable(False)
        sandbox.subreaper(False)
    write_reports(grades, out)
    return grades


def table(grades: list[NotebookGrade]) -> str:
    """A markdown table: one row per student and notebook, one mark per exercise, score, run, flags."""
    lines = [
        "| student | notebook | checks | score | run | review |",
        "|---|---|---|---|---|---|",
    ]
    for g in grades:
        marks = " ".join(f"{SYMBOLS[s]}{e.split()[0]}" for e, (s, _) in g.exercises.items()) or "-"
        passed, total = g.score
        run = g.run + (f" ({g.detail})" if g.detail else "")
        flags = f"⚑ {len(g.review)}" if g.review else "-"
        lines.append(
            f"| {g.student} | {g.notebook} | {marks} | {passed}/{total} | {run} | {flags} |"
        )
    legend = (
        "✔ passed · ✘ failed · · not done (stub left) · – not run (the notebook stopped first) · "
        "⚑ needs review (see review.md)"
    )
    return "\n".join(lines) + "\n\n" + legend + "\n"


def write_reports(grades: list[NotebookGrade], out: Path) -> None:
    """grades.csv (a row per student, notebook and exercise), grades.md and review.md."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "grades.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "notebook", "run", "exercise", "status", "message", "review"])
        for g in grades:
            for exercise, (status, message) in (
                g.exercises.items() or {"-": ("-", g.detail)}.items()
            ):
                writer.writerow(
                    [g.student, g.notebook, g.run, exercise, status, message, " | ".join(g.review)]
                )
    (out / "grades.md").write_text(table(grades), encoding="utf-8")
    lines = ["# Needs review", ""]
    for g in grades:
        if g.review:
            lines.append(f"## {g.student} / {g.notebook}")
            lines += [f"- {flag}" for flag in g.review] + [""]
    if len(lines) == 2:
        lines.append("Nothing flagged.")
    (out / "review.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    """Command line: grade a folder of submissions."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", help="folder with one sub-folder of notebooks per student")
    ap.add_argument(
        "--timeout", type=int, default=300, help="seconds each notebook may run (default 300)"
    )
    ap.add_argument(
        "--memory-gb", type=float, help="address space per process (default: half the memory)"
    )
    ap.add_argument(
        "--isolation",
        choices=["auto", "user", "none"],
        default="auto",
        help="auto: an unprivileged user in a private mount namespace when run as root on Linux",
    )
    ap.add_argument(
        "--out",
        help="where to write grades.csv, grades.md, review.md and the executed notebooks "
        "(default FOLDER/_grades)",
    )
    args = ap.parse_args(argv)
    grades = grade_folder(
        args.folder, args.timeout, args.out, memory_gb=args.memory_gb, isolation=args.isolation
    )
    print()
    print(table(grades))
    out = Path(args.out) if args.out else Path(args.folder) / "_grades"
    print(f"written: {out / 'grades.csv'}, {out / 'grades.md'} and {out / 'review.md'}")


if __name__ == "__main__":
    main()
