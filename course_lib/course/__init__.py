"""The course's own tooling: the check framework and the exercise checkers, exercise generation
from solutions, grading, the question bank, notebook sources and the notebook runner, the network guard.

Not part of the fine-tuning library the lessons teach.
"""
