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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from course_lib.evaluation import cross_entropy
from course_lib.measure import LapTimer, count_parameters, folder_bytes, tensor_bytes
from course_lib.memory import MemoryEstimate, saved_activation_bytes
from course_lib.qlora import model_bytes
from course_lib.training import TrainConfig, make_optimizer, text_batches, train


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
    return tensor_bytes(t for s in opt.state.values() for t in s.values() if torch.is_tensor(t))


def training_memory_counted(model: nn.Module, batch: dict) -> MemoryEstimate:
    """Training memory for one step on `batch`, in bytes, each part counted from real tensors.

    weights: every parameter and buffer (4-bit base: packed codes + quantization constants,
    `qlora.model_bytes`); gradients: one per trainable parameter; optimizer: AdamW's two moments and
    step counters; activations: the tensors autograd saves for backward (`saved_activation_bytes`).
    Unlike `memory.measure_step` it leaves the model untouched (no step, no gradients kept)."""
    grads = tensor_bytes(p for p in model.parameters() if p.requires_grad)
    activations = saved_activation_bytes(model, batch)
    model.zero_grad(set_to_none=True)
    return MemoryEstimate(
        weights=model_bytes(model)["total"],
        gradients=grads,
        optimizer=optimizer_state_bytes(model),
        activations=activations,
    )


def artefact_bytes(model: nn.Module, what: str = "auto") -> int:
    """Bytes of the files you would ship after training, written to a temporary folder.

    what="full": the whole model (save_pretrained); "peft": the adapter files peft's save_pretrained
    writes (weights + config, its README model card left out); "trainable": a safetensors file of the
    trainable tensors only (freeze-tuning, the course's own adapters); "auto" picks peft for peft
    models, else trainable. The files are measured with `measure.folder_bytes`.
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
        (Path(folder) / "README.md").unlink(missing_ok=True)  # peft's model card: not the artefact
        return folder_bytes(folder)


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

    from course_lib.models import load_model

    device = next(base.parameters()).device
    q4 = prepare_model_for_kbit_training(
        load_model("4bit", device=device)[0], use_gradient_checkpointing=False
    )
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
    """Train METHODS[name] for `steps` steps on the same batches as every method; return one row.

    The row: method, lr, trainable parameters, memory parts and total (bytes, `training_memory_counted`
    on the first batch), step_s (median seconds between optimizer steps, `measure.LapTimer`, the first
    step left out), loss (validation nats/token), artefact (bytes shipped), and the trained model
    under "model"."""
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
    config = TrainConfig(lr=lr or spec.lr, max_steps=steps, warmup_steps=2, progress=False)
    laps = LapTimer()
    train(
        model,
        text_batches(tokenizer, list(train_texts), batch_size, seed=seed),
        config,
        on_step=laps.lap,
    )
    return {
        "method": name,
        "lr": config.lr,
        "trainable": count_parameters(model, trainable_only=True),
        "memory": memory.total,
        "weights": memory.weights,
        "gradients": memory.gradients,
        "optimizer": memory.optimizer,
        "activations": memory.activations,
        "step_s": statistics.median(laps.seconds()[1:]),
        "loss": cross_entropy(model, tokenizer, list(eval_texts)),
        "artefact": artefact_bytes(model, spec.artefact),
        "model": model,
    }
