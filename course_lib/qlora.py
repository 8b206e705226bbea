"""QLoRA on a CPU: load the base model in 4 bits, count its bytes, fake-quantize weights, time steps.

Taught in chapter 05 (QLoRA and quantization). Loading goes through transformers'
`BitsAndBytesConfig` (bitsandbytes' `Linear4bit` layers); the from-scratch formats come
from `course_lib.quantization`.
"""

from __future__ import annotations

import copy
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from course_lib.models import BASE_MODEL_DIR
from course_lib.quantization import dequantize_blockwise, quantize_blockwise

QUANT_TYPES = ("nf4", "fp4")
COMPUTE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def bnb_config(
    quant_type: str = "nf4", double_quant: bool = True, compute_dtype: torch.dtype = torch.float32
):
    """A BitsAndBytesConfig for 4-bit loading (quant_type always explicit: the library default is FP4)."""
    from transformers import BitsAndBytesConfig

    if quant_type not in QUANT_TYPES:
        raise ValueError(f"quant_type must be one of {QUANT_TYPES}, got {quant_type!r}")
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(f"compute_dtype must be one of {COMPUTE_DTYPES}, got {compute_dtype!r}")
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant_type,
        bnb_4bit_use_double_quant=double_quant,
        bnb_4bit_compute_dtype=compute_dtype,
    )


def load_4bit(
    path: str | Path = BASE_MODEL_DIR,
    quant_type: str = "nf4",
    double_quant: bool = True,
    compute_dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
):
    """The base causal LM with every linear layer (not the tied lm_head) stored in 4 bits."""
    from transformers import AutoModelForCausalLM

    path = Path(path)
    if not (path / "config.json").exists():
        raise FileNotFoundError(
            f"no model in {path.name}/ (config.json missing). Rebuild the base "
            "model with `make base-model` (python -m course_lib.build.base_model)."
        )
    config = bnb_config(quant_type, double_quant, compute_dtype)
    model = AutoModelForCausalLM.from_pretrained(
        path, quantization_config=config, device_map={"": str(device)}
    )
    return model.eval()


def linear_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weight of every nn.Linear except the output head (tied to the embeddings), by module name."""
    out = {
        n: m.weight
        for n, m in model.named_modules()
        if isinstance(m, nn.Linear)
        and not n.endswith("lm_head")
        and m.weight.dtype.is_floating_point
    }
    if not out:
        raise ValueError(
            "the model has no floating-point nn.Linear layers (is it already quantized?)"
        )
    return out


@torch.no_grad()
def format_mse(model: nn.Module, values: torch.Tensor, blocksize: int = 64) -> float:
    """Mean squared error over all linear weights after blockwise quantization with the table `values`."""
    total, count = 0.0, 0
    for w in linear_weights(model).values():
        codes, absmax = quantize_blockwise(w, values, blocksize)
        total += (
            (dequantize_blockwise(codes, absmax, values, blocksize) - w.float()).pow(2).sum().item()
        )
        count += w.numel()
    return total / count


@torch.no_grad()
def fake_quantize(model: nn.Module, values: torch.Tensor, blocksize: int = 64) -> nn.Module:
    """A copy of the model whose linear weights are replaced by their quantized-then-dequantized values."""
    twin = copy.deepcopy(model)
    for w in linear_weights(twin).values():
        codes, absmax = quantize_blockwise(w, values, blocksize)
        w.copy_(dequantize_blockwise(codes, absmax, values, blocksize).to(w.dtype))
    return twin


def _quant_state_tensors(state, seen: set[int]) -> int:
    """Bytes of the tensors in a bitsandbytes QuantState (absmax, code, nested state, offset)."""
    total = 0
    for value in vars(state).values():
        if torch.is_tensor(value) and value.data_ptr() not in seen:
            seen.add(value.data_ptr())
            total += value.numel() * value.element_size()
        elif type(value).__name__ == "QuantState":
            total += _quant_state_tensors(value, seen)
    return total


def model_bytes(model: nn.Module) -> dict[str, int]:
    """Bytes held by the model's tensors: 'weights' (parameters and buffers, tied ones counted once),
    'quant_state' (4-bit block constants and code tables), and 'total'."""
    seen: set[int] = set()
    weights = 0
    for t in [*model.parameters(), *model.buffers()]:
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            weights += t.numel() * t.element_size()
    state = 0
    for p in model.parameters():
        if getattr(p, "quant_state", None) is not None:
            state += _quant_state_tensors(p.quant_state, seen)
    return {"weights": weights, "quant_state": state, "total": weights + state}


def cpu_packed_layers(model: nn.Module) -> list[str]:
    """Names of 4-bit layers that bitsandbytes has repacked for CPU inference (AVX512-BF16 CPUs only).

    bitsandbytes 0.50 repacks a Linear4bit's weight the first time it runs in eval mode on an input
    without gradient; from then on it uses a bf16 inference kernel with no backward, so training
    through that layer silently gets no gradient. Evaluate after training, or reload the model."""
    return [
        n
        for n, p in model.named_parameters()
        if getattr(getattr(p, "quant_state", None), "packing_format_for_cpu", False)
    ]


def step_seconds(
    models: dict[str, nn.Module], batch: dict, repeats: int = 10, warmup: int = 2
) -> dict[str, float]:
    """Median seconds of one forward + backward pass per model on the same batch, runs interleaved
    (A, B, A, B, ...) so that a busy machine slows every model alike."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
    if not models:
        raise ValueError("pass at least one model, e.g. {'LoRA': lora_model, 'QLoRA': qlora_model}")
    for name, model in models.items():
        if cpu_packed_layers(model):
            raise ValueError(
                f"{name!r} has 4-bit layers repacked for CPU inference (it was evaluated before): "
                "backward through them is not supported. Time a freshly loaded model."
            )
    times: dict[str, list[float]] = {name: [] for name in models}
    for i in range(warmup + repeats):
        for name, model in models.items():
            model.train()
            start = time.perf_counter()
            model(**batch).loss.backward()
            elapsed = time.perf_counter() - start
            model.zero_grad(set_to_none=True)
            if i >= warmup:
                times[name].append(elapsed)
    for model in models.values():
        model.eval()
    return {name: statistics.median(t) for name, t in times.items()}
