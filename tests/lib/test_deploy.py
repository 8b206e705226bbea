"""course_lib.deploy: merge/save/reload round trip, int8 quantization (sizes and timing: test_measure)."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, TaskType, get_peft_model

from course_lib import deploy
from course_lib.measure import folder_bytes
from course_lib.models import load_model
from course_lib.quantization import absmax_quantize


@pytest.fixture(scope="module")
def lm_and_tok(base_model, tokenizer):
    return base_model, tokenizer


def _peft(base):
    torch.manual_seed(0)
    pm = get_peft_model(
        copy.deepcopy(base),
        LoraConfig(
            task_type=TaskType.CAUSAL_LM, r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]
        ),
    )
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)  # a non-zero adapter, so that merging changes the weights
    return pm.eval()


def test_merge_save_reload_round_trip(lm_and_tok, tmp_path):
    base, tok = lm_and_tok
    pm = _peft(base)
    ids = tok(["Tom lives in"], return_tensors="pt").input_ids
    with torch.no_grad():
        want = pm(ids).logits
        merged = deploy.merge_adapter(pm)
        assert not hasattr(merged, "peft_config"), (
            "merge_and_unload must return a plain transformers model"
        )
        assert torch.allclose(merged(ids).logits, want, atol=1e-4), (
            "merging must not change the logits"
        )
        folder = deploy.save_model(merged, tok, tmp_path / "merged")
        again, tok2 = load_model("causal", folder)  # plain transformers, its own tokenizer
        assert torch.allclose(again(ids).logits, want, atol=1e-4), (
            "the reloaded model must give the same logits"
        )
        assert not torch.allclose(base(ids).logits, want, atol=1e-3), (
            "the test adapter should change the model"
        )
    assert folder_bytes(folder, "*.safetensors") > 4 * 2_000_000, (
        "fp32 weights of a 2 M model are > 8 MB"
    )
    assert tok2("Tom lives in").input_ids == tok("Tom lives in").input_ids


def test_bad_inputs(lm_and_tok, tmp_path):
    base, tok = lm_and_tok
    with pytest.raises(TypeError, match="peft model"):
        deploy.merge_adapter(base)
    with pytest.raises(ValueError, match="merge it first"):
        deploy.save_model(_peft(base), tok, tmp_path / "x")
    with pytest.raises(ValueError, match="2-D"):
        deploy.quantize_per_channel(torch.ones(3))
    with pytest.raises(TypeError, match="nn.Linear"):
        deploy.Int8Linear(torch.nn.ReLU())


def test_per_channel_quantization():
    w = torch.randn(6, 10)
    w[0] *= 100  # one loud row must not ruin the others
    q, scale = deploy.quantize_per_channel(w)
    assert q.dtype == torch.int8 and scale.shape == (6, 1)
    assert torch.equal(q.abs().amax(dim=1), torch.full((6,), 127, dtype=torch.int8)), (
        "each row's max maps to ±127"
    )
    err = (deploy.dequantize_per_channel(q, scale) - w).abs()
    assert torch.all(err <= scale / 2 + 1e-6), "rounding error is at most half a step of that row"
    want_q, want_scale = absmax_quantize(w, bits=8, dim=1)
    assert torch.equal(q, want_q) and torch.equal(scale, want_scale), (
        "per channel = chapter 05's absmax int8 with one scale per row"
    )


def test_int8_models_close_to_fp32(lm_and_tok):
    base, tok = lm_and_tok
    ids = tok(["Tom lives in the town of"], return_tensors="pt").input_ids
    with torch.no_grad():
        ref = base(ids).logits
        mine = deploy.quantize_linears(base)(ids).logits
        theirs = deploy.torch_dynamic_int8(base)(ids).logits
    assert (mine - ref).abs().max() < 0.5, (
        "weight-only per-channel int8 should barely move the logits"
    )
    assert (theirs - ref).abs().mean() < 0.5, (
        "torch dynamic int8 (activations quantized too) should stay near fp32"
    )
    assert (theirs.argmax(-1) == ref.argmax(-1)).float().mean() > 0.7, (
        "torch int8 should keep most greedy tokens"
    )
    assert torch.equal(mine.argmax(-1), ref.argmax(-1)), "int8 should keep the greedy tokens here"
    assert isinstance(base.model.layers[0].self_attn.q_proj, torch.nn.Linear), (
        "the original must stay untouched"
    )


def test_torch_scales_match_the_from_scratch_quantizer(lm_and_tok):
    base, _ = lm_and_tok
    w = base.model.layers[0].self_attn.q_proj.weight.detach()
    qw = deploy.torch_dynamic_int8(base).model.layers[0].self_attn.q_proj.weight()
    assert qw.qscheme() == torch.per_channel_affine, (
        "per_channel_dynamic_qconfig quantizes per output row"
    )
    assert torch.allclose(qw.q_per_channel_scales().float(), w.abs().amax(1) / 127.5, rtol=1e-4), (
        "torch's symmetric qint8 scale is absmax / 127.5 (range -128..127), ours absmax / 127"
    )
    q, scale = deploy.quantize_per_channel(w)
    assert (
        qw.dequantize() - deploy.dequantize_per_channel(q, scale)
    ).abs().max() <= scale.max() + 1e-6
