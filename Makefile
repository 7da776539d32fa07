# Two commands do everything:  `make run` (install, then the main job)  and  `make test` (install, lint, tests).
# Override TORCH / TORCH_INDEX to choose the PyTorch build, e.g. CPU-only on Linux:
#   make test TORCH_INDEX=https://download.pytorch.org/whl/cpu
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run app test lint clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"
	$(BIN)/python -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

run: install
	$(BIN)/python train.py --save runs/shakespeare
	$(BIN)/python train.py --load runs/shakespeare --generate --prompt "ROMEO:" --max_tokens 300

app: install
	$(BIN)/python app.py

lint: install
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
