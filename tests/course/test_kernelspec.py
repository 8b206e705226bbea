"""Opening a notebook in JupyterLab must leave the clone clean.

When JupyterLab starts a notebook's kernel it writes the kernel's `kernelspec` (name,
display_name, language) and `language_info` (from the kernel's info reply) into the notebook,
and marks it modified (so autosave rewrites the file) only if they differ from what is stored.
So the committed notebooks must carry exactly what the installed kernel reports; the builders
(notebook_sources, run_notebooks, exercises) write it.
"""

from __future__ import annotations

import json

import pytest
from ipykernel.ipkernel import IPythonKernel
from jupyter_client.kernelspec import KernelSpecManager

from course_lib.course.notebook_sources import KERNELSPEC
from course_lib.data import ROOT

NOTEBOOKS = sorted(
    p for folder in ["notebooks", "solutions", "exercises"] for p in (ROOT / folder).glob("*.ipynb")
)


def installed_kernelspec() -> dict:
    """What JupyterLab writes for the installed python3 kernel."""
    spec = KernelSpecManager().get_kernel_spec("python3")
    return {"name": "python3", "display_name": spec.display_name, "language": spec.language}


def test_the_builders_write_the_installed_kernelspec():
    assert installed_kernelspec() == KERNELSPEC, (
        f"notebook_sources.KERNELSPEC {KERNELSPEC} differs from the installed kernel's "
        f"{installed_kernelspec()}: JupyterLab would rewrite every notebook on opening"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebook_metadata_is_what_jupyterlab_would_write(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb["metadata"].get("kernelspec") == installed_kernelspec(), (
        f"{path.name}: kernelspec {nb['metadata'].get('kernelspec')} differs from the installed "
        f"kernel's {installed_kernelspec()}; rebuild it (make notebooks / make exercises)"
    )
    stored = {k: v for k, v in nb["metadata"].get("language_info", {}).items() if k != "version"}
    kernel = {k: v for k, v in IPythonKernel.language_info.items() if k != "version"}
    assert stored == kernel, (
        f"{path.name}: language_info {stored} differs from the kernel's {kernel}; "
        "execute it (make execute) so that nbclient records the kernel's own"
    )
    assert (nb["nbformat"], nb["nbformat_minor"]) == (4, 5), "JupyterLab saves nbformat 4.5"
    assert all(cell.get("id") for cell in nb["cells"]), "JupyterLab would add missing cell ids"
