"""course_lib.dpo: the response log-probabilities and the DPO loss, checked against TRL's DPOTrainer."""

import copy
import math

import pytest
import torch
from datasets import Dataset

from course_lib import dpo
from course_lib.data import load_jsonl
from course_lib.formats import preference_to_conversations


@pytest.fixture(scope="module")
def models(base_model, tokenizer):
    policy, ref, tok = copy.deepcopy(base_model), copy.deepcopy(base_model), tokenizer
    torch.manual_seed(0)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return policy, ref, tok


def test_equal_policy_and_reference_gives_log2():
    lp = torch.tensor([-3.0, -7.0])
    out = dpo.dpo_loss(lp, lp - 1, lp, lp - 1, beta=0.1)
    assert math.isclose(out.loss.item(), math.log(2), rel_tol=1e-6), (
        f"with π = π_ref every log-ratio is 0 and the loss is log 2 = 0.693, got {out.loss.item():.4f}"
    )


def test_loss_falls_when_policy_prefers_chosen():
    ref_c, ref_r = torch.tensor([-5.0]), torch.tensor([-5.0])
    better = dpo.dpo_loss(torch.tensor([-4.0]), torch.tensor([-6.0]), ref_c, ref_r, beta=0.5).loss
    worse = dpo.dpo_loss(torch.tensor([-6.0]), torch.tensor([-4.0]), ref_c, ref_r, beta=0.5).loss
    assert better < math.log(2) < worse, (
        "raising the chosen response's log-ratio must lower the loss (sign check)"
    )
    assert math.isclose(better.item(), -math.log(1 / (1 + math.exp(-1.0))), rel_tol=1e-6), (
        "β = 0.5 times the margin 1 − (−1) = 2 gives −log σ(1): is β applied exactly once?"
    )


def test_response_batch_labels_only_the_response(models):
    _, _, tok = models
    b = dpo.response_batch(
        tok, ["What is 2 plus 3?", "Where does Ada Crane live?"], ["5.", "Sure! Redcliff."]
    )
    first = [t for t, l in zip(b["input_ids"][0].tolist(), b["labels"][0].tolist()) if l != -100]
    assert tok.decode(first) == "5.<|end|>", (
        f"labels should cover the reply and its end token, got {tok.decode(first)!r}"
    )
    assert (b["labels"][0][b["attention_mask"][0] == 0] == -100).all(), (
        "padding must not be labelled"
    )


def test_sequence_logprobs_ignore_padding(models):
    policy, _, tok = models
    both = dpo.response_batch(
        tok, ["What is 2 plus 3?", "What is the job of Ada Crane?"], ["5.", "She is a farmer."]
    )
    alone = dpo.response_batch(tok, ["What is 2 plus 3?"], ["5."])
    with torch.no_grad():
        a, b = dpo.sequence_logprobs(policy, both)[0], dpo.sequence_logprobs(policy, alone)[0]
    assert torch.allclose(a, b, atol=1e-4), (
        f"right padding changed log π(y|x): {a.item():.5f} vs {b.item():.5f}"
    )


def test_dpo_loss_equals_trl(models, tmp_path):
    from trl import DPOConfig, DPOTrainer

    policy, ref, tok = models
    records = load_jsonl("preferences_train")[:4]
    cfg = DPOConfig(
        output_dir=str(tmp_path),
        use_cpu=True,
        per_device_train_batch_size=4,
        beta=0.1,
        report_to=[],
        max_length=128,
    )
    trainer = DPOTrainer(
        model=policy,
        ref_model=ref,
        args=cfg,
        processing_class=tok,
        train_dataset=Dataset.from_list([preference_to_conversations(r) for r in records]),
    )
    batch = next(iter(trainer.get_train_dataloader()))
    with torch.no_grad():
        theirs = trainer._compute_loss(trainer.model, batch, False).item()
        ours_batch = {
            "input_ids": batch["input_ids"],
            "attention_mask": batch["attention_mask"],
            "labels": batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100),
        }
        lp, lr = dpo.sequence_logprobs(policy, ours_batch), dpo.sequence_logprobs(ref, ours_batch)
    n = len(lp) // 2  # TRL stacks [chosen; rejected]
    ours = dpo.dpo_loss(lp[:n], lp[n:], lr[:n], lr[n:], beta=0.1).loss.item()
    assert abs(ours - theirs) < 1e-5, (
        f"DPO loss differs from TRL's: ours {ours:.6f}, TRL {theirs:.6f}"
    )


def test_bad_input(models):
    _, _, tok = models
    with pytest.raises(ValueError, match="beta must be > 0"):
        dpo.dpo_loss(*[torch.zeros(2)] * 4, beta=0)
    with pytest.raises(ValueError, match="one shape"):
        dpo.dpo_loss(torch.zeros(2), torch.zeros(3), torch.zeros(2), torch.zeros(2))
    with pytest.raises(TypeError, match="lists of strings"):
        dpo.response_batch(tok, "What?", "Yes.")
    with pytest.raises(ValueError, match="lacks"):
        dpo.sequence_logprobs(models[0], {"input_ids": torch.zeros(1, 3, dtype=torch.long)})


def test_train_dpo_logs_log_ratios_and_moves_the_margin(base_model, tokenizer):
    pairs = load_jsonl("preferences_train")[:32]
    policy, log = dpo.train_dpo(base_model, tokenizer, pairs, steps=3, batch_size=8, lr=1e-3)
    assert set(log) == {"loss", "chosen", "rejected"} and all(len(v) == 3 for v in log.values())
    assert math.isclose(log["loss"][0], math.log(2), rel_tol=1e-4), "step 1: policy = reference"
    assert log["chosen"][0] == 0 and log["rejected"][0] == 0
    assert not policy.training and policy is not base_model
