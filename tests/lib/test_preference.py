"""The preference family (course_lib.preference): each loss equals TRL's on the same batch."""

from __future__ import annotations

import copy
import tempfile
import types
import warnings

import pytest
import torch

from course_lib import dpo
from course_lib import preference as pf
from course_lib.data import load_jsonl
from course_lib.formats import preference_to_conversations
from course_lib.models import load_model


@pytest.fixture(scope="module")
def policies():
    """The SFT policy as reference and a perturbed copy as policy (so that log-ratios are not 0)."""
    ref, tok = load_model("sft_policy")
    policy = copy.deepcopy(ref)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    return policy, ref, tok


def _common() -> dict:
    return dict(
        output_dir=tempfile.mkdtemp(),
        use_cpu=True,
        bf16=False,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
        max_steps=1,
    )


def _labelled(ids, completion_mask, attention_mask):
    return {
        "input_ids": ids,
        "attention_mask": attention_mask,
        "labels": ids.masked_fill(completion_mask == 0, -100),
    }


def test_dpo_and_ipo_equal_trl_dpo_trainer(policies):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    warnings.filterwarnings("ignore")
    policy, ref, tok = policies
    pairs = [preference_to_conversations(r) for r in load_jsonl("preferences_train")[:8]]
    trainer = DPOTrainer(
        model=policy,
        ref_model=ref,
        processing_class=tok,
        args=DPOConfig(beta=0.1, max_length=128, per_device_train_batch_size=8, **_common()),
        train_dataset=Dataset.from_list(pairs),
    )
    batch = next(iter(trainer.get_train_dataloader()))
    lab = _labelled(batch["input_ids"], batch["completion_mask"], batch["attention_mask"])
    with torch.no_grad():
        lp, n = pf.sequence_stats(policy, lab)
        rl, _ = pf.sequence_stats(ref, lab)
        k = len(lp) // 2
        for loss_type in ("sigmoid", "ipo"):
            trainer.loss_types = [loss_type]
            theirs = trainer._compute_loss(policy, batch, False)
            theirs = (theirs[0] if isinstance(theirs, tuple) else theirs).item()
            if loss_type == "sigmoid":
                ours = dpo.dpo_loss(lp[:k], lp[k:], rl[:k], rl[k:], 0.1).loss.item()
            else:
                ours = pf.ipo_loss(lp[:k], lp[k:], rl[:k], rl[k:], n[:k], n[k:], 0.1).item()
            assert abs(theirs - ours) < 1e-5 * max(1.0, abs(theirs)), (loss_type, theirs, ours)
            assert abs(ours - 0.6931) > 1e-3


def test_kto_equals_trl_kto_trainer(policies):
    from datasets import Dataset
    from trl import KTOConfig, KTOTrainer

    warnings.filterwarnings("ignore")
    policy, ref, tok = policies
    unpaired = [
        {
            "prompt": [{"role": "user", "content": r["prompt"]}],
            "completion": [{"role": "assistant", "content": r[key]}],
            "label": key == "chosen",
        }
        for r in load_jsonl("preferences_train")[:8]
        for key in ("chosen", "rejected")
    ]
    trainer = KTOTrainer(
        model=policy,
        ref_model=ref,
        processing_class=tok,
        args=KTOConfig(beta=0.1, max_length=128, per_device_train_batch_size=16, **_common()),
        train_dataset=Dataset.from_list(unpaired),
    )
    batch = next(iter(trainer.get_train_dataloader()))
    with torch.no_grad():
        theirs = trainer._compute_loss(policy, batch, False)
        theirs = (theirs[0] if isinstance(theirs, tuple) else theirs).item()
        lab = _labelled(batch["input_ids"], batch["completion_mask"], batch["attention_mask"])
        mis = _labelled(
            batch["KL_input_ids"], batch["KL_completion_mask"], batch["KL_attention_mask"]
        )
        kl = (
            (pf.sequence_stats(policy, mis)[0] - pf.sequence_stats(ref, mis)[0]).mean().clamp(min=0)
        )
        ours = pf.kto_loss(
            pf.sequence_stats(policy, lab)[0],
            pf.sequence_stats(ref, lab)[0],
            batch["label"],
            kl,
            0.1,
        ).item()
    assert abs(theirs - ours) < 1e-5, (theirs, ours)


def test_orpo_and_simpo_equal_trl_losses():
    from trl.experimental.cpo import CPOTrainer
    from trl.experimental.orpo import ORPOTrainer

    g = torch.Generator().manual_seed(0)
    chosen = -torch.rand(8, generator=g) * 2 - 0.05
    rejected = -torch.rand(8, generator=g) * 2 - 0.05
    nll = torch.tensor(0.9)
    acc = types.SimpleNamespace(device="cpu")
    theirs = ORPOTrainer.odds_ratio_loss(
        types.SimpleNamespace(beta=0.1, accelerator=acc), chosen, rejected
    )[0]
    assert torch.allclose(nll - theirs.mean(), pf.orpo_loss(chosen, rejected, nll, 0.1), atol=1e-7)
    cpo = types.SimpleNamespace(
        beta=2.0,
        simpo_gamma=0.5,
        loss_type="simpo",
        alpha=0.0,
        label_smoothing=0.0,
        accelerator=acc,
    )
    theirs = CPOTrainer.cpo_loss(cpo, chosen, rejected)[0].mean()
    assert torch.allclose(theirs, pf.simpo_loss(chosen, rejected, 2.0, 0.5), atol=1e-7)


def test_losses_reject_bad_input():
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="one shape"):
        pf.simpo_loss(x, torch.zeros(4))
    with pytest.raises(ValueError, match="beta"):
        pf.ipo_loss(x, x, x, x, x + 1, x + 1, beta=0.0)
    with pytest.raises(ValueError, match="unknown preference loss"):
        pf.preference_step_loss("rlhf", None, {}, {}, None, 0.1)
    with pytest.raises(ValueError, match="reference"):
        pf.preference_step_loss("dpo", None, {}, {}, None, 0.1)


def test_train_preference_moves_the_margin():
    # a fresh reference: the shared fixture's model is modified by the TRL trainers of other tests
    ref, tok = load_model("sft_policy")
    policy = copy.deepcopy(ref)
    pairs = load_jsonl("preferences_train")[:64]
    hist = pf.train_preference(
        "simpo", policy, ref, tok, pairs, pairs[:8], steps=4, batch_size=8, lr=1e-3
    )
    margin = [c - r for c, r in zip(hist["chosen"], hist["rejected"])]
    assert hist["step"] == [0, 4] and margin[-1] > margin[0]
