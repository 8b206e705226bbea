"""Choosing a fine-tuning method: a small decision procedure that gives its reasons.

Taught in chapter 12 (choosing a method). Each rule cites what the course measured. The memory rule
adds two parts from `course_lib.memory`: the training states (16 B/param for full fine-tuning with
AdamW in mixed precision, a 16-bit frozen base for LoRA, ~0.52 B/param for QLoRA) and the
activations of one batch of `batch` sequences of `seq_len` tokens (bf16, per-block formula of
chapter 11), with gradient checkpointing as the fallback when they do not fit; a stated reserve is
kept for the CUDA context, allocator fragmentation and temporary buffers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from course_lib.memory import GIB, LlamaShape, activation_bytes, training_memory, zero_memory

TASKS = ("classification", "instruction", "domain", "knowledge", "preference", "verifiable")
PREFERENCE_DATA = ("pairs", "unpaired")
RESERVE = 0.10  # share of GPU memory kept free for the CUDA context, fragmentation and buffers
# Public Llama-style shapes, used to estimate activations for a model of a given size:
# (vocab, hidden, intermediate, layers, heads, kv_heads)
SHAPES = {
    0.5: LlamaShape(151_936, 896, 4_864, 24, 14, 2, tied_embeddings=True),  # Qwen2.5-0.5B
    1.2: LlamaShape(128_256, 2_048, 8_192, 16, 32, 8, tied_embeddings=True),  # Llama-3.2-1B
    3.2: LlamaShape(128_256, 3_072, 8_192, 28, 24, 8, tied_embeddings=True),  # Llama-3.2-3B
    6.7: LlamaShape(32_000, 4_096, 11_008, 32, 32, 32),  # Llama-2-7B
    13.0: LlamaShape(32_000, 5_120, 13_824, 40, 40, 40),  # Llama-2-13B
    34.0: LlamaShape(32_000, 8_192, 22_016, 48, 64, 8),  # CodeLlama-34B
    70.0: LlamaShape(128_256, 8_192, 28_672, 80, 64, 8),  # Llama-3-70B
}


@dataclass
class Recommendation:
    """The suggested method, and the reasons that led there, in order."""

    method: str
    reasons: list[str] = field(default_factory=list)


def shape_for(params_b: float) -> LlamaShape:
    """The public Llama-style shape whose size is closest to `params_b` billion parameters."""
    if params_b <= 0:
        raise ValueError(f"params_b must be > 0 (billions of parameters), got {params_b}")
    return SHAPES[min(SHAPES, key=lambda size: abs(size / params_b - 1))]


def memory_need(
    params_b: float,
    method: str,
    seq_len: int = 512,
    batch: int = 1,
    checkpointing: bool = False,
    n_gpus: int = 1,
) -> dict[str, float]:
    """Bytes per GPU to train: {'states', 'activations', 'total'}; `n_gpus` > 1 shards full fine-tuning
    with ZeRO-3 (FSDP) and splits the batch across the GPUs."""
    if method not in ("full", "lora", "qlora"):
        raise ValueError(f"method must be 'full', 'lora' or 'qlora', got {method!r}")
    if not isinstance(n_gpus, int) or n_gpus < 1 or (n_gpus > 1 and method != "full"):
        raise ValueError(f"n_gpus must be a positive int, and > 1 only for 'full'; got {n_gpus!r}")
    n = int(params_b * 1e9)
    if method == "full":
        states = (
            zero_memory(n, n_gpus, 3) if n_gpus > 1 else training_memory(n, "full", "mixed").total
        )
    else:
        trainable = max(1, int(n * 0.005))  # adapters ~0.5 % of the model
        states = training_memory(n, method, "bf16", trainable=trainable).total
    per_gpu_batch = max(1, -(-batch // n_gpus))
    shape = shape_for(params_b)
    acts = activation_bytes(shape, per_gpu_batch, seq_len, 2, checkpointing)
    if checkpointing:  # backward recomputes one block at a time on top of the kept inputs
        acts += activation_bytes(shape, per_gpu_batch, seq_len, 2) / shape.layers
    return {"states": states, "activations": float(acts), "total": states + acts}


def fits(
    params_b: float,
    gpu_gib: float,
    method: str,
    seq_len: int = 512,
    batch: int = 1,
    checkpointing: bool = False,
    n_gpus: int = 1,
) -> bool:
    """Whether states + activations fit in (1 − RESERVE) of one GPU's memory."""
    need = memory_need(params_b, method, seq_len, batch, checkpointing, n_gpus)["total"]
    return need <= (1 - RESERVE) * gpu_gib * GIB


def _fit(params_b, gpu_gib, method, seq_len, batch, n_gpus=1) -> str | None:
    """'plain', 'checkpointing' (fits only with it) or None (does not fit)."""
    for mode in (False, True):
        if fits(params_b, gpu_gib, method, seq_len, batch, mode, n_gpus):
            return "checkpointing" if mode else "plain"
    return None


def _memory_reason(params_b, gpu_gib, method, seq_len, batch, mode, n_gpus=1) -> str:
    """One sentence: what takes the memory, and whether checkpointing is needed."""
    need = memory_need(params_b, method, seq_len, batch, mode == "checkpointing", n_gpus)
    where = f"{n_gpus} GPUs of {gpu_gib:g} GiB" if n_gpus > 1 else f"{gpu_gib:g} GiB"
    text = (
        f"{method} of a {params_b:g}B model needs {need['states'] / GIB:.1f} GiB of states + "
        f"{need['activations'] / GIB:.1f} GiB of activations ({batch} × {seq_len} tokens) per GPU, "
        f"within {1 - RESERVE:.0%} of {where}"
    )
    if mode == "checkpointing":
        text += (
            " only with gradient checkpointing (keeps one input per block, recomputes the rest: "
            "about a third more compute, chapter 11)"
        )
    return text


def recommend(
    params_b: float,
    gpu_gib: float,
    n_examples: int,
    task: str,
    n_tasks: int = 1,
    facts_change: bool = False,
    *,
    seq_len: int = 512,
    batch: int = 1,
    teacher_available: bool = False,
    n_gpus: int = 1,
    preference_data: str = "pairs",
    reference_model: bool = True,
) -> Recommendation:
    """Suggest a method for fine-tuning a `params_b`-billion-parameter model on GPUs of `gpu_gib` GiB.

    task "verifiable": answers a program can check (arithmetic, code with tests, exact facts).
    teacher_available: a stronger model whose outputs you may train on (licence permitting).
    preference_data ("pairs" or "unpaired" thumbs up/down) and reference_model (whether a frozen
    reference copy can be afforded) pick among the preference family of chapter 14.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if preference_data not in PREFERENCE_DATA:
        raise ValueError(
            f"preference_data must be one of {PREFERENCE_DATA}, got {preference_data!r}"
        )
    if params_b <= 0 or gpu_gib <= 0 or n_examples < 0 or n_tasks < 1:
        raise ValueError("need params_b > 0, gpu_gib > 0, n_examples >= 0 and n_tasks >= 1")
    if seq_len < 1 or batch < 1 or n_gpus < 1:
        raise ValueError(f"need seq_len, batch, n_gpus >= 1; got {seq_len}, {batch}, {n_gpus}")
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
    prefix = ""
    if n_examples < 100:
        if not teacher_available:
            return Recommendation(
                "prompting (few-shot or retrieval)",
                [
                    f"{n_examples} examples are too few to fine-tune reliably; start with "
                    "prompting and collect data"
                ],
            )
        reasons.append(
            f"only {n_examples} examples, but a stronger teacher is available: generate training "
            "answers with it (sequence-level distillation, filtered by a check or a judge), then "
            "fine-tune the student on them; check the teacher's licence allows it"
        )
        prefix = "distillation from the teacher, then "
    pref = "DPO"
    if task == "preference" and preference_data == "unpaired":
        pref = "KTO"
        reasons.append(
            "unpaired thumbs up / thumbs down: KTO trains on answers labelled good or bad one by "
            "one, no pairs needed (chapter 14)"
        )
    elif task == "preference" and not reference_model:
        pref = "SimPO"
        reasons.append(
            "no frozen reference model: SimPO (length-normalised) or ORPO (SFT and preference in one "
            "loss) need none, which saves a model's memory and forward pass (chapter 14)"
        )
    elif task == "preference":
        reasons.append(
            "preference pairs: DPO on top of an SFT model is simpler than PPO, which needs a reward "
            "model, rollouts and a value model; at matched budgets the gold rewards were within "
            "noise in chapter 09, and DPO drifted further from the reference"
        )
    if task == "verifiable":
        reasons.append(
            "answers a program can check: reinforcement learning with that verifiable reward "
            "(GRPO / RLVR, chapter 14) after SFT; a checker cannot be flattered by style the way a "
            "learned reward model can (chapter 09's reward hacking); where the answers show their "
            "working, check the steps too: a final-answer check also pays for lucky guesses "
            "(chapter 14)"
        )
    full = _fit(params_b, gpu_gib, "full", seq_len, batch)
    if full and n_tasks == 1 and n_examples >= 10_000:
        reasons.append(
            _memory_reason(params_b, gpu_gib, "full", seq_len, batch, full)
            + "; with ≥ 10k examples it is the strongest option (chapter 12's comparison)"
        )
        method = {"preference": f"{pref} (full)", "verifiable": "GRPO (full)"}.get(task, "full")
        return Recommendation(
            prefix + ("full fine-tuning" if method == "full" else method), reasons
        )
    if n_gpus > 1 and n_tasks == 1 and n_examples >= 10_000:
        sharded = _fit(params_b, gpu_gib, "full", seq_len, batch, n_gpus)
        if sharded:
            reasons.append(
                _memory_reason(params_b, gpu_gib, "full", seq_len, batch, sharded, n_gpus)
                + "; ZeRO-3 / FSDP shards weights, gradients and optimizer states (chapter 11)"
            )
            return Recommendation(prefix + f"full fine-tuning, ZeRO-3 on {n_gpus} GPUs", reasons)
    if n_tasks > 1:
        reasons.append(
            f"{n_tasks} tasks on one base: one LoRA adapter each, switched at run time (chapter 04); "
            "merge one into the weights when a single task needs base-model latency"
        )
    lora = _fit(params_b, gpu_gib, "lora", seq_len, batch)
    qlora = _fit(params_b, gpu_gib, "qlora", seq_len, batch)
    if lora:
        reasons.append(
            _memory_reason(params_b, gpu_gib, "lora", seq_len, batch, lora)
            + "; LoRA merges into the weights, so inference costs nothing extra"
        )
        method = "LoRA"
    elif qlora:
        reasons.append(
            _memory_reason(params_b, gpu_gib, "qlora", seq_len, batch, qlora)
            + "; a 4-bit base saves memory, not time (chapter 05: slower per step on CPU kernels)"
        )
        method = "QLoRA"
    else:
        need = memory_need(params_b, "qlora", seq_len, batch, True)["total"] / GIB
        return Recommendation(
            "does not fit on one GPU",
            reasons
            + [
                f"even QLoRA with gradient checkpointing needs {need:.0f} GiB for {batch} × {seq_len} "
                "tokens: use a smaller model, shorter sequences, or several GPUs with ZeRO-3 / "
                "FSDP (chapter 11)"
            ],
        )
    if task == "preference":
        method = f"{pref} with {method}"
    elif task == "verifiable":
        method = f"GRPO with {method}"
    return Recommendation(prefix + method, reasons)
