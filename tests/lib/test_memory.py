"""course_lib.memory: the calculator's counts and bytes, checked against real tensors."""

import pytest
import torch

from course_lib import memory
from course_lib.lora import inject_lora
from course_lib.measure import count_parameters


@pytest.fixture(scope="module")
def lm(base_model):
    return base_model


def test_param_count_matches_course_model(lm):
    shape = memory.LlamaShape.from_config(lm.config)
    real = sum(p.numel() for p in lm.parameters())
    assert shape.n_params() == real, (
        f"formula {shape.n_params():,} vs model {real:,} (tied embeddings counted once?)"
    )


def test_param_count_matches_published_llama2():
    published = {
        "Llama-2-7B": 6_738_415_616,
        "Llama-2-13B": 13_015_864_320,
        "Llama-2-70B": 68_976_648_192,
    }
    for name, n in published.items():
        assert memory.KNOWN[name].n_params() == n, (
            f"{name}: {memory.KNOWN[name].n_params():,} vs {n:,}"
        )


def test_lora_count_matches_injected_model(lm):
    import copy

    shape = memory.LlamaShape.from_config(lm.config)
    model = inject_lora(copy.deepcopy(lm), list(memory.ALL_LINEAR), r=8, alpha=16)
    assert count_parameters(model, trainable_only=True) == memory.lora_params(shape, 8), (
        "r·(in + out) per targeted layer"
    )


def test_full_fp32_matches_measured_tensors(lm):
    import copy

    model = copy.deepcopy(lm)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(3, 100, (2, 16))
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    params = list(model.parameters())
    measured = {
        "weights": sum(p.nbytes for p in params),
        "gradients": sum(p.grad.nbytes for p in params),
        "optimizer": sum(
            s[k].nbytes for s in opt.state.values() for k in ("exp_avg", "exp_avg_sq")
        ),
    }
    est = memory.training_memory(sum(p.numel() for p in params), "full", "fp32")
    for part, value in measured.items():
        assert getattr(est, part) == value, (
            f"{part}: calculator {getattr(est, part):,} B vs measured {value:,} B"
        )


def test_sixteen_bytes_per_parameter_for_full_finetuning():
    n = 1_000_000
    for precision in ("fp32", "mixed"):
        est = memory.training_memory(n, "full", precision)
        assert est.total == 16 * n, (
            f"{precision}: AdamW full fine-tuning needs 16 B/param, got {est.total / n}"
        )
    assert memory.training_memory(n, "full", "bf16").total == 12 * n, (
        "bf16 weights+grads (4) + fp32 moments (8)"
    )


def test_qlora_base_costs_about_half_a_byte():
    shape = memory.KNOWN["Llama-2-7B"]
    n, r = shape.n_params(), memory.lora_params(shape, 16)
    q = memory.training_memory(n, "qlora", "mixed", trainable=r)
    lo = memory.training_memory(n, "lora", "mixed", trainable=r)
    assert abs(q.weights / n - 0.516) < 0.01 + 4 * r / n, (
        "NF4 + double quantization ≈ 4.127 bits per weight"
    )
    assert lo.weights > 3.5 * q.weights, "a 16-bit base is ~4× the NF4 base"
    assert q.gib()["total"] < 6, (
        f"QLoRA 7B states should fit in ~4-5 GiB before activations, got {q.gib()}"
    )


def test_bad_input():
    with pytest.raises(ValueError, match="method"):
        memory.training_memory(10, "prefix")
    with pytest.raises(ValueError, match="trainable"):
        memory.training_memory(10, "lora")
    with pytest.raises(ValueError, match="precision"):
        memory.training_memory(10, "full", "fp8")
    with pytest.raises(ValueError, match="unknown target"):
        memory.lora_params(memory.KNOWN["Llama-2-7B"], 8, ("qproj",))


@pytest.fixture(scope="module")
def clinic_batch(tokenizer):
    from course_lib.data import load_jsonl
    from course_lib.training import pack_tokens

    ids = [tokenizer(r["text"])["input_ids"] for r in load_jsonl("clinic_train")[:60]]
    blocks = pack_tokens(ids, 32, eos_id=tokenizer.eos_token_id)[:4].clone()
    return {"input_ids": blocks, "labels": blocks}


def test_activation_formula_matches_saved_tensors(lm, clinic_batch):
    import copy

    shape = memory.LlamaShape.from_config(lm.config)
    b, s = clinic_batch["input_ids"].shape
    for value_bytes, model in ((4, lm), (2, copy.deepcopy(lm).to(torch.bfloat16))):
        got, want = (
            memory.saved_activation_bytes(model, clinic_batch),
            memory.activation_bytes(shape, b, s, value_bytes),
        )
        assert got == want, f"{value_bytes}-byte model: measured {got:,} B vs formula {want:,} B"
    ck = copy.deepcopy(lm)
    ck.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    ck.train()
    got, want = (
        memory.saved_activation_bytes(ck, clinic_batch),
        memory.activation_bytes(shape, b, s, 4, checkpointing=True),
    )
    assert got == want, (
        f"checkpointing: measured {got:,} B vs formula {want:,} B (only block inputs kept?)"
    )


def test_measure_step_equals_calculator_for_full_finetuning(lm, clinic_batch):
    import copy

    model = copy.deepcopy(lm)
    shape = memory.LlamaShape.from_config(lm.config)
    got = memory.measure_step(model, torch.optim.AdamW(model.parameters(), lr=1e-4), clinic_batch)
    b, s = clinic_batch["input_ids"].shape
    want = memory.training_memory(
        shape.n_params(), "full", "fp32", activations=memory.activation_bytes(shape, b, s)
    )
    for part in ("weights", "gradients", "optimizer", "activations", "total"):
        assert getattr(got, part) == getattr(want, part), (
            f"{part}: measured {getattr(got, part):,} vs {getattr(want, part):,}"
        )
    with pytest.raises(TypeError, match="Optimizer"):
        memory.measure_step(model, "adamw", clinic_batch)


def test_zero_memory_reproduces_the_paper_example():
    """ZeRO paper, Figure 1: Psi = 7.5 B, N = 64, K = 12 -> 120 / 31.4 / 16.6 / 1.9 GB per GPU."""
    got = [memory.zero_memory(7.5e9, 64, stage) / 1e9 for stage in range(4)]
    for g, w in zip(got, (120.0, 31.4, 16.6, 1.9)):
        assert abs(g - w) < 0.05, (
            f"per-GPU GB by stage {[round(x, 2) for x in got]} vs the paper's 120/31.4/16.6/1.9"
        )
    assert memory.zero_memory(1e9, 1, 3) == memory.zero_memory(1e9, 1, 0) == 16e9, (
        "one GPU: nothing to shard"
    )
    with pytest.raises(ValueError, match="stage"):
        memory.zero_memory(1e9, 8, 4)
    with pytest.raises(ValueError, match="n_gpus"):
        memory.zero_memory(1e9, 0, 1)


def test_qlora_unquantized_part_costs_compute_bytes():
    n, t = 1_000_000, 10_000
    q = memory.training_memory(n, "qlora", "fp32", trainable=t, unquantized=200_000)
    assert q.weights == pytest.approx(800_000 * memory.STORAGE_BYTES["nf4"] + 200_000 * 4 + 4 * t)
    with pytest.raises(ValueError, match="unquantized"):
        memory.training_memory(n, "lora", "fp32", trainable=t, unquantized=5)
    with pytest.raises(ValueError, match="positive integer"):
        memory.activation_bytes(memory.KNOWN["Llama-2-7B"], 0, 128)


# --- saved_activation_bytes: the activations autograd keeps, counted from real tensors ---


class Square(torch.nn.Module):
    """y = (x W)^2: autograd saves x (for W's gradient) and x W (for the square)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(4, 4))

    def forward(self, input_ids, labels=None):
        h = input_ids @ self.w
        out = type("Out", (), {})()
        out.loss = (h**2).sum()
        return out


def lm_batch(rows: int = 4, length: int = 32) -> dict:
    x = torch.randint(0, 40, (rows, length), generator=torch.Generator().manual_seed(0))
    return {"input_ids": x, "labels": x.clone()}


def test_counts_exactly_the_saved_tensors_and_not_the_parameters():
    x = torch.randn(3, 4)
    got = memory.saved_activation_bytes(Square(), {"input_ids": x})
    assert got == 2 * 3 * 4 * 4, (
        f"expected x and xW (2 x 12 floats = 96 bytes), got {got}: "
        "parameters must not be counted, each storage once"
    )


def test_activation_bytes_grow_with_the_batch(tiny_llama):
    m = tiny_llama(vocab=40, hidden=32)
    small = memory.saved_activation_bytes(m, lm_batch(2))
    big = memory.saved_activation_bytes(m, lm_batch(8))
    assert 3.5 < big / small < 4.5, (
        f"4x the rows should save about 4x the activations, got {big / small:.2f}x"
    )


def test_checkpointing_saves_less(tiny_llama):
    m = tiny_llama(vocab=40, hidden=32, layers=4)
    m.train()
    plain = memory.saved_activation_bytes(m, lm_batch())
    m.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    ckpt = memory.saved_activation_bytes(m, lm_batch())
    m.activation_checkpointing_disable()
    assert ckpt < plain / 2, (
        f"checkpointing should keep far fewer activations ({ckpt} vs {plain} bytes)"
    )


def test_saved_activation_bytes_bad_inputs(tiny_llama):
    m = tiny_llama(vocab=40, hidden=32)
    with pytest.raises(TypeError, match="input_ids"):
        memory.saved_activation_bytes(m, [1, 2])
    with pytest.raises(ValueError, match="pass labels"):
        memory.saved_activation_bytes(m, {"input_ids": lm_batch()["input_ids"]})
