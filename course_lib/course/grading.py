"""Grade a folder of filled-in exercise notebooks: run each offline with a time limit, tabulate the checks.

For instructors (README, "Grading exercises"): `make grade SUBMISSIONS=path/to/folder`, i.e.
`python -m course_lib.course.grading path/to/folder`. The folder holds one sub-folder per student with
that student's `NN_*_exercises.ipynb` files. Every notebook runs in its own fresh kernel with the
network blocked and a wall-clock limit; the check cells are restored from the course's own
`exercises/` notebook first (a student cannot edit a check away), and every check records its
result through `course_lib.course.checks` (COURSE_CHECK_LOG). A notebook that is not valid JSON, crashes
its kernel or runs out of time is reported as such; the run always goes on to the next one.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path

import nbformat

from course_lib.data import ROOT

EXERCISES_DIR = ROOT / "exercises"
CHECK_CALL = re.compile(r"\b(ch\d\d)\.(check_\w+)\s*\(")
SYMBOLS = {"passed": "✔", "failed": "✘", "not done": "·", "not run": "–"}


@dataclass
class NotebookGrade:
    """The outcome of one student's notebook: how the run ended and each exercise's status."""

    student: str
    notebook: str
    run: str  # "ok", "errors", "timeout", "unreadable", "crashed", "unknown"
    detail: str = ""
    seconds: float = 0.0
    exercises: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (status, message)

    @property
    def score(self) -> tuple[int, int]:
        """(checks passed, checks expected)."""
        return sum(s == "passed" for s, _ in self.exercises.values()), len(self.exercises)


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
    """Exercise ids checked by a reference notebook, in order (from its check cells' checkers)."""
    nb = nbformat.read(reference, as_version=4)
    ids = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for module, fn in CHECK_CALL.findall(cell.source):
            exercise = getattr(
                getattr(import_module(f"course_lib.course.checkers.{module}"), fn), "exercise_id"
            )
            if exercise not in ids:
                ids.append(exercise)
    return ids


def restore_check_cells(student_nb, reference_nb) -> int:
    """Put the reference's check cells back (matched by cell id; missing ones appended); return count changed."""
    checks = {
        c.id: c.source
        for c in reference_nb.cells
        if c.cell_type == "code" and CHECK_CALL.search(c.source)
    }
    changed, seen = 0, set()
    for cell in student_nb.cells:
        if cell.get("id") in checks:
            seen.add(cell.id)
            if cell.cell_type != "code" or cell.source != checks[cell.id]:
                cell.cell_type, cell.source = "code", checks[cell.id]
                cell.setdefault("outputs", [])
                cell.setdefault("execution_count", None)
                changed += 1
    for cell_id, source in checks.items():
        if cell_id not in seen:
            student_nb.cells.append(nbformat.v4.new_code_cell(source))
            changed += 1
    return changed


def _run_one(notebook: Path, workdir: Path, timeout: int) -> None:
    """Child process: execute one prepared notebook, going on past failing cells, and save it."""
    from nbclient import NotebookClient

    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(workdir)}},
    )
    try:
        client.execute()
    finally:
        nbformat.write(nb, notebook)


def _first_error(nb) -> str:
    """'ExceptionName: message' of the first cell that raised, or ''."""
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return f"{out.get('ename')}: {out.get('evalue', '')}"[:300]
    return ""


def _run_limited(cmd: list[str], env: dict, timeout: int) -> tuple[int | None, str]:
    """Run `cmd` in its own process group; kill the whole group (kernel included) after `timeout` s."""
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, stderr = proc.communicate(timeout=timeout)
        return proc.returncode, stderr
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None, ""


def grade_notebook(
    path: Path, student: str, out_dir: Path, timeout: int = 300, exercises_dir: Path = EXERCISES_DIR
) -> NotebookGrade:
    """Run one submitted notebook in a fresh kernel (network blocked, `timeout` seconds) and grade its checks."""
    grade = NotebookGrade(student, path.name, "ok")
    reference = reference_notebook(path.name, exercises_dir)
    if reference is None:
        grade.run, grade.detail = (
            "unknown",
            f"no exercises notebook in the course matches {path.name!r}",
        )
        return grade
    expected = expected_checks(reference)
    grade.exercises = {
        e: ("not run", "the notebook stopped before this check ran") for e in expected
    }
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as error:  # not JSON, not a notebook: say so, go on
        grade.run, grade.detail = "unreadable", f"{type(error).__name__}: {str(error)[:200]}"
        return grade
    restore_check_cells(nb, nbformat.read(reference, as_version=4))
    out_dir.mkdir(parents=True, exist_ok=True)
    executed, log = out_dir / path.name, out_dir / (path.stem + ".checks.jsonl")
    nbformat.write(nb, executed)
    log.unlink(missing_ok=True)
    env = dict(
        os.environ,
        COURSE_CHECK_LOG=str(log),
        COURSE_BLOCK_NETWORK="1",
        COURSE_PLAIN_PROGRESS="1",
        MPLBACKEND="Agg",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    start = time.perf_counter()
    returncode, stderr = _run_limited(
        [
            sys.executable,
            "-m",
            "course_lib.course.grading",
            "--run-one",
            str(executed),
            "--workdir",
            str(path.parent),
            "--timeout",
            str(timeout),
        ],
        env,
        timeout,
    )
    if returncode is None:
        grade.run, grade.detail = "timeout", f"still running after {timeout} s; stopped"
    elif returncode != 0:
        grade.run, grade.detail = "crashed", (stderr.strip().splitlines() or ["?"])[-1][:300]
    grade.seconds = time.perf_counter() - start
    if grade.run == "ok":
        error = _first_error(nbformat.read(executed, as_version=4))
        if error:
            grade.run, grade.detail = "errors", error
    for line in log.read_text(encoding="utf-8").splitlines() if log.exists() else []:
        result = json.loads(line)
        status = (
            "passed"
            if result["passed"]
            else ("not done" if "not done yet" in result["message"] else "failed")
        )
        grade.exercises[result["exercise"]] = (status, result["message"])
    return grade


def students(folder: Path) -> list[Path]:
    """Student sub-folders (hidden ones and those starting with '_' skipped)."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def grade_folder(
    folder: str | Path,
    timeout: int = 300,
    out: str | Path | None = None,
    exercises_dir: Path = EXERCISES_DIR,
) -> list[NotebookGrade]:
    """Grade every student's notebooks under `folder`; write grades.csv and grades.md into `out`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(
            f"{folder} is not a folder; pass the folder that holds one sub-folder per student"
        )
    if not isinstance(timeout, int) or timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    out = Path(out) if out is not None else folder / "_grades"
    grades = []
    for student_dir in students(folder):
        notebooks = sorted(student_dir.glob("*.ipynb"))
        if not notebooks:
            grades.append(
                NotebookGrade(student_dir.name, "-", "unknown", "no .ipynb files in this folder")
            )
        for path in notebooks:
            print(f"grading {student_dir.name}/{path.name} …", flush=True)
            grades.append(
                grade_notebook(
                    path, student_dir.name, out / student_dir.name, timeout, exercises_dir
                )
            )
    write_reports(grades, out)
    return grades


def table(grades: list[NotebookGrade]) -> str:
    """A markdown table: one row per student and notebook, one mark per exercise, the score and the run."""
    lines = ["| student | notebook | checks | score | run |", "|---|---|---|---|---|"]
    for g in grades:
        marks = " ".join(f"{SYMBOLS[s]}{e.split()[0]}" for e, (s, _) in g.exercises.items()) or "-"
        passed, total = g.score
        run = g.run + (f" ({g.detail})" if g.detail else "")
        lines.append(f"| {g.student} | {g.notebook} | {marks} | {passed}/{total} | {run} |")
    legend = "✔ passed · ✘ failed · · not done (stub left) · – not run (the notebook stopped first)"
    return "\n".join(lines) + "\n\n" + legend + "\n"


def write_reports(grades: list[NotebookGrade], out: Path) -> None:
    """grades.csv (one row per student, notebook and exercise, with the check's message) and grades.md."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "grades.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "notebook", "run", "exercise", "status", "message"])
        for g in grades:
            for exercise, (status, message) in (
                g.exercises.items() or {"-": ("-", g.detail)}.items()
            ):
                writer.writerow([g.student, g.notebook, g.run, exercise, status, message])
    (out / "grades.md").write_text(table(grades), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    """Command line: grade a folder (or, internally, run one notebook)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", help="folder with one sub-folder of notebooks per student")
    ap.add_argument(
        "--timeout", type=int, default=300, help="seconds each notebook may run (default 300)"
    )
    ap.add_argument(
        "--out",
        help="where to write grades.csv, grades.md and the executed notebooks "
        "(default FOLDER/_grades)",
    )
    ap.add_argument("--run-one", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.run_one:
        _run_one(Path(args.run_one), Path(args.workdir), args.timeout)
        return
    if not args.folder:
        ap.error(
            "give the folder of submissions, e.g. python -m course_lib.course.grading submissions/"
        )
    grades = grade_folder(args.folder, args.timeout, args.out)
    print()
    print(table(grades))
    out = Path(args.out) if args.out else Path(args.folder) / "_grades"
    print(f"written: {out / 'grades.csv'} and {out / 'grades.md'}")


if __name__ == "__main__":
    main()
