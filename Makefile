PY ?= python

.PHONY: dev test debug-test annotate lint bench torture server-torture fuzz fuzz-native clean

dev:            ## install in place with test and dev extras
	$(PY) -m pip install -e '.[test,dev,bench]'

test:           ## the suite, release build
	$(PY) -m pip install -e '.[test]' && $(PY) -m pytest

debug-test:     ## rebuild with boundscheck/wraparound/assertions/linetrace and run the suite
	STDB_DEBUG=1 $(PY) -m pip install --no-deps --no-build-isolation -e . && $(PY) -m pytest -q
	$(PY) -m pip install --no-deps --no-build-isolation -e .

annotate:       ## Cython's HTML annotation next to each .pyx (stdb/_core, stdb/module, stdb/server)
	STDB_ANNOTATE=1 STDB_FORCE=1 $(PY) setup.py build_ext --inplace
	@ls stdb/_core/*.html stdb/module/*.html stdb/server/*.html

lint:
	$(PY) -m ruff check stdb tests bench tools fuzz
	$(PY) -m mypy
	cython-lint stdb/_core stdb/module stdb/server

bench:          ## the whole benchmark suite with its peers (bench/setup.sh installs them); JSON in bench/results/, summary into the README
	bash bench/setup.sh
	$(PY) -m bench

torture:        ## the long crash-torture run: kill -9 at 10,000 random moments
	$(PY) -m fuzz.torture --rounds 10000

server-torture: ## the long server crash torture: kill -9 a loaded server 10,000 times, restart, check
	$(PY) -m fuzz.server_torture --rounds 10000

FUZZ_TIME ?= 60
fuzz:           ## every atheris target for FUZZ_TIME seconds (default 60); crashes in fuzz/crashes/
	$(PY) -m fuzz run --time $(FUZZ_TIME)

fuzz-native:    ## the same with the Cython extensions built by clang with coverage (needs clang)
	$(PY) -m fuzz build-native && $(PY) -m fuzz run --native --time $(FUZZ_TIME)

.PHONY: fuzz-asan
fuzz-asan:      ## the same with AddressSanitizer too (needs clang; self-check: python -m fuzz asan-selfcheck)
	$(PY) -m fuzz build-native --asan && $(PY) -m fuzz run --asan --time $(FUZZ_TIME)

clean:
	rm -rf build stdb/_core/*.c stdb/_core/*.so stdb/_core/*.html stdb/_core/.build-mode \
		stdb/module/*.c stdb/module/*.so stdb/module/*.html stdb/server/*.c stdb/server/*.so stdb/server/*.html
