"""The shipped chat model: the base model after a long full SFT run, rebuilt by one command.

Chapter 08 teaches SFT live on a budget that fits its 120 s; a model worth *evaluating* needs more
steps than that. `python -m course_lib.build.chat_model` (`make chat-model`) runs the chapter's own
recipe (`sft.train_sft`: response-only loss, packed rows, the course loop with warm-up + cosine)
for longer, on the 944 training instructions, generated extra ones (lists and sums listed more
often), the 400 reading exercises (twice, as in chapter 08) and replayed pretraining text (§9);
saves the model and its tokenizer into data/chat_model/, scores it on the 250 held-out test
instructions (exact match per skill, Wilson 95 % intervals) and writes build_info.json and the
model card README.md. The recipe was chosen on the validation instructions (`--search`, logged in
chat_model_search.json and quoted on the card). Chapters 08 (later sections) and 10 load it with
`load_model("chat")`.
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

STEPS, LR, ROWS, SEED = 1600, 1e-3, 8, 0
# generated training instructions per non-fact skill (list and arithmetic: as many as exist outside
# the held-out splits), and how often each is listed: the number skills get the most updates
EXTRA = {"arithmetic": 800, "rewrite": 500, "classify": 500, "list": 500}
REPEAT = {"arithmetic": 2, "rewrite": 1, "classify": 1, "list": 3}
REPLAY_DOCS = 1000  # pretraining documents (corpus_sample) replayed in the packed rows
TARGET_ALL, TARGET_SKILL = (
    0.5,
    0.2,
)  # the quality the course asks for (issue 14), stated on the card
N_FIRST_LOSSES = 8  # recorded, so that a test can replay the first steps and compare
SEARCH_LOG = Path(__file__).with_name(
    "chat_model_search.json"
)  # the recipe search, quoted on the card


def extra_instructions(per_skill: dict[str, int] | None = None) -> list[dict]:
    """More training instructions from the course's generator (its own seed), for the four skills
    whose space is larger than the 200 shipped examples (arithmetic, rewrite, classify, list).

    Every instruction of instructions_train/val/test is excluded, so nothing held out leaks in;
    fact questions are not added (the training split already holds every training fact in every
    phrasing, and the held-out facts must stay held out). A skill whose space is exhausted (lists:
    about 230 new ones exist) gets as many as there are.
    """
    per_skill = EXTRA if per_skill is None else per_skill
    world = make_world()
    ch = Chooser(seed_for("chat_model_extra_instructions"))
    key = lambda r: r["instruction"] + "\n" + r["input"]  # noqa: E731
    seen = {key(r) for s in ("train", "val", "test") for r in load_jsonl(f"instructions_{s}")}
    out: list[dict] = []
    for skill in SKILLS[1:]:
        n = per_skill.get(skill, 0)
        made = tries = 0
        while made < n and tries < 50 * n:
            tries += 1
            rec = instruction_example(ch, world, skill, [])
            if key(rec) not in seen:
                seen.add(key(rec))
                out.append(rec)
                made += 1
    return out


def training_records(
    extra: dict[str, int] | None = None, repeat: dict[str, int] | None = None
) -> list[dict]:
    """The SFT data: the training instructions, the generated extra ones (`extra_instructions`, each
    skill listed `REPEAT` times), and the reading exercises twice (as in chapter 08)."""
    generated, repeat = extra_instructions(extra), REPEAT if repeat is None else repeat
    repeated: list[dict] = []
    for skill in SKILLS[1:]:
        repeated += repeat.get(skill, 1) * [r for r in generated if r["skill"] == skill]
    return load_jsonl("instructions_train") + repeated + 2 * load_jsonl("context_qa_train")


def replay_texts(n: int = REPLAY_DOCS) -> list[str]:
    """The general documents replayed in the SFT rows (loss on every token): the first `n` of the
    pretraining sample, so that SFT does not overwrite the language model."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return [r["text"] for r in load_jsonl("corpus_sample")[:n]]


def search_run(
    name: str,
    *,
    lr: float,
    steps: int,
    evals: list[int],
    extra: dict[str, int] | None = None,
    repeat: dict[str, int] | None = None,
    replay: int = REPLAY_DOCS,
) -> dict:
    """One run of the recipe search: train with these settings and score the 100 *validation*
    instructions (never the test set) and the general-text CE at each step in `evals`."""
    import copy

    from course_lib.training import TrainConfig, train

    if not evals or max(evals) > steps:
        raise ValueError(f"evals must be steps in [1, {steps}], got {evals}")
    base, tok = load_model("causal")
    torch.manual_seed(SEED)
    model = copy.deepcopy(base)
    batches = sft.packed_batches(
        tok,
        training_records(extra, repeat),
        rows_per_batch=ROWS,
        seed=SEED,
        texts=replay_texts(replay),
    )
    val, general = (
        load_jsonl("instructions_val"),
        [r["text"] for r in load_jsonl("corpus_val")[:200]],
    )
    rows, t0 = [], time.perf_counter()

    def on_step(m, step: int) -> None:
        if step in evals:
            m.eval()
            with torch.no_grad():
                sc, ce = skill_scores(m, tok, val), cross_entropy(m, tok, general)
            m.train()
            rows.append(
                {
                    "step": step,
                    "seconds": round(time.perf_counter() - t0, 1),
                    "general_ce": round(ce, 3),
                }
                | {k: v["em"] for k, v in sc.items()}
            )
            print(json.dumps(rows[-1]), flush=True)

    train(model, batches, TrainConfig(lr=lr, max_steps=steps, progress=False), on_step=on_step)
    settings = {"lr": lr, "steps": steps, "extra": extra or EXTRA, "repeat": repeat or REPEAT}
    return {
        "name": name,
        **settings,
        "replay": replay,
        "threads": torch.get_num_threads(),
        "evals": rows,
    }


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
        texts=replay_texts(),
    )
    seconds = time.perf_counter() - t0
    model.eval()
    model.save_pretrained(out)
    tok.backend_tokenizer.no_truncation()  # tokenizing the replay texts left truncation set
    tok.save_pretrained(out)
    general = [r["text"] for r in load_jsonl("corpus_val")[:200]]
    info = {
        "steps": steps,
        "extra_instructions": len(extra_instructions()),
        "extra_per_skill": {k: sum(r["skill"] == k for r in extra_instructions()) for k in EXTRA},
        "repeat": REPEAT,
        "replay_docs": REPLAY_DOCS,
        "training_records": len(training_records()),
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


def model_card(info: dict, search: list[dict] | None = None) -> str:
    """The model card (README.md) of the chat model, written from its build record and the recipe
    search log (`SEARCH_LOG`)."""
    search = load_search() if search is None else search
    rows = "\n".join(
        f"| {skill} | {s['right']} / {s['n']} | **{s['em']:.3f}** | [{s['lo']:.3f}, {s['hi']:.3f}] "
        f"| {info['val'][skill]['em']:.3f} |"
        for skill, s in info["test"].items()
    )
    per = ", ".join(
        f"{k} {n} (listed {info['repeat'][k]}x)" for k, n in info["extra_per_skill"].items()
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
  than 200 examples ({per}; every validation and test instruction excluded, lists and sums use
  every one that is left; no fact questions, so the held-out facts stay held out), and the 400
  reading exercises (`context_qa_train`, listed twice), in the course chat template:
  {info["training_records"]} records;
- replay: the first {info["replay_docs"]} pretraining documents (`corpus_sample`) packed into the same
  rows with the loss on every token (chapter 08, §9), so that SFT does not overwrite the language model;
- loss on the response tokens only (`sft.sft_example`), packed into rows of {info["row_length"]} tokens with
  reset positions and a block-diagonal mask (`sft.packed_batches`), {info["rows_per_batch"]} rows per step;
- AdamW, lr {info["lr"]}, 10 % warm-up then cosine decay to a tenth, gradient clipping at 1.0,
  **{info["steps"]} steps**, seed {info["seed"]}; final training loss {info["final_loss"]};
- training time: **{info["train_seconds"] / 60:.1f} min** on a CPU with {info["threads"]} torch
  thread(s). The build is deterministic at a fixed thread count (a rebuild with the same number of
  threads gives byte-identical weights); another thread count changes the float sums and so the
  last digits of the weights.

## Exact match on the 250 held-out test instructions (greedy, `course_lib.sft`'s normalisation)
| skill | right | exact match | Wilson 95 % interval | validation EM (20 / skill) |
|---|---|---|---|---|
{rows}

The test set was scored once, for this recipe only; the recipe was chosen on the 100 validation
instructions (below).

## Other measures
- new facts given in the prompt (80 questions, each after its two statements): EM
  {info["reading_em_new_facts"]:.3f};
- general-text cross-entropy (200 `corpus_val` documents): {info["general_ce"]:.3f} nats/token
  (base model {info["general_ce_base"]:.3f}; uniform guess ln V = {math.log(info["vocab_size"]):.3f}).

## Recipe search (validation set, 20 instructions per skill)
{search_table(search)}

## Limits (measured)
{limits(info)}
"""


def load_search() -> list[dict]:
    """The recipe search log (`SEARCH_LOG`): one entry per run, validation EM at its checkpoints."""
    return json.loads(SEARCH_LOG.read_text()) if SEARCH_LOG.exists() else []


def search_table(search: list[dict]) -> str:
    """The recipe search as a markdown table: settings, then validation EM per skill at each checkpoint."""
    if not search:
        return "(no search log)"
    head = "| run | lr | steps | data | replay | step | " + " | ".join(SKILLS)
    lines = [head + " | all | general CE | s |", "|" + "---|" * (len(SKILLS) + 9)]
    for run in search:
        data = (
            f"+{sum(run['extra'].values())} gen.; sums x{run['repeat']['arithmetic']}, "
            f"lists x{run['repeat']['list']}"
        )
        for e in run["evals"]:
            ems = " | ".join(f"{e[k]:.2f}" for k in (*SKILLS, "all"))
            lines.append(
                f"| {run['name']} | {run['lr']} | {run['steps']} | {data} | {run['replay']} "
                f"| {e['step']} | {ems} | {e['general_ce']:.2f} | {e['seconds']:.0f} |"
            )
    notes = [
        "",
        "Rows of one run are checkpoints of that run (its warm-up and cosine schedule set by its",
        "own `steps`); `s` is the wall-clock time to that checkpoint. Generated counts are requested",
        "ones (lists: about 230 exist outside the held-out splits, sums about 760). Rebuild a row with",
        "`python -m course_lib.build.chat_model --search '{...}'`.",
    ]
    notes += [f"- {run['name']}: {run['note']}" for run in search if run.get("note")]
    return "\n".join(lines + notes)


def limits(info: dict) -> str:
    """The card's limits, stated from the build record: weak skills, forgetting, the target."""
    test = info["test"]
    weak = {k: v["em"] for k, v in test.items() if k != "all" and v["em"] < TARGET_SKILL}
    met = test["all"]["em"] >= TARGET_ALL and not weak
    lines = [
        f"- Target of the course (issue 14): overall EM >= {TARGET_ALL} with no skill below "
        f"{TARGET_SKILL}. This build: overall {test['all']['em']:.3f} "
        f"[{test['all']['lo']:.3f}, {test['all']['hi']:.3f}]; "
        + (
            f"skills below {TARGET_SKILL}: {weak}."
            if weak
            else f"every skill at {TARGET_SKILL} or above."
        )
        + (" Met." if met else " Not met.")
    ]
    lines.append(
        "- Lists and sums are the weakest skills: number manipulation in a tokenizer that splits"
        " numbers unevenly (' 24' is one token, ' 23' two); wrong answers copy the format and get a"
        " number wrong by one or two. In the recipe search they were still rising at the last"
        " checkpoint (table above): the recipe is not at a measured plateau, and more steps or"
        " examples would likely raise them further."
    )
    if info["general_ce"] > math.log(info["vocab_size"]):
        lines.append(
            f"- Forgetting: the general-text CE ({info['general_ce']:.2f}) is above a uniform guess:"
            " SFT overwrote the language model."
        )
    lines.append(
        "- A 2 M-parameter model of a synthetic world: it answers the five instruction skills in the"
        " course format and nothing else; fact questions about people it never read about are guesses."
    )
    return "\n".join(lines)


def main() -> None:
    """Command line: rebuild data/chat_model/ (weights, tokenizer, build_info.json, README.md), or
    (--search) run one recipe-search configuration on the validation set and append it to the log."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(CHAT_MODEL_DIR))
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument(
        "--search",
        metavar="JSON",
        help='e.g. \'{"name": "A", "lr": 1e-3, "steps": 1600, "evals": [800, 1600]}\'',
    )
    args = ap.parse_args()
    if args.search:
        run = search_run(**json.loads(args.search))
        log = [r for r in load_search() if r["name"] != run["name"]] + [run]
        SEARCH_LOG.write_text(json.dumps(log, indent=1) + "\n")
        return
    info = build(args.out, args.steps)
    print(json.dumps({k: v for k, v in info.items() if k != "val"}, indent=1))


if __name__ == "__main__":
    main()
