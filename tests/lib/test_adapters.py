"""Tests of course_lib.adapters: identity start, residual, placements, switching, counting."""

from __future__ import annotations

import copy

import pytest
import torch

from course_lib.adapters import (
    AdapterSlot,
    BottleneckAdapter,
    adapter_names,
    adapter_param_count,
    adapter_params,
    adapter_slots,
    add_adapter,
    set_active_adapter,
)

IDS = torch.tensor([[1, 5, 7, 9, 3, 2]])


def logits(model):
    with torch.no_grad():
        return model(input_ids=IDS).logits


def perturb(model, name):
    """Give adapter `name` random up-projections, so that it changes the model."""
    with torch.no_grad():
        for slot in adapter_slots(model).values():
            if name in slot.adapters:
                slot.adapters[name].up.weight.normal_(std=0.5)


def test_adapter_starts_as_identity_and_keeps_the_residual():
    adapter = BottleneckAdapter(16, 4)
    h = torch.randn(3, 16)
    assert torch.equal(adapter(h), h), (
        "with a zero up-projection the adapter must be exactly the identity"
    )
    assert adapter.down.weight.abs().sum() > 0, (
        "the down-projection must be random, or nothing trains"
    )
    with torch.no_grad():
        adapter.up.weight.normal_()
    want = h + adapter.up(torch.relu(adapter.down(h)))
    assert torch.allclose(adapter(h), want, atol=1e-6), "forward must be h + up(relu(down(h)))"
    assert torch.allclose(adapter.delta(h), want - h, atol=1e-6), (
        "delta is the branch without the residual"
    )


def test_param_count_includes_biases():
    adapter = BottleneckAdapter(16, 4)
    assert (
        adapter_param_count(16, 4)
        == sum(p.numel() for p in adapter.parameters())
        == 2 * 16 * 4 + 16 + 4
    ), "an adapter has 2·d·m weights plus d + m biases"
    assert adapter_param_count(16, 4, n_adapters=3) == 3 * (2 * 16 * 4 + 20)


@pytest.mark.parametrize("placement,per_layer", [("houlsby", 2), ("pfeiffer", 1), ("parallel", 1)])
def test_placements_start_at_the_base_model_and_train_only_the_adapter(
    placement, per_layer, tiny_llama
):
    base = tiny_llama(vocab=50, hidden=32, heads=4, eval_mode=True)
    model = add_adapter(copy.deepcopy(base), "task", placement, bottleneck=4)
    assert torch.equal(logits(model), logits(base)), (
        f"a fresh {placement} adapter must leave the logits unchanged"
    )
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".adapters.task." in n for n in trainable), (
        f"only adapter weights may train: {trainable}"
    )
    assert adapter_params(model, "task") == adapter_param_count(32, 4, n_adapters=2 * per_layer), (
        f"{placement} puts {per_layer} adapter(s) in each of the 2 layers"
    )
    perturb(model, "task")
    assert not torch.allclose(logits(model), logits(base)), (
        "a non-zero adapter must change the output"
    )


def test_sequential_and_parallel_wrap_the_mlp_as_documented():
    torch.manual_seed(1)
    mlp = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Tanh())
    slot = AdapterSlot(mlp)
    adapter = BottleneckAdapter(8, 2)
    with torch.no_grad():
        adapter.up.weight.normal_()
    x = torch.randn(3, 8)
    slot.add("a", adapter, "sequential")
    slot.active = "a"
    assert torch.allclose(slot(x), adapter(mlp(x))), (
        "sequential: the adapter reads the sublayer's output"
    )
    slot.modes["a"] = "parallel"
    assert torch.allclose(slot(x), mlp(x) + adapter.delta(x)), (
        "parallel: the adapter reads the sublayer's input"
    )


def test_switching_between_named_adapters(tiny_llama):
    base = tiny_llama(vocab=50, hidden=32, heads=4, eval_mode=True)
    model = add_adapter(copy.deepcopy(base), "one", "houlsby", bottleneck=4)
    add_adapter(model, "two", "pfeiffer", bottleneck=4)
    assert adapter_names(model) == ["one", "two"]
    perturb(model, "one"), perturb(model, "two")
    out_two = logits(model)  # "two" is active after add_adapter
    set_active_adapter(model, "one")
    out_one = logits(model)
    assert not torch.allclose(out_one, out_two), "the two adapters must give different outputs"
    assert all(p.requires_grad == (".adapters.one." in n) for n, p in model.named_parameters()), (
        "only the active adapter may be trainable"
    )
    set_active_adapter(model, None)
    assert torch.equal(logits(model), logits(base)), (
        "with no adapter active the model is the base model"
    )
    set_active_adapter(model, "two")
    assert torch.equal(logits(model), out_two), "switching back must restore the same outputs"


def test_bad_inputs(tiny_llama):
    with pytest.raises(ValueError, match="positive integer"):
        BottleneckAdapter(16, 0)
    with pytest.raises(ValueError, match="smaller than the hidden size"):
        BottleneckAdapter(16, 32)
    with pytest.raises(ValueError, match="choose one of"):
        BottleneckAdapter(16, 4, activation="swish")
    with pytest.raises(ValueError, match="positive integer"):
        adapter_param_count(16, 4, n_adapters=0)
    model = tiny_llama(vocab=50, hidden=32, heads=4, eval_mode=True)
    with pytest.raises(ValueError, match="unknown placement"):
        add_adapter(model, "a", "after_everything")
    with pytest.raises(ValueError, match="adapter name"):
        add_adapter(model, "my adapter")
    with pytest.raises(ValueError, match="no adapters"):
        set_active_adapter(model, "a")
    add_adapter(model, "a")
    with pytest.raises(ValueError, match="already has an adapter"):
        add_adapter(model, "a")
    with pytest.raises(ValueError, match="the model has"):
        set_active_adapter(model, "b")
    with pytest.raises(ValueError, match="decoder layers"):
        add_adapter(torch.nn.Linear(4, 4), "a")
    with pytest.raises(TypeError, match="nn.Module"):
        add_adapter("model", "a")
    with pytest.raises(ValueError, match="sequential"):
        AdapterSlot(torch.nn.Linear(4, 4)).add("a", BottleneckAdapter(4, 2), "beside")
