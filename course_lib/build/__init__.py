"""The recipes that build the course's shipped artefacts: the tokenizer and base model
(`make base-model`) and chapter 09's starting checkpoints (`make rlhf-models`).

Learners load these artefacts with `course_lib.models`; they only read these recipes.
"""
