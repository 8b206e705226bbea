"""A real open-weight model, SmolLM2-135M-Instruct: its answers judged against the course world's truth,
and the LoRA run that teaches it to answer from notes in the course's short format.

Taught in chapter 13 (a real model). The model loads with `models.load_model("smollm2")` (converted
once by `make real-model`); its 4-bit file format is decoded by `quantization.dequantize_q4_1`. The
functions between the export markers are the lesson's `#| export course_lib.real_model` cells,
copied verbatim (`make lib`). The LoRA run over five seeds is shipped in
data/real_model_lora_sweep.json (`make real-model-sweep`, python -m course_lib.build.real_model --sweep).
"""

from __future__ import annotations

import json
import re
from typing import Sequence

import torch
from peft import LoraConfig, get_peft_model

from course_lib.data import DATA_DIR, load_jsonl
from course_lib.evaluation import exact_match
from course_lib.generation import generate
from course_lib.sft import sft_batches
from course_lib.training import History, TrainConfig, train
from course_lib.world.entities import attribute_values
from course_lib.world.instructions import parse_fact_question

SWEEP_FILE = DATA_DIR / "real_model_lora_sweep.json"


def check_qa_records(records: Sequence[dict]) -> list[dict]:
    """Question records with a chat (`messages`: user turn, then the answer) and the `output`."""
    if isinstance(records, dict) or not records:
        raise ValueError(
            "pass a non-empty list of records, e.g. load_jsonl('context_qa_train')[:8]"
        )
    for r in records:
        if not isinstance(r, dict) or "messages" not in r or "output" not in r:
            raise ValueError(
                "each record needs 'messages' (the user turn, then the assistant's answer) and "
                f"'output' (the answer), as in data/context_qa_train.jsonl; got {r!r:.80}"
            )
    return list(records)


def candidates_for(question: str) -> list[str]:
    """Every value the world allows for the attribute a fact question asks about (8 towns, 12 jobs, …)."""
    parsed = parse_fact_question(question.strip().splitlines()[-1])
    if parsed is None:
        raise ValueError(f"not one of the course's fact questions: {question!r:.80}")
    return attribute_values(parsed[0])


def load_sweep(path=SWEEP_FILE) -> dict:
    """The shipped LoRA seed sweep (config, code version, numbers per seed, build time)."""
    try:
        return json.loads(open(path, encoding="utf-8").read())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path} is missing: rebuild it with `make real-model-sweep` "
            "(python -m course_lib.build.real_model --sweep, about 5 minutes on 2 cores)"
        ) from None


# --- begin export: notebooks/13_real_model ---
ABSTAIN = re.compile(  # what a model says when it does not know
    r"not sure|do(n't| not) know|no information|not aware|can(not|'t)|unable to"
    r"|not (familiar|mentioned|specified)"
)


def verdict(reply: str, gold: str, candidates: Sequence[str]) -> str:
    """'correct' (names the gold value and no other candidate), 'abstains' (says it does not know)
    or 'wrong' (anything else: a confident false answer). Plurals and -man count: fisher(man)."""
    text = reply.lower()
    named = {
        c.lower()
        for c in candidates
        if re.search(rf"\b{re.escape(c.lower())}(s|es|man|men)?\b", text)
    }
    if named == {gold.lower()}:
        return "correct"
    if ABSTAIN.search(text):
        return "abstains"
    return "wrong"


NOTES = dict(n_train=300, n_heldout=48, steps=24, batch_size=4, lr=1e-3, r=8, alpha=16)
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def notes_split(n_train: int = NOTES["n_train"], n_heldout: int = NOTES["n_heldout"]):
    """(training, held-out) records of context_qa: the first n_train and the last n_heldout."""
    records = load_jsonl("context_qa_train")
    if n_train + n_heldout > len(records):
        raise ValueError(f"only {len(records)} records: n_train + n_heldout is too large")
    return records[:n_train], records[-n_heldout:]


def notes_scores(model, tokenizer, records, max_new_tokens: int = 20) -> dict:
    """Greedy replies to the records' questions: exact match with the short answer, share with the
    correct content (`verdict`), and the replies."""
    records = check_qa_records(records)
    prompts = [r["messages"][0]["content"] for r in records]
    replies = generate(model, tokenizer, prompts, chat=True, max_new_tokens=max_new_tokens)
    golds = [r["output"] for r in records]
    verdicts = [verdict(x, g, candidates_for(p)) for x, g, p in zip(replies, golds, prompts)]
    correct = verdicts.count("correct") / len(verdicts)
    return {"exact": exact_match(replies, golds), "correct": correct, "replies": replies}


def lora_notes_sft(model, tokenizer, records, seed: int, steps: int = NOTES["steps"]):
    """Wrap `model` in a fresh LoRA (peft, r=8 on every linear layer) and train it on the records'
    chats with the loss on the answers; returns (peft model, training history)."""
    records = check_qa_records(records)
    torch.manual_seed(seed)  # the LoRA matrices' initialisation
    config = LoraConfig(
        r=NOTES["r"], lora_alpha=NOTES["alpha"], target_modules=LORA_TARGETS, task_type="CAUSAL_LM"
    )
    peft_model = get_peft_model(model, config)
    batches = sft_batches(tokenizer, records, NOTES["batch_size"], seed=seed)
    settings = TrainConfig(lr=NOTES["lr"], max_steps=steps, progress=False)
    history: History = train(peft_model, batches, settings)
    return peft_model, history


# --- end export ---
