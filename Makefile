# Two commands on a fresh machine: `make demo` and `make test`. Each makes .venv when missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test protos bench clean

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

test: $(STAMP) $(NODE_CLIENT)
	$(BIN)/python -m pytest -q

protos: $(STAMP)
	$(BIN)/python tools/generate_protos.py

bench: $(STAMP)
	$(BIN)/python -m benchmarks.encoder_throughput
	$(BIN)/python -m benchmarks.search_latency

clean:
	rm -rf $(VENV) demo-output .pytest_cache
