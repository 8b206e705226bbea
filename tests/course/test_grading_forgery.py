"""The grader against forged submissions (chapter 04, the smallest exercise notebook).

Each forgery tried by a student must score nothing or be flagged "needs review", while an honest
submission (the solutions) grades 5/5 with no flag. One grading run is shared by the tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import nbformat
import pytest

from course_lib.course import grading, review
from course_lib.course.checks import SIGNED_MIME
from course_lib.data import ROOT

CHAPTER = "04_lora"
EXERCISES = ROOT / "exercises" / f"{CHAPTER}_exercises.ipynb"
SOLUTIONS = ROOT / "solutions" / f"{CHAPTER}_solutions.ipynb"
COURSE_FILES = [EXERCISES, ROOT / "course_lib" / "course" / "checkers" / "ch04.py"]
IDS = {
    "04.1": "04.1 LoRA parameter count",
    "04.2": "04.2 LoRA on an embedding",
    "04.5": "04.5 the best rank-r factors",
}
USER_ISOLATION = grading.user_isolation_possible()


def _edit(nb, marker: str, source: str) -> None:
    """Replace the source of the code cell that contains `marker`."""
    [cell] = [c for c in nb.cells if c.cell_type == "code" and marker in c.source]
    cell.source = source


def _add(nb, source: str) -> None:
    nb.cells.append(nbformat.v4.new_code_cell(source))


def _log_and_print_forger(path) -> None:
    """Untouched exercises plus a cell that appends passes to the old log file, prints fake
    '✔ … passed' lines and shows an output that imitates a signed record."""
    nb = nbformat.read(EXERCISES, as_version=4)
    _add(
        nb,
        "import json, os\n"
        "from IPython.display import display\n"
        f"ids = {sorted(grading.load_reference(EXERCISES).exercises)!r}\n"
        "log = os.environ.get('COURSE_CHECK_LOG', 'checks.jsonl')\n"
        "with open(log, 'a') as f:\n"
        "    for e in ids:\n"
        "        f.write(json.dumps({'exercise': e, 'passed': True, 'message': 'ok'}) + '\\n')\n"
        "for e in ids:\n"
        "    print(f'✔ {e}: passed')\n"
        "    body = json.dumps({'exercise': e, 'results': [{'exercise': e, 'passed': True}]})\n"
        f"    display({{{SIGNED_MIME!r}: {{'body': body, 'mac': '0' * 64}}}}, raw=True)",
    )
    nbformat.write(nb, path)


def _monkeypatcher(path) -> None:
    """Solutions with wrong answers, made to 'pass' by patching the checks."""
    nb = nbformat.read(SOLUTIONS, as_version=4)
    _edit(
        nb,
        "def lora_param_count",
        "class AlwaysEqual:\n"
        "    def __eq__(self, other):\n"
        "        return True\n\n\n"
        "def lora_param_count(shapes, r):\n"
        "    return AlwaysEqual()",
    )
    _edit(
        nb,
        "class LoRAEmbedding",
        "class LoRAEmbedding(torch.nn.Module):\n"
        "    pass\n\n\n"
        "ch04.check_embedding_lora = lambda cls: print('✔ 04.2 LoRA on an embedding: passed')",
    )
    _edit(
        nb,
        "def svd_factors",
        "ch04.expect_close = lambda *args, **kwargs: None\n\n\n"
        "def svd_factors(M, r):\n"
        "    return torch.zeros(M.shape[0], r), torch.zeros(r, M.shape[1])",
    )
    nbformat.write(nb, path)


def _tamperer(path, folder) -> None:
    """Untouched exercises plus a cell that tries to rewrite the course's exercises notebook and
    checker, and to read a classmate's notebook."""
    nb = nbformat.read(EXERCISES, as_version=4)
    targets = [str(p) for p in COURSE_FILES]
    _add(
        nb,
        f"for target in {targets!r}:\n"
        "    try:\n"
        "        with open(target, 'a') as f:\n"
        "            f.write('# tampered')\n"
        "        print('WROTE', target)\n"
        "    except OSError as error:\n"
        "        print('REFUSED', type(error).__name__)\n"
        "try:\n"
        f"    print('READ', open({str(folder / 'ana' / EXERCISES.name)!r}).read()[:20])\n"
        "except OSError as error:\n"
        "    print('HIDDEN', type(error).__name__)",
    )
    nbformat.write(nb, path)


def _resource_hog(path) -> None:
    """Untouched exercises plus a thread bomb, detached processes and a memory hog."""
    nb = nbformat.read(EXERCISES, as_version=4)
    _add(
        nb,
        "import threading, time\n"
        "threading.stack_size(256 * 1024)\n"
        "started = 0\n"
        "try:\n"
        "    for _ in range(3000):\n"
        "        threading.Thread(target=time.sleep, args=(3,), daemon=True).start()\n"
        "        started += 1\n"
        "except RuntimeError:\n"
        "    pass\n"
        "print('THREADS', started)",
    )
    _add(
        nb,
        "import subprocess\n"
        "for _ in range(2):\n"
        "    subprocess.Popen(['sleep', '321'], start_new_session=True)",
    )
    _add(nb, "hog = [bytearray(2**30) for _ in range(512)]")
    nbformat.write(nb, path)


def _digest(paths) -> list[str]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


def _sleepers() -> list[int]:
    """Processes running `sleep 321` (the hog's detached children)."""
    found = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if f.read().split(b"\0")[:2] == [b"sleep", b"321"]:
                    found.append(int(entry))
        except (OSError, ValueError):
            continue
    return found


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("submissions")
    names = ["ana", "eve", "mal", "hog"] + (["tam"] if USER_ISOLATION else [])
    for name in names:
        (folder / name).mkdir()
    shutil.copy(SOLUTIONS, folder / "ana" / EXERCISES.name)
    _log_and_print_forger(folder / "eve" / EXERCISES.name)
    _monkeypatcher(folder / "mal" / EXERCISES.name)
    _resource_hog(folder / "hog" / EXERCISES.name)
    if USER_ISOLATION:
        _tamperer(folder / "tam" / EXERCISES.name, folder)
    before = _digest(COURSE_FILES)
    isolation = "user" if USER_ISOLATION else "auto"  # never the tamperer without isolation
    grades = grading.grade_folder(folder, timeout=180, memory_gb=6, isolation=isolation)
    after = _digest(COURSE_FILES)
    executed = {
        name: nbformat.read(folder / "_grades" / name / EXERCISES.name, as_version=4)
        for name in names
    }
    return {g.student: g for g in grades}, executed, before == after, folder


def _output(nb, marker: str) -> str:
    [cell] = [c for c in nb.cells if c.cell_type == "code" and marker in c.source]
    return "".join(o.get("text", "") for o in cell.outputs)


def test_honest_submission_passes_everything_without_flags(graded):
    g, executed, _, _ = graded
    assert g["ana"].run == "ok", f"got {g['ana'].run}: {g['ana'].detail}"
    assert g["ana"].score == (5, 5), (
        f"the solutions must pass all 5 checks, got {g['ana'].exercises}"
    )
    assert g["ana"].review == [], f"an honest submission must not be flagged, got {g['ana'].review}"
    assert g["ana"].isolation == ("user" if USER_ISOLATION else "none")
    text = json.dumps(executed["ana"])
    assert "sign(" not in text and "arm_grading" not in text, (
        "the grader's own cells (and their one-time keys) must not be left in the saved notebook"
    )


def test_log_forging_and_printed_passes_count_for_nothing(graded):
    g, _, _, _ = graded
    assert g["eve"].score[0] == 0, (
        f"forged log lines must not pass a check, got {g['eve'].exercises}"
    )
    flags = "\n".join(g["eve"].review)
    for expected in [
        "COURSE_CHECK_LOG",
        "looks like a check result",
        "without a check call printed '✔",
        "imitating a signed check result",
    ]:
        assert expected in flags, f"expected a flag about {expected!r}, got:\n{flags}"


def test_monkeypatched_checkers_and_fake_objects_are_caught(graded):
    g, _, _, _ = graded
    ex = g["mal"].exercises
    assert g["mal"].score[0] == 0, f"a patched checker must not pass anything, got {ex}"
    assert "defined in your notebook" in ex[IDS["04.1"]][1], (
        f"an object that equals everything must fail 04.1, got {ex[IDS['04.1']]}"
    )
    for exercise in [IDS["04.2"], IDS["04.5"]]:
        assert ex[exercise][0] == "failed" and "checker was changed" in ex[exercise][1], (
            f"{exercise} ran a replaced checker and must fail, got {ex[exercise]}"
        )
    flags = "\n".join(g["mal"].review)
    for expected in ["ch04.check_embedding_lora", "ch04.expect_close", "AlwaysEqual.__eq__"]:
        assert expected in flags, f"expected a flag naming {expected}, got:\n{flags}"


@pytest.mark.skipif(not USER_ISOLATION, reason="user isolation needs root on Linux")
def test_course_files_and_classmates_are_out_of_reach(graded):
    g, executed, unchanged, _ = graded
    assert unchanged, "a submission must not be able to rewrite the course's exercises or checkers"
    out = _output(executed["tam"], "tampered")
    assert "WROTE" not in out and out.count("REFUSED") == 2, f"got: {out}"
    assert "HIDDEN" in out and "READ" not in out, f"a classmate's notebook must be hidden: {out}"
    assert any("names a path outside" in flag for flag in g["tam"].review), g["tam"].review


def test_resource_hog_ends_as_crashed_and_leaves_nothing_running(graded):
    g, executed, _, _ = graded
    assert g["hog"].run == "crashed" and "out of memory" in g["hog"].detail, (
        f"a memory hog must end as crashed (out of memory), got {g['hog'].run}: {g['hog'].detail}"
    )
    assert _sleepers() == [], "processes a notebook started must be killed when it ends"
    if USER_ISOLATION:
        threads = int(_output(executed["hog"], "THREADS").split()[-1])
        assert threads < 1000, f"the process limit must stop a thread bomb, it started {threads}"


def test_without_user_isolation_a_changed_course_stops_grading(tmp_path):
    course = tmp_path / "course"
    (course / "exercises").mkdir(parents=True)
    shutil.copy(EXERCISES, course / "exercises")
    folder = tmp_path / "submissions"
    for name in ["a_tamperer", "b_next"]:
        (folder / name).mkdir(parents=True)
    nb = nbformat.read(EXERCISES, as_version=4)
    target = course / "exercises" / EXERCISES.name
    _add(nb, f"open({str(target)!r}, 'a').write(' ')")
    nbformat.write(nb, folder / "a_tamperer" / EXERCISES.name)
    shutil.copy(EXERCISES, folder / "b_next" / EXERCISES.name)
    first, second = grading.grade_folder(
        folder,
        timeout=120,
        exercises_dir=course / "exercises",
        isolation="none",
        course_root=course,
    )
    assert any("course's files changed" in flag for flag in first.review), first.review
    assert second.run == "not graded" and "a_tamperer" in second.detail, (
        f"grading must stop after a notebook changed the course, got {second.run}: {second.detail}"
    )


# --- the pieces, without a kernel --------------------------------------------------------------


def test_check_calls_are_stripped_and_the_grader_cells_injected():
    reference = grading.load_reference(EXERCISES)
    student = nbformat.read(SOLUTIONS, as_version=4)
    nb, injected, prelude = grading.prepare(student, reference)
    assert nb.cells[0].id == prelude and "arm_grading" in nb.cells[0].source
    student_code = [c.source for c in nb.cells if not c.get("metadata", {}).get("course_grader")]
    assert not any(grading.CHECK_CALL.search(s) for s in student_code), (
        "the student's own check calls must be removed"
    )
    assert [i.call.exercise for i in injected] == reference.exercises
    keys = {i.key for i in injected}
    assert len(keys) == len(injected) and all(len(k) == 64 for k in keys), "one fresh key per check"
    for item in injected:
        cells = {c.id: c.source for c in nb.cells}
        assert item.key in cells[item.sign_id] and item.key not in cells[item.check_id], (
            "the key must appear only in the signing cell, after the check"
        )


def test_a_mixed_check_cell_keeps_the_students_code():
    source = "floor = compute()\nch01.check_floor(floor)\nprint(floor)"
    assert grading.strip_check_calls(source) == "floor = compute()\nprint(floor)"
    assert grading.strip_check_calls("x = (\nch01.check_floor(floor)") == "x = ("


def test_review_flags_the_obvious_forms():
    cells = [
        "import course_lib.course.checks as c\nc.RESULTS.clear()",
        "import sys\nsys.modules['x'] = None",
        "import builtins\nbuiltins.print = lambda *a: None",
        "open('../ana/04_lora_exercises.ipynb').read()",
        "exec(bytes.fromhex('7072696e74').decode())",
        "import threading",
        "frame = sys._getframe(1)",
    ]
    flags = "\n".join(review.review(cells, []))
    for expected in [
        "the check framework's internals",
        "sys.modules",
        "builtins.print",
        "path outside",
        "dynamically built code",
        "threads",
        "sys._getframe",
    ]:
        assert expected in flags, f"expected a flag about {expected!r}, got:\n{flags}"
    honest = nbformat.read(SOLUTIONS, as_version=4)
    assert review.review(review.code_cells(honest), []) == [], "the solutions must raise no flag"
