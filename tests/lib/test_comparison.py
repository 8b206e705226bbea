"""course_lib.comparison: counts, memory parts and artefact sizes come from real tensors and files."""

import copy

import pytest
import torch

from course_lib.comparison import (
    METHODS,
    artefact_bytes,
    optimizer_state_bytes,
    run_method,
    training_memory_counted,
)
from course_lib.data import load_jsonl
from course_lib.measure import count_parameters
from course_lib.memory import MemoryEstimate
from course_lib.training import text_batches


@pytest.fixture(scope="module")
def setup(base_model, tokenizer):
    torch.manual_seed(0)
    base, tok = base_model, tokenizer
    texts = [r["text"] for r in load_jsonl("clinic_train")][:32]
    return base, tok, texts


def test_lora_method_trains_r_in_plus_out_per_layer(setup):
    base, _, _ = setup
    lora = METHODS["LoRA q,v r=8"].build(base)
    layers, hidden = base.config.num_hidden_layers, base.config.hidden_size
    assert count_parameters(lora, trainable_only=True) == layers * 2 * 8 * (hidden + hidden), (
        "LoRA q,v r=8: r·(in+out) per layer"
    )


def test_optimizer_state_is_two_fp32_moments(setup):
    base, _, _ = setup
    lora = METHODS["LoRA q,v r=8"].build(base)
    n = count_parameters(lora, trainable_only=True)
    n_tensors = sum(1 for p in lora.parameters() if p.requires_grad)
    assert optimizer_state_bytes(lora) == 8 * n + 4 * n_tensors, (
        "AdamW: exp_avg + exp_avg_sq (fp32) + a step count"
    )
    assert all(p.grad is None for p in lora.parameters()), (
        "measuring must not touch the model's gradients"
    )


def test_memory_parts(setup):
    base, tok, texts = setup
    batch = next(iter(text_batches(tok, texts, 4)))
    full = training_memory_counted(copy.deepcopy(base).requires_grad_(True).train(), batch)
    lora = training_memory_counted(METHODS["LoRA q,v r=8"].build(base).train(), batch)
    n = sum(p.numel() for p in base.parameters())
    assert isinstance(full, MemoryEstimate) and full.master_weights == 0, (
        "one dataclass for training memory, counted or computed"
    )
    assert full.gradients == 4 * n and full.weights >= 4 * n, (
        "fp32: 4 bytes per weight and per gradient"
    )
    assert lora.gradients < full.gradients / 50 and lora.activations > 0
    assert full.total == full.weights + full.gradients + full.optimizer + full.activations


def test_artefact_sizes(setup):
    base, _, _ = setup
    lora = METHODS["LoRA q,v r=8"].build(base)
    size = artefact_bytes(lora)
    n = count_parameters(lora, trainable_only=True)
    assert 4 * n <= size < 4 * n + 10_000, (
        f"a LoRA artefact is its fp32 weights plus a small config, got {size}"
    )
    full = artefact_bytes(copy.deepcopy(base), "full")
    n_all = sum(p.numel() for p in base.parameters())
    assert 4 * n_all <= full < 4 * n_all + 20_000, "the tied embedding is saved once"
    with pytest.raises(ValueError, match="what must be"):
        artefact_bytes(lora, "zip")


def test_run_method_row(setup):
    base, tok, texts = setup
    row = run_method(
        "prompt tuning (20 tokens)", base, tok, texts, texts[:4], steps=3, batch_size=4
    )
    assert row["trainable"] == 20 * base.config.hidden_size
    assert row["step_s"] > 0 and row["loss"] > 0 and row["artefact"] > 4 * row["trainable"]
    before = {n: p.detach().clone() for n, p in base.named_parameters()}
    run_method("full fine-tuning", base, tok, texts, texts[:4], steps=3, batch_size=4)
    assert all(torch.equal(p, before[n]) for n, p in base.named_parameters()), (
        "the base model must stay untouched"
    )


def test_bad_input(setup):
    base, tok, texts = setup
    with pytest.raises(ValueError, match="unknown method"):
        run_method("magic", base, tok, texts, texts)
    with pytest.raises(ValueError, match="steps must be"):
        run_method("LoRA q,v r=8", base, tok, texts, texts, steps=1)


# --- the PEFT yardstick -------------------------------------------------------------------------


def test_vocabulary_stage_trains_only_the_embeddings(setup):
    from course_lib.comparison import vocabulary_stage

    base, tok, texts = setup
    model = copy.deepcopy(base)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    vocabulary_stage(model, tok, texts, steps=2)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {"model.embed_tokens.weight"}, f"only the (tied) embeddings move: {changed}"
    assert not any(p.requires_grad for p in model.parameters()), "the stage ends frozen"
    assert model.lm_head.weight is model.get_input_embeddings().weight, "the tie survives"


def test_yardstick_splits_references_and_a_fresh_base():
    from course_lib import comparison as C

    ys = C.yardstick()
    assert not set(ys.eval) & set(ys.tune), "the tuning split must not be the reported one"
    assert len(ys.eval) == C.YARDSTICK["n_eval"] and len(ys.tune) == C.YARDSTICK["n_tune"]
    refs = ys.references
    assert refs["base model"] > refs["uniform (ln V)"], "the raw notes: worse than uniform"
    assert refs["after the vocabulary stage"] < refs["unigram (fitted on clinic_train)"] - 1, (
        "after stage 1 the base beats the unigram reference by a wide margin"
    )
    again = C.yardstick()
    assert again.base is not ys.base and torch.equal(
        again.base.get_input_embeddings().weight, ys.base.get_input_embeddings().weight
    ), "each call: a fresh copy of the same base"
    with pytest.raises(ValueError, match="nothing in the model is trainable"):
        C.yardstick_loss(ys.base, ys, 1e-3)
    with pytest.raises(ValueError, match="split must be"):
        C.yardstick_loss(ys.base, ys, 1e-3, split="test")


def test_chosen_lr_reads_the_lowest_mean():
    from course_lib.comparison import chosen_lr

    record = {
        "name": "toy",
        "arms": ["m | lr 0.01", "m | lr 0.1", "other | lr 1"],
        "seeds": [0, 1],
        "results": {
            "m | lr 0.01": {"0": {"tune_loss": 2.0}, "1": {"tune_loss": 2.2}},
            "m | lr 0.1": {"0": {"tune_loss": 1.0}, "1": {"tune_loss": 3.0}},
            "other | lr 1": {"0": {"tune_loss": 0.0}, "1": {"tune_loss": 0.0}},
        },
    }
    assert chosen_lr(record, "m") == 0.1, "mean 2.0 beats mean 2.1"
    with pytest.raises(KeyError, match="no learning-rate arms"):
        chosen_lr(record, "missing")


def test_library_rates_are_the_shipped_choice():
    from course_lib import comparison as C

    methods, vocab = C.lr_records("yardstick"), C.lr_records("vocab")
    assert {m: C.chosen_lr(methods, m) for m in C.YARDSTICK_LR} == C.YARDSTICK_LR
    assert {m: C.chosen_lr(vocab, m) for m in C.VOCAB_LR} == C.VOCAB_LR


def test_no_chosen_rate_sits_on_an_edge_of_the_pooled_grids():
    """A choice on the edge of the rates tried may be the grid's artefact: the edge sweeps
    (`peft_methods_edges`, `peft_vocab_edges`) add a rate beyond every such edge."""
    from course_lib import comparison as C

    for kind, rates in (("yardstick", C.YARDSTICK_LR), ("vocab", C.VOCAB_LR)):
        records = C.lr_records(kind)
        for method in rates:
            line = C.lr_line(records, method)
            assert "edge" not in line, f"{kind} {method}: the chosen rate is an edge: {line}"


def test_lr_records_rejects_an_unknown_kind():
    from course_lib import comparison as C

    with pytest.raises(ValueError, match="kind must be one of"):
        C.lr_records("cold")
