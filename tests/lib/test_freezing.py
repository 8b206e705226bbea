"""Tests of course_lib.freezing: freezing parameters for freeze-tuning (counting: test_measure)."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from course_lib.freezing import freeze_all_but_top, layer_stack

# a small Llama classifier with the course model's layout (norm at the top, head `score`)
CLASSIFIER = dict(vocab=50, num_labels=3, pad_token_id=0)


def tiny_bert() -> BertForSequenceClassification:
    """A small BERT classifier, the layout of MiniLM (encoder.layer, pooler, classifier)."""
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=50,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_labels=3,
    )
    return BertForSequenceClassification(cfg)


def trainable_names(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_layer_stack_finds_llama_and_bert_blocks(tiny_llama):
    assert len(layer_stack(tiny_llama(**CLASSIFIER, layers=3))) == 3, (
        "Llama blocks live at model.model.layers"
    )
    assert len(layer_stack(tiny_bert())) == 2, "BERT blocks live at model.bert.encoder.layer"


def test_freeze_all_but_top_keeps_top_layers_norm_and_head(tiny_llama):
    m = freeze_all_but_top(tiny_llama(**CLASSIFIER, layers=3), 1)
    names = trainable_names(m)
    assert any(n.startswith("model.layers.2.") for n in names), "the top block (index 2) must train"
    assert not any(n.startswith(("model.layers.0.", "model.layers.1.")) for n in names), (
        "the lower blocks must be frozen"
    )
    assert "model.norm.weight" in names, "the final norm feeds the head and must train"
    assert "score.weight" in names, "the task head must train"
    assert "model.embed_tokens.weight" not in names, "the embeddings must be frozen"


def test_freeze_zero_layers_is_head_only_and_all_layers_is_almost_full(tiny_llama):
    m = freeze_all_but_top(tiny_llama(**CLASSIFIER, layers=3), 0)
    assert trainable_names(m) == {"score.weight", "model.norm.weight"}, (
        f"n_layers=0 must leave only the head (and the final norm), got {trainable_names(m)}"
    )
    m = freeze_all_but_top(m, 3)
    frozen = {n for n, p in m.named_parameters() if not p.requires_grad}
    assert frozen == {"model.embed_tokens.weight"}, (
        f"n_layers=all must freeze only the embeddings, got {frozen}"
    )


def test_freeze_bert_trains_pooler_and_classifier_as_head():
    m = freeze_all_but_top(tiny_bert(), 1)
    names = trainable_names(m)
    assert "classifier.weight" in names, "the classifier is outside base_model: it is the head"
    assert any(n.startswith("bert.encoder.layer.1.") for n in names), (
        "the top BERT block must train"
    )
    assert not any(n.startswith(("bert.encoder.layer.0.", "bert.embeddings.")) for n in names), (
        "lower blocks and embeddings must be frozen"
    )


def test_frozen_parameters_get_no_gradient(tiny_llama):
    m = freeze_all_but_top(tiny_llama(**CLASSIFIER, layers=2), 1)
    ids = torch.randint(1, 50, (2, 5))
    m(input_ids=ids, labels=torch.tensor([0, 2])).loss.backward()
    assert m.model.layers[0].self_attn.q_proj.weight.grad is None, (
        "a frozen weight must get no gradient"
    )
    assert m.model.layers[1].self_attn.q_proj.weight.grad is not None, (
        "a trainable weight must get one"
    )


@pytest.mark.parametrize("n", [-1, 4, 1.5])
def test_freeze_rejects_bad_layer_counts(n, tiny_llama):
    with pytest.raises(ValueError, match="n_layers must be an int in"):
        freeze_all_but_top(tiny_llama(**CLASSIFIER, layers=3), n)


def test_freeze_rejects_a_bare_backbone_and_non_models(tiny_llama):
    with pytest.raises(TypeError, match="task head"):
        freeze_all_but_top(tiny_llama(**CLASSIFIER, layers=2).model, 1)
    with pytest.raises(TypeError, match="transformer blocks"):
        layer_stack(torch.nn.Linear(2, 2))


def test_tied_lm_head_stays_trainable(tiny_llama):
    model = freeze_all_but_top(tiny_llama(vocab=50, layers=3, tie_word_embeddings=True), 1)
    names = trainable_names(model)
    assert model.lm_head.weight.requires_grad, (
        "the (tied) output layer is the LM's head: it must stay trainable"
    )
    assert (
        "model.layers.2.mlp.up_proj.weight" in names
        and "model.layers.1.mlp.up_proj.weight" not in names
    ), names
