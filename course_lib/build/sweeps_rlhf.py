"""Chapter 09's seed sweeps: PPO, DPO and GRPO at matched data and compute, and the 2 × 2
reward-hacking ablation (β × learning rate), each over 3 seeds.

The matching rule (chapter 09, section 8): every method starts from the shipped SFT policy, trains
all its weights with AdamW at the same learning rate and β, and sees 30 batches of 32 answers
(960 answers) with 2 gradient steps per batch (60 optimizer steps):
- PPO: 30 iterations of 32 prompts × 1 sampled answer, 2 epochs per batch;
- GRPO: 30 generation rounds of 4 prompts × 8 sampled answers, `num_iterations=2` (TRL);
- DPO: 480 preference pairs (960 offline answers) in batches of 16 pairs, 2 epochs.
PPO and GRPO sample at most `MAX_NEW` tokens; an answer with no end-of-turn token within that budget
loses `ppo.MISSING_EOS_PENALTY` from its learned reward (and from its gold reward when evaluated).
Every policy is evaluated by `ppo.evaluate_policy` on `EVAL_N` held-out questions that never occur
among the training prompts, greedy and sampled, with `EVAL_NEW` tokens (more than the longest
training answer, 98 tokens). Taught in chapter 09; rebuild with `make sweep NAME=rlhf_methods`.
"""

from __future__ import annotations

import copy
import logging
import random
import tempfile
import time
import warnings
from functools import lru_cache

import torch

from course_lib import dpo, ppo
from course_lib import reward_model as rm
from course_lib.data import load_jsonl
from course_lib.models import load_model
from course_lib.sweeps import SweepSpec
from course_lib.world.preferences import gold_reward

LR, BETA, BATCHES, ANSWERS_PER_BATCH, EPOCHS = 1e-4, 0.1, 30, 32, 2
MAX_NEW, EVAL_NEW, EVAL_N, N_GENERATIONS, DPO_PAIRS = 24, 100, 100, 8, 480
SEEDS = (0, 1, 2)
DPO_WINDOW = 5  # steps per point of DPO's shipped likelihood-displacement curve
THREADS = 1  # one torch thread: on a shared 2-core machine two threads can be many times slower
HACK_ARMS = {  # (β, lr, iterations); the 2 × 2's corner (β 0.1, lr 1e-4) is rlhf_methods' "PPO"
    "β 0, lr 1e-4": (0.0, 1e-4, BATCHES),
    "β 0.1, lr 5e-4": (0.1, 5e-4, BATCHES),
    "β 0, lr 5e-4": (0.0, 5e-4, BATCHES),
    "check: β 0, lr 5e-4, 4 iterations": (0.0, 5e-4, 4),  # the cheap arm the test re-runs
}


@lru_cache(maxsize=1)
def setting():
    """(SFT policy, reward model, tokenizer, training pairs, training prompts, evaluation prompts)."""
    sft, tok = load_model("sft_policy")
    reward_model, _ = load_model("trained_reward")
    pairs = load_jsonl("preferences_train")
    return sft.eval(), reward_model.eval(), tok, pairs, [r["prompt"] for r in pairs], eval_prompts()


def eval_prompts(n: int = EVAL_N) -> list[str]:
    """The first n distinct questions of preferences_test that occur nowhere among the training
    prompts (32 % of the test pairs' prompts do): held-out *questions*, not only held-out pairs."""
    seen = {r["prompt"] for r in load_jsonl("preferences_train")}
    fresh: list[str] = []
    for r in load_jsonl("preferences_test"):
        if r["prompt"] not in seen and r["prompt"] not in fresh:
            fresh.append(r["prompt"])
    if len(fresh) < n:
        raise ValueError(
            f"only {len(fresh)} test questions are absent from training; asked for {n}"
        )
    return fresh[:n]


def grpo_trainer(
    sft, reward_model, tok, prompts, beta=BETA, lr=LR, seed=0, steps=None, num_iterations=EPOCHS
):
    """TRL's GRPOTrainer under the matching rule: learned reward (−penalty if cut), gold only logged."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    def cut(completion_ids):  # 1.0 where the answer has no end-of-turn token
        return torch.tensor([float(tok.eos_token_id not in ids) for ids in completion_ids])

    def learned(prompts, completions, completion_ids, **_):
        ps, ys = [p[-1]["content"] for p in prompts], [c[-1]["content"] for c in completions]
        penalty = ppo.MISSING_EOS_PENALTY * cut(completion_ids)
        return (rm.score(reward_model, tok, ps, ys) - penalty).tolist()

    def gold_watch(prompts, completions, completion_ids, **_):
        gold = [
            gold_reward(p[-1]["content"], c[-1]["content"]) for p, c in zip(prompts, completions)
        ]
        return (torch.tensor(gold) - ppo.MISSING_EOS_PENALTY * cut(completion_ids)).tolist()

    config = GRPOConfig(
        output_dir=tempfile.mkdtemp(),
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=ANSWERS_PER_BATCH,
        gradient_checkpointing=False,  # TRL's GRPO default is True: saves memory, costs time
        num_generations=N_GENERATIONS,
        max_completion_length=MAX_NEW,
        num_iterations=num_iterations,  # 2: each sampled batch used for 2 steps, as PPO's epochs
        max_steps=steps or BATCHES * EPOCHS,
        learning_rate=lr,
        lr_scheduler_type="constant",
        beta=beta,
        reward_weights=[1.0, 0.0],
        logging_steps=min(10, steps or BATCHES * EPOCHS),
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
        seed=seed,
    )
    rows = [{"prompt": [{"role": "user", "content": p}]} for p in prompts]
    return GRPOTrainer(
        model=copy.deepcopy(sft),
        reward_funcs=[learned, gold_watch],
        args=config,
        processing_class=tok,
        train_dataset=Dataset.from_list(rows),
    )


def train_method(method: str, seed: int, beta: float = BETA, lr: float = LR):
    """Train one method from the SFT policy under the matching rule; returns (causal LM, seconds)."""
    sft, reward_model, tok, pairs, prompts, _ = setting()
    torch.manual_seed(seed)
    start = time.perf_counter()
    if method == "SFT":
        return sft, 0.0
    if method == "PPO":
        policy, _ = ppo.ppo_train(
            sft, reward_model, tok, prompts, beta, BATCHES, lr, ANSWERS_PER_BATCH, MAX_NEW, seed
        )
        model = policy.lm
    elif method == "DPO":
        chosen_pairs = random.Random(seed).sample(pairs, DPO_PAIRS)
        model, log = dpo.train_dpo(sft, tok, chosen_pairs, BATCHES * EPOCHS, 16, lr, beta, seed)
        train_method.last_dpo_log = log  # read by run_method: the likelihood-displacement curve
    elif method == "GRPO":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer = grpo_trainer(sft, reward_model, tok, prompts, beta, lr, seed)
            trainer.train()
        model = trainer.model
    else:
        raise ValueError(f"unknown method {method!r}; expected SFT, PPO, DPO or GRPO")
    return model.eval(), time.perf_counter() - start


def ppo_run(seed: int, beta: float, lr: float, iterations: int = BATCHES) -> dict[str, float]:
    """PPO at (β, lr) from the SFT policy: learned and gold reward and KL of the samples in the
    first and last quarter of training, then `ppo.evaluate_policy` of the final policy."""
    torch.set_num_threads(THREADS)
    sft, reward_model, tok, _, prompts, eval_set = setting()
    torch.manual_seed(seed)
    start = time.perf_counter()
    policy, log = ppo.ppo_train(
        sft, reward_model, tok, prompts, beta, iterations, lr, ANSWERS_PER_BATCH, MAX_NEW, seed
    )
    seconds = time.perf_counter() - start
    q = max(1, iterations // 4)
    out = {f"{k}_first": sum(log[k][:q]) / q for k in ("learned", "gold", "kl")}
    out |= {f"{k}_last": sum(log[k][-q:]) / q for k in ("learned", "gold", "kl")}
    evaluated = ppo.evaluate_policy(policy.lm, sft, tok, eval_set, EVAL_NEW, seed=seed)
    return {**evaluated, **out, "train_seconds": seconds}


def run_method(arm: str, seed: int) -> dict[str, float]:
    """One (method, seed): gold of greedy and sampled answers, share cut, KL to SFT, seconds
    (PPO also reports its samples' rewards in the first and last quarter, for the 2 × 2)."""
    logging.getLogger("transformers").setLevel(logging.ERROR)
    torch.set_num_threads(THREADS)
    if arm == "PPO":
        return ppo_run(seed, BETA, LR)
    sft, _, tok, _, _, prompts = setting()
    model, seconds = train_method(arm, seed)
    out = ppo.evaluate_policy(model, sft, tok, prompts, EVAL_NEW, seed=seed)
    if (
        arm == "DPO"
    ):  # mean log π − log π_ref of the batches' answers, per window of DPO_WINDOW steps
        log = train_method.last_dpo_log
        for side in ("chosen", "rejected"):
            for k in range(0, len(log[side]), DPO_WINDOW):
                out[f"{side}_w{k // DPO_WINDOW:02d}"] = (
                    sum(log[side][k : k + DPO_WINDOW]) / DPO_WINDOW
                )
    return {**out, "train_seconds": seconds}


def run_hack(arm: str, seed: int) -> dict[str, float]:
    """One cell of the 2 × 2 (its fourth cell, β 0.1 and lr 1e-4, is rlhf_methods' PPO arm)."""
    return ppo_run(seed, *HACK_ARMS[arm])


CODE = ("ppo.py", "dpo.py", "reward_model.py", "generation.py", "build/sweeps_rlhf.py")
CONFIG = {
    "lr": LR,
    "beta": BETA,
    "batches": BATCHES,
    "answers_per_batch": ANSWERS_PER_BATCH,
    "gradient_steps_per_batch": EPOCHS,
    "max_new_tokens_training": MAX_NEW,
    "max_new_tokens_eval": EVAL_NEW,
    "eval_questions": EVAL_N,
    "grpo_generations_per_prompt": N_GENERATIONS,
    "dpo_pairs": DPO_PAIRS,
    "missing_eos_penalty": ppo.MISSING_EOS_PENALTY,
}

SWEEPS = [
    SweepSpec(
        name="rlhf_methods",
        what="SFT, PPO, DPO and GRPO at matched data and compute (960 answers, 60 AdamW steps, "
        "lr 1e-4, β 0.1): gold of greedy and sampled answers to 100 deduplicated held-out "
        "questions, share cut, KL to SFT",
        run=run_method,
        arms=("SFT", "PPO", "DPO", "GRPO"),
        seeds=SEEDS,
        config=CONFIG,
        code_files=CODE,
        chapter="09",
        check_arms=("SFT",),
        abs_tol=0.1,  # the check re-runs SFT's evaluation: a sampled answer may flip (0.04 each)
    ),
    SweepSpec(
        name="rlhf_hacking",
        what="PPO reward hacking, 2 × 2 of β ∈ {0, 0.1} × lr ∈ {1e-4, 5e-4}, one factor at a time "
        "from (0.1, 1e-4) (that corner is rlhf_methods' PPO arm): learned and gold reward of the "
        "samples in the first and last quarter, greedy and sampled gold of the final policy, KL",
        run=run_hack,
        arms=tuple(HACK_ARMS),
        seeds=SEEDS,
        config=CONFIG,
        code_files=CODE,
        chapter="09",
        check_arms=("check: β 0, lr 5e-4, 4 iterations",),
        rel_tol=0.05,
        abs_tol=0.1,
    ),
]
