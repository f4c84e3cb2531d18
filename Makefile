# The two commands: `make book` and `make test` (see README.md). Both set up .venv on first use.
VENV    ?= .venv
PY      := $(VENV)/bin/python
PROFILE ?= default
# runs computed at a time (one worker process each, one thread per run) and chapters executed at a time
JOBS    ?= 1
# where the sweeps run: sequential in this process, or a pool of JOBS worker processes (see domaingap.runs)
EXECUTOR ?= $(if $(filter 1,$(JOBS)),sequential,process:$(JOBS))
# The data directory: set DOMAINGAP_DATA (e.g. ../shared/data, the offline mirror); default data/cache.
export DOMAINGAP_DATA

.PHONY: venv book sweeps test book-check unit refs bench time-book clean data-check install-check
venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt pyproject.toml scripts/setup_venv.sh
	bash scripts/setup_venv.sh $(VENV)
	touch $@

## book: `domaingap book`: data check, every chapter's runs at $(PROFILE) as one graph (JOBS workers), every
## notebook with papermill (they only load, plot and record), then the HTML book (strict).
book: venv
	$(VENV)/bin/domaingap book --profile $(PROFILE) --jobs $(JOBS) --executor $(EXECUTOR)

## test: ruff, lib unit tests + nbval regression tests of every notebook at the ci profile, then the strict HTML build
## of the ci-profile book (from the nbval references) checked page by page in headless Chromium.
test: venv
	$(VENV)/bin/ruff check lib tests
	$(MAKE) install-check
	$(MAKE) sweeps PROFILE=ci JOBS=2
	$(PY) -m pytest tests --nbval-lax -p no:cacheprovider
	$(MAKE) book-check

## data-check: what is present, what will be downloaded, what cannot be (fails only on a corrupt file).
data-check: venv
	$(VENV)/bin/domaingap data check

## install-check: `pip install .` into a fresh venv (the pinned wheels) imports domaingap and runs its CLI.
install-check: venv
	bash scripts/check_install.sh

## sweeps: every run of every chapter at $(PROFILE), computed by $(EXECUTOR) into the artefact store.
sweeps: venv
	$(PY) -m domaingap.chapters --profile $(PROFILE) --executor $(EXECUTOR)

## book-check: the ci-profile book (a copy of book/ in build/ci-book/ fed with the nbval references), strict
## build, then every page opened in headless Chromium.
book-check: venv
	$(PY) -m domaingap.runner assemble-refs --book-dir build/ci-book
	$(VENV)/bin/domaingap book --html-only build/ci-book
	$(PY) scripts/check_book.py build/ci-book/_build/html

unit: venv
	$(PY) -m pytest tests -p no:cacheprovider --ignore=tests/notebooks

## refs: regenerate the nbval reference notebooks (commit them) after changing a notebook.
refs: venv
	$(PY) -m domaingap.runner refs

## time-book: the whole book at $(PROFILE) from an empty store and decode cache (build/book-timing/), JOBS=2 unless
## given; writes benchmarks/results/book_<profile>_cpu-<cores>core.json for the performance appendix.
time-book: venv
	rm -rf build/book-timing
	$(PY) benchmarks/time_book.py --profile $(PROFILE) --jobs $(if $(filter 1,$(JOBS)),2,$(JOBS))

bench: venv
	$(PY) benchmarks/bench_geometry.py
	$(PY) benchmarks/bench_attacks.py
	$(PY) benchmarks/bench_similarity.py

clean:
	rm -rf book/_build book/executed
