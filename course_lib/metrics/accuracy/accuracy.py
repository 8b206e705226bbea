"""Accuracy: the fraction of predictions equal to their reference label (course-local metric)."""
import datasets
import evaluate

_DESCRIPTION = """\
Accuracy is the proportion of examples whose predicted label equals the reference label:
accuracy = (number of correct predictions) / (number of examples).
It lies in [0, 1]; with `normalize=False` the raw count of correct predictions is returned.
"""

_CITATION = """\
@book{manning2008ir,
  title     = {Introduction to Information Retrieval},
  author    = {Manning, Christopher D. and Raghavan, Prabhakar and Sch{\\"u}tze, Hinrich},
  publisher = {Cambridge University Press},
  year      = {2008}
}
"""

_INPUTS = """\
Args:
    predictions (list of int): predicted labels.
    references (list of int): true labels, same length as predictions.
    normalize (bool): return the fraction (True, default) or the count (False) of correct predictions.
    sample_weight (list of float, optional): one weight per example; the weighted fraction is returned.
Returns:
    {"accuracy": float}
Example:
    >>> metric.compute(predictions=[0, 1, 1], references=[0, 1, 0])
    {'accuracy': 0.6666666666666666}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS)
class Accuracy(evaluate.Metric):
    """Fraction (or count) of predictions that equal their reference."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features({"predictions": datasets.Value("int32"),
                                        "references": datasets.Value("int32")}),
        )

    def _compute(self, predictions, references, normalize: bool = True, sample_weight=None) -> dict:
        weights = [1.0] * len(references) if sample_weight is None else [float(w) for w in sample_weight]
        if len(weights) != len(references):
            raise ValueError(f"sample_weight has {len(weights)} entries for {len(references)} examples")
        correct = sum(w for p, r, w in zip(predictions, references, weights) if p == r)
        if not normalize:
            return {"accuracy": float(correct)}
        total = sum(weights)
        return {"accuracy": correct / total if total else 0.0}
