"""Tests of course_lib.measure: parameter counts, bytes in memory and on disk, and the one timer."""

from __future__ import annotations

import itertools

import pytest
import torch

from course_lib import measure
from course_lib.measure import (
    LapTimer,
    count_parameters,
    folder_bytes,
    median_seconds,
    saved_bytes,
    seconds_per_run,
    tensor_bytes,
    train_step_seconds,
    trainable_share,
)

CLASSIFIER = dict(vocab=50, num_labels=3, pad_token_id=0)


def lm_batch(rows: int = 4, length: int = 16) -> dict:
    x = torch.randint(0, 40, (rows, length), generator=torch.Generator().manual_seed(0))
    return {"input_ids": x, "labels": x.clone()}


@pytest.fixture
def fake_clock(monkeypatch):
    """measure's perf_counter returns 0, 1, 3, 6, 10, ...: the k-th interval lasts k + 1 seconds."""
    ticks = itertools.accumulate(itertools.count(1), initial=0)
    monkeypatch.setattr(measure.time, "perf_counter", lambda: float(next(ticks)))


# --- parameters ---------------------------------------------------------------------------------


def test_count_parameters_counts_all_and_trainable(tiny_llama):
    m = tiny_llama(**CLASSIFIER, layers=3)
    total = sum(p.numel() for p in m.parameters())
    assert count_parameters(m) == total, "by default every parameter is counted"
    m.score.weight.requires_grad_(False)
    assert count_parameters(m, trainable_only=True) == total - m.score.weight.numel(), (
        "trainable_only=True must skip parameters with requires_grad=False"
    )
    assert trainable_share(m) == (total - m.score.weight.numel(), total)


def test_count_parameters_counts_a_tied_matrix_once(tiny_llama):
    m = tiny_llama(vocab=50, hidden=16, tie_word_embeddings=True)
    assert m.lm_head.weight is m.model.embed_tokens.weight
    every_name = sum(p.numel() for _, p in m.named_parameters(remove_duplicate=False))
    assert count_parameters(m) == every_name - 50 * 16, "the tied embedding/head counts once"


def test_count_parameters_bad_inputs(tiny_llama):
    with pytest.raises(TypeError, match="torch.nn.Module"):
        count_parameters("model")
    with pytest.raises(TypeError, match="True or False"):
        count_parameters(tiny_llama(), trainable_only="yes")


# --- bytes --------------------------------------------------------------------------------------


def test_tensor_bytes_of_models_state_dicts_and_iterables(tiny_llama):
    m = tiny_llama(vocab=50, hidden=16, tie_word_embeddings=True)
    params = sum(p.numel() for p in m.parameters())
    buffers = sum(b.numel() * b.element_size() for b in m.buffers())
    assert tensor_bytes(m) == 4 * params + buffers, "fp32 parameters (tied once) plus buffers"
    assert tensor_bytes(m.parameters()) == 4 * params, "an iterable: exactly those tensors"
    assert tensor_bytes(m.state_dict()) == tensor_bytes(m.state_dict().values()), (
        "a state_dict counts its tensors, the tied matrix once though it has two names"
    )
    assert tensor_bytes(m.to(torch.bfloat16).parameters()) == 2 * params, "bf16: 2 bytes each"


def test_tensor_bytes_counts_each_storage_once():
    w = torch.zeros(10, 10)
    assert tensor_bytes([w, w[:5], w.T]) == 400, "views share their base's storage"
    assert tensor_bytes(w[:5]) == 400, "a view holds its whole storage"
    assert tensor_bytes([w, w.clone()]) == 800, "a copy is a second storage"
    assert tensor_bytes([]) == 0


def test_tensor_bytes_bad_inputs():
    with pytest.raises(TypeError, match="state_dict"):
        tensor_bytes(3)
    with pytest.raises(TypeError, match="state_dict"):
        tensor_bytes("weights")
    with pytest.raises(TypeError, match="'packed' is a tuple"):
        tensor_bytes({"w": torch.ones(2), "packed": (torch.ones(2),)})


def test_folder_bytes(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.safetensors").write_bytes(b"x" * 100)
    (tmp_path / "sub" / "b.safetensors").write_bytes(b"x" * 20)
    (tmp_path / "README.md").write_text("hello")
    assert folder_bytes(tmp_path) == 125, "every file, in subfolders too"
    assert folder_bytes(tmp_path, "*.safetensors") == 120, "only the files matching the pattern"
    with pytest.raises(ValueError, match="not a folder"):
        folder_bytes(tmp_path / "missing")
    with pytest.raises(ValueError, match="not a folder"):
        folder_bytes(tmp_path / "README.md")


def test_saved_bytes_is_what_torch_save_writes(tiny_llama, tmp_path):
    m = tiny_llama(vocab=50, hidden=16)
    torch.save(m.state_dict(), tmp_path / "archive.pt")  # the name inside the zip: "archive"
    assert saved_bytes(m) == (tmp_path / "archive.pt").stat().st_size, "the file torch.save writes"
    assert saved_bytes(m) > tensor_bytes(m.state_dict()), "the file adds its format's overhead"
    assert saved_bytes({"w": torch.zeros(1000)}) > 4000


# --- time ---------------------------------------------------------------------------------------


def test_median_seconds_counts_calls_and_takes_the_median(fake_clock):
    calls = []
    got = median_seconds(lambda: calls.append(1), repeats=3, warmup=2)
    assert len(calls) == 5, "warmup runs plus timed repeats"
    # 5 runs read the clock twice each: intervals 1, 3, 5, 7, 9; the warmup's (1, 3) are dropped
    assert got == 7.0, f"median of the timed runs (5, 7, 9) expected, got {got}"


def test_seconds_per_run_interleaves_a_dict(fake_clock):
    order = []
    runs = seconds_per_run(
        {"a": lambda: order.append("a"), "b": lambda: order.append("b")}, repeats=2, warmup=1
    )
    assert order == ["a", "b"] * 3, "A, B, A, B, ...: a busy machine slows both alike"
    assert runs == {"a": [5.0, 9.0], "b": [7.0, 11.0]}, runs
    assert median_seconds({"a": lambda: None}, repeats=1, warmup=0) == {"a": 13.0}


def test_lap_timer(fake_clock):
    laps = LapTimer()
    for step in range(3):
        laps.lap(None, step)  # any callback signature, e.g. train's on_step(model, step)
    assert laps.seconds() == [1.0, 2.0, 3.0]


def test_timer_bad_inputs():
    with pytest.raises(ValueError, match="repeats must be"):
        median_seconds(lambda: None, repeats=0)
    with pytest.raises(ValueError, match="repeats must be"):
        median_seconds(lambda: None, repeats=2.5)
    with pytest.raises(ValueError, match="warmup must be"):
        median_seconds(lambda: None, warmup=-1)
    with pytest.raises(TypeError, match="no arguments"):
        median_seconds("not a function")
    with pytest.raises(ValueError, match="at least one function"):
        seconds_per_run({})


def test_the_clock_waits_for_cuda(monkeypatch):
    events = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: events.append("sync"))
    median_seconds(lambda: events.append("run"), repeats=2, warmup=0)
    assert events == ["sync", "run", "sync"] * 2, (
        "GPU kernels run asynchronously: synchronize before reading the clock, at start and end"
    )
    events.clear()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    median_seconds(lambda: events.append("run"), repeats=2, warmup=0)
    assert events == ["run", "run"], "no CUDA, nothing to wait for"


def test_train_step_seconds_times_clears_gradients_and_restores_the_mode(tiny_llama):
    m = tiny_llama(vocab=40, hidden=32, eval_mode=True)
    modes = []
    m.register_forward_pre_hook(lambda mod, args: modes.append(mod.training))
    s = train_step_seconds(m, lm_batch(), repeats=2)
    assert 0 < s < 10, f"one tiny step should take well under 10 s, got {s}"
    assert modes == [True, True], "each pass runs in training mode"
    assert not m.training, "the model goes back to the mode it was in"
    assert all(p.grad is None for p in m.parameters()), "gradients must be cleared after timing"
    twin = tiny_llama(vocab=40, hidden=32).train()
    both = train_step_seconds({"a": m, "b": twin}, lm_batch(), repeats=1, warmup=1, bf16=True)
    assert set(both) == {"a", "b"} and min(both.values()) > 0
    assert twin.training and not m.training


def test_train_step_seconds_bad_inputs(tiny_llama):
    m = tiny_llama(vocab=40, hidden=32)
    with pytest.raises(ValueError, match="repeats must be"):
        train_step_seconds(m, lm_batch(), repeats=0)
    with pytest.raises(ValueError, match="at least one model"):
        train_step_seconds({}, lm_batch())
    with pytest.raises(TypeError, match="input_ids"):
        train_step_seconds(m, [1, 2])
    with pytest.raises(TypeError, match="torch.nn.Module"):
        train_step_seconds({"a": "model"}, lm_batch())
    with pytest.raises(ValueError, match="put labels"):
        train_step_seconds(m, {"input_ids": lm_batch()["input_ids"]})


def test_train_step_seconds_refuses_cpu_repacked_4bit_layers(tokenizer):
    from course_lib.models import load_model
    from course_lib.qlora import cpu_packed_layers

    batch = tokenizer(["Yara Marsh lives in Fernwick."], return_tensors="pt")
    batch["labels"] = batch["input_ids"].clone()
    fresh, _ = load_model("4bit")
    times = train_step_seconds({"q": fresh}, dict(batch), repeats=2, warmup=1)
    assert times["q"] > 0
    with torch.no_grad():
        fresh.eval()(**batch)
    if cpu_packed_layers(fresh):  # only on CPUs with AVX512-BF16
        with pytest.raises(ValueError, match="repacked"):
            train_step_seconds({"q": fresh}, dict(batch))
