"""Non-neural baselines that every fine-tuned model must beat.

Taught in chapter 01 (prompting vs fine-tuning) and chapter 02 (data quality).
"""

from __future__ import annotations

from typing import Sequence


def bag_of_words_predict(
    train: Sequence[dict], texts: Sequence[str], ngram: int = 1, class_weight: str | None = None
) -> list[str]:
    """Labels predicted for `texts` by a logistic regression on n-gram counts (n <= `ngram`)
    trained on records {'text', 'label'}; class_weight='balanced' reweights rare classes."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    if not train or not texts:
        raise ValueError("bag_of_words_predict needs non-empty training records and texts")
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not one string")
    if not all("text" in r and "label" in r for r in train):
        raise ValueError("every training record needs a 'text' and a 'label' field")
    if ngram < 1:
        raise ValueError(f"ngram must be >= 1, got {ngram}")
    vec = CountVectorizer(ngram_range=(1, ngram))
    x_train = vec.fit_transform([r["text"] for r in train])
    clf = LogisticRegression(max_iter=3000, class_weight=class_weight).fit(
        x_train, [r["label"] for r in train]
    )
    return [str(p) for p in clf.predict(vec.transform(list(texts)))]


def bag_of_words_accuracy(train: Sequence[dict], test: Sequence[dict], ngram: int = 1) -> float:
    """Accuracy of a logistic regression on word counts (n-grams up to `ngram`), trained on
    records {'text', 'label'}. ngram=1 is the classic bag of words: word order is invisible."""
    if not train or not test:
        raise ValueError("bag_of_words_accuracy needs non-empty train and test records")
    if not all("text" in r and "label" in r for r in list(train) + list(test)):
        raise ValueError("every record needs a 'text' and a 'label' field")
    pred = bag_of_words_predict(train, [r["text"] for r in test], ngram)
    return sum(p == r["label"] for p, r in zip(pred, test)) / len(test)
