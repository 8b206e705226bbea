"""A training-memory calculator: weights, gradients, optimizer state and master weights per method and precision.

Taught in chapter 11 (scaling out); chapter 12 uses it for the method table. Activations depend on
batch, sequence length and kernels, so they are passed in (measured with
`activation_memory.saved_activation_bytes`, or estimated) rather than guessed here.

Bytes per parameter, the usual accounting (Rajbhandari et al. 2020, ZeRO, §3.1):
full fine-tuning with AdamW in fp32: 4 (weights) + 4 (gradients) + 8 (two moments) = 16;
mixed precision: 2 (bf16/fp16 weights) + 2 (gradients) + 4 (fp32 master weights) + 8 = 16 as well;
LoRA/QLoRA: the frozen base costs only its storage (4, 2, or ~0.52 for NF4 with double quantization),
the small adapters pay the 16.
"""
from __future__ import annotations

from dataclasses import dataclass, field

ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
NF4_DQ_BITS = 4 + 8 / 64 + 32 / (64 * 256)      # 4-bit codes, 8-bit absmax per 64, fp32 per 256 absmax
STORAGE_BYTES = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "int8": 1.0, "nf4": NF4_DQ_BITS / 8}
OPTIMIZER_BYTES = {"adamw": 8.0, "adamw8bit": 2.0, "sgd_momentum": 4.0, "sgd": 0.0}
GIB = 1024 ** 3


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
        return {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    def n_params(self) -> int:
        """All parameters: embeddings, blocks (linear layers and two RMSNorms each), final norm, LM head."""
        block = sum(a * b for a, b in self.linear_shapes().values()) + 2 * self.hidden
        head = 0 if self.tied_embeddings else self.vocab * self.hidden
        return self.vocab * self.hidden + self.layers * block + self.hidden + head

    @classmethod
    def from_config(cls, config) -> "LlamaShape":
        """From a transformers LlamaConfig."""
        return cls(config.vocab_size, config.hidden_size, config.intermediate_size, config.num_hidden_layers,
                   config.num_attention_heads, config.num_key_value_heads or config.num_attention_heads,
                   bool(config.tie_word_embeddings))


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
    """Bytes for each part of training memory; `total` adds them up."""
    weights: float
    gradients: float
    optimizer: float
    master_weights: float = 0.0
    activations: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.master_weights + self.activations

    def gib(self) -> dict[str, float]:
        """Every part and the total in GiB, rounded to 0.01."""
        parts = ("weights", "gradients", "optimizer", "master_weights", "activations", "total")
        return {p: round(getattr(self, p) / GIB, 2) for p in parts}


def training_memory(n_params: int, method: str = "full", precision: str = "fp32", trainable: int | None = None,
                    optimizer: str = "adamw", activations: float = 0.0) -> MemoryEstimate:
    """Memory to train a model of `n_params` parameters.

    method: "full" (every parameter trained), "lora" (frozen base, `trainable` adapter parameters) or
    "qlora" (base stored in NF4 with double quantization). precision: "fp32", "mixed" (16-bit weights and
    gradients plus fp32 master weights) or "bf16" (everything in bf16 except the optimizer moments, which
    stay fp32 unless the optimizer is 8-bit). Adapters are trained in fp32 for "fp32"/"mixed", bf16 for "bf16".
    """
    if method not in ("full", "lora", "qlora"):
        raise ValueError(f"method must be 'full', 'lora' or 'qlora', got {method!r}")
    if precision not in ("fp32", "mixed", "bf16"):
        raise ValueError(f"precision must be 'fp32', 'mixed' or 'bf16', got {precision!r}")
    if optimizer not in OPTIMIZER_BYTES:
        raise ValueError(f"optimizer must be one of {list(OPTIMIZER_BYTES)}, got {optimizer!r}")
    if n_params <= 0 or activations < 0:
        raise ValueError("n_params must be positive and activations (bytes) non-negative")
    if method == "full":
        trained = n_params
    elif trainable is None or not 0 < trainable < n_params:
        raise ValueError(f"{method} needs trainable = the number of adapter parameters (0 < trainable < n_params)")
    else:
        trained = trainable
    compute = 4.0 if precision == "fp32" else 2.0
    opt = OPTIMIZER_BYTES[optimizer] * trained
    if method == "full":
        master = 4.0 * n_params if precision == "mixed" else 0.0
        return MemoryEstimate(compute * n_params, compute * n_params, opt, master, activations)
    base = STORAGE_BYTES["nf4"] if method == "qlora" else compute
    adapter = 2.0 if precision == "bf16" else 4.0
    notes = [f"frozen base {n_params:,} × {base:.3g} B; adapters {trained:,} × {adapter:.0f} B"]
    return MemoryEstimate(base * n_params + adapter * trained, adapter * trained, opt, 0.0, activations, notes)
