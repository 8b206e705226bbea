"""Execute notebooks in place, time them, and write the measured runtime into them.

`make execute` (python -m course_lib.course.run_notebooks notebooks/*.ipynb solutions/*.ipynb).
Used by maintainers before committing notebook outputs.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from course_lib.course.notebook_sources import KERNELSPEC

RUNTIME_LINE = re.compile(r"^\*\*Measured runtime:\*\*.*$", re.MULTILINE)
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def _strip_widgets(nb) -> None:
    """Drop widget views from outputs (their state is not saved) and widget metadata."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            out.get("data", {}).pop(WIDGET_MIME, None)


def set_runtime(nb, seconds: float) -> bool:
    """Rewrite the '**Measured runtime:**' line of the first markdown cell; False if absent."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            line = (
                f"**Measured runtime:** {seconds:.0f} s on a 2-core CPU "
                f"(`make execute`; your machine may differ)."
            )
            new, n = RUNTIME_LINE.subn(line, cell.source)
            cell.source = new
            return n > 0
    return False


def execute(path: Path, timeout: int = 600) -> float:
    """Run one notebook top to bottom in a fresh kernel, save it; return seconds taken."""
    nb = nbformat.read(path, as_version=4)
    os.environ["COURSE_PLAIN_PROGRESS"] = "1"
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        store_widget_state=False,
    )
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    _strip_widgets(nb)
    # what JupyterLab writes for the installed kernel, so that opening the notebook changes nothing
    # (nbclient has already recorded the kernel's own language_info)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    if not set_runtime(nb, seconds):
        print(f"  note: {path.name} has no '**Measured runtime:**' line to update")
    nbformat.write(nb, path)
    _runtime_into_source(path, nb)
    return seconds


def _runtime_into_source(path: Path, nb) -> None:
    """Copy the measured-runtime line into the notebook's text source, so the pair stays in sync."""
    from course_lib.course.notebook_sources import source_path

    try:
        source = source_path(path)
    except ValueError:  # not a lesson or solutions notebook (e.g. a grading copy)
        return
    line = RUNTIME_LINE.search(nb.cells[0].source) if nb.cells else None
    if not source.exists() or line is None:
        return
    text = source.read_text(encoding="utf-8")
    new = re.sub(
        r"^# \*\*Measured runtime:\*\*.*$", "# " + line.group(0), text, count=1, flags=re.MULTILINE
    )
    if new != text:
        source.write_text(new, encoding="utf-8")


def main() -> None:
    """Command line: execute the given notebooks in place and print their runtimes."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="+", type=Path)
    args = ap.parse_args()
    for path in args.notebooks:
        if not path.exists():
            raise SystemExit(f"{path} does not exist")
        print(f"{path}: {execute(path):.1f} s", flush=True)


if __name__ == "__main__":
    main()
