"""Non-neural baselines that every fine-tuned model must beat.

Taught in chapter 01 (prompting vs fine-tuning) and chapter 02 (data quality).
"""
from __future__ import annotations

from typing import Sequence


def bag_of_words_accuracy(train: Sequence[dict], test: Sequence[dict], ngram: int = 1) -> float:
    """Accuracy of a logistic regression on word counts (n-grams up to `ngram`), trained on
    records {'text', 'label'}. ngram=1 is the classic bag of words: word order is invisible."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    if not train or not test:
        raise ValueError("bag_of_words_accuracy needs non-empty train and test records")
    if not all("text" in r and "label" in r for r in list(train) + list(test)):
        raise ValueError("every record needs a 'text' and a 'label' field")
    vec = CountVectorizer(ngram_range=(1, ngram))
    x_train = vec.fit_transform([r["text"] for r in train])
    clf = LogisticRegression(max_iter=3000).fit(x_train, [r["label"] for r in train])
    pred = clf.predict(vec.transform([r["text"] for r in test]))
    return float((pred == [r["label"] for r in test]).mean())
