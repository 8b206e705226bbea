"""Every fine-tuning method of the course on one task, measured the same way.

Taught in chapter 12 (choosing a method); the yardstick is defined here and used from chapter 04 on.

**The yardstick** (`yardstick`): clinic notes *after a vocabulary stage*. Clinic notes are full of
tokens the base model never saw in pretraining; their tied embeddings were pushed down, so the base
scores 12.5 nats/token, worse than a uniform guess (ln 1399 = 7.24), and any method that cannot
train the embedding matrix stalls at 6.3-6.6 whatever its size. Comparing PEFT methods there
measures the embedding, not the method. So stage 1 (`vocabulary_stage`) trains only the token
embeddings on the notes, once, and freezes them; stage 2 compares methods from that base (which
beats the uniform and unigram references by far) for `YARDSTICK["steps"]` steps, scored by the loss
on clinic_val[:100]; learning rates are chosen on clinic_val[100:200] (`YARDSTICK_LR`, from the
shipped sweep `peft_lr`). It is the two-stage recipe used for real vocabulary extensions.

`run_method` trains one method on the same batches as every other and returns one row: trainable
parameters, training memory counted from real tensors, median seconds per step, validation loss,
and the bytes of the artefact you ship.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import math
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from course_lib.data import load_jsonl
from course_lib.evaluation import cross_entropy, unigram_cross_entropy
from course_lib.measure import LapTimer, count_parameters, folder_bytes, tensor_bytes
from course_lib.memory import MemoryEstimate, saved_activation_bytes
from course_lib.qlora import model_bytes
from course_lib.training import TrainConfig, make_optimizer, text_batches, train


def optimizer_state_bytes(model: nn.Module) -> int:
    """Bytes of AdamW's state after one step, measured on detached copies of the trainable parameters."""
    params = [
        nn.Parameter(p.detach().clone())
        for p in {id(q): q for q in model.parameters() if q.requires_grad}.values()
    ]
    if not params:
        raise ValueError("the model has no trainable parameters")
    twin = nn.ParameterList(params)
    opt = make_optimizer(twin, lr=1e-3, weight_decay=0.0)
    for p in twin:
        p.grad = torch.zeros_like(p)
    opt.step()
    return tensor_bytes(t for s in opt.state.values() for t in s.values() if torch.is_tensor(t))


def training_memory_counted(model: nn.Module, batch: dict) -> MemoryEstimate:
    """Training memory for one step on `batch`, in bytes, each part counted from real tensors.

    weights: every parameter and buffer (4-bit base: packed codes + quantization constants,
    `qlora.model_bytes`); gradients: one per trainable parameter; optimizer: AdamW's two moments and
    step counters; activations: the tensors autograd saves for backward (`saved_activation_bytes`).
    Unlike `memory.measure_step` it leaves the model untouched (no step, no gradients kept)."""
    grads = tensor_bytes(p for p in model.parameters() if p.requires_grad)
    activations = saved_activation_bytes(model, batch)
    model.zero_grad(set_to_none=True)
    return MemoryEstimate(
        weights=model_bytes(model)["total"],
        gradients=grads,
        optimizer=optimizer_state_bytes(model),
        activations=activations,
    )


def artefact_bytes(model: nn.Module, what: str = "auto") -> int:
    """Bytes of the files you would ship after training, written to a temporary folder.

    what="full": the whole model (save_pretrained); "peft": the adapter files peft's save_pretrained
    writes (weights + config, its README model card left out); "trainable": a safetensors file of the
    trainable tensors only (freeze-tuning, the course's own adapters); "auto" picks peft for peft
    models, else trainable. The files are measured with `measure.folder_bytes`.
    """
    from safetensors.torch import save_file

    if what == "auto":
        what = "peft" if hasattr(model, "peft_config") else "trainable"
    if what not in ("full", "peft", "trainable"):
        raise ValueError(f"what must be 'full', 'peft', 'trainable' or 'auto', got {what!r}")
    with tempfile.TemporaryDirectory() as folder:
        if what in ("full", "peft"):
            model.save_pretrained(folder)
        else:
            named = {n: p for n, p in model.named_parameters() if p.requires_grad}
            if not named:
                raise ValueError("nothing is trainable, so there is nothing to ship")
            save_file(
                {n: p.detach().contiguous() for n, p in named.items()},
                str(Path(folder) / "trained.safetensors"),
            )
        (Path(folder) / "README.md").unlink(missing_ok=True)  # peft's model card: not the artefact
        return folder_bytes(folder)


# ----------------------------------------------------------------------------------------------
# The yardstick: clinic notes after a vocabulary stage
# ----------------------------------------------------------------------------------------------

VOCAB_STAGE = {"steps": 40, "lr": 1e-2, "batch_size": 16, "warmup_steps": 2, "seed": 1234}
YARDSTICK = {"steps": 20, "batch_size": 16, "warmup_steps": 2, "n_eval": 100, "n_tune": 100}


def vocabulary_stage(
    model: nn.Module,
    tokenizer,
    texts: Sequence[str],
    steps: int = VOCAB_STAGE["steps"],
    lr: float = VOCAB_STAGE["lr"],
    seed: int = VOCAB_STAGE["seed"],
) -> nn.Module:
    """Train only the token embeddings (tied to the output layer) on `texts`, then freeze all.

    Stage 1 of adapting to a new vocabulary: the rows of tokens the model never saw move first,
    nothing else changes. Returns `model` (trained in place, every parameter frozen)."""
    emb = model.get_input_embeddings()
    if emb is None:
        raise ValueError("the model has no input embeddings to train")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    model.requires_grad_(False)
    emb.weight.requires_grad_(True)
    config = TrainConfig(
        lr=lr, max_steps=steps, warmup_steps=VOCAB_STAGE["warmup_steps"], progress=False
    )
    train(model, text_batches(tokenizer, list(texts), VOCAB_STAGE["batch_size"], seed=seed), config)
    return model.requires_grad_(False).eval()


def new_token_ids(tokenizer, texts: Sequence[str]) -> list[int]:
    """Ids of the tokens of `texts` that never occur in the pretraining sample (corpus_sample)."""

    def ids(rows):
        return {
            i
            for t in rows
            for i in tokenizer(t + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        }

    seen = ids(r["text"] for r in load_jsonl("corpus_sample"))
    return sorted(ids(texts) - seen)


@dataclass
class Yardstick:
    """The PEFT yardstick: a frozen base after the vocabulary stage, its splits and references."""

    base: nn.Module
    tokenizer: object
    train: list[str]
    tune: list[str]  # for choosing learning rates
    eval: list[str]  # the reported split
    references: dict[str, float]  # nats/token on `eval`


CACHE_DIR = Path(__file__).resolve().parent.parent / ".cache"  # gitignored


def _yardstick_key(device: str) -> str:
    """Hash of everything the vocabulary stage depends on: settings, base weights, clinic data."""
    from course_lib.data import DATA_DIR
    from course_lib.models import BASE_MODEL_DIR

    digest = hashlib.sha256(repr((VOCAB_STAGE, YARDSTICK, device)).encode())
    for path in sorted(BASE_MODEL_DIR.glob("*")) + [DATA_DIR / "clinic_train.jsonl"]:
        digest.update(path.read_bytes())
    digest.update((DATA_DIR / "clinic_val.jsonl").read_bytes())
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=2)
def _yardstick_state(device: str) -> tuple[dict, dict[str, float]]:
    """The vocabulary stage's result, computed once per machine (~20 s) and kept in .cache/."""
    path = CACHE_DIR / f"yardstick-{_yardstick_key(device)}.pt"
    if path.exists():
        saved = torch.load(path, map_location=device, weights_only=True)
        return saved["state"], saved["refs"]
    state, refs = _compute_yardstick_state(device)
    CACHE_DIR.mkdir(exist_ok=True)
    partial = path.with_suffix(".partial")
    torch.save({"state": state, "refs": refs}, partial)
    partial.replace(path)  # written whole or not at all
    return state, refs


def _compute_yardstick_state(device: str) -> tuple[dict, dict[str, float]]:
    from course_lib.models import load_model

    model, tok = load_model("causal", device=device)
    train_texts, val = _clinic_texts()
    ev = val[: YARDSTICK["n_eval"]]
    before = cross_entropy(model, tok, ev)
    torch.manual_seed(VOCAB_STAGE["seed"])
    vocabulary_stage(model, tok, train_texts)
    ids = [tok(t + tok.eos_token, add_special_tokens=False)["input_ids"] for t in ev]
    train_ids = [tok(t + tok.eos_token, add_special_tokens=False)["input_ids"] for t in train_texts]
    refs = {
        "uniform (ln V)": math.log(len(tok)),
        "unigram (fitted on clinic_train)": unigram_cross_entropy(train_ids, ids, len(tok)),
        "base model": before,
        "after the vocabulary stage": cross_entropy(model, tok, ev),
    }
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return state, refs


def _clinic_texts() -> tuple[list[str], list[str]]:
    return [r["text"] for r in load_jsonl("clinic_train")], [
        r["text"] for r in load_jsonl("clinic_val")
    ]


def yardstick(device: str | torch.device = "cpu") -> Yardstick:
    """The PEFT yardstick, with a fresh copy of its base model (the vocabulary stage runs once).

    base: the course model after `vocabulary_stage` on clinic_train, every parameter frozen;
    train: clinic_train; eval: clinic_val[:100] (report on it); tune: clinic_val[100:200]
    (choose hyper-parameters on it); references: uniform, unigram, the base model before and
    after the vocabulary stage, in nats/token on `eval`."""
    from course_lib.models import load_model

    state, refs = _yardstick_state(str(device))
    model, tok = load_model("causal", device=device)
    model.load_state_dict(state)
    train_texts, val = _clinic_texts()
    n_eval, n_tune = YARDSTICK["n_eval"], YARDSTICK["n_tune"]
    return Yardstick(
        base=model.requires_grad_(False).eval(),
        tokenizer=tok,
        train=train_texts,
        tune=val[n_eval : n_eval + n_tune],
        eval=val[:n_eval],
        references=dict(refs),
    )


def yardstick_loss(
    model: nn.Module,
    ys: Yardstick,
    lr: float,
    seed: int = 0,
    split: str = "eval",
    steps: int | None = None,
    on_step: Callable | None = None,
) -> float:
    """Train `model` (built on a copy of ys.base) on the yardstick, return its loss on `split`.

    `seed` fixes the order of the batches; seed the model's own initialisation before building it.
    split "eval" is the reported split, "tune" the one to choose learning rates on."""
    if split not in ("eval", "tune"):
        raise ValueError(f"split must be 'eval' (report) or 'tune' (choose lrs), got {split!r}")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("nothing in the model is trainable: build a method on a copy of ys.base")
    steps = steps or YARDSTICK["steps"]
    config = TrainConfig(
        lr=lr, max_steps=steps, warmup_steps=YARDSTICK["warmup_steps"], progress=False
    )
    batches = text_batches(ys.tokenizer, ys.train, YARDSTICK["batch_size"], seed=seed)
    train(model, batches, config, on_step=on_step)
    return cross_entropy(model, ys.tokenizer, ys.eval if split == "eval" else ys.tune)


# Learning rates on the yardstick, chosen on the tuning split by the shipped sweep `peft_methods`
# (three rates per method, three seeds) and `peft_methods_edges` (one rate more beyond the grid's
# edge wherever the choice fell on it); `chosen_lr` reads the choice off the pooled records
# (`lr_records`), and a test checks that these constants equal it. LoRA's rate serves every LoRA
# arm (α/r keeps it valid across ranks), the Houlsby adapter's every adapter placement.
YARDSTICK_LR = {
    "full fine-tuning": 1e-3,
    "LoRA q,v r=8": 3e-3,
    "(IA)³": 0.1,
    "Houlsby m=8": 3e-3,
    "prompt tuning (text init)": 0.03,
    "prefix tuning": 0.3,
    "P-tuning": 3e-3,
}
# the same for the cold clinic notes of chapter 04 (no vocabulary stage), sweep `peft_vocab`
VOCAB_LR = {
    "LoRA q,v r=8": 3e-2,
    "embedding only": 3e-2,
    "LoRA q,v r=8 + embeddings": 1e-2,
    "full fine-tuning": 1e-2,
}


def lr_records(kind: str = "yardstick") -> list[dict]:
    """The shipped learning-rate sweeps, main grid first, then the rates added beyond its edges.

    `kind` "yardstick": `peft_methods` + `peft_methods_edges` (chapters 04, 06, 07, 12); "vocab":
    the cold notes, `peft_vocab` + `peft_vocab_edges` (chapter 04). Pass the list to `chosen_lr`,
    `lr_line` and `at_chosen_lr`, which pool the arms of both."""
    from course_lib.sweeps import load

    names = {"yardstick": "peft_methods", "vocab": "peft_vocab"}
    if kind not in names:
        raise ValueError(f"kind must be one of {sorted(names)}, got {kind!r}")
    return [load(names[kind]), load(names[kind] + "_edges")]


def chosen_lr(record: dict | list[dict], method: str, metric: str = "tune_loss") -> float:
    """The learning rate with the lowest mean `metric` over seeds for `method` in lr sweep record(s).

    Arms are named "<method> | lr <rate>" (`build.sweeps_peft.lr_arm`); a list of records pools
    their arms (e.g. the main grid and the rates added where the grid's best was at its edge)."""
    records = [record] if isinstance(record, dict) else list(record)
    prefix = f"{method} | lr "
    mean: dict[float, float] = {}
    for rec in records:
        for arm in rec["arms"]:
            if arm.startswith(prefix):
                per_seed = rec["results"][arm]
                mean[float(arm[len(prefix) :])] = statistics.fmean(
                    per_seed[str(s)][metric] for s in rec["seeds"]
                )
    if not mean:
        methods = sorted({a.split(" | ")[0] for rec in records for a in rec["arms"]})
        names = [rec["name"] for rec in records]
        raise KeyError(f"no learning-rate arms for {method!r} in {names}; methods: {methods}")
    return min(mean, key=mean.get)


@dataclass
class MethodSpec:
    """How to build one method from the base model, its learning rate and what it ships."""

    build: Callable[[nn.Module], nn.Module]
    lr: float
    artefact: str = "auto"


def _lora_config(**kw):
    from peft import LoraConfig

    return LoraConfig(
        r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM", **kw
    )


def _full(base):
    return copy.deepcopy(base).requires_grad_(True)


def _freeze(base):
    from course_lib.freezing import freeze_all_but_top

    return freeze_all_but_top(copy.deepcopy(base), 1)


def _lora(base):
    from peft import get_peft_model

    return get_peft_model(copy.deepcopy(base), _lora_config())


def _qlora(base):
    """LoRA on a 4-bit copy of `base` itself (saved to a temporary folder, loaded in NF4)."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    from course_lib.models import load_model

    device = next(base.parameters()).device
    with tempfile.TemporaryDirectory() as folder:
        base.save_pretrained(folder)
        q4 = load_model("4bit", path=folder, device=device)[0]
    q4 = prepare_model_for_kbit_training(q4, use_gradient_checkpointing=False)
    return get_peft_model(q4, _lora_config())


def _adapters(base):
    from course_lib.adapters import add_adapter

    return add_adapter(copy.deepcopy(base), "clinic", "houlsby", bottleneck=8)


def _ia3(base):
    from peft import IA3Config, get_peft_model

    return get_peft_model(
        copy.deepcopy(base),
        IA3Config(
            target_modules=["k_proj", "v_proj", "down_proj"],
            feedforward_modules=["down_proj"],
            task_type="CAUSAL_LM",
        ),
    )


PROMPT_INIT_TEXT = (
    "Clinic note. Patient presents with symptoms; assessment and plan follow."  # chapter 07
)


def _prompt(base):
    from peft import PromptTuningConfig, get_peft_model

    from course_lib.models import BASE_MODEL_DIR

    return get_peft_model(
        copy.deepcopy(base),
        PromptTuningConfig(
            task_type="CAUSAL_LM",
            num_virtual_tokens=20,
            prompt_tuning_init="TEXT",
            prompt_tuning_init_text=PROMPT_INIT_TEXT,
            tokenizer_name_or_path=str(BASE_MODEL_DIR),
        ),
    )


def _prefix(base):
    from peft import PrefixTuningConfig, get_peft_model

    return get_peft_model(
        copy.deepcopy(base), PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=20)
    )


# Default rates: the yardstick's choices (YARDSTICK_LR); freeze-tuning takes full fine-tuning's
# and QLoRA LoRA's (not swept separately). Pass `lr=` to run_method to override.
METHODS: dict[str, MethodSpec] = {
    "full fine-tuning": MethodSpec(_full, YARDSTICK_LR["full fine-tuning"], "full"),
    "freeze-tuning (top block + head)": MethodSpec(
        _freeze, YARDSTICK_LR["full fine-tuning"], "trainable"
    ),
    "LoRA q,v r=8": MethodSpec(_lora, YARDSTICK_LR["LoRA q,v r=8"], "peft"),
    "QLoRA q,v r=8 (NF4 base)": MethodSpec(_qlora, YARDSTICK_LR["LoRA q,v r=8"], "peft"),
    "adapters (Houlsby m=8)": MethodSpec(_adapters, YARDSTICK_LR["Houlsby m=8"], "trainable"),
    "(IA)³": MethodSpec(_ia3, YARDSTICK_LR["(IA)³"], "peft"),
    "prompt tuning (20 tokens)": MethodSpec(
        _prompt, YARDSTICK_LR["prompt tuning (text init)"], "peft"
    ),
    "prefix tuning (20 tokens)": MethodSpec(_prefix, YARDSTICK_LR["prefix tuning"], "peft"),
}


def run_method(
    name: str,
    base: nn.Module,
    tokenizer,
    train_texts: Sequence[str],
    eval_texts: Sequence[str],
    steps: int = 20,
    batch_size: int = 16,
    lr: float | None = None,
    seed: int = 0,
) -> dict:
    """Train METHODS[name] for `steps` steps on the same batches as every method; return one row.

    The row: method, lr, trainable parameters, memory parts and total (bytes, `training_memory_counted`
    on the first batch), step_s (median seconds between optimizer steps, `measure.LapTimer`, the first
    step left out), loss (validation nats/token), artefact (bytes shipped), and the trained model
    under "model"."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {list(METHODS)}")
    if not isinstance(steps, int) or steps < 3:
        raise ValueError(
            f"steps must be an int >= 3 (the step time is a median over steps 2..n), got {steps!r}"
        )
    spec = METHODS[name]
    torch.manual_seed(seed)
    model = spec.build(base)
    first = next(iter(text_batches(tokenizer, list(train_texts), batch_size, seed=seed)))
    memory = training_memory_counted(model.train(), first)
    config = TrainConfig(lr=lr or spec.lr, max_steps=steps, warmup_steps=2, progress=False)
    laps = LapTimer()
    train(
        model,
        text_batches(tokenizer, list(train_texts), batch_size, seed=seed),
        config,
        on_step=laps.lap,
    )
    return {
        "method": name,
        "lr": config.lr,
        "trainable": count_parameters(model, trainable_only=True),
        "memory": memory.total,
        "weights": memory.weights,
        "gradients": memory.gradients,
        "optimizer": memory.optimizer,
        "activations": memory.activations,
        "step_s": statistics.median(laps.seconds()[1:]),
        "loss": cross_entropy(model, tokenizer, list(eval_texts)),
        "artefact": artefact_bytes(model, spec.artefact),
        "model": model,
    }


def sweep_table(
    record: dict,
    arms: dict[str, str],
    metric: str = "eval_loss",
    references: dict[str, float] | None = None,
    extra: str | None = None,
) -> str:
    """A text table of shipped sweep arms: label, mean ± sd and 95 % interval over seeds.

    `arms` maps the label to print to the arm's name in the record; `extra` adds the mean of
    another metric (e.g. "trainable"); `references` adds rows with one number (uniform, unigram)."""
    from course_lib.sweeps import summary

    width = max(len(k) for k in [*arms, *(references or {})])
    head = f"{'':>{width}}  {metric:>15}  {'95 % interval':>17}" + (
        f"  {extra:>10}" if extra else ""
    )
    lines = [head + f"  seeds {len(record['seeds'])}"]
    for label, arm in arms.items():
        s = summary(record, arm, metric)
        line = f"{label:>{width}}  {s.fmt(3):>15}  [{s.lo:6.3f}, {s.hi:6.3f}]"
        if extra:
            line += f"  {summary(record, arm, extra).mean:>10,.0f}"
        lines.append(line)
    for label, value in (references or {}).items():
        lines.append(f"{label:>{width}}  {value:>15.3f}  {'(reference)':>17}")
    return "\n".join(lines)


def lr_line(records: dict | list[dict], method: str, metric: str = "tune_loss") -> str:
    """One line: each learning rate tried for `method` with its mean ± sd `metric`, and the choice."""
    from course_lib.sweeps import summary

    records = [records] if isinstance(records, dict) else list(records)
    prefix = f"{method} | lr "
    cells = sorted(
        (float(a[len(prefix) :]), summary(rec, a, metric).fmt())
        for rec in records
        for a in rec["arms"]
        if a.startswith(prefix)
    )
    chosen = chosen_lr(records, method, metric)
    edge = " (an edge of the grid)" if chosen in (cells[0][0], cells[-1][0]) else ""
    return "   ".join(f"{lr:g}: {v}" for lr, v in cells) + f"   → {chosen:g}{edge}"


def at_chosen_lr(records: dict | list[dict], method: str) -> tuple[dict, str]:
    """(record, arm) of `method` at its chosen learning rate, for `sweeps.summary` / `values`."""
    records = [records] if isinstance(records, dict) else list(records)
    arm = f"{method} | lr {chosen_lr(records, method):g}"
    return next(rec for rec in records if arm in rec["arms"]), arm
