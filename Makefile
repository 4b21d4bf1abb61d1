# hato: the two commands a newcomer needs are `make run` and `make test`.
# CMake does the building; this file installs what is missing and drives it.

BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=RelWithDebInfo

.PHONY: all build run test test-fast unit deps deps-test asan clean format fuzz fuzz-build

all: build

build:
	@[ -f $(BUILD)/CMakeCache.txt ] || cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD) -j$(JOBS)

# Build and start the broker in the foreground on loopback:1883.
run: deps build
	./$(BUILD)/hato -v

deps:
	@scripts/deps.sh build

deps-test:
	@scripts/deps.sh test

asan:
	@[ -f $(ASAN_BUILD)/CMakeCache.txt ] || cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DHATO_SANITIZE=ON >/dev/null
	cmake --build $(ASAN_BUILD) -j$(JOBS)

# Everything: the release build must compile warning-free, and the whole
# suite (unit, integration, interop) runs against the ASan+UBSan build.
PYTEST = /usr/bin/python3 -m pytest -q -rs -n $(JOBS) -p no:cacheprovider tests/integration tests/interop

test: deps-test build asan
	cd $(ASAN_BUILD) && ctest --output-on-failure -j$(JOBS) -LE pytest
	HATO_BIN=$(ASAN_BUILD)/hato $(PYTEST)

# Same suite against the release build (quicker while developing).
test-fast: deps-test build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS) -LE pytest
	HATO_BIN=$(BUILD)/hato $(PYTEST)

# libFuzzer targets (clang). FUZZ_TIME seconds per target; CI runs a short smoke.
FUZZ_TIME ?= 60
FUZZ_FLAGS = -std=c17 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Isrc
FUZZ_TARGETS = fuzz_mqtt_decode

fuzz-build:
	@mkdir -p build-fuzz
	clang $(FUZZ_FLAGS) src/mqtt/*.c tests/fuzz/fuzz_mqtt_decode.c -o build-fuzz/fuzz_mqtt_decode

fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
	  name=$${t#fuzz_}; mkdir -p build-fuzz/corpus-$$name; \
	  echo "== $$t for $(FUZZ_TIME)s"; \
	  ./build-fuzz/$$t -max_total_time=$(FUZZ_TIME) -dict=tests/fuzz/mqtt.dict \
	    build-fuzz/corpus-$$name tests/fuzz/corpus/$$name >build-fuzz/$$t.log 2>&1; rc=$$?; \
	  tail -3 build-fuzz/$$t.log; [ $$rc = 0 ] || { cat build-fuzz/$$t.log; exit 1; }; \
	done

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-fuzz
