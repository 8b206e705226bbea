"""QUESTIONS.md is generated from the solution notebooks' interview questions and kept in sync."""

import nbformat
import pytest

from course_lib.course import question_bank
from course_lib.course.exercises import solution_notebooks


def test_question_bank_in_sync():
    assert question_bank.BANK_PATH.exists(), "QUESTIONS.md is missing: run `make exercises`"
    assert question_bank.BANK_PATH.read_text(encoding="utf-8") == question_bank.render(), (
        "QUESTIONS.md is stale: run `make exercises` (edit the solution notebooks, never QUESTIONS.md)"
    )


@pytest.mark.parametrize(
    "path", solution_notebooks(question_bank.SOLUTIONS_DIR), ids=lambda p: p.name
)
def test_every_chapter_has_answered_interview_questions(path):
    pairs = question_bank.interview_questions(path)
    assert len(pairs) >= 3, (
        f"{path.name}: expected at least 3 interview questions, found {len(pairs)}"
    )
    assert all(len(answer) > 80 for _, answer in pairs), f"{path.name}: an answer is nearly empty"


def test_question_without_answer_is_an_error(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("## Interview questions\n\n**Q1. Why?**\n\nBecause.")]
    path = tmp_path / "99_x_solutions.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(ValueError, match="Q1 has no answer"):
        question_bank.interview_questions(path)


# --- the Chinese edition and the lessons' lists (issue 18, item 9) -------------------------------

import re  # noqa: E402

from course_lib.data import ROOT  # noqa: E402


def test_chinese_edition_in_sync():
    assert question_bank.ZH_PATH.exists(), "QUESTIONS.zh.md is missing: run `make exercises`"
    assert question_bank.ZH_PATH.read_text(encoding="utf-8") == question_bank.render_zh(), (
        "QUESTIONS.zh.md is stale: run `make exercises`"
    )


def test_no_translation_is_stale_or_orphaned():
    status = question_bank.translation_status()
    assert not status["stale"], (
        f"English answers changed since their Chinese translation: {status['stale']}. Update "
        "the translation in sources/questions/translations.zh.yaml and its `en` hash "
        "(python -m course_lib.course.question_bank --translations lists them)"
    )
    assert not status["orphan"], (
        f"translations of questions that no longer exist: {status['orphan']}"
    )


def test_chapters_up_to_13_are_translated():
    missing = [k for k in question_bank.translation_status()["missing"] if int(k[:2]) <= 13]
    assert not missing, f"questions without a Chinese translation: {missing}"


def test_a_changed_english_answer_makes_its_translation_stale():
    chapter = question_bank.chapters()[1]
    question, answer = chapter["pairs"][0]
    key = question_bank.question_id(chapter["prefix"], 1)
    entry = {"en": question_bank.english_hash(question, answer), "q": "问", "a": "答"}
    fresh = {"titles": {}, "questions": {key: entry}}
    assert key not in question_bank.translation_status(translations=fresh)["stale"]
    changed = {"titles": {}, "questions": {key: {**entry, "en": "0" * 12}}}
    assert key in question_bank.translation_status(translations=changed)["stale"]
    assert "尚未翻译" in question_bank.render_zh(translations=changed)


STOP = set(
    "a an the of and or to in on is are what why how do does you your for with when which it its "
    "by as be at from this that vs".split()
)


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOP and len(w) > 1}


def _lesson_questions(source) -> list[str]:
    """The bullets of a lesson source's '## Interview question(s)' section."""
    text = source.read_text(encoding="utf-8")
    head = re.search(r"^# ## Interview questions?\n", text, re.M)
    if not head:
        return []
    bullets, current = [], None
    for line in text[head.end() :].splitlines():
        if line.startswith("# * "):
            current = line[4:]
            bullets.append(current)
        elif current is not None and re.match(r"#   +\S", line):
            bullets[-1] += " " + line[1:].strip()
        elif current is None and line.strip() == "#":
            continue
        else:
            break
    return bullets


LESSON_SOURCES = sorted((ROOT / "sources" / "notebooks").glob("[0-9][0-9]_*.py"))


@pytest.mark.parametrize("source", LESSON_SOURCES, ids=lambda p: p.name[:2])
def test_every_question_a_lesson_lists_is_answered_in_the_bank(source):
    """Each bullet is matched, one to one, to a bank question of its chapter sharing ≥ 20 % of
    its content words (the wording may differ: the bank's question is often shorter)."""
    prefix = source.name[:2]
    bank = [c for c in question_bank.chapters() if c["prefix"] == prefix]
    asked = _lesson_questions(source)
    if not asked:
        pytest.skip(f"{source.name} lists no interview questions")
    if not bank:
        pytest.skip(f"chapter {prefix} has no solutions notebook yet")
    free = [q for q, _ in bank[0]["pairs"]]
    unmatched = []
    for bullet in sorted(asked, key=lambda b: -max(len(_words(b) & _words(q)) for q in free)):
        scores = [(len(_words(bullet) & _words(q)) / max(1, len(_words(bullet))), q) for q in free]
        score, best = max(scores, default=(0.0, ""))
        if score >= 0.2:
            free.remove(best)
        else:
            unmatched.append(bullet)
    assert not unmatched, (
        f"{source.name} lists interview questions with no answer in the bank: {unmatched}; add "
        "them (with answers) to the chapter's solutions notebook"
    )
