# The two README commands. Everything else lives in CMake and scripts/.
BUILD ?= build
JOBS ?= 2

.PHONY: run test build deps asan fuzz bench clean

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

# libFuzzer over every parser, FUZZ_SECONDS each (default 60).
fuzz:
	scripts/fuzz.sh $(or $(FUZZ_SECONDS),60)

clean:
	rm -rf build build-asan build-fuzz
