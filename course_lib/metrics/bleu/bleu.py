"""Corpus BLEU (Papineni et al., 2002), written in plain Python (course-local metric)."""
import math
import re
from collections import Counter

import datasets
import evaluate

_DESCRIPTION = """\
Corpus-level BLEU (Papineni et al., 2002). Each text is split into tokens: runs of word characters
(regex \\w+) and single punctuation characters, so "Hello, world!" gives ["Hello", ",", "world", "!"];
case is kept unless lowercase=True. For n = 1..max_order (default 4):
  p_n = sum over sentences of clipped n-gram matches / sum over sentences of candidate n-grams,
where a candidate n-gram is counted at most as often as it occurs in any single reference.
Brevity penalty: c = total candidate length, r = sum over sentences of the reference length closest
to the candidate length (the shorter one on a tie); BP = 1 if c > r else exp(1 - r / c).
BLEU = BP * exp(mean over n of log p_n); it is 0 when some p_n is 0.
smooth=True adds 1 to the numerator and denominator of p_n for n >= 2 (Lin and Och, 2004).
"""

_CITATION = """\
@inproceedings{papineni2002bleu,
  title     = {{BLEU}: a Method for Automatic Evaluation of Machine Translation},
  author    = {Papineni, Kishore and Roukos, Salim and Ward, Todd and Zhu, Wei-Jing},
  booktitle = {Proceedings of the 40th Annual Meeting of the ACL},
  pages     = {311--318},
  year      = {2002}
}
"""

_INPUTS = """\
Args:
    predictions (list of str): candidate texts.
    references (list of str, or list of list of str): one reference, or several, per candidate.
    max_order (int): longest n-gram (default 4).
    smooth (bool): add-one smoothing of the n >= 2 precisions (default False).
    lowercase (bool): lower-case every text before tokenising (default False).
Returns:
    {"bleu", "precisions" (one per order), "brevity_penalty", "length_ratio",
     "translation_length", "reference_length"}
Example:
    >>> metric.compute(predictions=["the cat sat on the mat"], references=[["the cat sat on the mat"]])["bleu"]
    1.0
"""

_TOKEN = re.compile(r"\w+|[^\w\s]")


def tokenize(text: str, lowercase: bool = False) -> list[str]:
    """Words and single punctuation characters, in order."""
    return _TOKEN.findall(text.lower() if lowercase else text)


def ngrams(tokens: list[str], n: int) -> Counter:
    """Counts of the n-grams of a token list."""
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def clipped_matches(candidate: list[str], references: list[list[str]], n: int) -> tuple[int, int]:
    """Clipped n-gram matches of one candidate, and its number of n-grams."""
    counts = ngrams(candidate, n)
    max_ref = Counter()
    for reference in references:
        max_ref |= ngrams(reference, n)          # element-wise maximum
    matches = sum(min(count, max_ref[gram]) for gram, count in counts.items())
    return matches, sum(counts.values())


def closest_length(candidate_length: int, references: list[list[str]]) -> int:
    """The reference length closest to the candidate's; the shorter one on a tie."""
    return min((len(ref) for ref in references), key=lambda length: (abs(length - candidate_length), length))


def brevity_penalty(candidate_length: int, reference_length: int) -> float:
    """1 for candidates longer than the references, exp(1 - r / c) otherwise."""
    if candidate_length > reference_length:
        return 1.0
    if candidate_length == 0:
        return 0.0
    return math.exp(1 - reference_length / candidate_length)


def corpus_bleu(candidates: list[list[str]], references: list[list[list[str]]],
                max_order: int = 4, smooth: bool = False) -> dict:
    """BLEU of tokenised candidates against their tokenised references."""
    matches, totals = [0] * max_order, [0] * max_order
    for candidate, refs in zip(candidates, references):
        for n in range(1, max_order + 1):
            m, t = clipped_matches(candidate, refs, n)
            matches[n - 1] += m
            totals[n - 1] += t
    precisions = []
    for n, (m, t) in enumerate(zip(matches, totals), start=1):
        if smooth and n >= 2:
            m, t = m + 1, t + 1
        precisions.append(m / t if t else 0.0)
    c = sum(len(candidate) for candidate in candidates)
    r = sum(closest_length(len(candidate), refs) for candidate, refs in zip(candidates, references))
    bp = brevity_penalty(c, r)
    geo_mean = math.exp(sum(math.log(p) for p in precisions) / max_order) if min(precisions) > 0 else 0.0
    return {"bleu": bp * geo_mean, "precisions": precisions, "brevity_penalty": bp,
            "length_ratio": c / r if r else 0.0, "translation_length": c, "reference_length": r}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS)
class Bleu(evaluate.Metric):
    """Corpus BLEU with brevity penalty and optional smoothing."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=[
                datasets.Features({"predictions": datasets.Value("string"),
                                   "references": datasets.Sequence(datasets.Value("string"))}),
                datasets.Features({"predictions": datasets.Value("string"),
                                   "references": datasets.Value("string")}),
            ],
            reference_urls=["https://aclanthology.org/P02-1040/"],
        )

    def _compute(self, predictions, references, max_order: int = 4, smooth: bool = False,
                 lowercase: bool = False) -> dict:
        if max_order < 1:
            raise ValueError(f"max_order must be at least 1, got {max_order}")
        references = [[refs] if isinstance(refs, str) else list(refs) for refs in references]
        if any(not refs for refs in references):
            raise ValueError("every prediction needs at least one reference")
        candidates = [tokenize(p, lowercase) for p in predictions]
        tokenised_refs = [[tokenize(r, lowercase) for r in refs] for refs in references]
        return corpus_bleu(candidates, tokenised_refs, max_order, smooth)
