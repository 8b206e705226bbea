"""ROUGE-1, ROUGE-2 and ROUGE-L F-measures (Lin, 2004), written in plain Python (course-local metric)."""
from collections import Counter

import datasets
import evaluate

_DESCRIPTION = """\
ROUGE (Lin, 2004) compares a prediction with a reference by their shared tokens. Texts are lower-cased
and split on whitespace (str.lower().split(); punctuation stays attached to its word).
  rouge1 / rouge2: overlap = number of shared unigrams / bigrams, each counted at most as often as
                   in either text; precision = overlap / prediction n-grams, recall = overlap / reference n-grams.
  rougeL:          overlap = length of the longest common subsequence (dynamic programming);
                   precision = LCS / prediction length, recall = LCS / reference length.
Each score is the F-measure 2PR / (P + R) (0 when P + R = 0), computed per example and averaged over
examples. With several references for one example, the best-scoring reference counts.
"""

_CITATION = """\
@inproceedings{lin2004rouge,
  title     = {{ROUGE}: A Package for Automatic Evaluation of Summaries},
  author    = {Lin, Chin-Yew},
  booktitle = {Text Summarization Branches Out},
  pages     = {74--81},
  year      = {2004}
}
"""

_INPUTS = """\
Args:
    predictions (list of str): predicted texts.
    references (list of str, or list of list of str): one reference, or several, per prediction.
Returns:
    {"rouge1": float, "rouge2": float, "rougeL": float}, each the mean F-measure over examples.
Example:
    >>> metric.compute(predictions=["the cat sat"], references=["the cat sat"])
    {'rouge1': 1.0, 'rouge2': 1.0, 'rougeL': 1.0}
"""

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def tokenize(text: str) -> list[str]:
    """Lower-cased whitespace tokens."""
    return text.lower().split()


def f_measure(overlap: int, prediction_size: int, reference_size: int) -> float:
    """Harmonic mean of precision and recall; 0 if either is 0."""
    if overlap == 0:
        return 0.0
    precision, recall = overlap / prediction_size, overlap / reference_size
    return 2 * precision * recall / (precision + recall)


def rouge_n(prediction: list[str], reference: list[str], n: int) -> float:
    """ROUGE-N F-measure from clipped n-gram overlap."""
    pred = Counter(tuple(prediction[i:i + n]) for i in range(len(prediction) - n + 1))
    ref = Counter(tuple(reference[i:i + n]) for i in range(len(reference) - n + 1))
    overlap = sum((pred & ref).values())
    return f_measure(overlap, sum(pred.values()), sum(ref.values()))


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence, by dynamic programming over rows."""
    previous = [0] * (len(b) + 1)
    for token in a:
        current = [0]
        for j, other in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if token == other else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(prediction: list[str], reference: list[str]) -> float:
    """ROUGE-L F-measure from the longest common subsequence."""
    return f_measure(lcs_length(prediction, reference), len(prediction), len(reference))


def score_example(prediction: str, reference: str) -> dict[str, float]:
    """The three ROUGE F-measures of one prediction against one reference."""
    pred, ref = tokenize(prediction), tokenize(reference)
    return {"rouge1": rouge_n(pred, ref, 1), "rouge2": rouge_n(pred, ref, 2), "rougeL": rouge_l(pred, ref)}


def best_over_references(prediction: str, references: list[str]) -> dict[str, float]:
    """Per ROUGE type, the best score over the references."""
    scores = [score_example(prediction, reference) for reference in references]
    return {kind: max(s[kind] for s in scores) for kind in ROUGE_TYPES}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS)
class Rouge(evaluate.Metric):
    """ROUGE-1, ROUGE-2 and ROUGE-L F-measures averaged over examples."""

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
            reference_urls=["https://aclanthology.org/W04-1013/"],
        )

    def _compute(self, predictions, references) -> dict:
        references = [[refs] if isinstance(refs, str) else list(refs) for refs in references]
        if any(not refs for refs in references):
            raise ValueError("every prediction needs at least one reference")
        per_example = [best_over_references(p, refs) for p, refs in zip(predictions, references)]
        if not per_example:
            return {kind: 0.0 for kind in ROUGE_TYPES}
        return {kind: sum(s[kind] for s in per_example) / len(per_example) for kind in ROUGE_TYPES}
