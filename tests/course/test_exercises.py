"""Tests of course_lib.course.exercises, which generates exercises/ from solutions/."""

from __future__ import annotations

import io
import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from course_lib.course.exercises import (
    CODE_PLACEHOLDER,
    MD_PLACEHOLDER,
    build,
    check,
    exercise_path,
    strip_solutions,
)
from course_lib.data import ROOT

RAISE = 'raise NotImplementedError("Exercise: write your solution here")'

FUNCTION_CELL = """\
def unigram_loss(counts):
    total = sum(counts)
    ### BEGIN SOLUTION
    probs = [c / total for c in counts]
    return -sum(math.log(p) for p in probs) / len(probs)
    ### END SOLUTION"""

TWO_REGIONS_CELL = """\
### BEGIN SOLUTION
x = 1
### END SOLUTION
print("between")
### BEGIN SOLUTION
y = 2
### END SOLUTION"""


def solution_notebook():
    """A small solution notebook with every feature the builder handles."""
    nb = new_notebook(
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        }
    )
    nb.cells = [
        new_markdown_cell(
            "# 01 · Pretraining — Solutions\nSee [the solutions]"
            "(../solutions/01_pretraining_solutions.ipynb)."
        ),
        new_code_cell(
            FUNCTION_CELL,
            execution_count=3,
            outputs=[new_output("stream", name="stdout", text="0.91\n")],
        ),
        new_code_cell(TWO_REGIONS_CELL, execution_count=4),
        new_markdown_cell(
            "**Question:** why?\n\n<!-- BEGIN SOLUTION -->\nBecause.\n<!-- END SOLUTION -->"
        ),
        new_code_cell("print('the instructor only')", metadata={"tags": ["solution-only"]}),
        new_code_cell(
            "check_unigram(unigram_loss)",
            execution_count=5,
            outputs=[new_output("stream", name="stdout", text="✔ passed\n")],
        ),
    ]
    for index, cell in enumerate(nb.cells):
        cell.id = f"solution-cell-{index}"
    return nb


@pytest.fixture
def course(tmp_path):
    """A solutions/ folder with two notebooks and an empty exercises/ next to it."""
    solutions, exercises = tmp_path / "solutions", tmp_path / "exercises"
    solutions.mkdir()
    for name in ("01_pretraining_solutions.ipynb", "02_data_solutions.ipynb"):
        nbformat.write(solution_notebook(), solutions / name)
    return solutions, exercises


# --- strip_solutions ---------------------------------------------------------------------------


def test_code_region_inside_a_function_keeps_its_indentation():
    cell = strip_solutions(solution_notebook()).cells[1]
    assert cell.source == f"def unigram_loss(counts):\n    total = sum(counts)\n    {RAISE}", (
        f"the region must become one indented raise line, got:\n{cell.source}"
    )
    assert CODE_PLACEHOLDER == RAISE


def test_two_regions_in_one_cell():
    cell = strip_solutions(solution_notebook()).cells[2]
    assert cell.source == f'{RAISE}\nprint("between")\n{RAISE}', (
        f"each region must be replaced separately, got:\n{cell.source}"
    )


CLASS_SOLUTION = """class Scaled(torch.nn.Module):
    ### BEGIN SOLUTION
    def __init__(self, base, scale: float):
        super().__init__()
        self.base, self.scale = base, scale

    @torch.no_grad()
    def forward(
        self, x
    ):
        \"\"\"The base output, scaled.\"\"\"
        return self.base(x) * self.scale

    ### END SOLUTION


ch04.check_scaled(Scaled)"""


def test_class_body_region_keeps_the_class_with_method_stubs():
    from course_lib.course.exercises import _strip_code

    source, blocks = _strip_code(CLASS_SOLUTION, "test")
    assert blocks == 1
    assert source == (
        "class Scaled(torch.nn.Module):\n"
        "    def __init__(self, base, scale: float):\n"
        f"        {RAISE}\n\n"
        "    @torch.no_grad()\n"
        "    def forward(\n        self, x\n    ):\n"
        f"        {RAISE}\n\n\nch04.check_scaled(Scaled)"
    ), f"a class body must become method stubs, got:\n{source}"
    namespace = {"torch": __import__("torch")}
    exec(source.rsplit("\n\n\n", 1)[0], namespace)  # defining the class must not raise
    with pytest.raises(NotImplementedError):
        namespace["Scaled"](None, 2.0)


def test_class_body_region_without_methods_gets_an_init_stub():
    from course_lib.course.exercises import _strip_code

    source, _ = _strip_code(
        "class A:\n    ### BEGIN SOLUTION\n    x = 1\n    ### END SOLUTION", "t"
    )
    assert source == f"class A:\n    def __init__(self, *args, **kwargs):\n        {RAISE}"


def test_markdown_region():
    cell = strip_solutions(solution_notebook()).cells[3]
    assert cell.source == f"**Question:** why?\n\n{MD_PLACEHOLDER}", f"got:\n{cell.source}"


def test_markdown_marker_in_backticks_is_plain_text():
    nb = solution_notebook()
    nb.cells[
        0
    ].source += "\nWrite answers between `<!-- BEGIN SOLUTION -->` and `<!-- END SOLUTION -->`."
    assert strip_solutions(nb).cells[0].source == nb.cells[0].source.replace(
        "Solutions", "Exercises"
    )


def test_solution_only_cell_is_dropped_and_ids_kept():
    exercise = strip_solutions(solution_notebook())
    assert [cell.id for cell in exercise.cells] == [
        f"solution-cell-{i}" for i in (0, 1, 2, 3, 5)
    ], "the solution-only cell must be dropped and the other cells keep their ids"
    assert not any("instructor" in cell.source for cell in exercise.cells)


def test_outputs_and_execution_counts_are_cleared():
    for cell in strip_solutions(solution_notebook()).cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"cell {cell.id} must have no outputs and no execution count"
            )


def test_title_says_exercises_and_solution_links_stay():
    title = strip_solutions(solution_notebook()).cells[0].source
    assert title == (
        "# 01 · Pretraining — Exercises\nSee [the solutions]"
        "(../solutions/01_pretraining_solutions.ipynb)."
    ), f"got:\n{title}"


def test_metadata_kept_and_input_untouched():
    nb = solution_notebook()
    before = nbformat.writes(nb)
    exercise = strip_solutions(nb)
    assert nbformat.writes(nb) == before, "strip_solutions must not modify its input"
    assert exercise.metadata.kernelspec.name == "python3", "the kernelspec must be kept"
    nbformat.validate(exercise)


@pytest.mark.parametrize(
    "source, problem",
    [
        ("### BEGIN SOLUTION\nx = 1", "never closed"),
        ("x = 1\n### END SOLUTION", "without a '### BEGIN SOLUTION'"),
        (
            "### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION",
            "inside the block opened on line 1",
        ),
    ],
)
def test_unmatched_code_marker_raises(source, problem):
    nb = solution_notebook()
    nb.cells.insert(2, new_code_cell(source))
    with pytest.raises(ValueError) as info:
        strip_solutions(nb, name="01_pretraining_solutions.ipynb")
    assert "01_pretraining_solutions.ipynb, cell 2" in str(info.value) and problem in str(
        info.value
    ), f"the error must name the notebook, the cell and the problem, got {info.value}"


@pytest.mark.parametrize(
    "source",
    [
        "<!-- BEGIN SOLUTION --> open",
        "close <!-- END SOLUTION -->",
        "<!-- BEGIN SOLUTION --><!-- BEGIN SOLUTION --><!-- END SOLUTION -->",
    ],
)
def test_unmatched_markdown_marker_raises(source):
    nb = solution_notebook()
    nb.cells.append(new_markdown_cell(source))
    with pytest.raises(ValueError, match="01_x_solutions.ipynb, cell 6"):
        strip_solutions(nb, name="01_x_solutions.ipynb")


def test_notebook_without_markers_raises():
    nb = new_notebook(cells=[new_markdown_cell("# Solutions"), new_code_cell("x = 1")])
    with pytest.raises(ValueError, match="has no ### BEGIN SOLUTION markers"):
        strip_solutions(nb, name="03_empty_solutions.ipynb")


# --- paths, build and check --------------------------------------------------------------------


def test_exercise_path(tmp_path):
    assert (
        exercise_path("solutions/01_pretraining_solutions.ipynb", tmp_path)
        == tmp_path / "01_pretraining_exercises.ipynb"
    )
    with pytest.raises(ValueError, match="must end in _solutions.ipynb"):
        exercise_path("solutions/01_pretraining.ipynb", tmp_path)


def test_missing_solutions_dir_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="no solutions folder"):
        build(tmp_path / "nowhere", tmp_path / "exercises")


def test_build_writes_what_nbformat_write_would(course):
    solutions, exercises = course
    paths = build(solutions, exercises)
    assert [p.name for p in paths] == ["01_pretraining_exercises.ipynb", "02_data_exercises.ipynb"]
    expected = io.StringIO()
    nbformat.write(
        strip_solutions(nbformat.read(solutions / "01_pretraining_solutions.ipynb", 4)), expected
    )
    assert paths[0].read_bytes() == expected.getvalue().encode("utf-8"), (
        "the file must be exactly what nbformat.write produces"
    )
    assert paths[0].read_text(encoding="utf-8").endswith("}\n")


def test_rebuild_is_byte_identical(course):
    solutions, exercises = course
    first = {p: p.read_bytes() for p in build(solutions, exercises)}
    second = {p: p.read_bytes() for p in build(solutions, exercises)}
    assert first == second, "building twice must give byte-identical files"


def test_check_in_sync_stale_missing_and_orphan(course):
    solutions, exercises = course
    assert check(solutions, exercises) == [
        "exercises/01_pretraining_exercises.ipynb is missing (its source is "
        "solutions/01_pretraining_solutions.ipynb)",
        "exercises/02_data_exercises.ipynb is missing (its source is solutions/02_data_solutions.ipynb)",
    ], "before the first build both exercises are missing"
    build(solutions, exercises)
    assert check(solutions, exercises) == [], "right after a build everything must be in sync"

    edited = exercises / "01_pretraining_exercises.ipynb"
    nb = nbformat.read(edited, as_version=4)
    nb.cells[1].source = "def unigram_loss(counts):\n    return 0.0"
    nbformat.write(nb, edited)
    problems = check(solutions, exercises)
    assert len(problems) == 1 and problems[0].startswith(
        "exercises/01_pretraining_exercises.ipynb is stale"
    ), f"an edited exercise must be reported stale, got {problems}"

    edited.unlink()
    (exercises / "09_old_exercises.ipynb").write_text("{}", encoding="utf-8")
    assert check(solutions, exercises) == [
        "exercises/01_pretraining_exercises.ipynb is missing (its source is "
        "solutions/01_pretraining_solutions.ipynb)",
        "exercises/09_old_exercises.ipynb has no solution notebook 09_old_solutions.ipynb: "
        "delete it or add the solution",
    ]


def test_changed_solution_makes_exercise_stale(course):
    solutions, exercises = course
    build(solutions, exercises)
    source = solutions / "02_data_solutions.ipynb"
    nb = nbformat.read(source, as_version=4)
    nb.cells[2].source = nb.cells[2].source.replace('"between"', '"in between"')
    nbformat.write(nb, source)
    assert [p.split(" ")[0] for p in check(solutions, exercises)] == [
        "exercises/02_data_exercises.ipynb"
    ]


def test_solution_outputs_alone_do_not_make_exercises_stale(course):
    solutions, exercises = course
    build(solutions, exercises)
    source = solutions / "01_pretraining_solutions.ipynb"
    nb = nbformat.read(source, as_version=4)
    nb.cells[1].execution_count = 42
    nb.cells[1].outputs = [new_output("stream", name="stdout", text="re-executed\n")]
    nbformat.write(nb, source)
    assert check(solutions, exercises) == [], "re-executing a solution must not change its exercise"


def test_cells_without_ids_are_refused(course):
    solutions, exercises = course
    source = solutions / "01_pretraining_solutions.ipynb"
    source.write_text(
        source.read_text(encoding="utf-8").replace('"id": "solution-cell-2",', ""), encoding="utf-8"
    )
    with pytest.raises(ValueError, match="01_pretraining_solutions.ipynb has cells without an id"):
        build(solutions, exercises)


# --- command line ------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "course_lib.course.exercises", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def test_cli_build_then_check_exit_codes(course):
    solutions, exercises = course
    dirs = ["--solutions", str(solutions), "--exercises", str(exercises)]
    out_of_sync = run_cli("--check", *dirs)
    assert out_of_sync.returncode == 1, (
        f"--check must exit 1 when out of sync:\n{out_of_sync.stdout}"
    )
    assert "01_pretraining_exercises.ipynb is missing" in out_of_sync.stdout
    assert "run `make exercises` to regenerate" in out_of_sync.stdout, "the fix must be suggested"

    built = run_cli(*dirs)
    assert built.returncode == 0, f"building must succeed:\n{built.stderr}"
    assert (exercises / "02_data_exercises.ipynb").exists()

    in_sync = run_cli("--check", *dirs)
    assert in_sync.returncode == 0, f"--check must exit 0 when in sync:\n{in_sync.stdout}"
    assert in_sync.stdout.strip() == "exercises are in sync"


def test_cli_reports_bad_input_without_traceback(tmp_path):
    result = run_cli(
        "--check", "--solutions", str(tmp_path / "nowhere"), "--exercises", str(tmp_path)
    )
    assert result.returncode == 1 and result.stderr.startswith("error: no solutions folder"), (
        f"a missing folder must give a one-line error, got:\n{result.stderr}"
    )


# --- the repository itself ---------------------------------------------------------------------


def test_repository_exercises_are_in_sync():
    problems = check(ROOT / "solutions", ROOT / "exercises")
    assert problems == [], "\n".join(problems + ["run `make exercises` to regenerate"])
