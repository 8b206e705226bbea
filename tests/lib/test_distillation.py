"""course_lib.distillation: the temperature-scaled KL, its T² factor, GKD's generalized JSD equal
to TRL's, the layer-dropped student, and a short distillation run."""

import math

import pytest
import torch
import torch.nn.functional as F

from course_lib import distillation as kd
from course_lib.data import load_jsonl


@pytest.fixture
def logits():
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(2, 5, 11, generator=gen)
    t = torch.randn(2, 5, 11, generator=gen) * 2
    labels = torch.tensor([[-100, 1, 2, 3, -100], [4, 5, -100, -100, -100]])
    return s, t, labels


def test_kd_loss_is_t_squared_kl_on_scored_positions(logits):
    s, t, labels = logits
    T = 3.0
    mask = labels != -100
    ref = (
        F.kl_div(
            F.log_softmax(s[mask] / T, -1),
            F.log_softmax(t[mask] / T, -1),
            reduction="batchmean",
            log_target=True,
        )
        * T**2
    )
    assert torch.allclose(kd.kd_loss(s, t, labels, T), ref, atol=1e-6)
    assert kd.kd_loss(t, t, labels, T).abs() < 1e-6


def test_t_squared_keeps_the_gradient_scale(logits):
    s, t, _ = logits
    norms = []
    for T in (4.0, 16.0):
        x = s.clone().requires_grad_()
        kd.kd_loss(x, t, None, T).backward()
        norms.append(x.grad.norm().item())
    # without T² the second norm would be ~16x smaller; with it the ratio approaches T1/T2 * T2²/T1² ... ≈ 1
    assert 0.5 < norms[1] / norms[0] < 1.5, norms


def test_generalized_jsd_equals_trl(logits):
    from trl.experimental.gkd import GKDTrainer

    s, t, labels = logits
    for beta in (0.0, 0.1, 0.5, 0.9, 1.0):
        for temp in (1.0, 2.0):
            ref = GKDTrainer.generalized_jsd_loss(s, t, labels, beta=beta, temperature=temp)
            got = kd.generalized_jsd(s, t, labels, beta, temp)
            assert torch.allclose(got, ref, atol=1e-6), (beta, temp)
    assert torch.allclose(
        kd.generalized_jsd(s, t, labels, 0.0), kd.kd_loss(s, t, labels, 1.0), atol=1e-6
    )


def test_drop_layers_makes_a_working_smaller_model(base_model):
    student = kd.drop_layers(base_model, [0, 2])
    assert len(student.model.layers) == 2 == student.config.num_hidden_layers
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(student) < n(base_model)
    assert student(torch.tensor([[1, 5, 7]])).logits.shape[-1] == base_model.config.vocab_size
    assert len(base_model.model.layers) == 4, "the teacher is left untouched"
    with pytest.raises(ValueError, match="keep"):
        kd.drop_layers(base_model, [2, 0])


def test_logit_kd_moves_the_student_towards_the_teacher(base_model, tokenizer):
    records = load_jsonl("instructions_val")[:40]
    teacher = base_model
    student = kd.drop_layers(base_model, [0, 3])
    before = kd.response_loss(student, tokenizer, records)
    model, hist = kd.train_distill(student, teacher, tokenizer, records, steps=6, rows_per_batch=4)
    assert hist.loss[-1] < hist.loss[0]
    assert math.isfinite(kd.response_loss(model, tokenizer, records)) and before > 0


def test_bad_input_is_refused(logits):
    s, t, labels = logits
    with pytest.raises(ValueError, match="same shape"):
        kd.kd_loss(s, t[..., :5], labels)
    with pytest.raises(ValueError, match="temperature"):
        kd.kd_loss(s, t, labels, 0.0)
    with pytest.raises(ValueError, match="beta"):
        kd.generalized_jsd(s, t, labels, 1.5)
