# Stockroom. `make dev` runs the whole stack locally; `make test` is what CI runs.
SHELL := /bin/bash
VENV := .venv
TOOLS := $(VENV)/.tools-installed
CHECKOV_VENV := $(VENV)/checkov
CHECKOV := $(CHECKOV_VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export SAM_CLI_TELEMETRY := 0

.PHONY: help tools dev demo test chaos fmt lint unit sam-validate checkov dev-stop lambda build bench deploy clean

help:
	@echo "make dev     run the whole stack locally (moto, cargo lambda watch, triggers) until Ctrl-C"
	@echo "make demo    the last-blue-jacket story against the local stack (starts it if needed)"
	@echo "make test    fmt check, clippy, unit and emulator tests, sam validate --lint, cfn-lint, checkov, make dev's stop path"
	@echo "make chaos   the chaos suite at length: every fault on, then every invariant (CHAOS_SCALE=5)"
	@echo "make build   one release arm64 build of every function (cargo lambda, Zig), sam build, artifact checks"
	@echo "make bench   benchmarks: cold start, size, memory, CPU, hot SKU, feeds, fan-out, Shopify connector, a Python baseline -> BENCHMARKS.md"
	@echo "             (BENCH_ARGS=--full adds the 1,000,000-row feed; BENCH_ARGS=--quick is a rough smoke run)"
	@echo "make deploy  make build, then sam deploy (--guided the first time)"
	@echo "make tools   install the pinned dev tools into $(VENV)"

# Pinned dev tools (moto[server], cargo-lambda with Zig, aws-sam-cli, cfn-lint) in one venv;
# checkov in its own (below).
$(TOOLS): infra/requirements-dev.txt infra/constraints-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r infra/requirements-dev.txt -c infra/constraints-dev.txt
	touch $@

# checkov pins its own boto3 (and more) against the tools above: it gets a
# venv of its own, pinned the same way.
$(CHECKOV): infra/requirements-checkov.txt infra/constraints-checkov.txt
	python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check -r infra/requirements-checkov.txt -c infra/constraints-checkov.txt
	touch $@

tools: $(TOOLS) $(CHECKOV)

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

# The template's security checks: every failure fails the build; each check
# the template skips says why in the resource's Metadata (checkov: skip).
# --skip-download: nothing is fetched from checkov's platform.
checkov: $(CHECKOV)
	$(CHECKOV_VENV)/bin/checkov --file template.yaml --framework cloudformation --skip-download --compact --quiet

# The chaos suite at length: a mixed workload under every fault the emulator
# injects, then the invariants (`make test` runs it short).
CHAOS_SCALE ?= 5
chaos: tools
	set -o pipefail; STOCKROOM_CHAOS_SCALE=$(CHAOS_SCALE) cargo test -p stockroom-tests --test chaos -- --nocapture \
		| grep -v '"_aws"'   # the handlers' metric records (EMF) are not the report

# `make dev` stopped by SIGTERM, as a supervisor or `timeout` stops it, leaves nothing running.
dev-stop: tools
	bash infra/test-dev-stop.sh

test: tools fmt lint unit sam-validate checkov dev-stop

# Every function: `make build` compiles the workspace once (release, arm64,
# Zig cross-compiles), then `sam build` copies each function's bootstrap
# (the build-<LogicalId> targets below) and the artifacts are checked.
FUNCTIONS := sale-webhook return-processor stock-api stock-fanout supplier-feed channel-sync channel-events

lambda: tools
	cargo lambda build --release --arm64 $(addprefix --package ,$(FUNCTIONS))

build: lambda
	sam build --build-in-source
	bash infra/check-artifacts.sh

# Run by `sam build` (BuildMethod: makefile) in this directory, one per function.
define artifact
	@test -f target/lambda/$(1)/bootstrap || $(MAKE) --no-print-directory lambda
	cp target/lambda/$(1)/bootstrap $(ARTIFACTS_DIR)/bootstrap
endef
build-SaleWebhookFunction: ; $(call artifact,sale-webhook)
build-ReturnProcessorFunction: ; $(call artifact,return-processor)
build-StockApiFunction: ; $(call artifact,stock-api)
build-StockFanoutFunction: ; $(call artifact,stock-fanout)
build-SupplierFeedFunction: ; $(call artifact,supplier-feed)
build-ChannelSyncFunction: ; $(call artifact,channel-sync)
build-ChannelEventsFunction: ; $(call artifact,channel-events)

# Benchmarks, not tests: the arm64 artifacts for their sizes, then the
# functions and the harness built natively (release) to run here.
BENCH_ARGS ?=
bench: tools lambda
	cargo build --release --bins -p stockroom-bench $(addprefix -p ,$(FUNCTIONS))
	target/release/stockroom-bench $(BENCH_ARGS)

# The first deploy asks its questions (`sam deploy --guided`); later ones use samconfig.toml.
deploy: build
	@if sam list stack-outputs --stack-name $${STACK_NAME:-stockroom} >/dev/null 2>&1; then \
		sam deploy; \
	else \
		sam deploy --guided; \
	fi

clean:
	cargo clean
	rm -rf .stack .aws-sam
