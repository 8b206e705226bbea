"""Tests of course_lib.evaluation.load_metric and the local evaluate metrics in course_lib/metrics/."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from course_lib.course.netguard import NetworkBlocked, _guarded_connect
from course_lib.data import ROOT
from course_lib.evaluation import METRICS_DIR, available_metrics, load_metric

NAMES = ["accuracy", "bleu", "exact_match", "f1", "rouge"]


@pytest.fixture(scope="module")
def metrics() -> dict:
    """Every local metric, loaded once through load_metric (that is, evaluate.load)."""
    return {name: load_metric(name) for name in NAMES}


def random_labels(n_classes: int, size: int = 300, seed: int = 0) -> tuple[list[int], list[int]]:
    """Predictions and references drawn uniformly with a fixed seed."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_classes, size).tolist(), rng.integers(0, n_classes, size).tolist()


# --- loading -------------------------------------------------------------------------------------


def test_available_metrics_lists_the_shipped_modules():
    assert available_metrics() == NAMES


def test_unknown_metric_raises_with_the_list():
    with pytest.raises(ValueError) as info:
        load_metric("sacrebleu")
    message = str(info.value)
    assert "sacrebleu" in message and "Hub is not used" in message
    for name in NAMES:
        assert name in message


def test_metrics_are_evaluate_modules_with_info(metrics):
    import evaluate

    for name, metric in metrics.items():
        assert isinstance(metric, evaluate.Metric), name
        assert metric.description and metric.citation and metric.inputs_description, name
        assert metric.features is not None, name


def test_loading_is_fast():
    load_metric("accuracy")  # imports evaluate, warms the module cache
    for name in NAMES:
        start = time.perf_counter()
        load_metric(name)
        assert time.perf_counter() - start < 5, f"loading {name} took too long"


def test_loading_works_with_sockets_blocked_and_offline_env(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE"):
        monkeypatch.setenv(var, "1")
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    with pytest.raises(NetworkBlocked):  # the guard is really on
        socket.create_connection(("203.0.113.1", 443), timeout=1)
    for name in NAMES:
        assert load_metric(name).name == name
    assert load_metric("accuracy").compute(predictions=[1, 0], references=[1, 1]) == {
        "accuracy": 0.5
    }


def test_cold_load_in_fresh_process_stays_offline_and_caches_outside_repo(tmp_path):
    """A process with an empty HF cache and the network blocked loads and runs every metric."""
    script = (
        "from course_lib.course.netguard import block_network; block_network()\n"
        "from course_lib.evaluation import load_metric, available_metrics\n"
        "for n in available_metrics(): load_metric(n)\n"
        "print(load_metric('rouge').compute(predictions=['a b'], references=['a b'])['rouge1'])\n"
    )
    env = {
        **os.environ,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    before = sorted(p.relative_to(METRICS_DIR) for p in METRICS_DIR.rglob("*"))
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("1.0")
    assert (tmp_path / "hf" / "modules" / "evaluate_modules" / "metrics" / "bleu").is_dir()
    assert sorted(p.relative_to(METRICS_DIR) for p in METRICS_DIR.rglob("*")) == before
    assert METRICS_DIR.is_relative_to(ROOT)


# --- accuracy and f1 against scikit-learn -----------------------------------------------------------


def test_accuracy_matches_sklearn(metrics):
    preds, refs = random_labels(4)
    weights = np.random.default_rng(1).random(len(refs)).tolist()
    acc = metrics["accuracy"]
    assert acc.compute(predictions=preds, references=refs)["accuracy"] == pytest.approx(
        accuracy_score(refs, preds)
    )
    assert acc.compute(predictions=preds, references=refs, normalize=False)[
        "accuracy"
    ] == accuracy_score(refs, preds, normalize=False)
    assert acc.compute(predictions=preds, references=refs, sample_weight=weights)[
        "accuracy"
    ] == pytest.approx(accuracy_score(refs, preds, sample_weight=weights))


@pytest.mark.parametrize("average", ["micro", "macro", "weighted"])
@pytest.mark.parametrize("labels", [None, [0, 2], [0, 1, 2, 3, 7]])
def test_multiclass_f1_matches_sklearn(metrics, average, labels):
    preds, refs = random_labels(4, seed=2)
    ours = metrics["f1"].compute(
        predictions=preds, references=refs, average=average, labels=labels
    )["f1"]
    assert ours == pytest.approx(
        f1_score(refs, preds, average=average, labels=labels, zero_division=0)
    )


@pytest.mark.parametrize("pos_label", [0, 1])
def test_binary_f1_matches_sklearn(metrics, pos_label):
    preds, refs = random_labels(2, seed=3)
    ours = metrics["f1"].compute(predictions=preds, references=refs, pos_label=pos_label)["f1"]
    assert ours == pytest.approx(f1_score(refs, preds, pos_label=pos_label))


def test_f1_rejects_bad_arguments(metrics):
    with pytest.raises(ValueError, match="at most two labels"):
        metrics["f1"].compute(predictions=[0, 1, 2], references=[0, 1, 2])
    with pytest.raises(ValueError, match="average must be one of"):
        metrics["f1"].compute(predictions=[0, 1], references=[0, 1], average="samples")


# --- exact match ---------------------------------------------------------------------------------

PREDS = ["Paris", "  Paris ", "paris", "Paris.", "PARIS !", "New  York"]
REFS = ["Paris", "Paris", "Paris", "Paris", "paris", "New York"]


@pytest.mark.parametrize(
    "options, matches",
    [
        ({}, [1, 1, 0, 0, 0, 0]),  # strip only
        ({"strip": False}, [1, 0, 0, 0, 0, 0]),
        ({"ignore_case": True}, [1, 1, 1, 0, 0, 0]),
        ({"ignore_punctuation": True}, [1, 1, 0, 1, 0, 0]),
        (
            {"ignore_case": True, "ignore_punctuation": True},
            [1, 1, 1, 1, 1, 0],
        ),  # "PARIS !" -> "paris " -> "paris"
    ],
)
def test_exact_match_hand_cases(metrics, options, matches):
    score = metrics["exact_match"].compute(predictions=PREDS, references=REFS, **options)[
        "exact_match"
    ]
    assert score == pytest.approx(sum(matches) / len(matches))


# --- BLEU, hand-computed ---------------------------------------------------------------------------


def bleu(metrics, predictions, references, **kwargs) -> dict:
    return metrics["bleu"].compute(predictions=predictions, references=references, **kwargs)


def test_bleu_hand_computed_example(metrics):
    # p1 = 8/8, p2 = 6/7, p3 = 5/6, p4 = 4/5 ("over the dog" never matches); c = 8, r = 9
    out = bleu(
        metrics,
        ["the quick brown fox jumps over the dog"],
        [["the quick brown fox jumps over the lazy dog"]],
    )
    assert out["precisions"] == pytest.approx([1, 6 / 7, 5 / 6, 4 / 5])
    assert out["brevity_penalty"] == pytest.approx(math.exp(1 - 9 / 8))
    assert out["bleu"] == pytest.approx(math.exp(1 - 9 / 8) * (4 / 7) ** 0.25)
    assert out["bleu"] == pytest.approx(0.767280, abs=1e-6)
    assert (out["translation_length"], out["reference_length"]) == (8, 9)


def test_bleu_perfect_match_and_no_overlap(metrics):
    assert (
        bleu(metrics, ["Hello, world! How are you?"], [["Hello, world! How are you?"]])["bleu"]
        == 1.0
    )
    assert (
        bleu(metrics, ["Hello, world! How are you?"], ["Hello, world! How are you?"])["bleu"] == 1.0
    )
    assert bleu(metrics, ["one two three four"], [["five six seven eight"]])["bleu"] == 0.0


def test_bleu_clips_counts_over_several_references(metrics):
    # Papineni et al.'s example: "the" may count at most twice, so p1 = 2/7
    out = bleu(
        metrics,
        ["the the the the the the the"],
        [["the cat is on the mat", "there is a cat on the mat"]],
        max_order=1,
    )
    assert out["bleu"] == pytest.approx(2 / 7)


def test_bleu_is_corpus_level_not_a_mean_of_sentences(metrics):
    # unigrams (2 + 1) / 4, bigrams (1 + 0) / 2, c = r = 4
    out = bleu(metrics, ["a b", "c d"], [["a b"], ["c e"]], max_order=2)
    assert out["bleu"] == pytest.approx(math.sqrt(3 / 4 * 1 / 2))


def test_bleu_tokenises_punctuation_and_penalises_brevity(metrics):
    # candidate: Hello world (2 tokens); reference: Hello , world ! (4 tokens)
    out = bleu(metrics, ["Hello world"], [["Hello, world!"]], max_order=1)
    assert out["bleu"] == pytest.approx(math.exp(1 - 4 / 2))


def test_bleu_effective_reference_length_prefers_the_shorter_on_a_tie(metrics):
    out = bleu(metrics, ["a b c d e"], [["a b c d", "a b c d e f"]], max_order=1)
    assert out["reference_length"] == 4 and out["bleu"] == 1.0


def test_bleu_smoothing(metrics):
    preds, refs = ["the cat is on the mat"], [["the cat sat on the mat"]]
    assert bleu(metrics, preds, refs)["bleu"] == 0.0  # no 4-gram matches
    # p1 = 5/6 (not smoothed), p2 = (3+1)/(5+1), p3 = (1+1)/(4+1), p4 = (0+1)/(3+1)
    expected = (5 / 6 * 4 / 6 * 2 / 5 * 1 / 4) ** 0.25
    assert bleu(metrics, preds, refs, smooth=True)["bleu"] == pytest.approx(expected)


# --- ROUGE, hand-computed --------------------------------------------------------------------------


def test_rouge_hand_computed_examples(metrics):
    # 1: unigrams 5/6 both ways, bigrams 3/5, LCS "the cat on the mat" = 5 of 6
    # 2: "the cat" vs 6 tokens: unigram P=1 R=1/3 -> 1/2; no bigram; LCS 1: P=1/2 R=1/6 -> 1/4
    out = metrics["rouge"].compute(
        predictions=["the cat sat on the mat", "The Cat"],
        references=["the cat lay on the mat", "a cat sat on the mat"],
    )
    assert out["rouge1"] == pytest.approx((5 / 6 + 1 / 2) / 2)
    assert out["rouge2"] == pytest.approx((3 / 5 + 0) / 2)
    assert out["rougeL"] == pytest.approx((5 / 6 + 1 / 4) / 2)


def test_rouge_l_uses_order_unlike_rouge_1(metrics):
    out = metrics["rouge"].compute(predictions=["a b c d"], references=["d c b a"])
    assert out == pytest.approx({"rouge1": 1.0, "rouge2": 0.0, "rougeL": 0.25})


def test_rouge_takes_the_best_of_several_references(metrics):
    out = metrics["rouge"].compute(predictions=["a b c d"], references=[["d c b a", "a b c d"]])
    assert out == pytest.approx({"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0})
