"""GRPO from scratch (course_lib.grpo): advantages, the k3 estimator, the loss aggregations, and
equality with TRL's GRPOTrainer loss on one of its own batches."""

from __future__ import annotations

import copy
import tempfile
import warnings

import pytest
import torch

from course_lib import grpo
from course_lib.models import load_model


def test_group_advantages_standardise_each_group():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    a = grpo.group_advantages(r, 4)
    assert torch.allclose(a[:4].mean(), torch.tensor(0.0), atol=1e-6)
    assert torch.allclose(a[:4].std(), torch.tensor(1.0), atol=1e-3)
    assert torch.equal(a[4:], torch.zeros(4)), "a group of equal rewards teaches nothing"
    assert torch.allclose(
        grpo.group_advantages(r, 4, scale="none"), r - r.view(2, 4).mean(1).repeat_interleave(4)
    )
    assert grpo.frac_zero_std(r, 4) == 0.5


def test_group_advantages_reject_bad_input():
    with pytest.raises(ValueError, match="multiple of group_size"):
        grpo.group_advantages(torch.ones(7), 4)
    with pytest.raises(ValueError, match="scale"):
        grpo.group_advantages(torch.ones(8), 4, scale="global")


def test_k3_is_non_negative_zero_at_equality_and_unbiased():
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(6, generator=g), 0)
    q = torch.softmax(torch.randn(6, generator=g), 0)
    x = torch.multinomial(p, 200_000, replacement=True, generator=g)
    k3 = grpo.k3_kl(p.log()[x], q.log()[x])
    true_kl = (p * (p.log() - q.log())).sum()
    assert (k3 >= 0).all()
    assert abs(k3.mean() - true_kl) < 0.02 * true_kl + 1e-3
    assert torch.equal(grpo.k3_kl(p.log(), p.log()), torch.zeros(6))


def test_aggregations_differ_as_documented():
    per_token = torch.tensor([[1.0, 1.0, 1.0, 1.0], [3.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    assert grpo.aggregate(per_token, mask, "grpo", 4) == pytest.approx(2.0)  # (1 + 3) / 2
    assert grpo.aggregate(per_token, mask, "dapo", 4) == pytest.approx(7 / 5)
    assert grpo.aggregate(per_token, mask, "dr_grpo", 4) == pytest.approx(7 / 8)
    with pytest.raises(ValueError, match="loss_type"):
        grpo.aggregate(per_token, mask, "ppo", 4)


def test_pass_at_k_and_the_verifier_reward():
    assert grpo.pass_at_k(8, 0, 4) == 0.0
    assert grpo.pass_at_k(8, 8, 1) == 1.0
    assert grpo.pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert grpo.pass_at_k(4, 1, 2) == pytest.approx(0.5)
    chats = [[{"role": "user", "content": "What is 3 plus 4?"}]] * 2
    answers = [
        [{"role": "assistant", "content": "It is 7."}],
        [{"role": "assistant", "content": "8."}],
    ]
    assert grpo.verifier_reward(chats, answers) == [1.0, 0.0]


def test_grpo_loss_equals_trl_on_a_trl_batch():
    """Our loss, on our own log-probabilities, equals GRPOTrainer._compute_loss for every aggregation,
    with old and reference log-probabilities moved away so that the clip and the KL term act."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    warnings.filterwarnings("ignore")
    policy, tok = load_model("sft_policy")
    prompts = [
        "What is 3 plus 4?",
        "Where does Yara Marsh live?",  # a person of the world: the verifier can solve it
        "What is 20 minus 7?",
        "What is 5 plus 9?",
    ]
    cfg = GRPOConfig(
        output_dir=tempfile.mkdtemp(),
        use_cpu=True,
        bf16=False,
        report_to=[],
        save_strategy="no",
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=12,
        max_steps=1,
        beta=0.1,
        seed=0,
        disable_tqdm=True,
    )
    trainer = GRPOTrainer(
        model=copy.deepcopy(policy),
        reward_funcs=[grpo.verifier_reward],
        args=cfg,
        processing_class=tok,
        train_dataset=Dataset.from_list(
            [{"prompt": [{"role": "user", "content": p}]} for p in prompts]
        ),
    )
    trainer.current_gradient_accumulation_steps = 1
    trainer.model.train()
    inputs = next(iter(trainer.get_train_dataloader()))
    batch = trainer._generate_and_score_completions(inputs)
    texts = [t.strip() for t in tok.batch_decode(batch["completion_ids"], skip_special_tokens=True)]
    rewards = torch.tensor(grpo.verifier_reward([x["prompt"] for x in inputs], texts))
    assert torch.allclose(grpo.group_advantages(rewards, 4), batch["advantages"], atol=1e-6)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        lp = grpo.completion_logprobs(
            trainer.model, batch["prompt_ids"], batch["prompt_mask"], batch["completion_ids"]
        )
    batch["old_per_token_logps"] = lp + 0.3 * torch.randn(lp.shape, generator=g)
    batch["ref_per_token_logps"] = lp + 0.3 * torch.randn(lp.shape, generator=g)
    batch["advantages"] = torch.randn(8, generator=g)  # non-zero everywhere
    for loss_type in grpo.LOSS_TYPES:
        trainer.loss_type = loss_type
        with torch.no_grad():
            theirs = trainer._compute_loss(trainer.model, batch).item()
            ours = grpo.grpo_loss(
                grpo.completion_logprobs(
                    trainer.model,
                    batch["prompt_ids"],
                    batch["prompt_mask"],
                    batch["completion_ids"],
                ),
                batch["old_per_token_logps"],
                batch["ref_per_token_logps"],
                batch["advantages"],
                batch["completion_mask"].float(),
                beta=0.1,
                loss_type=loss_type,
                max_completion_length=12,
            ).item()
        assert abs(theirs - ours) < 1e-5, (loss_type, theirs, ours)
    trainer.args.use_bias_correction_kl = False
    trainer.loss_type = "grpo"
    with torch.no_grad():
        theirs = trainer._compute_loss(trainer.model, batch).item()
        ours = grpo.grpo_loss(
            lp,
            batch["old_per_token_logps"],
            batch["ref_per_token_logps"],
            batch["advantages"],
            batch["completion_mask"].float(),
            beta=0.1,
            loss_type="grpo",
            kl_correction=False,
        ).item()
    assert abs(theirs - ours) < 1e-5


def test_grpo_loss_rejects_bad_shapes():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="advantages"):
        grpo.grpo_loss(x, x, x, torch.zeros(3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="one shape"):
        grpo.grpo_loss(x, torch.zeros(2, 4), x, torch.zeros(2), torch.ones(2, 3))
    with pytest.raises(ValueError, match="ref_logps"):
        grpo.grpo_loss(x, x, None, torch.zeros(2), torch.ones(2, 3), beta=0.1)


def test_train_grpo_uses_the_reference_it_is_given():
    """TRL loads its reference model from the policy's checkpoint on disk; `reference_state`
    replaces it, for a policy whose starting weights live only in memory (chapter 14)."""
    warnings.filterwarnings("ignore")
    policy, tok = load_model("sft_policy")
    start = {
        k: v + 0.01 if v.is_floating_point() else v.clone() for k, v in policy.state_dict().items()
    }
    prompts = ["What is 3 plus 4?", "What is 5 plus 9?"]
    small = dict(steps=1, group_size=2, prompts_per_step=2, max_new_tokens=4)
    trainer = grpo.train_grpo(
        policy, tok, prompts, [grpo.verifier_reward], reference_state=start, **small
    )
    ref = trainer.ref_model.state_dict()
    assert all(torch.equal(ref[k], start[k]) for k in start), "the reference is not the given state"
    with pytest.raises(ValueError, match="beta > 0"):
        grpo.train_grpo(
            policy, tok, prompts, [grpo.verifier_reward], beta=0.0, reference_state=start, **small
        )


def test_reasoning_rewards_check_the_answer_or_every_step():
    """Chapter 14's chained-arithmetic rewards, in TRL's conversational format."""
    from course_lib.build.sweeps_rlvr import REASONING_REWARDS, reasoning_reward

    q = [[{"role": "user", "content": "What is 7 plus 5 minus 3?"}]]
    lucky = [
        [{"role": "assistant", "content": "7 plus 5 is 11. 11 minus 3 is 9. The answer is 9."}]
    ]
    right = [
        [{"role": "assistant", "content": "7 plus 5 is 12. 12 minus 3 is 9. The answer is 9."}]
    ]
    outcome, process = (reasoning_reward(REASONING_REWARDS[k]) for k in ("outcome", "process"))
    assert outcome(q * 2, lucky + right) == [1.0, 1.0]  # the final answer is all it reads
    assert process(q * 2, lucky + right) == [0.0, 1.0]  # a wrong step fails the whole answer
    assert process.__name__ == "fully_correct"  # the name TRL logs the reward under
