"""Build the exercise notebooks from the solution notebooks (`make exercises`).

Taught in chapter 00 (how the course works). solutions/NN_*_solutions.ipynb are the
only source; exercises/NN_*_exercises.ipynb are generated from them (nbgrader convention):

- code cells: the lines between `### BEGIN SOLUTION` and `### END SOLUTION` (each marker
  on a line of its own) become one `raise NotImplementedError(...)` line, indented like BEGIN;
  a block that is a whole class body becomes its methods' signatures, each raising
  NotImplementedError, so the class still exists and its check says "not done yet";
- markdown cells: the text between `<!-- BEGIN SOLUTION -->` and `<!-- END SOLUTION -->`
  becomes `*YOUR ANSWER HERE*` (a marker written in backticks is just text);
- cells tagged `solution-only` are dropped; outputs and execution counts are cleared;
- "Solutions" in the title line becomes "Exercises".

Cell ids are the solution's, so a rebuild is byte-identical.
`python -m course_lib.course.exercises --check` tells whether exercises/ is in sync (used by the tests).
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import re
import sys
import textwrap
from pathlib import Path

import nbformat

from course_lib.data import ROOT

SOLUTIONS_DIR = ROOT / "solutions"
EXERCISES_DIR = ROOT / "exercises"

CODE_BEGIN, CODE_END = "### BEGIN SOLUTION", "### END SOLUTION"
CODE_PLACEHOLDER = 'raise NotImplementedError("Exercise: write your solution here")'
MD_MARKER = re.compile(r"(?<!`)<!--\s*(BEGIN|END) SOLUTION\s*-->")
MD_PLACEHOLDER = "*YOUR ANSWER HERE*"
SOLUTION_ONLY_TAG = "solution-only"
REGENERATE_HINT = "run `make exercises` to regenerate"


def _in_class_body(kept: list[str], indent: str) -> bool:
    """Whether a block indented by `indent` is directly in a class body (the line above it that is
    indented less opens a class)."""
    for line in reversed(kept):
        if line.strip() and len(line) - len(line.lstrip()) < len(indent):
            return bool(re.match(r"\s*class\s", line))
    return False


def _class_stub(block: list[str], indent: str) -> list[str]:
    """The methods of a class-body solution, each with its signature and a placeholder body."""
    code = textwrap.dedent("\n".join(block))
    try:
        tree = ast.parse(code)
    except SyntaxError:
        tree = None
    code_lines, stub = code.split("\n"), []
    for node in tree.body if tree else []:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            signature = code_lines[first - 1 : node.body[0].lineno - 1]
            if not signature:  # `def f(): ...` on one line: no signature to keep
                return []
            stub += ([""] if stub else []) + [indent + line for line in signature]
            stub.append(indent + "    " + CODE_PLACEHOLDER)
    return stub


def _placeholder(block: list[str], indent: str, class_body: bool) -> list[str]:
    """What replaces a solution block: a raise, or a class body's method stubs."""
    if class_body:
        stub = _class_stub(block, indent)
        return stub or [
            indent + "def __init__(self, *args, **kwargs):",
            indent + "    " + CODE_PLACEHOLDER,
        ]
    return [indent + CODE_PLACEHOLDER]


def _strip_code(source: str, where: str) -> tuple[str, int]:
    """Replace each BEGIN/END SOLUTION block of a code cell; return (source, number of blocks)."""
    lines, kept, begin_line, blocks = source.split("\n"), [], 0, 0
    block: list[str] = []
    indent, class_body = "", False
    for number, line in enumerate(lines, start=1):
        marker = line.strip()
        if marker == CODE_BEGIN:
            if begin_line:
                raise ValueError(
                    f"{where}, line {number}: '{CODE_BEGIN}' inside the block opened "
                    f"on line {begin_line} (nested, or '{CODE_END}' missing)"
                )
            begin_line, blocks, block = number, blocks + 1, []
            indent = line[: len(line) - len(line.lstrip())]
            class_body = _in_class_body(kept, indent)
        elif marker == CODE_END:
            if not begin_line:
                raise ValueError(f"{where}, line {number}: '{CODE_END}' without a '{CODE_BEGIN}'")
            begin_line = 0
            kept += _placeholder(block, indent, class_body)
        elif begin_line:
            block.append(line)
        else:
            kept.append(line)
    if begin_line:
        raise ValueError(
            f"{where}, line {begin_line}: '{CODE_BEGIN}' is never closed by '{CODE_END}'"
        )
    return "\n".join(kept), blocks


def _strip_markdown(source: str, where: str) -> tuple[str, int]:
    """Replace each <!-- BEGIN/END SOLUTION --> region of a markdown cell; return (source, count)."""
    pieces, position, opened, regions = [], 0, False, 0
    for match in MD_MARKER.finditer(source):
        if match[1] == "BEGIN":
            if opened:
                raise ValueError(
                    f"{where}: '<!-- BEGIN SOLUTION -->' inside another solution "
                    "region (nested, or '<!-- END SOLUTION -->' missing)"
                )
            pieces.append(source[position : match.start()])
            opened, regions = True, regions + 1
        else:
            if not opened:
                raise ValueError(
                    f"{where}: '<!-- END SOLUTION -->' without a '<!-- BEGIN SOLUTION -->'"
                )
            pieces.append(MD_PLACEHOLDER)
            position, opened = match.end(), False
    if opened:
        raise ValueError(
            f"{where}: '<!-- BEGIN SOLUTION -->' is never closed by '<!-- END SOLUTION -->'"
        )
    pieces.append(source[position:])
    return "".join(pieces), regions


def _retitle(nb) -> None:
    """Turn 'Solutions' into 'Exercises' in the first line of the first markdown cell."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            first, newline, rest = cell.source.partition("\n")
            cell.source = first.replace("Solutions", "Exercises") + newline + rest
            return


def strip_solutions(nb, name: str = "notebook"):
    """Return the exercise version of a solution notebook (a new NotebookNode; `nb` is untouched)."""
    exercise, regions = copy.deepcopy(nb), 0
    exercise.cells = []
    for index, cell in enumerate(nb.cells):
        if SOLUTION_ONLY_TAG in cell.get("metadata", {}).get("tags", []):
            continue
        cell, where = copy.deepcopy(cell), f"{name}, cell {index}"
        if cell.cell_type == "code":
            cell.source, found = _strip_code(cell.source, where)
            cell.outputs, cell.execution_count = [], None
            cell.metadata.pop("execution", None)  # nbclient's timestamps
        elif cell.cell_type == "markdown":
            cell.source, found = _strip_markdown(cell.source, where)
        else:
            found = 0
        regions += found
        exercise.cells.append(cell)
    if regions == 0:
        raise ValueError(
            f"{name} has no {CODE_BEGIN} markers (nor <!-- BEGIN SOLUTION --> ones): "
            "mark the solution code so the exercise version has something to do"
        )
    _retitle(exercise)
    return exercise


def exercise_path(solution_path: str | Path, exercises_dir: str | Path) -> Path:
    """exercises_dir / the exercise file name of a solution notebook (`_solutions` -> `_exercises`)."""
    solution_path = Path(solution_path)
    if not solution_path.name.endswith("_solutions.ipynb"):
        raise ValueError(
            f"{solution_path.name}: a solution notebook's name must end in _solutions.ipynb"
        )
    return Path(exercises_dir) / solution_path.name.replace("_solutions.ipynb", "_exercises.ipynb")


def solution_notebooks(solutions_dir: str | Path) -> list[Path]:
    """The solution notebooks in `solutions_dir`, sorted by name."""
    solutions_dir = Path(solutions_dir)
    if not solutions_dir.is_dir():
        raise FileNotFoundError(
            f"no solutions folder at {solutions_dir}: the solution notebooks "
            "live in solutions/ at the repository root (or pass --solutions DIR)"
        )
    return sorted(solutions_dir.glob("*_solutions.ipynb"))


def render(solution_path: Path) -> str:
    """The exact text `build` writes for one solution notebook (what nbformat.write produces)."""
    text = solution_path.read_text(encoding="utf-8")
    raw = json.loads(text)
    if raw.get("nbformat_minor", 0) >= 5 and any("id" not in cell for cell in raw.get("cells", [])):
        raise ValueError(
            f"{solution_path.name} has cells without an id (nbformat would invent random "
            "ones): open and save it in JupyterLab so the exercise ids stay stable"
        )
    nb = strip_solutions(nbformat.reads(text, as_version=4), name=solution_path.name)
    nbformat.validate(nb)
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def build(
    solutions_dir: str | Path = SOLUTIONS_DIR, exercises_dir: str | Path = EXERCISES_DIR
) -> list[Path]:
    """Write the exercise notebook of every solution notebook; return their paths."""
    sources = solution_notebooks(solutions_dir)
    Path(exercises_dir).mkdir(parents=True, exist_ok=True)
    written = []
    for solution in sources:
        path = exercise_path(solution, exercises_dir)
        path.write_text(render(solution), encoding="utf-8", newline="\n")
        written.append(path)
    return written


def _show(path: Path) -> str:
    """A short name for messages: folder/file."""
    return f"{path.parent.name}/{path.name}"


def check(
    solutions_dir: str | Path = SOLUTIONS_DIR, exercises_dir: str | Path = EXERCISES_DIR
) -> list[str]:
    """List what is out of sync between solutions/ and exercises/ (empty when in sync)."""
    problems, expected = [], set()
    for solution in solution_notebooks(solutions_dir):
        path = exercise_path(solution, exercises_dir)
        expected.add(path)
        if not path.exists():
            problems.append(f"{_show(path)} is missing (its source is {_show(solution)})")
        elif path.read_bytes() != render(solution).encode("utf-8"):
            problems.append(
                f"{_show(path)} is stale: it differs from what {_show(solution)} generates "
                "(edit the solution notebook, never the exercise)"
            )
    for path in sorted(Path(exercises_dir).glob("*_exercises.ipynb")):
        if path not in expected:
            problems.append(
                f"{_show(path)} has no solution notebook "
                f"{path.name.replace('_exercises.ipynb', '_solutions.ipynb')}: delete it "
                "or add the solution"
            )
    return problems


def main(argv: list[str] | None = None) -> int:
    """Command line: build exercises/ from solutions/, or with --check report what is out of sync."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report; exit 1 when out of sync")
    parser.add_argument(
        "--solutions", type=Path, default=SOLUTIONS_DIR, help="solution notebooks folder"
    )
    parser.add_argument(
        "--exercises", type=Path, default=EXERCISES_DIR, help="exercise notebooks folder"
    )
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = check(args.solutions, args.exercises)
            for problem in problems:
                print(problem)
            print(REGENERATE_HINT if problems else "exercises are in sync")
            return 1 if problems else 0
        for path in build(args.solutions, args.exercises):
            print(f"wrote {_show(path)}")
        return 0
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
