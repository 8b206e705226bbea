"""Training memory (weights, gradients, optimizer state, activations): counted and computed.

Taught in chapter 03 (activation memory: `saved_activation_bytes`) and chapter 11 (the calculator);
chapter 12 uses both for the method table. Activations depend on batch, sequence length and kernels,
so `training_memory` takes them as a number: measured with `saved_activation_bytes`, or counted for
a Llama shape with `activation_bytes`. `measure_step` counts the same parts on a real model after
one optimizer step, `zero_memory` gives the model-state bytes per GPU under ZeRO stages 0-3
(Rajbhandari et al. 2020, §5, Figure 1).

On a CPU there is no `torch.cuda.max_memory_allocated`, so `saved_activation_bytes` counts the
activations directly: a `saved_tensors_hooks` pack hook sees every tensor autograd keeps for the
backward pass; their storages are summed once each, leaving out the model's own parameters and
buffers (they exist whether you train or not).

Bytes per parameter, the usual accounting (Rajbhandari et al. 2020, ZeRO, §3.1):
full fine-tuning with AdamW in fp32: 4 (weights) + 4 (gradients) + 8 (two moments) = 16;
mixed precision: 2 (bf16/fp16 weights) + 2 (gradients) + 4 (fp32 master weights) + 8 = 16 as well;
LoRA/QLoRA: the frozen base costs only its storage (4, 2, or ~0.52 for NF4 with double quantization),
the small adapters pay the 16.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from course_lib.measure import tensor_bytes
from course_lib.training import batch_to_device

ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
NF4_DQ_BITS = 4 + 8 / 64 + 32 / (64 * 256)  # 4-bit codes, 8-bit absmax per 64, fp32 per 256 absmax
STORAGE_BYTES = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "int8": 1.0, "nf4": NF4_DQ_BITS / 8}
OPTIMIZER_BYTES = {"adamw": 8.0, "adamw8bit": 2.0, "sgd_momentum": 4.0, "sgd": 0.0}
GIB = 1024**3


@dataclass(frozen=True)
class LlamaShape:
    """The sizes of a Llama-style decoder that decide its parameter count."""

    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    tied_embeddings: bool = False

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each linear layer in one decoder block."""
        kv = self.kv_heads * self.head_dim
        h, i = self.hidden, self.intermediate
        return {
            "q_proj": (h, h),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (h, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    def n_params(self) -> int:
        """All parameters: embeddings, blocks (linear layers and two RMSNorms each), final norm, LM head."""
        block = sum(a * b for a, b in self.linear_shapes().values()) + 2 * self.hidden
        head = 0 if self.tied_embeddings else self.vocab * self.hidden
        return self.vocab * self.hidden + self.layers * block + self.hidden + head

    @classmethod
    def from_config(cls, config) -> "LlamaShape":
        """From a transformers LlamaConfig."""
        return cls(
            config.vocab_size,
            config.hidden_size,
            config.intermediate_size,
            config.num_hidden_layers,
            config.num_attention_heads,
            config.num_key_value_heads or config.num_attention_heads,
            bool(config.tie_word_embeddings),
        )


# Published configurations (config.json of the Llama 2 releases, Touvron et al. 2023).
KNOWN = {
    "Llama-2-7B": LlamaShape(32000, 4096, 11008, 32, 32, 32),
    "Llama-2-13B": LlamaShape(32000, 5120, 13824, 40, 40, 40),
    "Llama-2-70B": LlamaShape(32000, 8192, 28672, 80, 64, 8),
}


def lora_params(shape: LlamaShape, r: int, targets: tuple[str, ...] = ALL_LINEAR) -> int:
    """Trainable LoRA parameters: r·(in + out) for every targeted linear layer in every block."""
    if r < 1:
        raise ValueError(f"LoRA rank r must be >= 1, got {r}")
    shapes = shape.linear_shapes()
    unknown = set(targets) - set(shapes)
    if unknown:
        raise ValueError(f"unknown target modules {sorted(unknown)}; choose from {list(shapes)}")
    return shape.layers * sum(r * (shapes[t][0] + shapes[t][1]) for t in targets)


@dataclass
class MemoryEstimate:
    """Bytes for each part of training memory, computed or counted from real tensors; `total` adds them up."""

    weights: float
    gradients: float
    optimizer: float
    master_weights: float = 0
    activations: float = 0
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return (
            self.weights + self.gradients + self.optimizer + self.master_weights + self.activations
        )

    def gib(self) -> dict[str, float]:
        """Every part and the total in GiB, rounded to 0.01."""
        parts = ("weights", "gradients", "optimizer", "master_weights", "activations", "total")
        return {p: round(getattr(self, p) / GIB, 2) for p in parts}


def training_memory(
    n_params: int,
    method: str = "full",
    precision: str = "fp32",
    trainable: int | None = None,
    optimizer: str = "adamw",
    activations: float = 0.0,
    unquantized: int = 0,
) -> MemoryEstimate:
    """Memory to train a model of `n_params` parameters.

    method: "full" (every parameter trained), "lora" (frozen base, `trainable` adapter parameters) or
    "qlora" (base stored in NF4 with double quantization). precision: "fp32", "mixed" (16-bit weights and
    gradients plus fp32 master weights) or "bf16" (everything in bf16 except the optimizer moments, which
    stay fp32 unless the optimizer is 8-bit). Adapters are trained in fp32 for "fp32"/"mixed", bf16
    for "bf16".
    unquantized (qlora only): how many of the `n_params` stay in the compute precision instead of NF4
    (bitsandbytes quantizes nn.Linear layers only: embeddings, norms and the output head stay as they are).
    """
    if method not in ("full", "lora", "qlora"):
        raise ValueError(f"method must be 'full', 'lora' or 'qlora', got {method!r}")
    if precision not in ("fp32", "mixed", "bf16"):
        raise ValueError(f"precision must be 'fp32', 'mixed' or 'bf16', got {precision!r}")
    if optimizer not in OPTIMIZER_BYTES:
        raise ValueError(f"optimizer must be one of {list(OPTIMIZER_BYTES)}, got {optimizer!r}")
    if n_params <= 0 or activations < 0:
        raise ValueError("n_params must be positive and activations (bytes) non-negative")
    if not 0 <= unquantized < n_params or (unquantized and method != "qlora"):
        raise ValueError(
            f"unquantized must be in [0, n_params) and is only meaningful for method='qlora', "
            f"got {unquantized} with method={method!r}"
        )
    if method == "full":
        trained = n_params
    elif trainable is None or not 0 < trainable < n_params:
        raise ValueError(
            f"{method} needs trainable = the number of adapter parameters (0 < trainable < n_params)"
        )
    else:
        trained = trainable
    compute = 4.0 if precision == "fp32" else 2.0
    opt = OPTIMIZER_BYTES[optimizer] * trained
    if method == "full":
        master = 4.0 * n_params if precision == "mixed" else 0.0
        return MemoryEstimate(compute * n_params, compute * n_params, opt, master, activations)
    base = STORAGE_BYTES["nf4"] if method == "qlora" else compute
    adapter = 2.0 if precision == "bf16" else 4.0
    frozen = base * (n_params - unquantized) + compute * unquantized
    notes = [
        f"frozen base {n_params - unquantized:,} × {base:.3g} B"
        + (f" + {unquantized:,} × {compute:.0f} B" if unquantized else "")
        + f"; adapters {trained:,} × {adapter:.0f} B"
    ]
    return MemoryEstimate(
        frozen + adapter * trained, adapter * trained, opt, 0.0, activations, notes
    )


def _positive(**values: int) -> None:
    """Raise ValueError unless every value is a positive int."""
    for name, v in values.items():
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")


def layer_activation_bytes(shape: LlamaShape, batch: int, seq: int, value_bytes: int = 4) -> int:
    """Bytes autograd saves for one decoder block of a transformers Llama (sdpa attention, no dropout).

    Per token: 4 intermediate-size tensors (gate, up, SiLU(gate), their product), 4 hidden-size tensors
    in the compute dtype plus the 2 RMSNorm inputs upcast to fp32, q/k/v/attention output, 2 fp32 RMSNorm
    scales and one fp32 log-sum-exp per head (sdpa keeps it instead of the seq × seq attention matrix).
    """
    _positive(batch=batch, seq=seq, value_bytes=value_bytes)
    h, i, hd = shape.hidden, shape.intermediate, shape.head_dim
    attention = (2 * shape.heads + 2 * shape.kv_heads) * hd
    per_token = value_bytes * (4 * i + 4 * h + attention) + 4 * (2 * h + 2 + shape.heads)
    return batch * seq * per_token


def activation_bytes(
    shape: LlamaShape, batch: int, seq: int, value_bytes: int = 4, checkpointing: bool = False
) -> int:
    """Bytes autograd holds after the forward pass of a transformers Llama causal LM with labels.

    Without checkpointing: every block (`layer_activation_bytes`), the rotary cos/sin tables, the final norm
    and the fp32 logits kept for the loss, and the int64 input ids and labels. With per-block checkpointing
    (non-reentrant) each block keeps only its input; backward then recomputes one block at a time, so the
    peak adds one block's activations on top of this number.
    """
    _positive(batch=batch, seq=seq, value_bytes=value_bytes)
    h, tokens = shape.hidden, batch * seq
    head = tokens * (value_bytes * 2 * h + 4 * (h + 1 + shape.vocab)) + tokens * 2 * 8 + 4
    if checkpointing:
        return shape.layers * tokens * value_bytes * h + head
    rope = 2 * seq * shape.head_dim * value_bytes
    return shape.layers * layer_activation_bytes(shape, batch, seq, value_bytes) + rope + head


ZERO_STAGES = {
    0: "DDP: everything replicated",
    1: "optimizer states sharded",
    2: "optimizer states and gradients sharded",
    3: "parameters, gradients and optimizer states sharded",
}


def zero_memory(n_params: float, n_gpus: int, stage: int, optimizer_bytes: float = 12.0) -> float:
    """Model-state bytes per GPU for mixed-precision training under ZeRO stage 0-3 (ZeRO paper, Figure 1).

    Each parameter costs 2 bytes (fp16/bf16 weights) + 2 (gradients) + K = `optimizer_bytes` (Adam: fp32
    master weights, momentum and variance = 12). Stage 1 divides K by N, stage 2 also the gradients,
    stage 3 everything. Activations, buffers and fragmentation are not included.
    """
    if stage not in ZERO_STAGES:
        raise ValueError(f"stage must be 0, 1, 2 or 3 (0 = plain data parallelism), got {stage!r}")
    if not isinstance(n_gpus, int) or n_gpus < 1:
        raise ValueError(f"n_gpus must be a positive integer, got {n_gpus!r}")
    if n_params <= 0 or optimizer_bytes < 0:
        raise ValueError("n_params must be positive and optimizer_bytes non-negative")
    weights, grads, opt = 2.0 * n_params, 2.0 * n_params, optimizer_bytes * n_params
    if stage >= 1:
        opt /= n_gpus
    if stage >= 2:
        grads /= n_gpus
    if stage == 3:
        weights /= n_gpus
    return weights + grads + opt


def saved_activation_bytes(model: torch.nn.Module, batch: dict, bf16: bool = False) -> int:
    """Bytes of the tensors autograd saves for backward during one forward pass (parameters excluded)."""
    if not isinstance(batch, dict) or "input_ids" not in batch:
        raise TypeError(
            "batch must be a dict of tensors with at least input_ids (and labels for a loss)"
        )
    device = next(model.parameters()).device
    batch = batch_to_device(batch, device)
    own = {t.untyped_storage().data_ptr() for t in list(model.parameters()) + list(model.buffers())}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in own:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with (
        torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
        torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16),
    ):
        loss = model(**batch).loss
    if loss is None or not loss.requires_grad:
        raise ValueError(
            "the forward pass built no graph: pass labels in the batch and keep some "
            "parameters trainable (requires_grad=True)"
        )
    return sum(saved.values())


def measure_step(model, optimizer, batch: dict) -> MemoryEstimate:
    """Count the real tensors of one training step: parameters (plus 4-bit quantization state; buffers such as
    the rotary table are left out), gradients, optimizer state after `optimizer.step()` (the 0-d step
    counters left out) and the activations saved during the forward pass."""
    from course_lib.qlora import model_bytes

    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
    activations = saved_activation_bytes(model, batch)  # forward only, graph discarded
    model(**batch_to_device(batch, next(model.parameters()).device)).loss.backward()
    optimizer.step()
    grads = tensor_bytes(p.grad for p in model.parameters() if p.grad is not None)
    state = tensor_bytes(
        v
        for s in optimizer.state.values()
        for v in s.values()
        if torch.is_tensor(v) and v.dim() > 0
    )
    weights = tensor_bytes(model.parameters()) + model_bytes(model)["quant_state"]
    return MemoryEstimate(weights, grads, state, 0.0, activations)
