# Haze — build, test and benchmark commands. `make test` works on a fresh Debian machine as root:
# it installs the Debian packages Haze needs when they are missing.

SWIFT ?= $(shell command -v swift 2>/dev/null || echo /opt/swift/usr/bin/swift)
DEBIAN_PACKAGES := dataset-fashion-mnist libopenblas-dev pkg-config zlib1g-dev libpng-dev libjpeg62-turbo-dev openmpi-bin libopenmpi-dev
# Release builds of the tests are much faster at numeric work than debug builds.
TEST_FLAGS := -c release -Xswiftc -enable-testing

.PHONY: deps build test test-portable bench demo fixtures test-scripts soak test-asan test-tsan clean

## deps: install the Debian packages Haze needs (only those missing; needs root or sudo)
deps:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" -ne 0 ] && SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

## build: debug build of everything
build: deps
	$(SWIFT) build

## test: build and run every test (release mode, @testable)
test: deps
	$(SWIFT) build --build-tests $(TEST_FLAGS)
	$(SWIFT) test --skip-build $(TEST_FLAGS)

## test-portable: the release test bundle on emulated CPUs without AVX-512 (qemu-user, installed
## when missing): EPYC-Milan (AVX2 + FMA) and Nehalem (x86-64 baseline with SSE4.2). The `haze`
## commands of the CLI tests run through the same emulator (HAZE_TEST_LAUNCHER). OpenBLAS's
## core is left to Haze, which chooses it from CPUID (Haswell on EPYC-Milan), or to OpenBLAS's
## own CPUID detection (Nehalem): a core type set for the host would not run on these CPUs.
PORTABLE_CPUS ?= EPYC-Milan Nehalem
test-portable: deps
	@command -v qemu-x86_64 >/dev/null || { SUDO=""; [ "$$(id -u)" -ne 0 ] && SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq qemu-user; }
	$(SWIFT) build --build-tests $(TEST_FLAGS)
	@for cpu in $(PORTABLE_CPUS); do \
	  echo "== tests on an emulated $$cpu"; \
	  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE HAZE_TEST_LAUNCHER="qemu-x86_64 -cpu $$cpu" \
	    qemu-x86_64 -cpu $$cpu .build/release/HazePackageTests.xctest || exit 1; \
	done

## bench: release build, then the kernel benchmark (BLAS environment overrides removed)
bench: deps
	$(SWIFT) build -c release --product haze-bench
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .build/release/haze-bench kernels

## demo: train a small model on Fashion-MNIST (about 8 minutes), then samples, a denoising GIF,
## the forward process and the loss curve in demo/
DEMO_MINUTES ?= 8
demo: deps
	$(SWIFT) build -c release --product haze
	rm -rf demo/run && mkdir -p demo
	.build/release/haze train --data fashion-mnist --out demo/run --preset fmnist-tiny --steps 100000 \
	  --max-minutes $(DEMO_MINUTES) --batch-size 64 --lr 1e-3 --warmup 100 --min-snr-gamma 5 --ema-decay 0.999 \
	  --checkpoint-every 250 --sample-every 0 --log-every 25
	.build/release/haze sample --model demo/run --scheduler ddim --steps 50 --count 64 --seed 1 \
	  --out demo/samples.png --gif demo/denoise.gif
	.build/release/haze noise --data fashion-mnist --out demo/forward.png
	cp demo/run/loss.svg demo/loss.svg
	@echo "demo/: samples.png (64 DDIM samples), denoise.gif, forward.png, loss.svg; the run is in demo/run"

## fixtures: regenerate the PyTorch/diffusers/scipy fixtures (needs ../shared/reference's venv)
PY ?= $(HOME)/haze-ref-venv/bin/python
fixtures:
	$(PY) scripts/make_tensor_fixtures.py
	$(PY) scripts/make_unet_fixtures.py
	$(PY) scripts/make_scheduler_fixtures.py
	$(PY) scripts/make_sampling_fixtures.py
	$(PY) scripts/make_image_fixtures.py
	$(PY) scripts/make_metric_fixtures.py
	$(PY) scripts/make_trainer_lockstep_fixtures.py
	$(PY) -c "import pytorch_fid" 2>/dev/null || $(PY) -m pip install pytorch-fid
	$(PY) scripts/make_inception_fixtures.py

## test-scripts: test the Python scripts users run (convert_notebook_checkpoint.py: good Keras 2/3 checkpoints,
## clear errors and nothing written on bad input; about 1-2 minutes). Needs a Python with tensorflow-cpu,
## tf-keras, numpy and safetensors; not part of `make test` (CI has no Python)
TF_PY ?= /root/tf-venv/bin/python
test-scripts:
	TF_USE_LEGACY_KERAS=1 $(TF_PY) scripts/test_convert_notebook_checkpoint.py

## soak: crash consistency under kill -9 (issue 15): 100+ SIGKILLs of `haze train` at random moments (start-up,
## steps, checkpoint writes), each run resumed to the end and checked bit for bit against an uninterrupted run
## (scripts/kill_soak.py, standard library Python; about a minute, one core). Needs .build/release/haze;
## not part of `make test`. SOAK_FLAGS: e.g. --smoke, --kills 300, --seed 7, --keep
SOAK_FLAGS ?=
soak: deps
	$(SWIFT) build -c release --product haze
	python3 scripts/kill_soak.py $(SOAK_FLAGS)

## test-asan, test-tsan: the whole test suite under AddressSanitizer or ThreadSanitizer (release builds
## with -enable-testing in .build-asan / .build-tsan; the CLI tests run the sanitized `haze`). Not part of
## `make test`: each takes several times as long.
test-asan test-tsan: test-%: deps
	$(SWIFT) build --build-tests $(TEST_FLAGS) --sanitize=$(if $(filter asan,$*),address,thread) --scratch-path .build-$*
	$(SWIFT) test --skip-build $(TEST_FLAGS) --sanitize=$(if $(filter asan,$*),address,thread) --scratch-path .build-$*

clean:
	rm -rf .build
