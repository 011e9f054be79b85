# Two commands on a fresh machine: `make demo` and `make test`. Each makes .venv when missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test chaos protos bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[server,train,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/lookalike demo

NODE_CLIENT := tests/node/node_modules/.package-lock.json

# The Node client test needs @grpc/grpc-js, the API contract test needs buf (@bufbuild/buf):
# installed from the lock file when missing. buf needs no install script: its bin/buf
# launcher runs the binary of the @bufbuild/buf-linux-x64 (etc.) optional dependency.
$(NODE_CLIENT): tests/node/package-lock.json
	cd tests/node && npm ci --no-audit --no-fund --ignore-scripts

# The metrics test (tests/test_metrics.py) scrapes both services with a real Prometheus: Debian's
# package, apt-installed when missing (as root, else through sudo).
PROMETHEUS := /usr/bin/prometheus
$(PROMETHEUS):
	SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); $$SUDO apt-get update && $$SUDO apt-get install -y --no-install-recommends prometheus

# The Kubernetes manifests test (tests/test_k8s_manifests.py) renders deploy/k8s with `kubectl kustomize`:
# any kubectl on PATH, else Debian's kubernetes-client (kubectl 1.20, kustomize v2.0.3: the oldest that
# the manifests are written for), apt-installed (as root, else through sudo).
KUBECTL := $(or $(shell command -v kubectl),/usr/bin/kubectl)
$(KUBECTL):
	SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); $$SUDO apt-get update && $$SUDO apt-get install -y --no-install-recommends kubernetes-client

test: $(STAMP) $(NODE_CLIENT) $(PROMETHEUS) $(KUBECTL)
	$(BIN)/python -m pytest -q

# The reliability suite's long runs, figures in RELIABILITY.md (about 10 min on 2 cores): kill -9
# cycles during writes, fuzzed requests per RPC, seconds of decoder fuzzing, seconds of overload.
# `make test` runs the same tests bounded (6 cycles, 60 requests, 20 s, 10 s).
CHAOS_RUNS ?= 100
CHAOS_EXAMPLES ?= 1000
CHAOS_FUZZ_SECONDS ?= 240
CHAOS_LOAD_SECONDS ?= 30
chaos: $(STAMP)
	LOOKALIKE_CHAOS_RUNS=$(CHAOS_RUNS) LOOKALIKE_FUZZ_EXAMPLES=$(CHAOS_EXAMPLES) \
	LOOKALIKE_FUZZ_SECONDS=$(CHAOS_FUZZ_SECONDS) LOOKALIKE_CHAOS_LOAD_SECONDS=$(CHAOS_LOAD_SECONDS) \
		$(BIN)/python -m pytest -q -s -o timeout=3600 --durations=0 tests/reliability/test_kill.py \
		tests/reliability/test_fuzz_rpcs.py tests/reliability/test_fuzz_decoder.py tests/reliability/test_overload.py

protos: $(STAMP)
	$(BIN)/python tools/generate_protos.py

bench: $(STAMP)
	$(BIN)/python -m benchmarks.encoder_throughput
	$(BIN)/python -m benchmarks.search_latency

# The development colour set for `lookalike eval --data data/colour-set`: Debian's icons and emoji,
# apt-installed when missing (as root, else through sudo), and scikit-image's bundled photos.
.PHONY: colour-set
COLOUR_SET_PACKAGES := oxygen-icon-theme fonts-noto-color-emoji unicode-data
colour-set: $(STAMP)
	dpkg -s $(COLOUR_SET_PACKAGES) >/dev/null 2>&1 || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update && $$SUDO apt-get install -y --no-install-recommends $(COLOUR_SET_PACKAGES); }
	$(BIN)/python -m training.colour_set --out data/colour-set

clean:
	rm -rf $(VENV) demo-output .pytest_cache

# Development certificates (a CA, a server certificate for localhost and the compose services, a
# client certificate) in certs/, for TLS, mutual TLS and deploy/docker-compose.yml: docs/security.md.
.PHONY: certs
certs:
	tools/make_certs.sh certs

# The container images (deploy/Dockerfile) built and run for real: makes the base image with
# debootstrap when missing, builds lookalike/encoder:dev and lookalike/search:dev, lints the Dockerfile,
# starts both containers (TLS, tokens, loopback ports) and checks them with the Python client
# (tests/deploy). Needs root, debootstrap and a running docker daemon: deploy/README.md. Run it on
# every change to deploy/.
.PHONY: deploy-test
deploy-test: $(STAMP)
	$(BIN)/hadolint deploy/Dockerfile
	test -d demo-output/models/digits || $(MAKE) demo
	deploy/build.sh
	LOOKALIKE_DEPLOY_TEST=1 $(BIN)/python -m pytest -q tests/deploy
