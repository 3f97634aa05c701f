# Two set-up commands: `make demo` (main job on built-in data) and `make test` (the suite, with Chromium for the
# viewer's browser test).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip

.PHONY: demo test bench install clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/priors3d demo rotation --threads 1
	$(VENV)/bin/priors3d demo field --threads 1

# The viewer's browser test drives Debian's Chromium (Playwright cannot download browsers here).
test: install
	@[ -x /usr/bin/chromium ] || { echo "make test: installing chromium for the viewer's browser test"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 \
	  || echo "make test: could not install chromium (apt-get needs root); the browser test will skip"; }
	$(PY) -m pytest -n 2 -q

bench: install
	$(PY) bench/vn_layers.py

clean:
	rm -rf $(VENV) runs
