# hato: the two commands a newcomer needs are `make run` and `make test`.
# CMake does the building; this file installs what is missing and drives it.

BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=RelWithDebInfo

.PHONY: all build run test test-fast unit deps deps-test asan clean format

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
test: deps-test build asan
	cd $(ASAN_BUILD) && ctest --output-on-failure -j$(JOBS)

# Same suite against the release build (quicker while developing).
test-fast: deps-test build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
