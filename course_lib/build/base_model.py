"""The recipe that pretrains the course's base model (a small LlamaForCausalLM) and writes its model card.

Taught in chapter 00 (its model card) and chapter 01 (pretraining vs fine-tuning).
Rebuild from scratch with `make base-model` (python -m course_lib.build.base_model).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from course_lib.models import BASE_MODEL_DIR, load_model, new_model

PRETRAIN = dict(
    train_docs=200_000,
    tokenizer_docs=30_000,
    block_size=128,
    batch_size=32,
    max_steps=2400,
    lr=2e-3,
    warmup_steps=100,
    val_docs=2000,
    seed=0,
)


def generator_entropy(docs: list[dict], tokenizer) -> float:
    """The generator's entropy in nats per token: -sum(log p(doc)) / tokens predicted.

    An upper bound on the entropy of the text (different derivations that give
    the same text are counted apart), so a perfect model's loss is at most this.
    """
    nats = -sum(d["logp"] for d in docs)
    tokens = sum(len(tokenizer(d["text"])["input_ids"]) for d in docs)  # incl. <bos>, which
    return nats / tokens  # stands in for <eos>


def corpus_fact_recall(model, tokenizer) -> float:
    """Share of the corpus's (person, attribute) facts for which the model ranks the true value first
    (what pretraining memorised; `harness.fact_recall` probes the new facts taught by fine-tuning)."""
    from course_lib.evaluation import choose_many
    from course_lib.world.documents import fact_statement
    from course_lib.world.entities import FACT_ATTRIBUTES, attribute_values, make_world

    w = make_world()
    facts = [(p, a) for p in w.people for a in FACT_ATTRIBUTES]
    prompts = [fact_statement(p, a, 0)[0] for p, a in facts]
    cands = [attribute_values(a, w) for _, a in facts]
    picks = choose_many(model, tokenizer, prompts, cands)
    return sum(pick == p.fact(a) for pick, (p, a) in zip(picks, facts)) / len(facts)


def build(out_dir: Path = BASE_MODEL_DIR, settings: dict = PRETRAIN, progress: bool = True) -> dict:
    """Train tokenizer and model from scratch, measure them, and save both with a model card."""
    from course_lib.build.tokenizer import train_tokenizer
    from course_lib.environment import set_seed
    from course_lib.evaluation import cross_entropy
    from course_lib.training import TrainConfig, lm_batches, pack_tokens, train
    from course_lib.world.datasets import corpus_documents

    s = dict(settings)
    set_seed(s["seed"])
    t0 = time.perf_counter()
    docs = [d["text"] for d in corpus_documents("train", s["train_docs"])]
    tok = train_tokenizer(docs[: s["tokenizer_docs"]])
    ids = tok(docs)["input_ids"]  # each starts with <bos>
    blocks = pack_tokens(ids, s["block_size"], eos_id=tok.eos_token_id)
    model = new_model(tok, s["seed"])
    val = list(corpus_documents("val", s["val_docs"]))
    val_texts = [d["text"] for d in val]
    cfg = TrainConfig(
        lr=s["lr"],
        max_steps=s["max_steps"],
        warmup_steps=s["warmup_steps"],
        eval_every=s["max_steps"] // 8,
        progress=progress,
    )
    hist = train(
        model,
        lm_batches(blocks, s["batch_size"], seed=s["seed"]),
        cfg,
        eval_fn=lambda m: cross_entropy(m, tok, val_texts[:300]),
    )
    train_seconds = time.perf_counter() - t0

    report = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "tokens_seen": s["max_steps"] * s["batch_size"] * s["block_size"],
        "train_tokens_available": int(blocks.numel()),
        "train_seconds": round(train_seconds, 1),
        "torch_threads": torch.get_num_threads(),
        "history": {
            "steps": hist.eval_steps,
            "val_cross_entropy": [round(x, 4) for x in hist.eval],
        },
        "settings": s,
    }
    report.update(measure(model, tok, s))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return write_card(out_dir, report, model, tok)


def write_card(out_dir: Path, report: dict, model, tok) -> dict:
    """Add sample generations to the report; write metrics.json and the model card README.md."""
    from course_lib.generation import generate
    from course_lib.world.entities import make_world

    person = make_world().people[0]
    prompts = [
        f"{person.name} lives in",
        "On Monday morning,",
        "A customer wrote about the",
        f"The people of {person.town} include",
    ]
    greedy = generate(model, tok, prompts, chat=False, max_new_tokens=40)
    sampled = generate(
        model, tok, prompts, chat=False, max_new_tokens=40, temperature=0.8, top_p=0.95
    )
    report["samples_greedy"] = dict(zip(prompts, greedy))
    report["samples_sampled"] = dict(zip(prompts, sampled))
    (out_dir / "metrics.json").write_text(json.dumps(report, indent=1) + "\n")
    (out_dir / "README.md").write_text(model_card(report, model.config))
    return report


def measure(model, tok, settings: dict) -> dict:
    """The model's quality figures: validation loss, unigram baseline, the floor, fact recall."""
    from course_lib.evaluation import cross_entropy, unigram_cross_entropy
    from course_lib.world.datasets import corpus_documents

    val = list(corpus_documents("val", settings["val_docs"]))
    val_texts = [d["text"] for d in val]
    train_texts = [d["text"] for d in corpus_documents("train", 20000)]
    val_ids = [i[1:] + [tok.eos_token_id] for i in tok(val_texts)["input_ids"]]
    train_ids = [i[1:] + [tok.eos_token_id] for i in tok(train_texts)["input_ids"]]
    ce = cross_entropy(model, tok, val_texts)
    return {
        "val_cross_entropy": round(ce, 4),
        "val_perplexity": round(math.exp(ce), 3),
        "unigram_cross_entropy": round(unigram_cross_entropy(train_ids, val_ids, len(tok)), 4),
        "generator_entropy": round(generator_entropy(val, tok), 4),
        "fact_recall": round(corpus_fact_recall(model, tok), 4),
    }


def model_card(r: dict, config) -> str:
    """The model card (README.md) of the base model, from its measured report."""
    s = r["settings"]
    greedy = "\n".join(f"- *{p}* → {t!r}" for p, t in r["samples_greedy"].items())
    sampled = "\n".join(f"- *{p}* → {t!r}" for p, t in r["samples_sampled"].items())
    return f"""# course base model

A small `LlamaForCausalLM` (RoPE, RMSNorm, SwiGLU; modules named `q_proj`, `k_proj`,
`v_proj`, `o_proj`, `gate_proj`, `up_proj`, `down_proj`, like the real Llama family),
pretrained from scratch on the course world's general-domain corpus. Rebuild it with
`make base-model`; every figure below is measured by that command and saved in `metrics.json`.

Load it with plain transformers, nothing else:

```python
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained("data/base_model")
tokenizer = AutoTokenizer.from_pretrained("data/base_model")
```

## Architecture
| setting | value |
|---|---|
| parameters | {r["parameters"]:,} (embeddings tied with the output layer) |
| layers / hidden / MLP | {config.num_hidden_layers} / {config.hidden_size} / {config.intermediate_size} |
| attention heads (key/value heads) | {config.num_attention_heads} ({config.num_key_value_heads}) |
| vocabulary | {config.vocab_size} (byte-level BPE trained on {s["tokenizer_docs"]:,} corpus documents) |
| context | {config.max_position_embeddings} positions (trained on blocks of {s["block_size"]}) |

Special tokens: `<|bos|>` (added by the tokenizer), `<|end|>` (end of document and of a chat
turn; the EOS token), `<|pad|>`, and `<|system|>`, `<|user|>`, `<|assistant|>` for the chat
template. The role tokens never occur in pretraining: their embeddings are untrained until
instruction tuning (chapter 08), exactly as with real base models' reserved tokens.

## Training
AdamW (lr {s["lr"]}, weight decay 0.01), {s["warmup_steps"]} warm-up steps then cosine decay,
gradient clipping at 1.0, batch {s["batch_size"]} × {s["block_size"]} tokens, {s["max_steps"]} steps:
**{r["tokens_seen"]:,} tokens seen** ({r["train_tokens_available"]:,} distinct training tokens,
from {s["train_docs"]:,} documents). Training time: **{r["train_seconds"] / 60:.1f} min** on a CPU with
{r["torch_threads"]} threads (data generation and tokenizer included).

## Quality (validation split of the corpus, {s["val_docs"]:,} documents, each scored alone)
| measure | nats / token |
|---|---|
| unigram model (token frequencies, no context) | {r["unigram_cross_entropy"]:.3f} |
| **this model** | **{r["val_cross_entropy"]:.3f}** (perplexity {r["val_perplexity"]:.2f}) |
| entropy of the generator (the floor) | {r["generator_entropy"]:.3f} |

The model's loss is {r["val_cross_entropy"] / r["unigram_cross_entropy"]:.0%} of the unigram
model's. The floor is the generator's own uncertainty: the course knows the probability of
every random choice that produced a document, so -log p(document) summed over the split
and divided by its tokens is the entropy rate no model can beat (an upper bound on it,
strictly: two derivations of the same text are counted apart). The model is
{r["val_cross_entropy"] - r["generator_entropy"]:.3f} nats/token above the floor. What it had to
memorise to get there: the world's facts. It ranks the true value first for
**{r["fact_recall"]:.0%}** of the {4 * 30} (person, attribute) facts of the corpus (prompt
"<name> lives in", etc., all candidate values ranked by log-probability).

## Samples
Greedy:
{greedy}

Sampled (temperature 0.8, top-p 0.95):
{sampled}

## Intended use and limits
A teaching model: it knows only the course world (30 people, 8 towns, 24 products, daily
life, customer comments). It has never seen clinic notes, instructions or chat turns; the
chapters teach it those. It is not a general English model.
"""


def main() -> None:
    """Command line: rebuild the tokenizer and base model into data/base_model/."""
    ap = argparse.ArgumentParser(description="Pretrain the course base model from scratch.")
    ap.add_argument("--out", type=Path, default=BASE_MODEL_DIR)
    ap.add_argument(
        "--steps",
        type=int,
        default=PRETRAIN["max_steps"],
        help="optimizer steps (fewer for a quick smoke run)",
    )
    ap.add_argument(
        "--card-only",
        action="store_true",
        help="re-measure an existing model and rewrite metrics.json and README.md",
    )
    args = ap.parse_args()
    if args.card_only:
        model, tok = load_model("causal", args.out)
        report = json.loads((Path(args.out) / "metrics.json").read_text())
        report.update(measure(model, tok, report["settings"]))
        write_card(Path(args.out), report, model, tok)
        print(f"rewrote the model card in {args.out}")
        return
    report = build(
        args.out,
        dict(
            PRETRAIN,
            max_steps=args.steps,
            warmup_steps=min(PRETRAIN["warmup_steps"], args.steps // 10),
        ),
    )
    print(json.dumps({k: v for k, v in report.items() if not k.startswith("samples")}, indent=1))


if __name__ == "__main__":
    main()
