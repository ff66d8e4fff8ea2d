# Developer shortcuts; the scripts are the source of truth.
.PHONY: all build test test-asan run format clean

all: build

build:
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build build -j

test:
	tests/run.sh

test-asan:
	SANITIZE=1 tests/run.sh

run:
	deploy/run.sh

format:
	git ls-files '*.c' '*.h' | xargs clang-format -i

clean:
	rm -rf build build-asan
