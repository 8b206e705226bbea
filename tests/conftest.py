"""Shared fixtures of the unit tests: tiny random Llamas and the shipped base model.

The repository's conftest.py (one folder up) blocks the network; this one only builds models.
"""

from __future__ import annotations

import pytest
import torch

from course_lib.course.checkers._models import tiny_llama as _tiny_llama

# headless-browser tests are slow and need Chromium: `make test-browser` runs them by path
collect_ignore = ["browser"]


@pytest.fixture(scope="session")
def tiny_llama():
    """The factory of seeded tiny Llamas: `tiny_llama(vocab=50, layers=3, kv_heads=1, bias=True)`.

    A causal LM, or a sequence classifier with `num_labels=`; `eval_mode=True` returns it in
    eval mode; other LlamaConfig fields pass through (see course_lib.course.checkers._models).
    """
    return _tiny_llama


def _fingerprint(model: torch.nn.Module, tok) -> tuple:
    with torch.no_grad():
        total = sum(float(t.double().abs().sum()) for t in model.state_dict().values())
    frozen = tuple(n for n, p in model.named_parameters() if not p.requires_grad)
    return total, frozen, model.training, tok.padding_side, len(tok)


@pytest.fixture(scope="session")
def base_model_and_tokenizer():
    """The shipped base model (eval mode) and its tokenizer, loaded once for the whole run.

    Shared by every test that asks for it: deep-copy the model before changing it. The session
    ends with an error if a test changed its weights, frozen parameters or mode, or the
    tokenizer's padding side or vocabulary.
    """
    from course_lib.models import load_model

    model, tok = load_model("causal")
    before = _fingerprint(model, tok)
    yield model, tok
    assert _fingerprint(model, tok) == before, (
        "a test changed the shared base_model (weights, requires_grad or train/eval mode) or "
        "tokenizer (padding side, vocabulary): copy.deepcopy it first"
    )


@pytest.fixture(scope="session")
def base_model(base_model_and_tokenizer):
    """The shipped base model, shared: deep-copy it before training or changing it."""
    return base_model_and_tokenizer[0]


@pytest.fixture(scope="session")
def tokenizer(base_model_and_tokenizer):
    """The shipped base model's tokenizer."""
    return base_model_and_tokenizer[1]
