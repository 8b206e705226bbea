"""course_lib.course.notebook_sources: the notebooks match their text sources, the taught
`#| export` cells match the library, and the text -> .ipynb build round-trips (on a tmp course)."""

from __future__ import annotations

import nbformat
import pytest

from course_lib.course import notebook_sources as ns

# --- the real course ----------------------------------------------------------------------------


def test_every_notebook_is_built_from_its_text_source():
    problems = ns.out_of_sync()
    assert not problems, "\n".join(problems)


def test_every_export_block_equals_the_lessons_cells():
    problems = ns.export_problems()
    assert not problems, "\n".join(problems)


def test_every_lesson_and_solution_has_a_source():
    for folder in ns.FOLDERS:
        notebooks = {p.stem for p in (ns.ROOT / folder).glob("*.ipynb")}
        sources = {p.stem for p in (ns.SOURCES / folder).glob("*.py")}
        assert notebooks and notebooks == sources, f"{folder}: {notebooks ^ sources}"


# --- the build on a tmp course ------------------------------------------------------------------

SOURCE = """# %% [markdown]
# # 99 · A test chapter
#
# Some prose.

# %%
x = 1 + 1
print(x)

# %%
#| export course_lib.demo
def double(x):
    return 2 * x
"""


@pytest.fixture
def course(tmp_path, monkeypatch):
    """An empty course in tmp_path: sources/, notebooks/, solutions/ and course_lib/."""
    monkeypatch.setattr(ns, "ROOT", tmp_path)
    monkeypatch.setattr(ns, "SOURCES", tmp_path / "sources")
    for folder in ns.FOLDERS:
        (tmp_path / "sources" / folder).mkdir(parents=True)
        (tmp_path / folder).mkdir()
    (tmp_path / "course_lib").mkdir()
    src = tmp_path / "sources" / "notebooks" / "99_test.py"
    src.write_text(SOURCE, encoding="utf-8")
    return tmp_path, src


def run_code_cells(path):
    """Pretend to execute a notebook: give every code cell an output and a count."""
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        cell.execution_count = i + 1
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"out {i}\n")]
    nbformat.write(nb, path)


def test_paths_map_between_sources_and_notebooks(course):
    root, src = course
    assert ns.notebook_path(src) == root / "notebooks" / "99_test.ipynb"
    assert ns.source_path(root / "notebooks" / "99_test.ipynb") == src
    assert ns.all_sources() == [src]
    with pytest.raises(ValueError, match=r"\.ipynb"):
        ns.source_path(root / "notebooks" / "99_test.py")
    with pytest.raises(ValueError, match="sources/notebooks"):
        ns.notebook_path(root / "elsewhere" / "99_test.py")


def test_first_build_writes_the_cells_with_stable_ids(course):
    root, src = course
    target, changed = ns.build(src)
    assert changed and target == root / "notebooks" / "99_test.ipynb"
    nb = nbformat.read(target, as_version=4)
    assert [c.cell_type for c in nb.cells] == ["markdown", "code", "code"]
    assert nb.cells[1].source == "x = 1 + 1\nprint(x)", "no trailing newline in a cell"
    assert nb.metadata.kernelspec == ns.KERNELSPEC
    nbformat.validate(nb)
    before = target.read_bytes()
    assert ns.build(src) == (target, False), "rebuilding unchanged text changes no code"
    assert target.read_bytes() == before, "a rebuild is byte-identical (ids come from positions)"


def test_rebuild_keeps_outputs_unless_the_code_changed(course):
    root, src = course
    target, _ = ns.build(src)
    run_code_cells(target)
    src.write_text(SOURCE.replace("Some prose.", "Better prose."), encoding="utf-8")
    assert ns.build(src) == (target, False), "a prose edit needs no execution"
    nb = nbformat.read(target, as_version=4)
    assert nb.cells[0].source.endswith("Better prose.")
    assert [c.outputs[0].text for c in nb.cells[1:]] == ["out 0\n", "out 1\n"], "outputs kept"
    src.write_text(SOURCE.replace("1 + 1", "1 + 2"), encoding="utf-8")
    assert ns.build(src) == (target, True), "a code edit must be reported for execution"
    nb = nbformat.read(target, as_version=4)
    assert all(not c.outputs for c in nb.cells[1:]), "stale outputs must not survive a code edit"


def test_export_writes_the_text_back(course):
    root, src = course
    target, _ = ns.build(src)
    run_code_cells(target)
    src.unlink()
    assert ns.export(target) == src
    assert ns._cells(ns.from_text(src)) == ns._cells(nbformat.read(target, as_version=4)), (
        "text -> notebook -> text must give the same cells"
    )
    assert "out 0" not in src.read_text(encoding="utf-8"), "outputs stay out of the text"


def test_out_of_sync_names_each_kind_of_problem(course):
    root, src = course
    assert ns.out_of_sync() == [
        "sources/notebooks/99_test.py has no notebook notebooks/99_test.ipynb: run `make notebooks`"
    ]
    target, _ = ns.build(src)
    assert ns.out_of_sync() == []
    src.write_text(SOURCE.replace("print(x)", "print(2 * x)"), encoding="utf-8")
    (problem,) = ns.out_of_sync()
    assert "differs from its text source from cell 1 on" in problem, problem
    nbformat.write(nbformat.v4.new_notebook(), root / "solutions" / "01_x_solutions.ipynb")
    assert any("01_x_solutions.ipynb has no text source" in p for p in ns.out_of_sync())


def test_export_blocks_are_checked_and_written(course):
    root, src = course
    module = root / "course_lib" / "demo.py"
    assert "demo.py does not exist" in ns.export_problems()[0]
    module.write_text('"""A demo module."""\n', encoding="utf-8")
    assert "has no block '# --- begin export: notebooks/99_test ---'" in ns.export_problems()[0]
    begin, end = ns.BEGIN.format("notebooks/99_test"), ns.END
    module.write_text(
        f'"""A demo module."""\n\n{begin}\nold = 1\n{end}\n\nKEEP = 2\n', encoding="utf-8"
    )
    (problem,) = ns.export_problems()
    assert "differs from the lesson's `#| export` cells" in problem, problem
    assert ns.export_problems(write=True) == [] and ns.export_problems() == []
    text = module.read_text(encoding="utf-8")
    assert f"{begin}\ndef double(x):\n    return 2 * x\n\n\n{end}" in text, text
    assert text.startswith('"""A demo module."""') and text.endswith("KEEP = 2\n"), (
        "only the block is rewritten"
    )


def test_export_tag_must_name_a_course_lib_module(course):
    root, src = course
    src.write_text(SOURCE.replace("course_lib.demo", "numpy.demo"), encoding="utf-8")
    with pytest.raises(ValueError, match="must name a course_lib module"):
        ns.exported_cells(src)


def test_the_command_line_check_fails_on_problems(course, capsys):
    root, src = course
    assert ns.main(["check"]) == 1
    assert "2 problem(s)" in capsys.readouterr().out
    assert ns.main(["build"]) == 0
    assert capsys.readouterr().out == "notebooks/99_test.ipynb\n", (
        "build prints the notebooks to execute, one a line"
    )
    (root / "course_lib" / "demo.py").write_text(
        f"{ns.BEGIN.format('notebooks/99_test')}\n{ns.END}\n", encoding="utf-8"
    )
    assert ns.main(["lib"]) == 0 and ns.main(["check"]) == 0
    assert "in sync" in capsys.readouterr().out
