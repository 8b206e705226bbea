"""Every fine-tuning method of the course on one task, measured the same way.

Taught in chapter 12 (choosing a method). The task is chapter 06/07's domain adaptation: clinic
notes, 20 steps of 16 notes, scored by the validation loss on the notes' real tokens. It is
next-token prediction, so every method applies: full fine-tuning, freeze-tuning, LoRA, QLoRA,
bottleneck adapters, (IA)³, prompt tuning and prefix tuning. `run_method` trains one method on the
same batches as every other and returns one row: trainable parameters, training memory counted
from real tensors, median seconds per step, validation loss, and the bytes of the artefact you ship.
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from course_lib.activation_memory import saved_activation_bytes
from course_lib.prompt_tuning import real_token_cross_entropy
from course_lib.qlora import model_bytes
from course_lib.training import TrainConfig, make_optimizer, text_batches, train

IGNORE_INDEX = -100


@torch.no_grad()
def in_context_cross_entropy(
    model, tokenizer, texts: Sequence[str], shots: Sequence[str], batch_size: int = 32
) -> float:
    """Mean next-token loss (nats/token) on each text's own tokens when `shots` are written in front of it.

    The few-shot floor: the frozen model sees a few example documents in its context, and only the
    loss on the target text (and its eos) is counted, exactly the tokens `real_token_cross_entropy` counts."""
    if isinstance(texts, str) or not texts or isinstance(shots, str) or not shots:
        raise TypeError("texts and shots must be non-empty lists of strings")
    context = tokenizer("\n".join(shots) + "\n")["input_ids"]
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for i in range(0, len(texts), batch_size):
        rows = [
            tokenizer(t + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
            for t in texts[i : i + batch_size]
        ]
        width = len(context) + max(map(len, rows))
        ids = torch.full((len(rows), width), tokenizer.pad_token_id)
        labels, mask = torch.full_like(ids, IGNORE_INDEX), torch.zeros_like(ids)
        for r, row in enumerate(rows):
            ids[r, : len(context) + len(row)] = torch.tensor(context + row)
            mask[r, : len(context) + len(row)] = 1
            labels[r, len(context) : len(context) + len(row)] = torch.tensor(row)
        logits = (
            model(input_ids=ids.to(device), attention_mask=mask.to(device))
            .logits[:, :-1]
            .float()
            .cpu()
        )
        target = labels[:, 1:]
        nll = nn.functional.cross_entropy(
            logits.transpose(1, 2), target, ignore_index=IGNORE_INDEX, reduction="sum"
        )
        total, count = total + nll.item(), count + int((target != IGNORE_INDEX).sum())
    return total / count


def trainable_parameters(model: nn.Module) -> int:
    """Parameters with requires_grad, tied (shared) tensors counted once."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"need a torch.nn.Module, got {type(model).__name__}")
    unique = {id(p): p for p in model.parameters() if p.requires_grad}
    return sum(p.numel() for p in unique.values())


def optimizer_state_bytes(model: nn.Module) -> int:
    """Bytes of AdamW's state after one step, measured on detached copies of the trainable parameters."""
    params = [
        nn.Parameter(p.detach().clone())
        for p in {id(q): q for q in model.parameters() if q.requires_grad}.values()
    ]
    if not params:
        raise ValueError("the model has no trainable parameters")
    twin = nn.ParameterList(params)
    opt = make_optimizer(twin, lr=1e-3, weight_decay=0.0)
    for p in twin:
        p.grad = torch.zeros_like(p)
    opt.step()
    return sum(
        t.numel() * t.element_size()
        for s in opt.state.values()
        for t in s.values()
        if torch.is_tensor(t)
    )


@dataclass
class Memory:
    """Training memory of one method, in bytes, each part counted from real tensors."""

    weights: int  # every parameter and buffer (4-bit base: packed codes + quantization constants)
    gradients: int  # one gradient per trainable parameter
    optimizer: int  # AdamW's two moments (+ step counters)
    activations: int  # tensors autograd saves for backward on one training batch

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations


def training_memory_counted(model: nn.Module, batch: dict) -> Memory:
    """Weights + gradients + AdamW state + saved activations for one step on `batch`, in bytes."""
    grads = sum(
        p.numel() * p.element_size()
        for p in {id(p): p for p in model.parameters() if p.requires_grad}.values()
    )
    activations = saved_activation_bytes(model, batch)
    model.zero_grad(set_to_none=True)
    return Memory(model_bytes(model)["total"], grads, optimizer_state_bytes(model), activations)


def artefact_bytes(model: nn.Module, what: str = "auto") -> int:
    """Bytes of the files you would ship after training, written to a temporary folder.

    what="full": the whole model (save_pretrained); "peft": the adapter files peft's save_pretrained writes
    (weights + config, its README model card left out); "trainable": a safetensors file of the trainable
    tensors only (freeze-tuning, the course's own adapters); "auto" picks peft for peft models, else trainable.
    """
    from safetensors.torch import save_file

    if what == "auto":
        what = "peft" if hasattr(model, "peft_config") else "trainable"
    if what not in ("full", "peft", "trainable"):
        raise ValueError(f"what must be 'full', 'peft', 'trainable' or 'auto', got {what!r}")
    with tempfile.TemporaryDirectory() as folder:
        if what in ("full", "peft"):
            model.save_pretrained(folder)
        else:
            named = {n: p for n, p in model.named_parameters() if p.requires_grad}
            if not named:
                raise ValueError("nothing is trainable, so there is nothing to ship")
            save_file(
                {n: p.detach().contiguous() for n, p in named.items()},
                str(Path(folder) / "trained.safetensors"),
            )
        return sum(
            f.stat().st_size
            for f in Path(folder).rglob("*")
            if f.is_file() and f.name != "README.md"
        )


@dataclass
class MethodSpec:
    """How to build one method from the base model, its learning rate and what it ships."""

    build: Callable[[nn.Module], nn.Module]
    lr: float
    artefact: str = "auto"


def _lora_config(**kw):
    from peft import LoraConfig

    return LoraConfig(
        r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM", **kw
    )


def _full(base):
    return copy.deepcopy(base).requires_grad_(True)


def _freeze(base):
    from course_lib.freezing import freeze_all_but_top

    return freeze_all_but_top(copy.deepcopy(base), 1)


def _lora(base):
    from peft import get_peft_model

    torch.manual_seed(0)
    return get_peft_model(copy.deepcopy(base), _lora_config())


def _qlora(base):
    from peft import get_peft_model, prepare_model_for_kbit_training

    from course_lib.qlora import load_4bit

    device = next(base.parameters()).device
    q4 = prepare_model_for_kbit_training(load_4bit(device=device), use_gradient_checkpointing=False)
    torch.manual_seed(0)
    return get_peft_model(q4, _lora_config())


def _adapters(base):
    from course_lib.adapters import add_adapter

    torch.manual_seed(0)
    return add_adapter(copy.deepcopy(base), "clinic", "houlsby", bottleneck=8)


def _ia3(base):
    from peft import IA3Config, get_peft_model

    return get_peft_model(
        copy.deepcopy(base),
        IA3Config(
            target_modules=["k_proj", "v_proj", "down_proj"],
            feedforward_modules=["down_proj"],
            task_type="CAUSAL_LM",
        ),
    )


PROMPT_INIT_TEXT = (
    "Clinic note. Patient presents with symptoms; assessment and plan follow."  # chapter 07
)


def _prompt(base):
    from peft import PromptTuningConfig, get_peft_model

    from course_lib.models import BASE_MODEL_DIR

    return get_peft_model(
        copy.deepcopy(base),
        PromptTuningConfig(
            task_type="CAUSAL_LM",
            num_virtual_tokens=20,
            prompt_tuning_init="TEXT",
            prompt_tuning_init_text=PROMPT_INIT_TEXT,
            tokenizer_name_or_path=str(BASE_MODEL_DIR),
        ),
    )


def _prefix(base):
    from peft import PrefixTuningConfig, get_peft_model

    torch.manual_seed(0)
    return get_peft_model(
        copy.deepcopy(base), PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=20)
    )


METHODS: dict[str, MethodSpec] = {
    "full fine-tuning": MethodSpec(_full, 3e-3, "full"),
    "freeze-tuning (top block + head)": MethodSpec(_freeze, 3e-3, "trainable"),
    "LoRA q,v r=8": MethodSpec(_lora, 3e-2, "peft"),
    "QLoRA q,v r=8 (NF4 base)": MethodSpec(_qlora, 3e-2, "peft"),
    "adapters (Houlsby m=8)": MethodSpec(_adapters, 3e-2, "trainable"),
    "(IA)³": MethodSpec(_ia3, 0.3, "peft"),
    "prompt tuning (20 tokens)": MethodSpec(_prompt, 3e-2, "peft"),
    "prefix tuning (20 tokens)": MethodSpec(_prefix, 1.0, "peft"),
}


def run_method(
    name: str,
    base: nn.Module,
    tokenizer,
    train_texts: Sequence[str],
    eval_texts: Sequence[str],
    steps: int = 20,
    batch_size: int = 16,
    lr: float | None = None,
    seed: int = 0,
) -> dict:
    """Train METHODS[name] for `steps` steps on the same batches as every method; return one row of measurements.

    The row: method, lr, trainable parameters, memory parts and total (bytes, `training_memory_counted` on the
    first batch), step_s (median seconds per optimizer step, first step left out), loss (validation nats/token),
    artefact (bytes shipped), and the trained model under "model"."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {list(METHODS)}")
    if not isinstance(steps, int) or steps < 3:
        raise ValueError(
            f"steps must be an int >= 3 (the step time is a median over steps 2..n), got {steps!r}"
        )
    spec = METHODS[name]
    torch.manual_seed(seed)
    model = spec.build(base)
    first = next(iter(text_batches(tokenizer, list(train_texts), batch_size, seed=seed)))
    memory = training_memory_counted(model.train(), first)
    stamps: list[float] = []
    config = TrainConfig(lr=lr or spec.lr, max_steps=steps, warmup_steps=2, progress=False)
    start = time.perf_counter()
    train(
        model,
        text_batches(tokenizer, list(train_texts), batch_size, seed=seed),
        config,
        on_step=lambda m, s: stamps.append(time.perf_counter()),
    )
    step_times = [b - a for a, b in zip([start] + stamps[:-1], stamps)]
    return {
        "method": name,
        "lr": config.lr,
        "trainable": trainable_parameters(model),
        "memory": memory.total,
        "weights": memory.weights,
        "gradients": memory.gradients,
        "optimizer": memory.optimizer,
        "activations": memory.activations,
        "step_s": statistics.median(step_times[1:]),
        "loss": real_token_cross_entropy(model, tokenizer, list(eval_texts)),
        "artefact": artefact_bytes(model, spec.artefact),
        "model": model,
    }
