# HFT Bot: the one entry point for people and CI. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CONF ?= replay
ARGS ?=
# Debian packages the project needs: XDP programs (clang, libbpf, bpftool), network
# namespaces for live-feed tests (iproute2), capture replay (tcpreplay).
APT_PACKAGES := clang llvm libbpf-dev bpftool iproute2 tcpreplay
STAMP := $(VENV)/.installed
APT_STAMP := $(VENV)/.apt-installed

.DEFAULT_GOAL := help
.PHONY: help setup run test test-fast bench generate clean

help: ## list the targets
	@grep -hE '^[a-z][a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sort | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(APT_STAMP): | $(VENV)/bin/python
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian packages: $(APT_PACKAGES)"; \
		( apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null ) \
		|| echo "warning: apt-get install failed; XDP and namespace features will be unavailable"; \
	else \
		echo "note: not root (or no apt-get): skipping Debian packages $(APT_PACKAGES)"; \
	fi
	@touch $@

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[cuda,test,train,sweep]'
	@touch $@

setup: $(STAMP) $(APT_STAMP) ## create .venv, install pip and Debian packages (done by every target)

run: setup ## run the pipeline: make run [CONF=replay|smoke] [ARGS='feed.path=x.pcap ...']
	$(VENV)/bin/hftbot run --config-name $(CONF) $(ARGS)

test: setup ## run the whole test suite (what CI runs)
	$(PY) -m pytest $(ARGS)

bench: setup ## run the benchmarks; prints each figure next to a peer measured in the same run
	$(PY) -m bench $(ARGS)

generate: setup ## write a synthetic feed: make generate ARGS='out.pcap --messages 1000000'
	$(VENV)/bin/hftbot generate $(ARGS)

.PHONY: train
train: setup ## train the default model: make train [ARGS='--messages 200000 --seed 1 --out models/default']
	$(VENV)/bin/hftbot train $(ARGS)

# fragments owned by one concern each (XDP programs, GPU toolchain): mk/*.mk
-include mk/*.mk

clean: ## remove caches, runs and generated samples (keeps .venv)
	rm -rf .cache runs outputs .pytest_cache .hypothesis
	find . -name __pycache__ -not -path './.venv/*' -prune -exec rm -rf {} +
