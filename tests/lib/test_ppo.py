"""course_lib.ppo: GAE, KL-penalised rewards, the clipped objectives, rollouts and left-padded log-probs."""

import copy
import math

import pytest
import torch

from course_lib import ppo
from course_lib import reward_model as rm


@pytest.fixture(scope="module")
def lm_and_tok(base_model, tokenizer):
    return base_model, tokenizer


def _brute_force_gae(r, v, gamma, lam):
    """A_t = Σ_l (γλ)^l δ_{t+l}, δ_t = r_t + γ V_{t+1} − V_t, V after the last token = 0."""
    T = len(r)
    vv = v + [0.0]
    delta = [r[t] + gamma * vv[t + 1] - vv[t] for t in range(T)]
    return [sum((gamma * lam) ** l * delta[t + l] for l in range(T - t)) for t in range(T)]


def test_gae_matches_definition():
    torch.manual_seed(0)
    r, v = torch.randn(1, 5), torch.randn(1, 5)
    mask = torch.tensor([[0.0, 1, 1, 1, 0]])  # prompt token, three response tokens, padding
    adv, ret = ppo.gae(r, v, mask, gamma=0.9, lam=0.8)
    expected = _brute_force_gae(r[0, 1:4].tolist(), v[0, 1:4].tolist(), 0.9, 0.8)
    assert torch.allclose(adv[0, 1:4], torch.tensor(expected), atol=1e-6), (
        f"advantages differ from Σ(γλ)^l δ: got {adv[0, 1:4].tolist()}, expected {expected}"
    )
    assert adv[0, 0] == 0 and adv[0, 4] == 0, "positions outside the response must get no advantage"
    assert torch.allclose(ret[0, 1:4], adv[0, 1:4] + v[0, 1:4]), "returns are advantages + values"


def test_kl_penalty_sign_and_score_placement():
    mask = torch.tensor([[0.0, 1, 1, 0], [0.0, 1, 1, 1]])
    logp = torch.full((2, 4), -1.0)
    ref = torch.full((2, 4), -2.0)  # the policy gives its tokens MORE probability than ref
    rewards, kl = ppo.kl_penalized_rewards(torch.tensor([5.0, 7.0]), logp, ref, mask, kl_coef=0.1)
    assert torch.allclose(rewards[0], torch.tensor([0.0, -0.1, 4.9, 0.0])), (
        f"row 0: −0.1·KL on each response token and the score on the LAST one; got {rewards[0].tolist()}"
    )
    assert rewards[1, 3] == pytest.approx(6.9), (
        "row 1's score belongs on its last response token (index 3)"
    )
    assert (kl * (1 - mask) == 0).all(), "no KL outside the response"


def test_policy_loss_clipping():
    adv, mask = torch.tensor([[1.0, -1.0]]), torch.ones(1, 2)
    old = torch.zeros(1, 2)
    loss, frac = ppo.policy_loss(old, old, adv, mask)
    assert loss.item() == pytest.approx(0.0) and frac == 0, (
        "at ρ = 1 the loss is −mean(A) = 0 here, nothing clipped"
    )
    up = torch.log(torch.tensor([[2.0, 2.0]]))  # ρ = 2 for both tokens
    loss, frac = ppo.policy_loss(up, old, adv, mask, clip=0.2)
    assert loss.item() == pytest.approx((-1.2 + 2.0) / 2), (
        "A > 0: gain capped at ρ = 1.2; A < 0: the full penalty ρ = 2 stays (pessimistic max)"
    )
    assert frac == 0.5, f"one of two tokens was clipped, got clip fraction {frac}"


def test_value_loss_clips_around_old_values():
    v_old, ret, mask = torch.zeros(1, 1), torch.ones(1, 1), torch.ones(1, 1)
    assert ppo.value_loss(torch.ones(1, 1), v_old, ret, mask).item() == pytest.approx(
        0.5 * (1 - 0.2) ** 2
    ), "with V jumping from 0 to the return 1, the clipped value 0.2 bounds the improvement"


def test_rollout_mask_and_left_padded_logprobs(lm_and_tok):
    lm, tok = lm_and_tok
    policy = ppo.PolicyWithValue(copy.deepcopy(lm))
    roll = ppo.rollout(
        policy, tok, ["What is 2 plus 3?", "What is the job of Ada Crane?"], max_new_tokens=8
    )
    ids, att, mask = roll["input_ids"], roll["attention_mask"], roll["mask"]
    assert mask.shape == (ids.shape[0], ids.shape[1] - 1) and mask.sum() > 0
    for row in range(2):
        gen = ids[row, 1:][mask[row].bool()]
        assert tok.decode(gen, skip_special_tokens=True).strip() == roll["responses"][row], (
            "the mask must select exactly the generated response tokens"
        )
        assert (gen == tok.eos_token_id).sum() <= 1, (
            "tokens after the first end-of-turn must be masked out"
        )
    with torch.no_grad():
        logits, values = policy(ids, att)
        lp = ppo.token_logprobs(logits, ids)
        row = 0 if att[0, 0] == 0 else 1  # the row that was left-padded
        assert att[row, 0] == 0, "expected one prompt to be left-padded"
        alone = ids[row : row + 1][:, att[row].bool()]
        lp_alone = ppo.token_logprobs(policy(alone, torch.ones_like(alone))[0], alone)
    assert values.shape == ids.shape and (values == 0).all(), "the value head starts at zero"
    real = (att[row, 1:] * att[row, :-1]).bool()  # predicted token and its context both real
    assert torch.allclose(lp[row][real], lp_alone[0], atol=1e-4), (
        "left padding changed the log-probs: position ids?"
    )


def test_bad_input():
    with pytest.raises(ValueError, match="kl_coef"):
        ppo.kl_penalized_rewards(
            torch.zeros(1), torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1, 2), -1
        )
    with pytest.raises(ValueError, match="no position"):
        ppo.masked_mean(torch.zeros(2), torch.zeros(2))
    with pytest.raises(ValueError, match="one shape"):
        ppo.gae(torch.zeros(1, 2), torch.zeros(1, 3), torch.ones(1, 2))


def test_rollout_reports_answers_cut_before_their_end(lm_and_tok):
    lm, tok = lm_and_tok
    roll = ppo.rollout(lm, tok, ["Tell me about Ada Crane."] * 4, max_new_tokens=2, seed=0)
    ids = roll["input_ids"][:, -2:]
    assert roll["ended"].tolist() == (ids == tok.eos_token_id).any(-1).tolist()
    assert not roll["ended"].all(), "two new tokens cannot end a base-model continuation"


def test_experience_penalises_cut_samples_and_logs(lm_and_tok, tiny_llama):
    lm, tok = lm_and_tok
    torch.manual_seed(0)
    reward_model = tiny_llama(vocab=len(tok), num_labels=1, eval_mode=True)
    reward_model.config.pad_token_id = tok.pad_token_id
    policy, ref = ppo.PolicyWithValue(copy.deepcopy(lm)), copy.deepcopy(lm).eval()
    prompts = ["What is 2 plus 3?", "Where does Ada Crane live?"]
    b = ppo.experience(policy, ref, reward_model, tok, prompts, 0.1, seed=0, max_new=2)
    roll = ppo.rollout(policy, tok, prompts, max_new_tokens=2, seed=0)
    raw = rm.score(reward_model, tok, prompts, roll["responses"])
    cut = (~roll["ended"]).float()
    assert math.isclose(
        b["learned"], (raw - ppo.MISSING_EOS_PENALTY * cut).mean().item(), abs_tol=1e-5
    ), "a sample with no end-of-turn token must lose MISSING_EOS_PENALTY"
    assert b["truncated"] == cut.mean().item()
    assert {"adv", "returns", "old_logp", "gold", "kl"} <= set(b)


def test_evaluate_policy_of_the_reference_itself(lm_and_tok):
    lm, tok = lm_and_tok
    out = ppo.evaluate_policy(lm, lm, tok, ["What is 2 plus 3?"] * 3, max_new=3, texts=True)
    assert out["kl"] == 0.0 and out["cut_greedy"] == 1.0, out
    assert len(out["answers"]) == 3 and {"gold_greedy", "gold_sampled", "cut_sampled"} <= set(out)
