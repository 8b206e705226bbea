"""Loading the course's models: the shipped base model and chapter 09's starting checkpoints.

Taught in chapter 00 (the base model) and used by every chapter. The recipes that build these
checkpoints live in `course_lib.build` (`make base-model`, `make rlhf-models`); this module only loads.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from course_lib.data import DATA_DIR

BASE_MODEL_DIR = DATA_DIR / "base_model"
RLHF_DIR = DATA_DIR / "rlhf"
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


def load_base_model(path: str | Path = BASE_MODEL_DIR, device: str | torch.device = "cpu"):
    """Load the shipped base model and its tokenizer (plain transformers, no network)."""
    path = Path(path)
    if not (path / "config.json").exists():
        raise FileNotFoundError(
            f"no model in {path.name}/ (config.json missing). Rebuild the base "
            "model with `make base-model` (python -m course_lib.build.base_model)."
        )
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).to(device)
    model.eval()
    return model, tok


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


def _need(path: Path, what: str) -> Path:
    if not (path / "config.json").exists():
        raise FileNotFoundError(
            f"no {what} in {path}: rebuild it with `make rlhf-models` "
            "(python -m course_lib.build.rlhf_models, about 3 minutes)"
        )
    return path


def load_sft_policy(path: str | Path = RLHF_DIR / "sft_policy"):
    """The shipped SFT policy (a causal LM; the tokenizer is the base model's)."""
    return AutoModelForCausalLM.from_pretrained(_need(Path(path), "SFT policy")).eval()


def load_trained_reward_model(path: str | Path = RLHF_DIR / "reward_model"):
    """The shipped reward model (sequence classification, one output)."""
    from course_lib.reward_model import load_reward_model  # the reward model imports this module

    return load_reward_model(_need(Path(path), "reward model")).eval()
