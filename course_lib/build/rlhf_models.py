"""The two checkpoints chapter 09 starts from: the SFT policy and the reward model, rebuilt by one command.

Trained long enough to be useful (SFT 200 steps on the chosen answers, reward model 150 steps of the
Bradley–Terry loss), they take about three minutes on a 2-core CPU, more than chapter 09's budget.
`python -m course_lib.build.rlhf_models` (`make rlhf-models`) builds them with the loops the chapter shows
(`training.train` on `sft.sft_batches`; `reward_model.train_reward_model`) into data/rlhf/, and the chapter
loads them. Taught in chapter 09 (RLHF).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Sequence

import torch

from course_lib import reward_model as rm
from course_lib.data import load_jsonl
from course_lib.models import RLHF_DIR, load_model
from course_lib.sft import sft_batches
from course_lib.training import TrainConfig, train

SFT_STEPS, RM_STEPS, LR = 200, 150, 1e-3


def chosen_as_chat(pairs: Sequence[dict], min_gold: float | None = None) -> list[dict]:
    """The chosen answer of each preference pair as a two-turn chat record: the SFT data of RLHF's
    stage 1. `min_gold` keeps only chosen answers whose gold reward is at least that (e.g. 0 drops
    rude, evasive and wrong ones, closer to InstructGPT's written demonstrations); the shipped SFT
    policy was built with None (every chosen answer), and chapter 09 says what that costs."""
    if not pairs or "chosen" not in pairs[0]:
        raise ValueError("need preference records with prompt and chosen (preferences_train.jsonl)")
    if min_gold is not None:
        if "gold_chosen" not in pairs[0]:
            raise ValueError("min_gold needs records with gold_chosen (preferences_train.jsonl)")
        pairs = [r for r in pairs if r["gold_chosen"] >= min_gold]
    return [
        {
            "messages": [
                {"role": "user", "content": r["prompt"]},
                {"role": "assistant", "content": r["chosen"]},
            ]
        }
        for r in pairs
    ]


def build(
    out: str | Path = RLHF_DIR, sft_steps: int = SFT_STEPS, rm_steps: int = RM_STEPS, seed: int = 0
) -> dict:
    """Train the SFT policy, then the reward model from its weights; save both and a build_info.json."""
    out = Path(out)
    torch.manual_seed(seed)
    base, tok = load_model("causal")
    pairs = load_jsonl("preferences_train")
    t0 = time.perf_counter()
    policy = copy.deepcopy(base)
    sft_hist = train(
        policy,
        sft_batches(tok, chosen_as_chat(pairs), 16, seed=seed),
        TrainConfig(lr=LR, max_steps=sft_steps, progress=False),
    )
    policy.save_pretrained(out / "sft_policy")
    t1 = time.perf_counter()
    reward_model, _ = load_model("reward", out / "sft_policy", seed=seed)
    losses = rm.train_reward_model(reward_model, tok, pairs, steps=rm_steps, lr=LR, seed=seed)
    reward_model.save_pretrained(out / "reward_model")
    test = load_jsonl("preferences_test")
    info = {
        "sft_steps": sft_steps,
        "rm_steps": rm_steps,
        "lr": LR,
        "seed": seed,
        "sft_seconds": round(t1 - t0, 1),
        "rm_seconds": round(time.perf_counter() - t1, 1),
        "sft_final_loss": round(sft_hist.loss[-1], 4),
        "rm_first_losses": [round(x, 5) for x in losses[:8]],
        "rm_final_loss": round(sum(losses[-10:]) / 10, 4),
        "rm_accuracy_labels": round(rm.pair_accuracy(reward_model, tok, test, "labels"), 4),
        "rm_accuracy_gold": round(rm.pair_accuracy(reward_model, tok, test, "gold"), 4),
    }
    (out / "build_info.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def main() -> None:
    """Command line: rebuild data/rlhf/ (sft_policy/, reward_model/, build_info.json)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(RLHF_DIR))
    ap.add_argument("--sft-steps", type=int, default=SFT_STEPS)
    ap.add_argument("--rm-steps", type=int, default=RM_STEPS)
    args = ap.parse_args()
    print(json.dumps(build(args.out, args.sft_steps, args.rm_steps), indent=1))


if __name__ == "__main__":
    main()
