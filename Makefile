# eventcap — every target installs what it needs first, idempotently.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml 2>/dev/null | sha256sum | cut -c1-12)
APT_PKGS := sox ffmpeg espeak-ng flite fluidsynth fluid-soundfont-gm libsndfile1 sound-theme-freedesktop asterisk-moh-opsound-wav
DEMO_OUT ?= demo_out

.PHONY: install apt demo test test-fast lint bench clean

install: apt $(STAMP)

apt:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(STAMP): requirements.txt pyproject.toml
	@py=$$(command -v $(PY) || command -v python3); \
	[ -x $(BIN)/python ] || $$py -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel
	$(BIN)/pip install -q -r requirements.txt
	# These packages declare heavy or broken dependencies (TensorFlow, webrtcvad source build): no-deps.
	$(BIN)/pip install -q --no-deps resemblyzer==0.1.4 basic-pitch==0.4.0
	$(BIN)/pip install -q --no-deps -e .
	rm -f $(VENV)/.installed-*; touch $@

demo: install
	PYANNOTE_METRICS_ENABLED=0 RAY_AUTH_MODE=disabled $(BIN)/python -m jobs.demo --output $(DEMO_OUT)

test: install
	HF_HUB_OFFLINE=1 PYANNOTE_METRICS_ENABLED=0 $(BIN)/python -m pytest -q tests

test-fast: install
	HF_HUB_OFFLINE=1 PYANNOTE_METRICS_ENABLED=0 $(BIN)/python -m pytest -q -m "not slow" tests

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(DEMO_OUT) .pytest_cache
