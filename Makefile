# The entry point for people and CI. `make run` starts Sesame; `make test` runs the tests.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PROTO_FILES := $(shell find protos -name '*.proto' | sort)
# The googleapis protos the contracts import, from the installed googleapis-common-protos.
PROTO_DEPS := var/proto-deps
GOOGLEAPIS_PROTOS = $(shell $(BIN)/python -c "import pathlib, google.api.field_behavior_pb2 as m; print(pathlib.Path(m.__file__).parents[2])")

.PHONY: install certs run test test-slow test-all proto proto-deps proto-check lint replay bench-ledger bench-validation train evaluate score-csv bench-score simulate bench-waiver soak clean load deploy-tools manifests

$(INSTALLED): pyproject.toml gen/python/pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ./gen/python -e '.[dev,train]'
	touch $(INSTALLED)

## install: create the virtual environment and install the suite (run and test do it for you)
install: $(INSTALLED)

## certs: a local CA and certificates for the services, an operator, a demo merchant, a user and a platform (var/certs)
certs: $(INSTALLED)
	$(BIN)/python -m services.common.certificates var/certs

## run: start ledger, score and waiver locally with mutual TLS (SQLite, bundled model); Ctrl-C stops them all
run: $(INSTALLED)
	$(BIN)/python -m services.suite.launch

## test: the default test suite (unit, integration, e2e; slow suites excluded)
test: $(INSTALLED) deploy-tools
	$(BIN)/python -m pytest -m "not slow"

## test-slow: the slow suites only (crash, concurrency, full-data replay); CI runs them too
test-slow: $(INSTALLED) deploy-tools
	$(BIN)/python -m pytest -m slow

## test-all: every test
test-all: $(INSTALLED) deploy-tools
	$(BIN)/python -m pytest

## proto-deps: copy the googleapis protos the contracts import into var/proto-deps
proto-deps: $(INSTALLED)
	rm -rf $(PROTO_DEPS)
	mkdir -p $(PROTO_DEPS)/google/api $(PROTO_DEPS)/google/rpc
	cp $(GOOGLEAPIS_PROTOS)/google/api/field_behavior.proto $(PROTO_DEPS)/google/api/
	cp $(GOOGLEAPIS_PROTOS)/google/rpc/status.proto $(PROTO_DEPS)/google/rpc/

## proto: regenerate gen/python from protos/
proto: proto-deps
	rm -rf gen/python/sesame
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m grpc_tools.protoc -I protos -I $(PROTO_DEPS) \
		--python_out=gen/python --grpc_python_out=gen/python \
		--mypy_out=gen/python --mypy_grpc_out=gen/python $(PROTO_FILES)
	touch gen/python/sesame/py.typed

## proto-check: fail when the checked-in stubs differ from a fresh generation
proto-check: proto
	git diff --exit-code -- gen/python
	test -z "$$(git status --porcelain -- gen/python)" || { git status --porcelain -- gen/python; exit 1; }

## lint: ruff, mypy (strict on services/common) and buf lint
lint: proto-deps
	$(BIN)/ruff check services tests
	$(BIN)/ruff format --check services tests
	$(BIN)/mypy services
	$(BIN)/buf lint

## replay: write a CSV in the Taiwan data set's schema into a running ledger (idempotent)
replay: $(INSTALLED)
	@test -n "$(CSV)" || { echo "usage: make replay CSV=path/to/train.csv LEDGER=host:port"; exit 2; }
	$(BIN)/sesame-replay --csv "$(CSV)" --ledger "$(or $(LEDGER),127.0.0.1:50051)"

## bench-ledger: pgbench baseline, then the ledger through gRPC on PostgreSQL and SQLite
bench-ledger: $(INSTALLED)
	$(BIN)/python -m tests.benchmarks.bench_ledger $(BENCH_ARGS)

## bench-validation: protovalidate against the ledger's hand-written request validation
bench-validation: $(INSTALLED)
	$(BIN)/python -m tests.benchmarks.bench_validation $(BENCH_ARGS)

## train: train the score model from data/taiwan-credit and write services/score/models/<version>/
train: $(INSTALLED)
	$(BIN)/python -m services.score.training.train

## evaluate: score a CSV of the Taiwan data set's schema with the newest model (CSV=path)
evaluate: $(INSTALLED)
	@test -n "$(CSV)" || { echo "usage: make evaluate CSV=path/to/file.csv[.gz]"; exit 2; }
	$(BIN)/python -m services.score.training.evaluate "$(CSV)"

## score-csv: score a CSV through a fresh local suite over gRPC and print its AUC (CSV=path)
score-csv: $(INSTALLED)
	@test -n "$(CSV)" || { echo "usage: make score-csv CSV=path/to/file.csv[.gz]"; exit 2; }
	$(BIN)/python -m services.suite.score_csv "$(CSV)"

## bench-score: the score service against an echo server built the same way, and MLServer (own venv)
bench-score: $(INSTALLED)
	$(BIN)/python -m tests.benchmarks.bench_score $(BENCH_ARGS)

## bench-waiver: order flows through the waiver against the ledger's own holds, on PostgreSQL
bench-waiver: $(INSTALLED)
	$(BIN)/python -m tests.benchmarks.bench_waiver $(BENCH_ARGS)

## soak: all three services at half their most, with the real mix, for MINUTES (default 10); prints RESULT lines
soak: $(INSTALLED)
	$(BIN)/python -m tests.benchmarks.soak --minutes $(or $(MINUTES),10) $(SOAK_ARGS)

## load: one ghz profile against a running service (mutual TLS with var/certs; PLAINTEXT=1 for a plaintext suite): ghz where installed, else the bundled generator; writes ghz's JSON report
load: $(INSTALLED)
	@test -n "$(TARGET)" -a -n "$(PROFILE)" || { echo "usage: make load TARGET=host:port PROFILE=deploy/ghz/<name>.json [LEDGER=host:port] [REPORT=path] [CERTS=var/certs | PLAINTEXT=1]"; exit 2; }
	$(BIN)/python -m tests.benchmarks.ghz_load --target "$(TARGET)" --config "$(PROFILE)" --ledger "$(or $(LEDGER),127.0.0.1:50051)" $(if $(REPORT),--output "$(REPORT)") $(if $(PLAINTEXT),,--certs "$(or $(CERTS),var/certs)")

## deploy-tools: checkov in a virtual environment of its own (its pins clash with the suite's)
CHECKOV_VENV := var/tools/checkov
deploy-tools: $(CHECKOV_VENV)/.installed
$(CHECKOV_VENV)/.installed: deploy/checkov-requirements.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r deploy/checkov-requirements.txt
	touch $@

## manifests: render every overlay into var/manifests/<overlay>.yaml (kubectl kustomize)
manifests:
	mkdir -p var/manifests
	for overlay in local prod prod-external-database; do \
		kubectl kustomize deploy/overlays/$$overlay > var/manifests/$$overlay.yaml || exit 1; done

clean:
	rm -rf $(VENV) var

## simulate: Sesame's policy against flat score thresholds on real outcomes (CSV=path)
simulate: $(INSTALLED)
	@test -n "$(CSV)" || { echo "usage: make simulate CSV=path/to/file.csv[.gz] [SIMULATE_ARGS=--users 1000]"; exit 2; }
	$(BIN)/python -m services.suite.simulate "$(CSV)" $(SIMULATE_ARGS)
