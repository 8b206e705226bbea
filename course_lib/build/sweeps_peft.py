"""Seed sweeps of the PEFT chapters 04, 06 and 07 (COURSE_DESIGN §10), shipped in data/sweeps/.

Every sweep runs on the PEFT yardstick of `course_lib.comparison` (clinic notes after a vocabulary
stage; 20 steps of 16 notes; loss on clinic_val[:100], learning rates chosen on clinic_val[100:200])
except `peft_vocab`, which is the cold clinic task that motivates the yardstick. Seeds 0, 1, 2 fix
the initialisation of the new parameters and the order of the batches.

* `peft_methods`: each method × three learning rates; `tune_loss` chooses the rate
  (`comparison.chosen_lr`), `eval_loss` is reported at the chosen one (chapters 06, 07, 12).
* `peft_vocab`: the cold clinic notes (no vocabulary stage): LoRA, the embedding alone, LoRA +
  embeddings, full fine-tuning, each × three learning rates (chapter 04 §7).
* `peft_tokens`: peft's ways to train embeddings beside LoRA on the cold notes:
  `modules_to_save=["embed_tokens"]` (which unties the output layer), the same with
  `ensure_weight_tying=True`, and `trainable_token_indices` (only the rows of the new tokens).
* `peft_lora`: target modules at a matched budget (~25 k parameters), all layers at r = 8, DoRA and
  AdaLoRA, at the LoRA rate chosen in `peft_methods` (chapter 04 §8, §10).
* `peft_rank`: rank 2, 8, 32, 128 on q, v at a fixed α = 16, scaled α/r (LoRA) and α/√r (rsLoRA).
* `peft_adapters`: Houlsby, Pfeiffer and parallel adapters at the adapter rate (chapter 06).

Build: `make sweep NAME=peft_methods` (etc.); each file states its build time.
"""

from __future__ import annotations

import copy
import time

import torch

from course_lib.sweeps import SweepSpec

SEEDS = (0, 1, 2)
QV = ["q_proj", "v_proj"]
ATTN = ["q_proj", "k_proj", "v_proj", "o_proj"]
MLP = ["gate_proj", "up_proj", "down_proj"]
ALL = ATTN + MLP
CODE = (
    "comparison.py",
    "lora.py",
    "adapters.py",
    "prompt_tuning.py",
    "training.py",
    "evaluation.py",
    "build/sweeps_peft.py",
)


# --- builders: each takes a (frozen) base model and returns the model to train ---------------


def _full(base):
    return copy.deepcopy(base).requires_grad_(True)


def _embedding_only(base):
    model = copy.deepcopy(base).requires_grad_(False)
    model.get_input_embeddings().weight.requires_grad_(True)  # tied: the output layer too
    return model


def _lora(mods, r, alpha=None, rslora=False, embeddings=False):
    def build(base):
        from course_lib.lora import inject_lora

        model = inject_lora(copy.deepcopy(base), mods, r=r, alpha=alpha or 2 * r, rslora=rslora)
        if embeddings:
            model.get_input_embeddings().weight.requires_grad_(True)
        return model

    return build


def _peft(make_config):
    def build(base):
        from peft import get_peft_model

        return get_peft_model(copy.deepcopy(base), make_config())

    return build


def _ia3_config():
    from peft import IA3Config

    return IA3Config(
        target_modules=["k_proj", "v_proj", "down_proj"],
        feedforward_modules=["down_proj"],
        task_type="CAUSAL_LM",
    )


def _prompt_config(init="TEXT"):
    from peft import PromptTuningConfig

    from course_lib.comparison import PROMPT_INIT_TEXT
    from course_lib.models import BASE_MODEL_DIR

    if init == "RANDOM":
        return PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=20)
    return PromptTuningConfig(
        task_type="CAUSAL_LM",
        num_virtual_tokens=20,
        prompt_tuning_init="TEXT",
        prompt_tuning_init_text=PROMPT_INIT_TEXT,
        tokenizer_name_or_path=str(BASE_MODEL_DIR),
    )


def _prefix_config(projection=False):
    from peft import PrefixTuningConfig

    extra = dict(prefix_projection=True, encoder_hidden_size=128) if projection else {}
    return PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=20, **extra)


def _ptuning_config():
    from peft import PromptEncoderConfig

    return PromptEncoderConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=20, encoder_hidden_size=128
    )


def _dora_config():
    from peft import LoraConfig

    return LoraConfig(r=8, lora_alpha=16, target_modules=QV, use_dora=True)


def _adalora_config():
    from peft import AdaLoraConfig

    return AdaLoraConfig(
        init_r=12,
        target_r=4,
        lora_alpha=16,
        target_modules=QV,
        total_step=20,
        tinit=4,
        tfinal=6,
        deltaT=2,
    )


def _lora_tokens(how):
    def config():
        from peft import LoraConfig

        from course_lib.comparison import new_token_ids
        from course_lib.data import load_jsonl
        from course_lib.models import load_model

        if how == "indices":
            tok = load_model("causal")[1]
            texts = [r["text"] for r in load_jsonl("clinic_train")]
            extra = {"trainable_token_indices": {"embed_tokens": new_token_ids(tok, texts)}}
        else:
            extra = {"modules_to_save": ["embed_tokens"], "ensure_weight_tying": how == "tied"}
        return LoraConfig(r=8, lora_alpha=16, target_modules=QV, **extra)

    return _peft(config)


def _adapter(placement, m):
    def build(base):
        from course_lib.adapters import add_adapter

        return add_adapter(copy.deepcopy(base), "clinic", placement, bottleneck=m)

    return build


BUILDERS = {
    "full fine-tuning": _full,
    "LoRA q,v r=8": _lora(QV, 8),
    "(IA)³": _peft(_ia3_config),
    "Houlsby m=8": _adapter("houlsby", 8),
    "prompt tuning (text init)": _peft(_prompt_config),
    "prefix tuning": _peft(_prefix_config),
    "P-tuning": _peft(_ptuning_config),
    # chapter 04, the cold clinic task
    "embedding only": _embedding_only,
    "LoRA q,v r=8 + embeddings": _lora(QV, 8, embeddings=True),
    "peft LoRA + modules_to_save": _lora_tokens("untied"),
    "peft LoRA + modules_to_save, tied": _lora_tokens("tied"),
    "peft LoRA + trainable tokens": _lora_tokens("indices"),
    # chapter 04, on the yardstick at the LoRA rate: modules at ~25 k parameters, variants
    "LoRA attention r=4": _lora(ATTN, 4),
    "LoRA MLP r=3": _lora(MLP, 3),
    "LoRA all r=2": _lora(ALL, 2),
    "LoRA all r=8": _lora(ALL, 8),
    "DoRA q,v r=8": _peft(_dora_config),
    "AdaLoRA q,v 12→4": _peft(_adalora_config),
    # chapter 06 placements, chapter 07 extras
    "Pfeiffer m=16": _adapter("pfeiffer", 16),
    "parallel m=16": _adapter("parallel", 16),
    "prompt tuning (random init)": _peft(lambda: _prompt_config("RANDOM")),
    "prefix tuning + MLP": _peft(lambda: _prefix_config(projection=True)),
}


def _method(name):
    def build(base):
        from course_lib.comparison import METHODS

        return METHODS[name].build(base)

    return build


# chapter 12's two methods the rate grids do not cover: at their family's chosen rate
BUILDERS["QLoRA q,v r=8 (NF4 base)"] = _method("QLoRA q,v r=8 (NF4 base)")
BUILDERS["freeze-tuning (top block + head)"] = _method("freeze-tuning (top block + head)")
RANKS = (2, 8, 32, 128)
for _r in RANKS:
    BUILDERS[f"LoRA α/r r={_r}"] = _lora(QV, _r, alpha=16)
    BUILDERS[f"rsLoRA α/√r r={_r}"] = _lora(QV, _r, alpha=16, rslora=True)

# learning-rate grids (three rates, √10 apart) of the methods whose rate is chosen by a sweep
LR_GRID = {
    "full fine-tuning": (3e-4, 1e-3, 3e-3),
    "LoRA q,v r=8": (3e-3, 1e-2, 3e-2),
    "(IA)³": (0.1, 0.3, 1.0),
    "Houlsby m=8": (3e-3, 1e-2, 3e-2),
    "prompt tuning (text init)": (0.03, 0.1, 0.3),
    "prefix tuning": (0.1, 0.3, 1.0),
    "P-tuning": (3e-3, 1e-2, 3e-2),
}
# one more rate, √10 beyond the edge, for every method whose choice fell on an edge of LR_GRID
# (a choice at the edge may be the edge's artefact, not the method's best rate)
LR_GRID_EDGES = {
    "LoRA q,v r=8": (1e-3,),
    "(IA)³": (0.03,),
    "Houlsby m=8": (1e-3,),
    "prompt tuning (text init)": (0.01,),
    "P-tuning": (1e-3,),
}
VOCAB_LR_GRID = {
    "LoRA q,v r=8": (3e-3, 1e-2, 3e-2),
    "embedding only": (3e-3, 1e-2, 3e-2),
    "LoRA q,v r=8 + embeddings": (3e-3, 1e-2, 3e-2),
    "full fine-tuning": (1e-3, 3e-3, 1e-2),
}
VOCAB_LR_GRID_EDGES = {
    "LoRA q,v r=8": (0.1,),
    "embedding only": (0.1,),
    "full fine-tuning": (3e-2,),
}
# which chosen rate each further arm uses (the family's rate: α/r keeps it valid across ranks)
RATE_OF = {
    **{k: "LoRA q,v r=8" for k in BUILDERS if "LoRA" in k or "DoRA" in k},
    "Pfeiffer m=16": "Houlsby m=8",
    "parallel m=16": "Houlsby m=8",
    "prompt tuning (random init)": "prompt tuning (text init)",
    "prefix tuning + MLP": "P-tuning",
    "freeze-tuning (top block + head)": "full fine-tuning",
}
TOKEN_ARMS = (
    "peft LoRA + modules_to_save",
    "peft LoRA + modules_to_save, tied",
    "peft LoRA + trainable tokens",
)


def lr_arm(method: str, lr: float) -> str:
    """The arm name of `method` at learning rate `lr` in a learning-rate sweep."""
    return f"{method} | lr {lr:g}"


def _yardstick(cold: bool):
    from course_lib import comparison as C

    ys = C.yardstick()
    if cold:  # the plain base model, no vocabulary stage
        from course_lib.models import load_model

        ys.base = load_model("causal")[0].requires_grad_(False)
    return ys


def train_arm(method: str, lr: float, seed: int, cold: bool = False) -> dict[str, float]:
    """Build `method` on the yardstick's base (seeded), train it, return both splits' losses."""
    from course_lib import comparison as C
    from course_lib.evaluation import cross_entropy

    ys = _yardstick(cold)
    torch.manual_seed(seed)
    model = BUILDERS[method](ys.base)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    hook = None
    if method.startswith("AdaLoRA"):
        hook = lambda m, step: m.base_model.update_and_allocate(step)  # noqa: E731
    start = time.perf_counter()
    eval_loss = C.yardstick_loss(model, ys, lr, seed=seed, on_step=hook)
    seconds = time.perf_counter() - start
    return {
        "eval_loss": eval_loss,
        "tune_loss": cross_entropy(model, ys.tokenizer, ys.tune),
        "trainable": trainable,
        "train_seconds": seconds,
    }


def _lr_runner(grid, cold):
    arms = {lr_arm(m, lr): (m, lr) for m, lrs in grid.items() for lr in lrs}

    def run(arm: str, seed: int) -> dict[str, float]:
        method, lr = arms[arm]
        return train_arm(method, lr, seed, cold=cold)

    return run, tuple(arms)


def chosen_rate(arm: str) -> float:
    """The rate an arm of a fixed-rate sweep runs at: its family's rate in `comparison`.

    `comparison.YARDSTICK_LR` / `VOCAB_LR` hold the choices of the lr sweeps `peft_methods` /
    `peft_vocab` (tests/lib/test_comparison.py checks that they agree with the shipped records)."""
    from course_lib.comparison import VOCAB_LR, YARDSTICK_LR

    if arm in TOKEN_ARMS:  # the cold notes, at the rate chosen for LoRA + embeddings
        return VOCAB_LR["LoRA q,v r=8 + embeddings"]
    return YARDSTICK_LR[RATE_OF.get(arm, arm)]


def _fixed_runner(methods):
    def run(arm: str, seed: int) -> dict[str, float]:
        return train_arm(arm, chosen_rate(arm), seed, cold=arm in TOKEN_ARMS)

    return run, tuple(methods)


_methods_run, _methods_arms = _lr_runner(LR_GRID, cold=False)
_vocab_run, _vocab_arms = _lr_runner(VOCAB_LR_GRID, cold=True)
_edges_run, _edges_arms = _lr_runner(LR_GRID_EDGES, cold=False)
_vocab_edges_run, _vocab_edges_arms = _lr_runner(VOCAB_LR_GRID_EDGES, cold=True)
_more_run, _more_arms = _fixed_runner(
    ["QLoRA q,v r=8 (NF4 base)", "freeze-tuning (top block + head)"]
)
_tokens_run, _tokens_arms = _fixed_runner(TOKEN_ARMS)
_lora_run, _lora_arms = _fixed_runner(
    ["LoRA q,v r=8", "LoRA attention r=4", "LoRA MLP r=3", "LoRA all r=2", "LoRA all r=8"]
    + ["DoRA q,v r=8", "AdaLoRA q,v 12→4"]
)
_rank_run, _rank_arms = _fixed_runner(
    [f"LoRA α/r r={r}" for r in RANKS] + [f"rsLoRA α/√r r={r}" for r in RANKS]
)
_adapters_run, _adapters_arms = _fixed_runner(["Houlsby m=8", "Pfeiffer m=16", "parallel m=16"])


def _config(**extra):
    from course_lib.comparison import VOCAB_STAGE, YARDSTICK

    return {"vocabulary_stage": VOCAB_STAGE, "yardstick": YARDSTICK, **extra}


def _references():
    from course_lib import comparison as C

    return {"references": C.yardstick().references}


SWEEPS = [
    SweepSpec(
        name="peft_methods",
        what="PEFT methods on the yardstick, each at 3 learning rates: tune_loss picks, eval_loss reports",
        run=_methods_run,
        arms=_methods_arms,
        seeds=SEEDS,
        config=_config(lr_grid={k: list(v) for k, v in LR_GRID.items()}),
        code_files=CODE,
        chapter="06",
        check_arms=(lr_arm("LoRA q,v r=8", 1e-2),),
        extra=_references,
    ),
    SweepSpec(
        name="peft_methods_edges",
        what="one more learning rate for each method whose choice in peft_methods fell on an edge",
        run=_edges_run,
        arms=_edges_arms,
        seeds=SEEDS,
        config=_config(lr_grid={k: list(v) for k, v in LR_GRID_EDGES.items()}),
        code_files=CODE,
        chapter="06",
        check_arms=(lr_arm("LoRA q,v r=8", 1e-3),),
    ),
    SweepSpec(
        name="peft_methods_more",
        what="QLoRA (NF4 base) and freeze-tuning on the yardstick at their family's chosen rate",
        run=_more_run,
        arms=_more_arms,
        seeds=SEEDS,
        config=_config(),
        code_files=CODE + ("qlora.py", "freezing.py"),
        chapter="12",
        check_arms=("freeze-tuning (top block + head)",),
    ),
    SweepSpec(
        name="peft_vocab_edges",
        what="cold clinic notes: one more rate for each method whose choice in peft_vocab hit an edge",
        run=_vocab_edges_run,
        arms=_vocab_edges_arms,
        seeds=SEEDS,
        config=_config(lr_grid={k: list(v) for k, v in VOCAB_LR_GRID_EDGES.items()}),
        code_files=CODE,
        chapter="04",
        check_arms=(lr_arm("LoRA q,v r=8", 0.1),),
    ),
    SweepSpec(
        name="peft_vocab",
        what="cold clinic notes (no vocabulary stage): LoRA vs embeddings vs both vs full, 3 lrs each",
        run=_vocab_run,
        arms=_vocab_arms,
        seeds=SEEDS,
        config=_config(lr_grid={k: list(v) for k, v in VOCAB_LR_GRID.items()}),
        code_files=CODE,
        chapter="04",
        check_arms=(lr_arm("LoRA q,v r=8 + embeddings", 1e-2),),
        extra=_references,
    ),
    SweepSpec(
        name="peft_tokens",
        what="peft's ways to train embeddings beside LoRA, cold clinic notes, LoRA+embeddings rate",
        run=_tokens_run,
        arms=_tokens_arms,
        seeds=SEEDS,
        config=_config(),
        code_files=CODE,
        chapter="04",
        check_arms=("peft LoRA + trainable tokens",),
    ),
    SweepSpec(
        name="peft_lora",
        what="LoRA target modules at ~25 k parameters, all layers r=8, DoRA, AdaLoRA (yardstick)",
        run=_lora_run,
        arms=_lora_arms,
        seeds=SEEDS,
        config=_config(),
        code_files=CODE,
        chapter="04",
        check_arms=("LoRA all r=2",),
    ),
    SweepSpec(
        name="peft_rank",
        what="rank 2..128 on q,v at fixed alpha=16, scaled alpha/r (LoRA) and alpha/sqrt(r) (rsLoRA)",
        run=_rank_run,
        arms=_rank_arms,
        seeds=SEEDS,
        config=_config(ranks=list(RANKS), alpha=16),
        code_files=CODE,
        chapter="04",
        check_arms=("rsLoRA α/√r r=32",),
    ),
    SweepSpec(
        name="peft_adapters",
        what="bottleneck adapters in three placements at matched size (yardstick)",
        run=_adapters_run,
        arms=_adapters_arms,
        seeds=SEEDS,
        config=_config(),
        code_files=CODE,
        chapter="06",
        check_arms=("Pfeiffer m=16",),
    ),
]
