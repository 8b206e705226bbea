"""The interview question bank: every chapter's interview questions in one file, generated from solutions/.

`make exercises` writes QUESTIONS.md and its Chinese edition QUESTIONS.zh.md
(python -m course_lib.course.question_bank); `--check` reports when either is stale (used by the
tests). The questions and answers live only in the solution notebooks' "Interview questions"
sections, plus the course-wide ones in sources/questions/00_course.md: `**Qn. question**` followed
by an answer between `<!-- BEGIN SOLUTION -->` and `<!-- END SOLUTION -->`.

The Chinese translations live beside them in sources/questions/translations.zh.yaml, keyed by
question id ("03.5": chapter 03, question 5), each with a hash of the English question and answer
it translates. When an English answer changes, its translation is stale: the tests fail until it is
updated. `--translations` lists the questions whose translation is missing or stale (a new chapter's
questions appear in English in QUESTIONS.zh.md until translated). Terms follow GLOSSARY.md.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from pathlib import Path

import nbformat

from course_lib.course.exercises import SOLUTIONS_DIR, solution_notebooks
from course_lib.data import ROOT

BANK_PATH = ROOT / "QUESTIONS.md"
ZH_PATH = ROOT / "QUESTIONS.zh.md"
GENERAL_PATH = ROOT / "sources" / "questions" / "00_course.md"
TRANSLATIONS_PATH = ROOT / "sources" / "questions" / "translations.zh.yaml"
QUESTION = re.compile(r"^\*\*Q(\d+)\.\s*(.+?)\*\*\s*$", re.MULTILINE)
ANSWER = re.compile(r"<!-- BEGIN SOLUTION -->\s*(.*?)\s*<!-- END SOLUTION -->", re.DOTALL)


def _title(nb, path: Path) -> str:
    """The notebook's '# NN · Title' line without the trailing '— Solutions'."""
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.startswith("# "):
            title = cell.source.splitlines()[0][2:]
            return re.sub(r"\s*[—-]+\s*Solutions\s*$", "", title).strip()
    return path.stem


def interview_questions(path: str | Path) -> list[tuple[str, str]]:
    """(question, answer) pairs of one solutions notebook's 'Interview questions' section (or of
    a markdown file such as sources/questions/00_course.md)."""
    if Path(path).suffix == ".md":
        return _pairs(Path(path).read_text(encoding="utf-8"), path)
    nb = nbformat.read(path, as_version=4)
    text, inside = "", False
    for cell in nb.cells:
        if cell.cell_type == "markdown" and re.search(
            r"^#+ .*Interview questions", cell.source, re.M
        ):
            inside = True
        if inside and cell.cell_type == "markdown":
            text += cell.source + "\n\n"
    return _pairs(text, path)


def _pairs(text: str, path: str | Path) -> list[tuple[str, str]]:
    """(question, answer) pairs of a text with `**Qn. …**` heads and solution-marked answers."""
    heads = list(QUESTION.finditer(text))
    pairs = []
    for i, head in enumerate(heads):
        body = text[head.end() : heads[i + 1].start() if i + 1 < len(heads) else len(text)]
        answer = ANSWER.search(body)
        if answer is None:
            raise ValueError(
                f"{Path(path).name}: Q{head.group(1)} has no answer between "
                "<!-- BEGIN SOLUTION --> and <!-- END SOLUTION -->"
            )
        pairs.append((head.group(2).strip(), answer.group(1).strip()))
    return pairs


def chapters(solutions_dir: str | Path = SOLUTIONS_DIR) -> list[dict]:
    """Every source of questions in order: {prefix, title, link, pairs} (the course-wide file first)."""
    found = []
    if GENERAL_PATH.exists():
        title = GENERAL_PATH.read_text(encoding="utf-8").splitlines()[0].lstrip("# ").strip()
        found.append(
            {
                "prefix": "00",
                "title": title,
                "link": "README.md",  # the course overview (sources/ is not on the site)
                "pairs": interview_questions(GENERAL_PATH),
            }
        )
    for path in solution_notebooks(solutions_dir):
        pairs = interview_questions(path)
        if pairs:
            nb = nbformat.read(path, as_version=4)
            link = f"solutions/{path.name}"
            found.append(
                {"prefix": path.name[:2], "title": _title(nb, path), "link": link, "pairs": pairs}
            )
    return found


def question_id(prefix: str, number: int) -> str:
    """'03.5': chapter 03, question 5 (the key of its translation)."""
    return f"{prefix}.{number}"


def english_hash(question: str, answer: str) -> str:
    """12 hex digits of SHA-256 over the English question and answer (what a translation is of)."""
    return hashlib.sha256(f"{question}\n\n{answer}".encode()).hexdigest()[:12]


def _details(summary: str, answer: str) -> list[str]:
    lines = ["", f"   <details><summary>{summary}</summary>", ""]
    lines += [("   " + line).rstrip() for line in answer.splitlines()]
    return lines + ["", "   </details>", ""]


def render(solutions_dir: str | Path = SOLUTIONS_DIR) -> str:
    """QUESTIONS.md: per chapter, each question with a collapsed answer and a link to its notebook."""
    lines = [
        "# Interview question bank",
        "",
        "Every chapter's interview questions in one place, generated from `solutions/` by "
        "`make exercises` (do not edit by hand). Try each one aloud first; the answers "
        "quote numbers the course measured. Each chapter's link opens the solutions notebook. "
        "中文版: [QUESTIONS.zh.md](QUESTIONS.zh.md).",
        "",
    ]
    for chapter in chapters(solutions_dir):
        link = chapter["link"]
        lines += [f"## {chapter['title']}", "", f"Answers with the exercises: [{link}]({link})", ""]
        for i, (question, answer) in enumerate(chapter["pairs"], 1):
            lines += [f"{i}. **{question}**", *_details("answer", answer)]
    return "\n".join(lines).rstrip() + "\n"


def load_translations(path: Path = TRANSLATIONS_PATH) -> dict:
    """The translations file: {"titles": {prefix: 中文标题}, "questions": {id: {en, q, a}}}."""
    import yaml

    if not path.exists():
        return {"titles": {}, "questions": {}}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {"titles": data.get("titles") or {}, "questions": data.get("questions") or {}}


def translation_status(solutions_dir: str | Path = SOLUTIONS_DIR, translations=None) -> dict:
    """{"missing": [ids], "stale": [ids], "orphan": [ids]}: what the Chinese edition lacks."""
    translations = translations if translations is not None else load_translations()
    done = translations["questions"]
    status: dict[str, list[str]] = {"missing": [], "stale": [], "orphan": []}
    seen = set()
    for chapter in chapters(solutions_dir):
        for i, (question, answer) in enumerate(chapter["pairs"], 1):
            key = question_id(chapter["prefix"], i)
            seen.add(key)
            entry = done.get(key)
            if not entry:
                status["missing"].append(key)
            elif entry.get("en") != english_hash(question, answer):
                status["stale"].append(key)
    status["orphan"] = sorted(set(done) - seen)
    return status


def render_zh(solutions_dir: str | Path = SOLUTIONS_DIR, translations=None) -> str:
    """QUESTIONS.zh.md: the same questions in Chinese, each with its English question beside it;
    a question without an up-to-date translation is shown in English, marked."""
    translations = translations if translations is not None else load_translations()
    done, titles = translations["questions"], translations["titles"]
    lines = [
        "# 面试题库（中文版）",
        "",
        "与 [QUESTIONS.md](QUESTIONS.md) 同源：由 `make exercises` 从各章的 `solutions/` 生成，"
        "译文保存在 `sources/questions/translations.zh.yaml`（请勿手工编辑本文件）。"
        "术语与 [GLOSSARY.md](GLOSSARY.md) 一致。每题先自己口头作答，再展开答案；"
        "答案中的数字来自课程的实测。",
        "",
    ]
    for chapter in chapters(solutions_dir):
        zh_title = titles.get(chapter["prefix"])
        title = chapter["title"] + (f" · {zh_title}" if zh_title else "")
        link = chapter["link"]
        lines += [f"## {title}", "", f"答案与练习：[{link}]({link})", ""]
        for i, (question, answer) in enumerate(chapter["pairs"], 1):
            entry = done.get(question_id(chapter["prefix"], i))
            if entry and entry.get("en") == english_hash(question, answer):
                lines += [f"{i}. **{entry['q'].strip()}**", "", f"   *{question}*"]
                lines += _details("答案", entry["a"].strip())
            else:
                lines += [
                    f"{i}. **{question}**（尚未翻译，显示英文原文）",
                    *_details("answer", answer),
                ]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line: write QUESTIONS.md and QUESTIONS.zh.md; --check: are they stale;
    --translations: which Chinese translations are missing or stale."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report; exit 1 when stale")
    parser.add_argument(
        "--translations",
        action="store_true",
        help="list questions whose Chinese translation is missing or stale; exit 1 if any",
    )
    args = parser.parse_args(argv)
    if args.translations:
        status = translation_status()
        for kind, why in (
            ("missing", "no translation yet"),
            ("stale", "the English changed since it was translated: update it and its `en` hash"),
            ("orphan", "no such question any more: delete it"),
        ):
            for key in status[kind]:
                print(f"{key}: {kind} ({why})")
        todo = status["missing"] + status["stale"]
        print(f"{len(todo)} to translate" if todo else "every question is translated")
        return 1 if todo else 0
    outputs = {BANK_PATH: render(), ZH_PATH: render_zh()}
    if args.check:
        stale = [p.name for p, t in outputs.items() if not p.exists() or p.read_text("utf-8") != t]
        print(
            f"stale: {', '.join(stale)}: run `make exercises`"
            if stale
            else "question banks in sync"
        )
        return 1 if stale else 0
    for path, text in outputs.items():
        path.write_text(text, encoding="utf-8", newline="\n")
        print(f"wrote {path.name} ({text.count('<details>')} questions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
