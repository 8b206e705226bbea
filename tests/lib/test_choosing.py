"""course_lib.choosing: the decision procedure gives the expected method, with reasons, on typical cases."""

import pytest

from course_lib.choosing import fits, recommend


@pytest.mark.parametrize(
    "args, expected",
    [
        (dict(params_b=0.5, gpu_gib=80, n_examples=50_000, task="instruction"), "full fine-tuning"),
        (
            dict(params_b=7, gpu_gib=80, n_examples=50_000, task="instruction"),
            "LoRA",
        ),  # 7B × 16 B > 64 GiB
        (
            dict(params_b=7, gpu_gib=24, n_examples=5_000, task="classification"),
            "LoRA",
        ),  # 14 GB bf16 base fits
        (dict(params_b=13, gpu_gib=24, n_examples=5_000, task="domain"), "QLoRA"),
        (dict(params_b=70, gpu_gib=48, n_examples=5_000, task="instruction"), "QLoRA"),
        (
            dict(params_b=70, gpu_gib=24, n_examples=5_000, task="instruction"),
            "does not fit on one GPU",
        ),
        (
            dict(params_b=7, gpu_gib=24, n_examples=20, task="classification"),
            "prompting (few-shot or retrieval)",
        ),
        (
            dict(params_b=7, gpu_gib=24, n_examples=5_000, task="knowledge", facts_change=True),
            "retrieval (RAG)",
        ),
        (dict(params_b=7, gpu_gib=24, n_examples=5_000, task="preference"), "DPO with LoRA"),
        (dict(params_b=0.5, gpu_gib=80, n_examples=50_000, task="instruction", n_tasks=5), "LoRA"),
    ],
)
def test_cases(args, expected):
    rec = recommend(**args)
    assert rec.method == expected, (
        f"{args}: expected {expected!r}, got {rec.method!r} because {rec.reasons}"
    )
    assert rec.reasons and all(len(r) > 20 for r in rec.reasons), (
        "every recommendation must say why"
    )


def test_fits_thresholds():
    assert fits(1, 24, "full") and not fits(2, 24, "full"), "16 B/param: 1B needs 16 GB, 2B 32 GB"
    assert fits(70, 48, "qlora") and not fits(70, 48, "lora")


def test_bad_input():
    with pytest.raises(ValueError, match="task must be"):
        recommend(7, 24, 1000, "chat")
    with pytest.raises(ValueError, match="params_b > 0"):
        recommend(0, 24, 1000, "domain")
