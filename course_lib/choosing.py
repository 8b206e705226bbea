"""Choosing a fine-tuning method: a small decision procedure that gives its reasons.

Taught in chapter 12 (choosing a method). Each rule cites what the course measured; the memory rule
uses `course_lib.memory` (16 B/param for full fine-tuning with AdamW, a 16-bit base for LoRA, ~0.52
B/param for QLoRA), plus a stated reserve for activations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from course_lib.memory import GIB, training_memory

TASKS = ("classification", "instruction", "domain", "knowledge", "preference")
ACTIVATION_RESERVE = 0.20  # share of GPU memory kept free for activations and the CUDA context


@dataclass
class Recommendation:
    """The suggested method, and the reasons that led there, in order."""

    method: str
    reasons: list[str] = field(default_factory=list)


def fits(params_b: float, gpu_gib: float, method: str) -> bool:
    """Whether a method's weights, gradients and optimizer state fit in (1 − reserve) of the GPU memory."""
    n = int(params_b * 1e9)
    trainable = None if method == "full" else max(1, int(n * 0.005))  # adapters ~0.5 % of the model
    precision = "mixed" if method == "full" else "bf16"
    need = training_memory(n, method, precision, trainable=trainable).total
    return need <= (1 - ACTIVATION_RESERVE) * gpu_gib * GIB


def recommend(
    params_b: float,
    gpu_gib: float,
    n_examples: int,
    task: str,
    n_tasks: int = 1,
    facts_change: bool = False,
) -> Recommendation:
    """Suggest a method for fine-tuning a `params_b`-billion-parameter model on one GPU of `gpu_gib` GiB."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if params_b <= 0 or gpu_gib <= 0 or n_examples < 0 or n_tasks < 1:
        raise ValueError("need params_b > 0, gpu_gib > 0, n_examples >= 0 and n_tasks >= 1")
    reasons: list[str] = []
    if task == "knowledge" and facts_change:
        return Recommendation(
            "retrieval (RAG)",
            [
                "facts that change belong in the prompt: in chapters 01 and 08 facts given in the "
                "prompt were answered in any phrasing, while fine-tuned facts were recalled mainly "
                "in their trained phrasing"
            ],
        )
    if n_examples < 100:
        return Recommendation(
            "prompting (few-shot or retrieval)",
            [
                f"{n_examples} examples are too few to fine-tune reliably; start with prompting "
                "and collect data"
            ],
        )
    if task == "preference":
        reasons.append(
            "preference pairs: DPO on top of an SFT model is simpler and more stable than PPO, "
            "which needs a reward model, rollouts and a value model (chapter 09)"
        )
    if fits(params_b, gpu_gib, "full") and n_tasks == 1 and n_examples >= 10_000:
        reasons.append(
            f"full fine-tuning fits: {params_b:g}B × 16 B/param ≤ {gpu_gib:g} GiB less the activation "
            "reserve, and with ≥ 10k examples it is the strongest option (chapter 04: LoRA matched it "
            "only after 4× more steps)"
        )
        return Recommendation("DPO (full)" if task == "preference" else "full fine-tuning", reasons)
    if n_tasks > 1:
        reasons.append(
            f"{n_tasks} tasks on one base: one LoRA adapter each, switched at run time (chapter 04); "
            "merge one into the weights when a single task needs base-model latency"
        )
    if fits(params_b, gpu_gib, "lora"):
        reasons.append(
            "a 16-bit frozen base with LoRA fits; LoRA can be merged, so inference costs nothing extra"
        )
        method = "LoRA"
    elif fits(params_b, gpu_gib, "qlora"):
        reasons.append(
            "only a 4-bit base fits: QLoRA saves memory, not time (chapter 05: 1.2–1.7× slower per step)"
        )
        method = "QLoRA"
    else:
        return Recommendation(
            "does not fit on one GPU",
            reasons
            + [
                "even a 4-bit base does not fit: use a smaller model, or several GPUs with "
                "ZeRO-3 / FSDP (chapter 11)"
            ],
        )
    if task == "preference":
        method = f"DPO with {method}"
    return Recommendation(method, reasons)
