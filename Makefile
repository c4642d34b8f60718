# One task runner for developers and CI. Everything is installed into ./.venv by these targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.deps-installed

.PHONY: demo test test-rust test-python compat wheel-test test-encryption docs lint fmt develop clean bench bench-full

$(STAMP): requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

# Build the extension into the venv (incremental; stale copies removed first).
develop: $(STAMP)
	rm -f python/ambervault/_ambervault*.so
	$(BIN)/maturin develop --quiet --features test-hooks

demo: develop
	$(BIN)/python examples/demo.py

test-rust:
	cargo test -p kvault -p columnar -p vectors -p text --all-targets
	cargo test -p kvault -p columnar -p vectors -p text --doc

test-python: develop
	$(BIN)/python -m pytest

# The kohakuvault 1.1.0 sdist's own KV tests, run against ambervault through a shim.
compat: develop
	$(BIN)/python scripts/run_kohakuvault_tests.py

# Build the release abi3 wheel, install it into a fresh venv, run the API examples against it.
wheel-test: $(STAMP)
	$(BIN)/python scripts/test_wheel.py

# Encryption at rest (the `encryption` feature: SQLCipher, with OpenSSL built from source).
# The extension is built as a wheel in ./target (so it shares every dependency the default build
# compiled; only SQLCipher, OpenSSL and the crates above them are built again), installed into
# its own venv, and tested there: the encryption tests (AMBERVAULT_EXPECT_ENCRYPTION makes a
# build without the feature fail them instead of skipping), then the crash, power-loss and
# bad-input suites with every file they open encrypted (AMBERVAULT_TEST_KEY). Cold cost and
# results: docs/encryption.md.
ENC_VENV := .venv-encryption
ENC_WHEELS := target/wheels-encryption
# A raw key: a passphrase's key derivation (0.1 s per connection) made these suites 6x slower.
ENC_TEST_KEY ?= raw:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff
ENC_SUITES := python/tests/crash python/tests/test_power_loss.py python/tests/test_bad_input_matrix.py \
	python/tests/test_kvault_errors.py python/tests/test_io_faults.py
ENC_PYTEST = $(ENC_VENV)/bin/python -m pytest -q -p no:cacheprovider -c /dev/null --rootdir python/tests

$(ENC_VENV)/.installed: Makefile
	$(PYTHON) -m venv $(ENC_VENV)
	$(ENC_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(ENC_VENV)/bin/python -m pip install --quiet pytest hypothesis numpy msgpack kohakuvault==1.1.0
	touch $@

test-encryption: $(STAMP) $(ENC_VENV)/.installed
	cargo test -p kvault --features encryption,test-hooks --test encryption_tests
	rm -rf $(ENC_WHEELS)
	$(BIN)/maturin build --quiet --features test-hooks,encryption --interpreter $(BIN)/python -o $(ENC_WHEELS)
	$(ENC_VENV)/bin/python -m pip install --quiet --force-reinstall --no-deps $(ENC_WHEELS)/ambervault-*.whl
	AMBERVAULT_EXPECT_ENCRYPTION=1 $(ENC_PYTEST) python/tests/test_encryption.py
	AMBERVAULT_TEST_KEY="$(ENC_TEST_KEY)" $(ENC_PYTEST) $(ENC_SUITES)

# The documentation site (mkdocs-material + API reference from docstrings); warnings are errors.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

test: test-rust test-python compat wheel-test

lint: develop
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p kvault --features test-hooks --all-targets -- -D warnings
	$(CXX) -std=c++17 -Wall -Wextra -Werror -fsyntax-only -isystem vectors/third_party/hnswlib vectors/cpp/hnsw_graph.cpp
	$(BIN)/ruff check python examples scripts benches
	$(BIN)/ruff format --check python examples scripts benches
	$(BIN)/mypy --strict examples
	$(BIN)/python -m mypy.stubtest ambervault._ambervault
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

fmt: $(STAMP)
	cargo fmt --all
	$(BIN)/ruff format python examples scripts benches
	$(BIN)/ruff check --fix python examples scripts benches

# Benchmarks: a separate venv with the peers from PyPI and ambervault's release wheel.
BENCH := .venv-bench
$(BENCH)/.installed: requirements-bench.txt
	$(PYTHON) -m venv $(BENCH)
	$(BENCH)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH)/bin/python -m pip install --quiet -r requirements-bench.txt
	touch $@

bench-install: $(BENCH)/.installed $(STAMP)
	$(BIN)/maturin build --release --quiet -o dist
	$(BENCH)/bin/python -m pip install --quiet --force-reinstall --no-deps $$(ls -t dist/ambervault-*.whl | head -1)

bench: bench-install
	$(BENCH)/bin/python benches/run.py --quick

bench-full: bench-install
	$(BENCH)/bin/python benches/run.py

clean:
	rm -rf $(VENV) $(ENC_VENV) target python/ambervault/_ambervault*.so
