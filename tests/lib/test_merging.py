"""course_lib.merging: task arithmetic, TIES and DARE equal peft's merge_utils and
add_weighted_adapter; WiSE-FT interpolation hits both ends."""

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from peft.utils import merge_utils

from course_lib import merging

WEIGHTS = [1.0, 0.5, -0.7]


@pytest.fixture
def tensors():
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(6, 5, generator=gen) for _ in range(3)]


def test_task_arithmetic_and_ties_equal_peft(tensors):
    w = torch.tensor(WEIGHTS)
    ref = merge_utils.task_arithmetic(tensors, w)
    assert torch.equal(merging.task_arithmetic(tensors, WEIGHTS), ref)
    for method in merging.MAJORITY_METHODS:
        got = merging.ties(tensors, WEIGHTS, 0.4, method)
        assert torch.equal(got, merge_utils.ties(tensors, w, 0.4, method)), method


def test_dare_equals_peft_with_the_same_seed(tensors):
    w = torch.tensor(WEIGHTS)
    for mine, theirs in (
        (merging.dare_linear, merge_utils.dare_linear),
        (merging.dare_ties, merge_utils.dare_ties),
    ):
        torch.manual_seed(3)
        got = mine(tensors, WEIGHTS, 0.5)
        torch.manual_seed(3)
        assert torch.equal(got, theirs(tensors, w, 0.5))


def test_trim_keeps_the_largest_and_sign_election_ignores_the_minority():
    t = torch.tensor([3.0, -1.0, 0.5, -4.0])
    assert torch.equal(merging.trim(t, 0.5), torch.tensor([3.0, 0.0, 0.0, -4.0]))
    stacked = torch.tensor([[1.0], [1.0], [-5.0]])  # two small +, one big -
    assert merging.elect_sign(stacked, "total").tolist() == [[False], [False], [True]]
    assert merging.elect_sign(stacked, "frequency").tolist() == [[True], [True], [False]]


def test_dare_keeps_the_expectation():
    torch.manual_seed(0)
    t = torch.ones(200_000)
    dropped = merging.dare(t, 0.3)
    assert abs(dropped.mean().item() - 1.0) < 0.02
    assert abs((dropped == 0).float().mean().item() - 0.7) < 0.01


def test_from_scratch_merges_equal_add_weighted_adapter(base_model):
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    model = get_peft_model(copy.deepcopy(base_model), config, adapter_name="t0")
    for i in (1, 2):
        model.add_adapter(f"t{i}", config)
    names = ["t0", "t1", "t2"]
    vectors = [merging.lora_task_vectors(model, n) for n in names]
    full = base_model.config.hidden_size  # svd_rank = full rank: the SVD is exact
    cases = {
        "cat": ("task_arithmetic", {}),
        "svd": ("task_arithmetic", {"svd_rank": full}),
        "ties_svd": ("ties", {"svd_rank": full, "density": 0.4}),
    }
    for combo, (method, kw) in cases.items():
        model.add_weighted_adapter(names, WEIGHTS, combo, combination_type=combo, **kw)
        got = merging.lora_task_vectors(model, combo)
        want = merging.merge_task_vectors(method, vectors, WEIGHTS, kw.get("density", 1.0))
        diff = max((got[k] - want[k]).abs().max().item() for k in want)
        assert diff < 1e-5, f"{combo}: max abs diff {diff}"
    model.add_weighted_adapter(names, WEIGHTS, "lin", combination_type="linear")
    got, want = (
        merging.lora_task_vectors(model, "lin"),
        merging.merge_task_vectors("task_arithmetic", vectors, WEIGHTS),
    )
    assert max((got[k] - want[k]).abs().max().item() for k in want) > 1e-2, (
        "peft's 'linear' mixes A and B separately: it is not task arithmetic on ΔW"
    )


def test_add_task_vector_and_interpolate(base_model):
    ft = copy.deepcopy(base_model)
    with torch.no_grad():
        for p in ft.parameters():
            p.add_(0.01)
    assert (
        merging.interpolate(base_model, ft, 0.0).state_dict().keys()
        == base_model.state_dict().keys()
    )
    for alpha, target in ((0.0, base_model), (1.0, ft)):
        mixed = merging.interpolate(base_model, ft, alpha)
        for (n, a), b in zip(mixed.named_parameters(), target.parameters()):
            assert torch.allclose(a, b, atol=1e-6), (alpha, n)
    half = merging.interpolate(base_model, ft, 0.5)
    p0, p1 = next(base_model.parameters()), next(half.parameters())
    assert torch.allclose(p1 - p0, torch.full_like(p0, 0.005), atol=1e-6)
    with pytest.raises(ValueError, match="alpha"):
        merging.interpolate(base_model, ft, 1.5)


def test_bad_input_is_refused(tensors):
    with pytest.raises(ValueError, match="weights"):
        merging.task_arithmetic(tensors, [1.0])
    with pytest.raises(ValueError, match="density"):
        merging.trim(tensors[0], 0.0)
    with pytest.raises(ValueError, match="method"):
        merging.elect_sign(torch.stack(tensors), "mean")
    with pytest.raises(ValueError, match="unknown merge"):
        merging.merge_tensors("average", tensors, WEIGHTS)
