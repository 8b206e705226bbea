"""Taught in chapter 10 (evaluation); used wherever a chapter scores a model."""

from __future__ import annotations

from pathlib import Path

import evaluate

METRICS_DIR = Path(__file__).resolve().parent / "metrics"


def available_metrics() -> list[str]:
    """Names of the metrics shipped in course_lib/metrics/, sorted."""
    return sorted(d.name for d in METRICS_DIR.iterdir() if (d / f"{d.name}.py").is_file())


def load_metric(name: str) -> evaluate.EvaluationModule:
    """Load a course-local metric by name with evaluate.load (never the Hugging Face Hub)."""
    available = available_metrics()
    if name not in available:
        raise ValueError(
            f"unknown metric {name!r}; the course ships these local metrics: "
            f"{', '.join(available)} (the Hugging Face Hub is not used)"
        )
    return evaluate.load(str(METRICS_DIR / name))
