"""The interview question bank: every chapter's interview questions in one file, generated from solutions/.

`make exercises` writes QUESTIONS.md (python -m course_lib.course.question_bank); `--check` reports
when it is stale (used by the tests). The questions and answers live only in the solution
notebooks' "Interview questions" sections: `**Qn. question**` followed by an answer between
`<!-- BEGIN SOLUTION -->` and `<!-- END SOLUTION -->`.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

from course_lib.course.exercises import SOLUTIONS_DIR, solution_notebooks
from course_lib.data import ROOT

BANK_PATH = ROOT / "QUESTIONS.md"
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
    """(question, answer) pairs of one solutions notebook's 'Interview questions' section."""
    nb = nbformat.read(path, as_version=4)
    text, inside = "", False
    for cell in nb.cells:
        if cell.cell_type == "markdown" and re.search(
            r"^#+ .*Interview questions", cell.source, re.M
        ):
            inside = True
        if inside and cell.cell_type == "markdown":
            text += cell.source + "\n\n"
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


def render(solutions_dir: str | Path = SOLUTIONS_DIR) -> str:
    """QUESTIONS.md: per chapter, each question with a collapsed answer and a link to its notebook."""
    lines = [
        "# Interview question bank",
        "",
        "Every chapter's interview questions in one place, generated from `solutions/` by "
        "`make exercises` (do not edit by hand). Try each one aloud first; the answers "
        "quote numbers the course measured. Each chapter's link opens the solutions notebook.",
        "",
    ]
    for path in solution_notebooks(solutions_dir):
        pairs = interview_questions(path)
        if not pairs:
            continue
        nb = nbformat.read(path, as_version=4)
        lines += [
            f"## {_title(nb, path)}",
            "",
            f"Answers with the exercises: [solutions/{path.name}](solutions/{path.name})",
            "",
        ]
        for i, (question, answer) in enumerate(pairs, 1):
            lines += [f"{i}. **{question}**", "", "   <details><summary>answer</summary>", ""]
            lines += [("   " + line).rstrip() for line in answer.splitlines()]
            lines += ["", "   </details>", ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line: write QUESTIONS.md, or with --check report whether it is stale."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report; exit 1 when stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        fresh = BANK_PATH.exists() and BANK_PATH.read_text(encoding="utf-8") == text
        print("QUESTIONS.md is in sync" if fresh else "QUESTIONS.md is stale: run `make exercises`")
        return 0 if fresh else 1
    BANK_PATH.write_text(text, encoding="utf-8", newline="\n")
    print(f"wrote QUESTIONS.md ({text.count('<details>')} questions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
