# hato: the two commands a newcomer needs are `make run` and `make test`.
# CMake does the building; this file installs what is missing and drives it.

BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=RelWithDebInfo

.PHONY: all build run test test-fast unit deps deps-test asan clean format fuzz fuzz-build install deb

all: build

# A configure counts as done only once it finished: the stamp is written
# after cmake succeeds, so a failed or interrupted one (which leaves
# CMakeCache.txt behind) is simply run again by the next make.
CONFIGURED = .hato-configured

build:
	@[ -f $(BUILD)/$(CONFIGURED) ] || { cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null && touch $(BUILD)/$(CONFIGURED); }
	cmake --build $(BUILD) -j$(JOBS)

# Build and start the broker in the foreground on loopback:1883.
run: deps build
	./$(BUILD)/hato -v

deps:
	@scripts/deps.sh build

deps-test:
	@scripts/deps.sh test

# Configured every time (a second or so): a build directory made before
# cmocka was installed then gains the unit tests.
asan:
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DHATO_SANITIZE=ON >/dev/null
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

# libFuzzer targets (clang): every tests/fuzz/fuzz_NAME.c, seeded from
# tests/fuzz/corpus/NAME, with tests/fuzz/NAME.dict when present.
# FUZZ_TIME seconds per target; CI runs a short smoke.
FUZZ_TIME ?= 60
FUZZ_BUILD ?= build-fuzz
FUZZ_TARGETS ?= $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))

fuzz-build:
	@[ -f $(FUZZ_BUILD)/$(CONFIGURED) ] || { CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Debug -DHATO_FUZZ=ON -DHATO_TESTS=OFF >/dev/null && touch $(FUZZ_BUILD)/$(CONFIGURED); }
	cmake --build $(FUZZ_BUILD) -j$(JOBS) --target $(FUZZ_TARGETS)

fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
	  name=$${t#fuzz_}; mkdir -p $(FUZZ_BUILD)/corpus-$$name tests/fuzz/corpus/$$name; \
	  dict=; [ -f tests/fuzz/$$name.dict ] && dict=-dict=tests/fuzz/$$name.dict; \
	  echo "== $$t for $(FUZZ_TIME)s"; \
	  ./$(FUZZ_BUILD)/$$t -max_total_time=$(FUZZ_TIME) $$dict \
	    $(FUZZ_BUILD)/corpus-$$name tests/fuzz/corpus/$$name >$(FUZZ_BUILD)/$$t.log 2>&1; rc=$$?; \
	  tail -3 $(FUZZ_BUILD)/$$t.log; [ $$rc = 0 ] || { cat $(FUZZ_BUILD)/$$t.log; exit 1; }; \
	done

# Install the programs, man pages, /etc config and systemd units
# (docs/operations.md). PREFIX and DESTDIR as usual; PREFIX=/usr puts the
# config in /etc/hato. A PREFIX other than the build's reconfigures it.
PREFIX ?= /usr/local

install:
	@[ -f $(BUILD)/$(CONFIGURED) ] && grep -qx 'CMAKE_INSTALL_PREFIX:PATH=$(PREFIX)' $(BUILD)/CMakeCache.txt || \
	  { cmake -S . -B $(BUILD) $(CMAKE_FLAGS) -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null && touch $(BUILD)/$(CONFIGURED); }
	cmake --build $(BUILD) -j$(JOBS)
	DESTDIR=$(DESTDIR) cmake --install $(BUILD)

# The Debian package, built with debhelper from a copy of this tree (so the
# package build writes nothing here): $(DEB_BUILD)/hato_VERSION_ARCH.deb.
DEB_BUILD ?= build-deb

deb:
	@scripts/deps.sh deb
	rm -rf $(DEB_BUILD) && mkdir -p $(DEB_BUILD)/src
	tar -cf - --exclude=./.git --exclude=./build --exclude='./build-*' --exclude=node_modules \
	  --exclude=__pycache__ . | tar -xf - -C $(DEB_BUILD)/src
	cd $(DEB_BUILD)/src && dpkg-buildpackage -b -us -uc -j$(JOBS) >../build.log 2>&1 || { tail -40 ../build.log; exit 1; }
	@ls $(DEB_BUILD)/*.deb

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-fuzz $(DEB_BUILD)
