# Shortcuts over the README's commands (make is optional: the README's plain commands do the same).
VENV ?= .venv
PY := $(VENV)/bin/python

$(VENV)/.installed: requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -r requirements.txt
	touch $@

install: $(VENV)/.installed
test: install
	$(PY) -m pytest
play: install
	$(VENV)/bin/streamlit run playground/Home.py
bench: install
	$(PY) bench/bench_engine.py
	$(PY) bench/bench_train.py
	$(PY) bench/bench_decode.py
lint: install
	$(VENV)/bin/ruff check autodiff lm playground tests bench

.PHONY: install test play bench lint
