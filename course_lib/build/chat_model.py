"""The shipped chat model: the base model after a long full SFT run, rebuilt by one command.

Chapter 08 teaches SFT live on a budget that fits its 120 s; a model worth *evaluating* needs more
steps than that. `python -m course_lib.build.chat_model` (`make chat-model`) runs the chapter's own
recipe (`sft.train_sft`: response-only loss, packed rows, the course loop with warm-up + cosine)
for longer, on the 944 training instructions plus the 400 reading exercises (listed twice, as in
chapter 08), saves the model and its tokenizer into data/chat_model/, scores it on the 250 held-out
test instructions (exact match per skill, Wilson 95 % intervals) and writes build_info.json and the
model card README.md. Chapters 08 (later sections) and 10 load it with `load_model("chat")`.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from course_lib import sft
from course_lib.data import load_jsonl
from course_lib.evaluation import cross_entropy, exact_match, wilson_interval
from course_lib.generation import generate
from course_lib.models import CHAT_MODEL_DIR, load_model
from course_lib.world.datasets import seed_for
from course_lib.world.entities import Chooser, make_world
from course_lib.world.instructions import SKILLS, instruction_example

STEPS, LR, ROWS, SEED = 800, 2e-3, 8, 0
EXTRA_PER_SKILL = 500  # generated training instructions per non-fact skill
TARGET_ALL, TARGET_SKILL = (
    0.5,
    0.2,
)  # the quality the course asks for (issue 14), stated on the card
N_FIRST_LOSSES = 8  # recorded, so that a test can replay the first steps and compare


def extra_instructions(per_skill: int = EXTRA_PER_SKILL) -> list[dict]:
    """More training instructions from the course's generator (its own seed), for the four skills
    whose space is larger than the 200 shipped examples (arithmetic, rewrite, classify, list).

    Every instruction of instructions_train/val/test is excluded, so nothing held out leaks in;
    fact questions are not added (the training split already holds every training fact in every
    phrasing, and the held-out facts must stay held out).
    """
    world = make_world()
    ch = Chooser(seed_for("chat_model_extra_instructions"))
    key = lambda r: r["instruction"] + "\n" + r["input"]  # noqa: E731
    seen = {key(r) for s in ("train", "val", "test") for r in load_jsonl(f"instructions_{s}")}
    out: list[dict] = []
    for skill in SKILLS[1:]:
        made = tries = 0
        while made < per_skill and tries < 50 * per_skill:
            tries += 1
            rec = instruction_example(ch, world, skill, [])
            if key(rec) not in seen:
                seen.add(key(rec))
                out.append(rec)
                made += 1
    return out


def training_records() -> list[dict]:
    """The SFT data: the training instructions, the generated extra ones (`extra_instructions`), and
    the reading exercises twice (as in chapter 08)."""
    return (
        load_jsonl("instructions_train") + extra_instructions() + 2 * load_jsonl("context_qa_train")
    )


def skill_scores(model, tokenizer, records: list[dict]) -> dict[str, dict]:
    """Exact match per skill and overall, each with its count and Wilson 95 % interval."""
    preds = generate(model, tokenizer, [sft.user_text(r) for r in records], chat=True)
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        groups.setdefault(r["skill"], []).append(i)
    groups["all"] = list(range(len(records)))
    out = {}
    for skill, idx in groups.items():
        right = round(
            exact_match([preds[i] for i in idx], [records[i]["output"] for i in idx]) * len(idx)
        )
        lo, hi = wilson_interval(right, len(idx))
        out[skill] = {
            "em": round(right / len(idx), 4),
            "right": right,
            "n": len(idx),
            "lo": round(lo, 4),
            "hi": round(hi, 4),
        }
    return out


def reading_em(model, tokenizer) -> float:
    """EM on the 80 new facts asked with their statements in the prompt (a note, then the question)."""
    facts = load_jsonl("new_facts")
    prompts = [" ".join(f["statements"]) + "\n" + f["question"] for f in facts]
    return exact_match(generate(model, tokenizer, prompts, chat=True), [f["answer"] for f in facts])


def build(out: str | Path = CHAT_MODEL_DIR, steps: int = STEPS, seed: int = SEED) -> dict:
    """Train, save (model, tokenizer), evaluate, and write build_info.json and README.md."""
    out = Path(out)
    base, tok = load_model("causal")
    t0 = time.perf_counter()
    model, hist = sft.train_sft(
        base,
        tok,
        training_records(),
        method="full",
        lr=LR,
        steps=steps,
        rows_per_batch=ROWS,
        seed=seed,
    )
    seconds = time.perf_counter() - t0
    model.eval()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    general = [r["text"] for r in load_jsonl("corpus_val")[:200]]
    info = {
        "steps": steps,
        "extra_instructions": len(extra_instructions()),
        "lr": LR,
        "rows_per_batch": ROWS,
        "row_length": 128,
        "seed": seed,
        "threads": torch.get_num_threads(),
        "train_seconds": round(seconds, 1),
        "first_losses": [round(x, 5) for x in hist.loss[:N_FIRST_LOSSES]],
        "final_loss": round(sum(hist.loss[-20:]) / len(hist.loss[-20:]), 4),
        "test": skill_scores(model, tok, load_jsonl("instructions_test")),
        "val": skill_scores(model, tok, load_jsonl("instructions_val")),
        "reading_em_new_facts": round(reading_em(model, tok), 4),
        "general_ce": round(cross_entropy(model, tok, general), 4),
        "general_ce_base": round(cross_entropy(base, tok, general), 4),
        "vocab_size": len(tok),
    }
    (out / "build_info.json").write_text(json.dumps(info, indent=1) + "\n")
    (out / "README.md").write_text(model_card(info))
    return info


def model_card(info: dict) -> str:
    """The model card (README.md) of the chat model, written from its build record."""
    rows = "\n".join(
        f"| {skill} | {s['right']} / {s['n']} | **{s['em']:.3f}** | [{s['lo']:.3f}, {s['hi']:.3f}] "
        f"| {info['val'][skill]['em']:.3f} |"
        for skill, s in info["test"].items()
    )
    return f"""# course chat model

The course base model (`data/base_model`, 2.04 M parameters) after full supervised fine-tuning:
chapter 08's recipe run for longer than a lesson can afford. Rebuild it with `make chat-model`
(`python -m course_lib.build.chat_model`); every number below is measured by that command and
saved in `build_info.json`. Load it with `course_lib.models.load_model("chat")` or plain
`AutoModelForCausalLM.from_pretrained("data/chat_model")`.

## Training
- data: the 944 training instructions (`instructions_train`, five skills), {info["extra_instructions"]}
  more drawn from the course generator with their own seed for the skills whose space is larger
  than 200 examples (arithmetic, rewrite, classify, list; every validation and test instruction
  excluded; no fact questions, so the held-out facts stay held out), and the 400 reading exercises
  (`context_qa_train`, listed twice), in the course chat template;
- loss on the response tokens only (`sft.sft_example`), packed into rows of {info["row_length"]} tokens with
  reset positions and a block-diagonal mask (`sft.packed_batches`), {info["rows_per_batch"]} rows per step;
- AdamW, lr {info["lr"]}, 10 % warm-up then cosine decay to a tenth, gradient clipping at 1.0,
  **{info["steps"]} steps**, seed {info["seed"]}; final training loss {info["final_loss"]};
- training time: **{info["train_seconds"] / 60:.1f} min** on a CPU with {info["threads"]} threads.

## Exact match on the 250 held-out test instructions (greedy, `course_lib.sft`'s normalisation)
| skill | right | exact match | Wilson 95 % interval | validation EM (20 / skill) |
|---|---|---|---|---|
{rows}

The recipe is chapter 08's, run longer; it was not tuned on these scores (one build, scored once;
the validation column is for comparison).

## Other measures
- new facts given in the prompt (80 questions, each after its two statements): EM
  {info["reading_em_new_facts"]:.3f};
- general-text cross-entropy (200 `corpus_val` documents): {info["general_ce"]:.3f} nats/token
  (base model {info["general_ce_base"]:.3f}; uniform guess ln V = {math.log(info["vocab_size"]):.3f}):
  SFT costs general language modelling (chapter 08, §9).

## Limits (measured)
{limits(info)}
"""


def limits(info: dict) -> str:
    """The card's limits, stated from the build record: weak skills, forgetting, the target."""
    weak = {k: v["em"] for k, v in info["test"].items() if k != "all" and v["em"] < TARGET_SKILL}
    uniform = math.log(info["vocab_size"])
    lines = [
        f"- Target of the course (issue 14): overall EM >= {TARGET_ALL} with no skill below "
        f"{TARGET_SKILL}. This build: overall {info['test']['all']['em']:.3f}; "
        + (f"skills below {TARGET_SKILL}: {weak}." if weak else "every skill above it.")
    ]
    if {"list", "arithmetic"} & set(weak):
        lines.append(
            "- Lists and sums are number manipulation: the model copies the format and gets the numbers"
            " wrong (e.g. a count that skips or repeats a number), from a few hundred examples per"
            " skill in this many steps."
        )
    if info["general_ce"] > uniform:
        lines.append(
            f"- Forgetting: the general-text CE ({info['general_ce']:.2f}) is above a uniform guess over"
            f" the vocabulary (ln V = {uniform:.2f}): full SFT at this learning rate overwrote the"
            " language model, and with it part of what pretraining taught about the world's people."
        )
    lines.append(
        "- A 2 M-parameter model of a synthetic world: it answers the five instruction skills in the"
        " course format and nothing else; fact questions about people it never read about are guesses."
    )
    return "\n".join(lines)


def main() -> None:
    """Command line: rebuild data/chat_model/ (weights, tokenizer, build_info.json, README.md)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(CHAT_MODEL_DIR))
    ap.add_argument("--steps", type=int, default=STEPS)
    args = ap.parse_args()
    info = build(args.out, args.steps)
    print(json.dumps({k: v for k, v in info.items() if k != "val"}, indent=1))


if __name__ == "__main__":
    main()
