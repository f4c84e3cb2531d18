# The two commands: `make book` and `make test` (see README.md). Both set up .venv on first use.
VENV    ?= .venv
PY      := $(VENV)/bin/python
PROFILE ?= default
# The data directory: set DOMAINGAP_DATA (e.g. ../shared/data, the offline mirror); default data/cache.
export DOMAINGAP_DATA

.PHONY: venv book test unit nbtest refs check-refs bench clean
venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt pyproject.toml scripts/setup_venv.sh
	bash scripts/setup_venv.sh $(VENV)
	touch $@

## book: run every notebook with papermill at $(PROFILE), then build the HTML book (strict).
book: venv
	$(PY) -m domaingap.runner run --profile $(PROFILE) --out book/executed
	$(VENV)/bin/jupyter-book build book --config _config.yml --path-output book -W -n --keep-going
	@echo "HTML book: $(CURDIR)/book/_build/html/index.html"

## test: lib unit tests + nbval regression tests of every notebook at the ci profile.
test: venv
	$(PY) -m pytest tests --nbval-lax -p no:cacheprovider

unit: venv
	$(PY) -m pytest tests -p no:cacheprovider --ignore=tests/notebooks

## refs: regenerate the nbval reference notebooks (commit them) after changing a notebook.
refs: venv
	$(PY) -m domaingap.runner refs

bench: venv
	$(PY) benchmarks/bench_geometry.py
	$(PY) benchmarks/bench_attacks.py
	$(PY) benchmarks/bench_similarity.py

clean:
	rm -rf book/_build book/executed
