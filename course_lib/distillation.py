"""Knowledge distillation from scratch: a temperature-scaled KL between teacher and student
token distributions (Hinton et al. 2015), the generalized Jensen-Shannon divergence of GKD
(Agarwal et al. 2024, TRL's `GKDTrainer.generalized_jsd_loss`), a student made from a teacher
by dropping layers, and one distillation run at a matched budget.

Taught in chapter 17 (synthetic data, distillation and merging). Why T²: the gradient of
KL(softmax(t/T) ‖ softmax(s/T)) with respect to the student's logits s is (q_s − q_t)/T, and for
large T, q_s − q_t ≈ (s − t)/(V·T), so the gradient shrinks like 1/T²; multiplying the loss by T²
keeps its size (and the balance with a hard-label CE term) the same whatever the temperature.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn.functional as F

from course_lib.formats import IGNORE_INDEX


def _check_logits(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> None:
    """Same shape [..., vocab]."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} must have the same shape (same tokenizer, same batch)"
        )


def _masked_mean(per_token: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """Mean over the positions whose label is not -100 (all positions if labels is None)."""
    if labels is None:
        return per_token.mean()
    mask = labels != IGNORE_INDEX
    return per_token[mask].sum() / mask.sum().clamp(min=1)


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """T² · KL(softmax(teacher/T) ‖ softmax(student/T)), summed over the vocabulary and averaged
    over the scored positions (labels ≠ -100; logits and labels already aligned)."""
    _check_logits(student_logits, teacher_logits)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    log_q_s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_q_t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    kl = (log_q_t.exp() * (log_q_t - log_q_s)).sum(-1)
    return temperature**2 * _masked_mean(kl, labels)


def generalized_jsd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor | None = None,
    beta: float = 0.5,
    temperature: float = 1.0,
) -> torch.Tensor:
    """GKD's divergence: β·KL(t ‖ m) + (1 − β)·KL(s ‖ m) with m = β·t + (1 − β)·s; β = 0 is the
    forward KL(t ‖ s), β = 1 the reverse KL(s ‖ t) (as TRL defines them); no T² factor."""
    _check_logits(student_logits, teacher_logits)
    if not 0 <= beta <= 1:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    log_s = F.log_softmax(student_logits / temperature, dim=-1)
    log_t = F.log_softmax(teacher_logits / temperature, dim=-1)

    def kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
        return (log_p.exp() * (log_p - log_q)).sum(-1)

    if beta == 0:
        per_token = kl(log_t, log_s)
    elif beta == 1:
        per_token = kl(log_s, log_t)
    else:
        b = torch.tensor(beta, dtype=log_s.dtype)
        log_m = torch.logsumexp(torch.stack([log_s + torch.log1p(-b), log_t + torch.log(b)]), 0)
        per_token = beta * kl(log_t, log_m) + (1 - beta) * kl(log_s, log_m)
    return _masked_mean(per_token, labels)


def shift(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Align next-token logits with their targets: position t predicts token t + 1."""
    return logits[:, :-1], labels[:, 1:]


def distillation_loss_fn(teacher, temperature: float = 2.0, alpha: float = 0.0):
    """A `training.train` loss: α·CE(labels) + (1 − α)·`kd_loss` against the frozen teacher, on the
    response tokens of the batch."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha (weight of the hard-label CE) must be in [0, 1], got {alpha}")
    teacher.eval()  # its forward runs under no_grad: no gradient reaches it

    def loss_fn(model, batch: dict) -> torch.Tensor:
        out = model(**batch)
        with torch.no_grad():
            t_logits = teacher(**{k: v for k, v in batch.items() if k != "labels"}).logits
        s, labels = shift(out.logits, batch["labels"])
        t, _ = shift(t_logits, batch["labels"])
        kd = kd_loss(s, t, labels, temperature)
        return alpha * out.loss + (1 - alpha) * kd if alpha > 0 else kd

    return loss_fn


def drop_layers(model, keep: Sequence[int]):
    """A smaller student: a copy of a Llama model with only the decoder layers `keep` (DistilBERT's
    initialisation: every other layer)."""
    n = model.config.num_hidden_layers
    keep = list(keep)
    if not keep or sorted(set(keep)) != keep or keep[0] < 0 or keep[-1] >= n:
        raise ValueError(f"keep must be increasing layer indices in [0, {n}), got {keep}")
    student = copy.deepcopy(model)
    student.model.layers = torch.nn.ModuleList([student.model.layers[i] for i in keep])
    for new_index, layer in enumerate(student.model.layers):
        layer.self_attn.layer_idx = new_index
    student.config.num_hidden_layers = len(keep)
    if getattr(student.config, "layer_types", None):
        student.config.layer_types = [student.config.layer_types[i] for i in keep]
    return student


DISTILL_METHODS = ("sft", "logit_kd")


def train_distill(
    student,
    teacher,
    tokenizer,
    records: Sequence[dict],
    *,
    method: str = "logit_kd",
    temperature: float = 2.0,
    alpha: float = 0.0,
    lr: float = 2e-3,
    steps: int = 60,
    rows_per_batch: int = 8,
    seed: int = 0,
):
    """Train a copy of `student` on chat `records`: "sft" (hard labels: the records' responses,
    whoever wrote them) or "logit_kd" (the teacher's distribution on those responses). Same seed,
    same batches: a matched budget. Returns (model, history)."""
    from course_lib.sft import packed_batches
    from course_lib.training import TrainConfig, train

    if method not in DISTILL_METHODS:
        raise ValueError(f"method must be one of {DISTILL_METHODS}, got {method!r}")
    torch.manual_seed(seed)
    model = copy.deepcopy(student)
    batches = packed_batches(tokenizer, records, rows_per_batch=rows_per_batch, seed=seed)
    loss_fn = distillation_loss_fn(teacher, temperature, alpha) if method == "logit_kd" else None
    hist = train(
        model, batches, TrainConfig(lr=lr, max_steps=steps, progress=False), loss_fn=loss_fn
    )
    return model.eval(), hist


@torch.no_grad()
def response_loss(model, tokenizer, records: Sequence[dict], batch_size: int = 64) -> float:
    """Mean CE (nats/token) of the model on the records' response tokens (chat format, prompt masked)."""
    from course_lib.sft import pad_examples, sft_example

    if isinstance(records, dict) or not records:
        raise ValueError("records must be a non-empty list of chat records")
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(records), batch_size):
        batch = pad_examples(
            [sft_example(tokenizer, r) for r in records[i : i + batch_size]], tokenizer.pad_token_id
        )
        logits, labels = shift(
            model(**{k: v for k, v in batch.items() if k != "labels"}).logits, batch["labels"]
        )
        mask = labels != IGNORE_INDEX
        nll = F.cross_entropy(logits.float()[mask], labels[mask], reduction="sum")
        total, count = total + nll.item(), count + int(mask.sum())
    return total / count
