"""The notebooks' text sources: `sources/<folder>/<name>.py` (jupytext percent format) is what
authors edit and reviews diff; `<folder>/<name>.ipynb` is built from it and executed.

    python -m course_lib.course.notebook_sources build [paths]   # text -> .ipynb (keeps outputs of
                                                                 # cells whose code did not change)
    python -m course_lib.course.notebook_sources check           # every pair in sync (a test runs this)
    python -m course_lib.course.notebook_sources export [paths]  # .ipynb -> text (after editing in Jupyter)
    python -m course_lib.course.notebook_sources lib             # taught cells -> course_lib modules

The code a lesson teaches is the code later chapters import (in the manner of d2l's `#@save`): a
code cell whose first line is `#| export course_lib.lora` is copied, verbatim and in order, into
`course_lib/lora.py` between the lines `# --- begin export: notebooks/04_lora ---` and
`# --- end export ---`. The module keeps its imports and any helpers outside that block; `check`
fails when a block differs from the lesson's cells, so the tested code is the code the reader read.

`make notebooks` builds every notebook from its text and executes the ones that changed.
Cell ids are derived from the notebook's name and the cell's position, so a rebuild is byte-identical.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import jupytext
import nbformat

from course_lib.data import ROOT

SOURCES = ROOT / "sources"
FOLDERS = ("notebooks", "solutions")
FORMAT = "py:percent"
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def source_path(notebook: Path) -> Path:
    """The text source of a notebook: notebooks/04_lora.ipynb -> sources/notebooks/04_lora.py."""
    notebook = Path(notebook).resolve()
    if notebook.suffix != ".ipynb" or notebook.parent.name not in FOLDERS:
        raise ValueError(f"{notebook.name}: expected a .ipynb file in one of {FOLDERS}")
    return SOURCES / notebook.parent.name / (notebook.stem + ".py")


def notebook_path(source: Path) -> Path:
    """The notebook built from a text source: sources/notebooks/04_lora.py -> notebooks/04_lora.ipynb."""
    source = Path(source).resolve()
    if source.suffix != ".py" or source.parent.name not in FOLDERS:
        raise ValueError(
            f"{source.name}: expected a .py file in sources/notebooks or sources/solutions"
        )
    return ROOT / source.parent.name / (source.stem + ".ipynb")


def all_sources() -> list[Path]:
    """Every text source, sorted."""
    return sorted(p for folder in FOLDERS for p in (SOURCES / folder).glob("*.py"))


def _cell_id(name: str, index: int) -> str:
    return hashlib.sha1(f"{name}:{index}".encode()).hexdigest()[:12]


def _cells(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source.rstrip("\n")) for c in nb.cells]


def from_text(source: Path):
    """Read a text source into a notebook (no outputs), with stable ids and the course's kernelspec."""
    nb = jupytext.read(source, fmt=FORMAT)
    nb.metadata = nbformat.from_dict(
        {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}}
    )
    for i, cell in enumerate(nb.cells):
        cell.id = _cell_id(source.stem, i)
        cell.metadata = nbformat.from_dict({})
        cell.source = cell.source.rstrip("\n")
    return nb


def to_text(nb) -> str:
    """A notebook as jupytext percent text without metadata (what is kept in sources/)."""
    nb = nbformat.from_dict(nbformat.v4.upgrade(nb) if nb.get("nbformat", 4) < 4 else nb)
    nb.metadata = nbformat.from_dict(
        {"jupytext": {"notebook_metadata_filter": "-all", "cell_metadata_filter": "-all"}}
    )
    return jupytext.writes(nb, fmt=FORMAT)


def build(source: Path) -> tuple[Path, bool]:
    """Write the notebook of a text source, keeping the outputs of unchanged code cells.

    Returns the notebook's path and whether any code changed (so it needs executing).
    """
    source = Path(source)
    target = notebook_path(source)
    nb = from_text(source)
    changed = True
    if target.exists():
        old = nbformat.read(target, as_version=4)
        nb.metadata = old.metadata
        nb.metadata["kernelspec"] = dict(KERNELSPEC)
        old_code = [c.source for c in old.cells if c.cell_type == "code"]
        new_code = [c.source for c in nb.cells if c.cell_type == "code"]
        changed = old_code != new_code
        if not changed:
            code_cells = iter(c for c in old.cells if c.cell_type == "code")
            for cell in nb.cells:
                if cell.cell_type == "code":
                    before = next(code_cells)
                    cell.outputs, cell.execution_count = before.outputs, before.execution_count
                    cell.metadata = before.metadata
    nbformat.write(nb, target)
    return target, changed


def export(notebook: Path) -> Path:
    """Write the text source of a notebook (after it was edited in JupyterLab)."""
    notebook = Path(notebook)
    path = source_path(notebook)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_text(nbformat.read(notebook, as_version=4)), encoding="utf-8")
    return path


def out_of_sync() -> list[str]:
    """Problems: notebooks without a source, sources without a notebook, and cells that differ."""
    problems = []
    sources = {notebook_path(s): s for s in all_sources()}
    for folder in FOLDERS:
        for nb_path in sorted((ROOT / folder).glob("*.ipynb")):
            if nb_path.resolve() not in sources:
                problems.append(
                    f"{folder}/{nb_path.name} has no text source sources/{folder}/"
                    f"{nb_path.stem}.py: run `python -m course_lib.course.notebook_sources "
                    f"export {folder}/{nb_path.name}`"
                )
    for nb_path, src in sources.items():
        rel = f"{nb_path.parent.name}/{nb_path.name}"
        if not nb_path.exists():
            problems.append(
                f"sources/{nb_path.parent.name}/{src.name} has no notebook {rel}: "
                "run `make notebooks`"
            )
            continue
        built = _cells(from_text(src))
        have = _cells(nbformat.read(nb_path, as_version=4))
        if built != have:
            first = next(
                (i for i, (a, b) in enumerate(zip(built, have)) if a != b),
                min(len(built), len(have)),
            )
            problems.append(
                f"{rel} differs from its text source from cell {first} on: edit "
                f"sources/{nb_path.parent.name}/{src.name}, then run `make notebooks` "
                "(or, after editing the .ipynb in Jupyter, `... notebook_sources export`)"
            )
    return problems


EXPORT_TAG = "#| export "
BEGIN = "# --- begin export: {} ---"
END = "# --- end export ---"


def exported_cells(source: Path) -> dict[str, list[str]]:
    """The cells of a text source marked `#| export <module>`, by module, without the tag line."""
    out: dict[str, list[str]] = {}
    for cell in from_text(source).cells:
        first, _, rest = cell.source.partition("\n")
        if cell.cell_type == "code" and first.startswith(EXPORT_TAG):
            module = first[len(EXPORT_TAG) :].strip()
            if not module.startswith("course_lib."):
                raise ValueError(f"{source.name}: '{first}' must name a course_lib module")
            out.setdefault(module, []).append(rest.strip("\n"))
    return out


def _module_file(module: str) -> Path:
    return ROOT / (module.replace(".", "/") + ".py")


def _block(source: Path, cells: list[str]) -> str:
    key = f"{source.parent.name}/{source.stem}"
    body = "\n\n\n".join(cells)
    return f"{BEGIN.format(key)}\n{body}\n\n\n{END}"


def _find_block(text: str, key: str) -> tuple[int, int] | None:
    start = text.find(BEGIN.format(key))
    if start < 0:
        return None
    end = text.find(END, start)
    return (start, end + len(END)) if end >= 0 else None


def export_problems(write: bool = False) -> list[str]:
    """Exported cells that differ from their module's block; with write=True, rewrite the blocks."""
    problems = []
    for source in all_sources():
        key = f"{source.parent.name}/{source.stem}"
        for module, cells in exported_cells(source).items():
            path = _module_file(module)
            if not path.exists():
                problems.append(f"{key} exports to {module}, but {path.name} does not exist")
                continue
            text = path.read_text(encoding="utf-8")
            span = _find_block(text, key)
            if span is None:
                problems.append(
                    f"{path.relative_to(ROOT)} has no block '{BEGIN.format(key)}' ... "
                    f"'{END}' for the cells {key} exports"
                )
                continue
            block = _block(source, cells)
            if text[span[0] : span[1]] != block:
                if write:
                    path.write_text(text[: span[0]] + block + text[span[1] :], encoding="utf-8")
                else:
                    problems.append(
                        f"{path.relative_to(ROOT)}: the block from {key} differs from the "
                        "lesson's `#| export` cells: run `make lib`"
                    )
    return problems


def main(argv: list[str] | None = None) -> int:
    """Command line: build, export or check the notebook/text pairs."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["build", "export", "check", "lib"])
    ap.add_argument("paths", nargs="*", type=Path)
    args = ap.parse_args(argv)
    if args.command == "check":
        problems = out_of_sync() + export_problems()
        for p in problems:
            print(p)
        print(
            "notebooks and text sources in sync" if not problems else f"{len(problems)} problem(s)"
        )
        return 1 if problems else 0
    if args.command == "lib":
        problems = export_problems(write=True)
        for p in problems:
            print(p)
        return 1 if problems else 0
    if args.command == "export":
        paths = args.paths or [p for f in FOLDERS for p in sorted((ROOT / f).glob("*.ipynb"))]
        for p in paths:
            print(f"wrote {export(p).relative_to(ROOT)}")
        return 0
    for src in args.paths or all_sources():
        target, changed = build(src)
        # the list of notebooks to execute goes to stdout, one per line
        print(target.relative_to(ROOT) if changed else "", end="\n" if changed else "")
        print(
            f"built {target.relative_to(ROOT)}" + (" (code changed)" if changed else ""),
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
