# The two README commands. Everything else lives in CMake and scripts/.
BUILD ?= build
JOBS ?= 2

.PHONY: run test build deps asan fuzz bench clean install

# `make run` installs and builds only what running needs (profile-guided only if the test
# dependencies are already there), quietly
run:
	@scripts/deps.sh run
	@PGO=auto scripts/build.sh $(BUILD) $(JOBS) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null
	@scripts/run.sh $(BUILD)

test: deps-test build
	cd $(BUILD) && ctest --output-on-failure -j1

# The release build is profile-guided (scripts/build.sh): its training run needs the test
# dependencies (Node.js, the SDK, openssl). PGO=0 builds without.
PGO ?= 1
build: $(if $(filter 1,$(PGO)),deps-test,deps)
	PGO=$(PGO) scripts/build.sh $(BUILD) $(JOBS) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)

deps:
	scripts/deps.sh build

deps-test:
	scripts/deps.sh test

# The same suites under ASan+UBSan (what .ci/run adds to `make test`).
asan: deps-test
	$(MAKE) build PGO=0 BUILD=build-asan CMAKE_FLAGS="-DSYNCGATE_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug"
	cd build-asan && ctest --output-on-failure -j1

# make install [PREFIX=/usr/local] [DESTDIR=]: the binary, the man page, the docs, the systemd
# unit (its paths follow PREFIX) and, unless one is there, the default config
PREFIX ?= /usr/local
install:
	@test -x $(BUILD)/syncgate || $(MAKE) build
	install -D -m 0755 $(BUILD)/syncgate $(DESTDIR)$(PREFIX)/bin/syncgate
	install -D -m 0644 docs/syncgate.8 $(DESTDIR)$(PREFIX)/share/man/man8/syncgate.8
	install -d $(DESTDIR)$(PREFIX)/share/doc/syncgate
	install -m 0644 README.md docs/configuration.md docs/protocol.md docs/architecture.md $(DESTDIR)$(PREFIX)/share/doc/syncgate/
	install -d $(DESTDIR)/etc/systemd/system
	sed 's|/usr/local|$(PREFIX)|g' deploy/syncgate.service > $(DESTDIR)/etc/systemd/system/syncgate.service
	test -e $(DESTDIR)/etc/syncgate/syncgate.conf || install -D -m 0640 conf/syncgate.conf $(DESTDIR)/etc/syncgate/syncgate.conf

# libFuzzer over every parser, FUZZ_SECONDS each (default 60).
fuzz:
	scripts/fuzz.sh $(or $(FUZZ_SECONDS),60)

clean:
	rm -rf build build-asan build-fuzz
