"""F1 score, with sklearn's `average`, `labels` and `pos_label` semantics (course-local metric)."""
from collections import Counter

import datasets
import evaluate

_DESCRIPTION = """\
F1 is the harmonic mean of precision and recall: F1 = 2 * TP / (2 * TP + FP + FN), computed per label
(a label with 2 * TP + FP + FN = 0 scores 0, like scikit-learn's default zero_division).
Averaging over labels, as in sklearn.metrics.f1_score:
  binary   - F1 of `pos_label` only (at most two distinct labels allowed);
  micro    - F1 of the TP, FP and FN summed over the labels;
  macro    - unweighted mean of the per-label F1;
  weighted - mean of the per-label F1 weighted by each label's support (count in references).
"""

_CITATION = """\
@article{van1979information,
  title   = {Information Retrieval},
  author  = {van Rijsbergen, C. J.},
  journal = {Butterworths, London},
  year    = {1979}
}
"""

_INPUTS = """\
Args:
    predictions (list of int): predicted labels.
    references (list of int): true labels, same length as predictions.
    average (str): "binary" (default), "micro", "macro" or "weighted".
    labels (list of int, optional): the labels to average over (ignored for "binary");
        default: every label seen in predictions or references, sorted.
    pos_label (int): the positive label for "binary" (default 1).
Returns:
    {"f1": float}
Example:
    >>> metric.compute(predictions=[0, 1, 1], references=[0, 1, 0])
    {'f1': 0.6666666666666666}
"""

AVERAGES = ("binary", "micro", "macro", "weighted")


def _label_f1(tp: int, fp: int, fn: int) -> float:
    """F1 from one label's counts; 0 when the label never occurs anywhere."""
    denominator = 2 * tp + fp + fn
    return 2 * tp / denominator if denominator else 0.0


def _counts(predictions, references, label) -> tuple[int, int, int]:
    """True positives, false positives and false negatives of one label."""
    pairs = list(zip(predictions, references))
    tp = sum(p == label and r == label for p, r in pairs)
    fp = sum(p == label and r != label for p, r in pairs)
    fn = sum(p != label and r == label for p, r in pairs)
    return tp, fp, fn


def _binary_f1(predictions, references, pos_label) -> float:
    """F1 of the positive label; refuses more than two distinct labels."""
    present = set(predictions) | set(references)
    if len(present) > 2:
        raise ValueError(f"average='binary' needs at most two labels, got {sorted(present)}; "
                         "choose average='micro', 'macro' or 'weighted'")
    if len(present) == 2 and pos_label not in present:
        raise ValueError(f"pos_label={pos_label} is not a valid label: it should be one of {sorted(present)}")
    return _label_f1(*_counts(predictions, references, pos_label))


def _averaged_f1(predictions, references, labels, average: str) -> float:
    """Micro, macro or support-weighted F1 over `labels`."""
    per_label = [_counts(predictions, references, label) for label in labels]
    if not per_label:
        return 0.0
    if average == "micro":
        return _label_f1(*(sum(column) for column in zip(*per_label)))
    scores = [_label_f1(*counts) for counts in per_label]
    if average == "macro":
        return sum(scores) / len(scores)
    support = Counter(references)
    weights = [support[label] for label in labels]
    total = sum(weights)
    return sum(s * w for s, w in zip(scores, weights)) / total if total else 0.0


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS)
class F1(evaluate.Metric):
    """F1 score for binary or multi-class labels."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features({"predictions": datasets.Value("int32"),
                                        "references": datasets.Value("int32")}),
        )

    def _compute(self, predictions, references, average: str = "binary", labels=None, pos_label: int = 1) -> dict:
        if average not in AVERAGES:
            raise ValueError(f"average must be one of {AVERAGES}, got {average!r}")
        if average == "binary":
            return {"f1": _binary_f1(predictions, references, pos_label)}
        if labels is None:
            labels = sorted(set(predictions) | set(references))
        return {"f1": _averaged_f1(predictions, references, list(labels), average)}
