# The course's commands. `make lab` and `make test` are the two a student needs;
# both create .venv and install everything on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: lab test test-fast lint data base-model rlhf-models notebooks lib exercises execute grade clean-venv

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

## Start JupyterLab on the course (prints the URL; no browser needed).
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --no-browser --ip=127.0.0.1 --ServerApp.root_dir=.

## Run the whole test suite: the linter, unit tests, library equivalence, exercise sync, notebooks.
test: lint
	$(PY) -m pytest

## Only the unit tests (no notebook runs): a few minutes.
test-fast: $(STAMP)
	$(PY) -m pytest tests -m "not notebook"

## The linter (ruff, pinned): formatting of course_lib and tests, and rules over the text sources.
lint: $(STAMP)
	$(VENV)/bin/ruff format --check --quiet course_lib tests conftest.py
	$(VENV)/bin/ruff check --quiet course_lib tests conftest.py sources notebooks solutions

## Regenerate every dataset in data/ (byte-identical).
data: $(STAMP)
	$(PY) -m course_lib.world.datasets

## Pretrain the base model from scratch into data/base_model/ (about 20 min on 2 cores).
base-model: $(STAMP)
	$(PY) -m course_lib.build.base_model

## Rebuild chapter 09's SFT policy and reward model into data/rlhf/ (about 3 min on 2 cores).
rlhf-models: $(STAMP)
	$(PY) -m course_lib.build.rlhf_models

## Regenerate exercises/ and the question bank QUESTIONS.md from solutions/.
exercises: $(STAMP)
	$(PY) -m course_lib.course.exercises
	$(PY) -m course_lib.course.question_bank

## Grade students' exercise notebooks: make grade SUBMISSIONS=folder (one sub-folder per student).
grade: $(STAMP)
	@test -n "$(SUBMISSIONS)" || (echo "usage: make grade SUBMISSIONS=path/to/folder [TIMEOUT=300]"; exit 2)
	$(PY) -m course_lib.course.grading $(SUBMISSIONS) --timeout $(or $(TIMEOUT),300)

## Build notebooks/ and solutions/ from their text sources in sources/, copy the `#| export` cells
## into course_lib, and execute the notebooks whose code changed.
notebooks: $(STAMP)
	$(PY) -m course_lib.course.notebook_sources lib
	$(PY) -m course_lib.course.notebook_sources build | xargs -r $(PY) -m course_lib.course.run_notebooks

## Copy the lessons' `#| export` cells into their course_lib modules.
lib: $(STAMP)
	$(PY) -m course_lib.course.notebook_sources lib

## Re-execute notebooks and solutions in place (outputs and measured runtimes).
execute: $(STAMP)
	$(PY) -m course_lib.course.run_notebooks notebooks/*.ipynb solutions/*.ipynb

clean-venv:
	rm -rf $(VENV)
