"""Exact match: the fraction of predicted strings identical to their reference (course-local metric)."""
import string

import datasets
import evaluate

_DESCRIPTION = """\
Exact match is the fraction of predictions that are character-for-character equal to their reference,
after the same normalisation is applied to both strings, in this order:
  1. ignore_punctuation=True: delete every character of Python's string.punctuation
     (the ASCII characters !"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~); other characters are kept.
  2. ignore_case=True: lower-case with str.lower().
  3. strip=True (the default): remove leading and trailing whitespace with str.strip().
Nothing else changes: whitespace inside a string is never collapsed, and Unicode is not normalised.
"""

_CITATION = """\
@inproceedings{rajpurkar2016squad,
  title     = {{SQuAD}: 100,000+ Questions for Machine Comprehension of Text},
  author    = {Rajpurkar, Pranav and Zhang, Jian and Lopyrev, Konstantin and Liang, Percy},
  booktitle = {Proceedings of EMNLP},
  year      = {2016}
}
"""

_INPUTS = """\
Args:
    predictions (list of str): predicted strings.
    references (list of str): reference strings, same length as predictions.
    ignore_case (bool): compare lower-cased strings (default False).
    ignore_punctuation (bool): delete ASCII punctuation before comparing (default False).
    strip (bool): remove leading and trailing whitespace before comparing (default True).
Returns:
    {"exact_match": float} in [0, 1].
Example:
    >>> metric.compute(predictions=["Paris", "rome "], references=["Paris", "Rome"])
    {'exact_match': 0.5}
"""

_PUNCTUATION_TABLE = str.maketrans("", "", string.punctuation)


def normalise(text: str, ignore_case: bool, ignore_punctuation: bool, strip: bool) -> str:
    """Apply the documented normalisation steps, in order."""
    if ignore_punctuation:
        text = text.translate(_PUNCTUATION_TABLE)
    if ignore_case:
        text = text.lower()
    if strip:
        text = text.strip()
    return text


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS)
class ExactMatch(evaluate.Metric):
    """Fraction of predictions equal to their reference after optional normalisation."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references, ignore_case: bool = False,
                 ignore_punctuation: bool = False, strip: bool = True) -> dict:
        options = dict(ignore_case=ignore_case, ignore_punctuation=ignore_punctuation, strip=strip)
        matches = [normalise(p, **options) == normalise(r, **options) for p, r in zip(predictions, references)]
        return {"exact_match": sum(matches) / len(matches) if matches else 0.0}
