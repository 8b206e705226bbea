"""course_lib.choosing: the decision procedure gives the expected method, with reasons, on typical cases."""

import pytest

from course_lib.choosing import fits, memory_need, recommend, shape_for
from course_lib.memory import GIB


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
        (
            dict(
                params_b=7,
                gpu_gib=24,
                n_examples=5_000,
                task="preference",
                preference_data="unpaired",
            ),
            "KTO with LoRA",
        ),
        (
            dict(
                params_b=7, gpu_gib=24, n_examples=5_000, task="preference", reference_model=False
            ),
            "SimPO with LoRA",
        ),
        (dict(params_b=0.5, gpu_gib=80, n_examples=50_000, task="instruction", n_tasks=5), "LoRA"),
        (dict(params_b=7, gpu_gib=24, n_examples=5_000, task="verifiable"), "GRPO with LoRA"),
        (
            dict(params_b=7, gpu_gib=24, n_examples=50, task="instruction", teacher_available=True),
            "distillation from the teacher, then LoRA",
        ),
        (  # long sequences: LoRA's 16-bit base + activations no longer fit, QLoRA does (checkpointed)
            dict(
                params_b=7, gpu_gib=24, n_examples=5_000, task="instruction", seq_len=4096, batch=4
            ),
            "QLoRA",
        ),
        (
            dict(params_b=13, gpu_gib=80, n_examples=50_000, task="instruction", n_gpus=4),
            "full fine-tuning, ZeRO-3 on 4 GPUs",
        ),
        (dict(params_b=13, gpu_gib=80, n_examples=50_000, task="instruction"), "LoRA"),
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
    # QLoRA's 65-70B on 48 GB holds only with gradient checkpointing (as in the QLoRA paper)
    assert fits(70, 48, "qlora", checkpointing=True) and not fits(70, 48, "qlora")
    assert not fits(70, 48, "lora", checkpointing=True)


def test_activations_grow_with_sequence_and_batch():
    short = memory_need(7, "lora", seq_len=512, batch=1)
    long = memory_need(7, "lora", seq_len=2048, batch=4)
    assert long["states"] == short["states"], "states do not depend on the batch"
    assert abs(long["activations"] / short["activations"] - 16) < 0.5, (
        "activations ∝ batch × length"
    )
    # chapter 11: one 2,048-token sequence of a 7B Llama holds about 12.6 GB of activations in bf16
    one = memory_need(7, "lora", seq_len=2048, batch=1)["activations"] / 1e9
    assert 12 < one < 13.2, f"{one:.1f} GB"
    kept = memory_need(7, "lora", seq_len=2048, batch=1, checkpointing=True)["activations"] / 1e9
    assert kept < one / 3, "checkpointing keeps only each block's input (+ one block recomputed)"


def test_reasons_state_memory_and_checkpointing():
    rec = recommend(7, 24, 5_000, "instruction", seq_len=4096, batch=4)
    text = " ".join(rec.reasons)
    assert "activations" in text and "checkpointing" in text, rec.reasons
    assert shape_for(7).hidden == 4096 and shape_for(0.5).layers == 24
    need = memory_need(7, "qlora", 4096, 4, checkpointing=True)["total"] / GIB
    assert need < 0.9 * 24, need


def test_bad_input():
    with pytest.raises(ValueError, match="task must be"):
        recommend(7, 24, 1000, "chat")
    with pytest.raises(ValueError, match="params_b > 0"):
        recommend(0, 24, 1000, "domain")
    with pytest.raises(ValueError, match="seq_len"):
        recommend(7, 24, 1000, "domain", seq_len=0)
    with pytest.raises(ValueError, match="n_gpus"):
        memory_need(7, "lora", n_gpus=2)


def test_unknown_preference_data_is_refused():
    with pytest.raises(ValueError, match="preference_data"):
        recommend(7, 24, 5_000, "preference", preference_data="ranked")
