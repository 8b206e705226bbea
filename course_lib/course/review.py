"""Static review of a submitted notebook: code that has no business in an exercise is flagged.

Used by the instructor's grader (course_lib.course.grading): each finding is reported as "needs
review" next to the grade; nothing is failed automatically by it. Flagged: code touching the
grading machinery (the check framework's internals, the signed-result MIME type, the old
COURSE_CHECK_LOG), monkeypatching (assigning to an attribute of an imported module, a checker,
builtins), introspection that can reach a running check (frames, gc, tracing, IPython's
history and events), dynamically built code (exec, eval), processes, threads and signals, paths
outside the notebook's own folder, text that imitates a check's "✔ … passed" line, and classes
whose `__eq__` could claim to equal anything.

A finding that the course's own exercise or solution notebook also produces is not reported.
A static check is easy to evade (exec of an encoded string is flagged, but what it runs is not
seen): it catches the obvious forms, the sandbox and the signed results do the rest.
"""

from __future__ import annotations

import ast
import re

from IPython.core.inputtransformer2 import TransformerManager

MACHINERY_NAMES = {
    "COURSE_CHECK_LOG": "the old check log variable",
    "vnd.course": "the grader's signed-result MIME type",
    "course_lib.course.checks": "the check framework's internals",
    "course_lib.course.grading": "the grader",
    "course_lib.course.sandbox": "the grader's sandbox",
    "course_lib.course.review": "the grader's review",
}
INTROSPECTION = {
    "sys._getframe",
    "sys.settrace",
    "sys.setprofile",
    "sys.addaudithook",
    "sys.modules",
    "sys.meta_path",
    "sys.path_hooks",
    "inspect.currentframe",
    "inspect.stack",
    "inspect.getouterframes",
    "inspect.trace",
    "gc.get_objects",
    "gc.get_referrers",
    "gc.get_referents",
    "threading.settrace",
    "threading.setprofile",
    "importlib.reload",
    "importlib.import_module",
}
INTROSPECTION_MODULES = {"ctypes", "builtins", "importlib", "marshal", "pickletools", "code"}
DUNDER_ATTRS = {
    "__closure__",
    "cell_contents",
    "__code__",
    "__globals__",
    "__defaults__",
    "__kwdefaults__",
    "__builtins__",
    "__subclasses__",
    "f_back",
    "f_locals",
    "f_globals",
    "tb_frame",
    "gi_frame",
}
IPYTHON_HISTORY = {"In", "Out", "_ih", "_oh", "_i", "_ii", "_iii", "_dh"}
DYNAMIC = {"exec", "eval", "compile", "__import__", "globals", "vars", "setattr", "delattr"}
PROCESS_MODULES = {"subprocess", "multiprocessing", "pty", "signal", "threading", "_thread"}
PROCESS_CALLS = re.compile(r"^os\.(fork\w*|system|popen|exec\w*|spawn\w*|kill\w*|posix_spawn\w*)$")
SHELL_MAGICS = {"system", "getoutput", "bash", "sh", "script", "sx", "perl", "ruby", "writefile"}
COURSE_FOLDERS = re.compile(
    r"(^|[/\\])(exercises|solutions|notebooks|course_lib|checkers|sources|\.venv|site-packages|"
    r"\.git|_grades|data)([/\\]|$)"
)
STAND_IN_METHODS = {"__eq__", "__ne__", "__float__", "__abs__", "__bool__"}
FAKE_CHECK_TEXT = re.compile(r"[✔✘]|\b\d\d\.\d+\b.*\bpassed\b")


def _python(source: str) -> str:
    """Cell source as plain Python (IPython's % and ! lines become get_ipython() calls)."""
    try:
        return TransformerManager().transform_cell(source)
    except Exception:  # the transformer gives up on some broken input; parse what is there
        return source


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str:
    """'torch.nn.functional.softmax' for an attribute chain, imported aliases resolved; or ''."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(aliases.get(node.id, node.id))
    elif isinstance(node, ast.Call):
        inner = _dotted(node.func, aliases)
        if not inner:
            return ""
        parts.append(inner + "()")
    else:
        return ""
    return ".".join(reversed(parts))


def _looks_like_path(text: str) -> bool:
    """An absolute path, a '..' step or a course folder in a string."""
    if "://" in text or len(text) > 300 or "\n" in text:
        return False
    return bool(
        re.match(r"^(/|~|[A-Za-z]:\\)\S", text)
        or re.search(r"(^|[/\\])\.\.([/\\]|$)", text)
        or COURSE_FOLDERS.search(text)
    )


class _Finder(ast.NodeVisitor):
    """Collect (reason, detail) findings in one cell."""

    def __init__(self, aliases: dict[str, str], modules: set[str]):
        self.aliases, self.modules, self.found = aliases, modules, set()

    def add(self, reason: str, detail: str) -> None:
        self.found.add((reason, detail[:80]))

    # imports: remember aliases, flag machinery and process modules
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.asname:  # import torch.nn as nn: nn is torch.nn
                name, full = alias.asname, alias.name
            else:  # import torch.nn: the name bound is torch
                name = full = alias.name.split(".")[0]
            self.aliases[name] = full
            self.modules.add(name)
            self._module_used(alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            full = f"{node.module}.{alias.name}" if node.module else alias.name
            self.aliases[alias.asname or alias.name] = full
            if re.fullmatch(r"ch\d\d|checks|builtins", alias.name) or alias.name == "*":
                self.modules.add(alias.asname or alias.name)
            self._module_used(full)

    def _module_used(self, full: str) -> None:
        root = full.split(".")[0]
        for needle, what in MACHINERY_NAMES.items():
            if full.startswith(needle):
                self.add(f"touches {what}", full)
        if root in PROCESS_MODULES:
            self.add("starts processes or threads, or handles signals", full)
        if root in INTROSPECTION_MODULES:
            self.add("uses introspection that can reach a running check", full)

    # names and attributes
    def visit_Name(self, node: ast.Name) -> None:
        if node.id in IPYTHON_HISTORY:
            self.add("reads IPython's input/output history", node.id)
        if node.id in DYNAMIC and isinstance(node.ctx, ast.Load):
            self.add("runs dynamically built code or sets attributes by name", node.id)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        full = _dotted(node, self.aliases)
        if node.attr in DUNDER_ATTRS:
            self.add("uses introspection that can reach a running check", full or node.attr)
        if full:
            if full in INTROSPECTION or any(full.startswith(n + ".") for n in INTROSPECTION):
                self.add("uses introspection that can reach a running check", full)
            if PROCESS_CALLS.match(full):
                self.add("starts processes or threads, or handles signals", full)
            if full.startswith("get_ipython().") and ".events" in full:
                self.add("hooks into IPython's events", full)
            for needle, what in MACHINERY_NAMES.items():
                if full.startswith(needle):
                    self.add(f"touches {what}", full)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        full = _dotted(node.func, self.aliases)
        if full in ("get_ipython().run_line_magic", "get_ipython().run_cell_magic") and node.args:
            magic = node.args[0]
            if isinstance(magic, ast.Constant) and magic.value in SHELL_MAGICS:
                self.add("runs shell commands", f"%{magic.value}")
        if full in ("get_ipython().system", "get_ipython().getoutput"):
            self.add("runs shell commands", "!")
        if full in ("setattr", "delattr") and node.args:
            target = _dotted(node.args[0], self.aliases) or getattr(node.args[0], "id", "")
            if target.split(".")[0] in self.modules or target in self.modules:
                self.add("monkeypatches a module, a checker or builtins", f"{full}({target}, …)")
        self.generic_visit(node)

    # assignments to a module's attribute: monkeypatching
    def _target(self, target: ast.AST) -> None:
        while isinstance(target, ast.Subscript):
            target = target.value
        if isinstance(target, ast.Attribute):
            full = _dotted(target, self.aliases)
            root = target
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in self.modules | {"__builtins__"}:
                self.add("monkeypatches a module, a checker or builtins", full)
        elif isinstance(target, ast.Name) and re.fullmatch(r"ch\d\d|CheckFailed|check", target.id):
            self.add("rebinds a name of the check machinery", target.id)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self._target(element)

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._target(target)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._target(node.target)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._target(node.target)
        self.generic_visit(node)

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            self._target(target)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if item.name in STAND_IN_METHODS:
                    self.add(
                        "defines a comparison or conversion that could fake an answer",
                        f"{node.name}.{item.name}",
                    )
            if isinstance(item, ast.Assign):
                for target in item.targets:
                    if isinstance(target, ast.Name) and target.id in STAND_IN_METHODS:
                        self.add(
                            "defines a comparison or conversion that could fake an answer",
                            f"{node.name}.{target.id}",
                        )
        self.generic_visit(node)

    # strings: paths and imitated check output
    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str):
            text = node.value
            if FAKE_CHECK_TEXT.search(text):
                self.add("prints text that looks like a check result", text)
            if _looks_like_path(text):
                self.add("names a path outside the notebook's own folder", text)
            for needle, what in MACHINERY_NAMES.items():
                if needle in text:
                    self.add(f"touches {what}", text)

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
        if FAKE_CHECK_TEXT.search(text):
            self.add("prints text that looks like a check result", text)
        self.generic_visit(node)


def findings(cells: list[str]) -> list[tuple[int, str, str]]:
    """(cell number, reason, detail) for each finding in a list of code cell sources."""
    aliases: dict[str, str] = {}
    modules: set[str] = set()
    found = []
    for number, source in enumerate(cells, start=1):
        finder = _Finder(aliases, modules)
        try:
            finder.visit(ast.parse(_python(source)))
        except (SyntaxError, ValueError):  # it cannot run either; look at the raw text
            for needle, what in MACHINERY_NAMES.items():
                if needle in source:
                    finder.add(f"touches {what}", needle)
            if FAKE_CHECK_TEXT.search(source):
                finder.add("prints text that looks like a check result", "✔")
        found += [(number, reason, detail) for reason, detail in sorted(finder.found)]
    return found


def code_cells(nb) -> list[str]:
    """The sources of a notebook's code cells (in order)."""
    return [c.source for c in nb.cells if c.cell_type == "code"]


def review(submission: list[str], references: list[list[str]]) -> list[str]:
    """'code cell N: reason: detail' for each finding of `submission` that no reference has."""
    expected = {(r, d) for cells in references for _, r, d in findings(cells)}
    return [
        f"code cell {number}: {reason}: {detail!r}"
        for number, reason, detail in findings(submission)
        if (reason, detail) not in expected
    ]
