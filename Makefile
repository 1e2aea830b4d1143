# One way to do each thing. `make demo` and `make test` do all set-up on a fresh Debian machine.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
# Debian packages the test suite needs: nft and ip for the dataplane and lab, conntrack for flow
# accounting, ulogd2 to read the rules' flow logs (NFLOG), graphviz to render DOT, chromium for
# the headless browser tests of HTML pages.
APT_PACKAGES := nftables iproute2 conntrack ulogd2 graphviz chromium

.PHONY: demo test install system-deps lint typecheck pytest bench format

$(BIN)/netwarden: pyproject.toml uv.lock
	@command -v uv >/dev/null || python3 -m pip install --quiet uv
	uv sync --frozen --extra dev
	@touch $@

install: $(BIN)/netwarden

system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

demo: install
	$(BIN)/netwarden evaluate -f examples/shop --probes examples/shop/probes.csv
	$(BIN)/netwarden explain -f examples/shop shop/frontend-0 shop/db-0 5432/TCP
	$(BIN)/netwarden evaluate -f examples/shop -f examples/calico --probes examples/calico/probes.csv
	$(BIN)/netwarden connectivity -f examples/shop
	$(BIN)/netwarden verify -f examples/shop

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: install
	$(BIN)/mypy

# The peer the parity tests and benchmarks measure against: IBM's network-config-analyzer
# (NCA), in a virtualenv of its own so that it never enters uv.lock. The stamp names the
# version, so a second run does nothing and a version bump reinstalls.
PEER_VENV := .venv-peer
NCA_VERSION := 2.1.0
NCA_STAMP := $(PEER_VENV)/.nca-$(NCA_VERSION)

$(NCA_STAMP):
	python3 -m venv $(PEER_VENV)
	@echo '*' > $(PEER_VENV)/.gitignore  # ignores itself: nothing of it is ours to commit
	$(PEER_VENV)/bin/pip install --quiet --disable-pip-version-check network-config-analyzer==$(NCA_VERSION)
	@touch $@

.PHONY: .venv-peer
.venv-peer: $(NCA_STAMP)

# pytest exits 5 when it collected nothing: that is a failure here, never a silent pass.
pytest: install system-deps .venv-peer
	$(BIN)/pytest -q -p no:cacheprovider; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

test: lint typecheck pytest

format: install
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

bench: install
	$(BIN)/python benchmarks/bench_evaluate.py
