# Stockroom. `make dev` runs the whole stack locally; `make test` is what CI runs.
SHELL := /bin/bash
VENV := .venv
TOOLS := $(VENV)/.tools-installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export SAM_CLI_TELEMETRY := 0

.PHONY: help tools dev demo test fmt lint unit sam-validate build clean

help:
	@echo "make dev     run the whole stack locally (moto, cargo lambda watch, triggers) until Ctrl-C"
	@echo "make demo    the last-blue-jacket story against the local stack (starts it if needed)"
	@echo "make test    fmt check, clippy, unit and emulator tests, sam validate --lint, cfn-lint"
	@echo "make build   release arm64 build of every function (cargo lambda, Zig)"
	@echo "make tools   install the pinned dev tools into $(VENV)"

# Pinned dev tools (moto[server], cargo-lambda with Zig, aws-sam-cli, cfn-lint) in one venv.
$(TOOLS): infra/requirements-dev.txt infra/constraints-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r infra/requirements-dev.txt -c infra/constraints-dev.txt
	touch $@

tools: $(TOOLS)

dev: tools
	bash infra/dev.sh

demo: tools
	bash infra/demo.sh

fmt:
	cargo fmt --all -- --check

lint:
	cargo clippy --workspace --all-targets -- -D warnings

# Unit tests and the integration tests; the latter start moto's server themselves.
unit: tools
	cargo test --workspace

sam-validate: tools
	sam validate --lint --template template.yaml
	cfn-lint template.yaml

test: tools fmt lint unit sam-validate

build: tools
	cargo lambda build --release --arm64 --package sale-webhook --package return-processor --package stock-api --package stock-fanout --package supplier-feed

clean:
	cargo clean
	rm -rf .stack
