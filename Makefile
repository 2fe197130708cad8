# Haze — build, test and benchmark commands. `make test` works on a fresh Debian machine as root:
# it installs the Debian packages Haze needs when they are missing.

SWIFT ?= $(shell command -v swift 2>/dev/null || echo /opt/swift/usr/bin/swift)
DEBIAN_PACKAGES := dataset-fashion-mnist libopenblas-dev pkg-config zlib1g-dev libpng-dev libjpeg62-turbo-dev openmpi-bin libopenmpi-dev
# Release builds of the tests are much faster at numeric work than debug builds.
TEST_FLAGS := -c release -Xswiftc -enable-testing

.PHONY: deps build test test-portable check-arm64 test-arm64 examples bench demo install uninstall fixtures test-scripts soak test-asan test-tsan fuzz clean

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

## test: check-arm64 and test-arm64 (seconds), the examples (about a minute), then build and run every test (release mode, @testable)
test: deps check-arm64 test-arm64 examples
	$(SWIFT) build --build-tests $(TEST_FLAGS)
	$(SWIFT) test --skip-build $(TEST_FLAGS)

## test-portable: the release test bundle on emulated CPUs without AVX-512 (qemu-user, installed
## when missing): EPYC-Milan (AVX2 + FMA) and Nehalem (x86-64 baseline with SSE4.2). The `haze`
## commands of the CLI tests run through the same emulator (HAZE_TEST_LAUNCHER). OpenBLAS's
## core is left to Haze, which chooses it from CPUID (Haswell on EPYC-Milan), or to OpenBLAS's
## own CPUID detection (Nehalem): a core type set for the host would not run on these CPUs.
## Each CPU's run stops after PORTABLE_MINUTES (say so loudly, failing if a test failed): the bundle takes about
## 3 minutes per CPU on most hosts, but over 5 minutes for ThreadCountTests.testConvolutions alone under the qemu of
## the Intel Xeon of 2026-12-06, which would take CI past its 90 minutes.
PORTABLE_CPUS ?= EPYC-Milan Nehalem
PORTABLE_MINUTES ?= 15
test-portable: deps
	@command -v qemu-x86_64 >/dev/null || { SUDO=""; [ "$$(id -u)" -ne 0 ] && SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq qemu-user; }
	$(SWIFT) build --build-tests $(TEST_FLAGS)
	@for cpu in $(PORTABLE_CPUS); do \
	  echo "== tests on an emulated $$cpu (at most $(PORTABLE_MINUTES) minutes)"; \
	  log=$$(mktemp); \
	  { env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE HAZE_TEST_LAUNCHER="qemu-x86_64 -cpu $$cpu" \
	    timeout $(PORTABLE_MINUTES)m qemu-x86_64 -cpu $$cpu .build/release/HazePackageTests.xctest; echo $$? > $$log.status; } 2>&1 | tee $$log; \
	  status=$$(cat $$log.status); passed=$$(grep -c "' passed (" $$log); rm -f $$log.status; \
	  if grep -q "' failed (" $$log; then rm -f $$log; echo "tests failed on the emulated $$cpu"; exit 1; fi; \
	  rm -f $$log; \
	  if [ "$$status" = 124 ]; then \
	    echo "!! the emulated $$cpu stopped after $(PORTABLE_MINUTES) minutes: $$passed tests passed, none failed, the rest did not run (this host's qemu is too slow for the whole bundle)"; \
	  elif [ "$$status" != 0 ]; then echo "the emulated $$cpu exited with $$status"; exit 1; fi; \
	done

## check-arm64: compile every C file of Haze (CHazeKernels, CHazeMPI, CJPEGShim, the CPNG and CZlib shims)
## for aarch64 Linux with Swift's clang (CLANG: beside SWIFT, symlinks resolved; else clang on PATH) against Debian's cross headers (libc6-dev-arm64-cross, installed
## when missing): the portable paths behind the x86-64 guards must compile there. A few seconds; compiles
## only (no Swift, no linking, nothing runs). Library headers without an arm64 copy (libjpeg, libpng, zlib)
## are the host's, which are the same on both (the two shims are skipped when those are missing).
CLANG ?= $(shell c=$$(dirname "$$(readlink -f '$(SWIFT)' 2>/dev/null || echo '$(SWIFT)')")/clang; [ -x "$$c" ] && echo "$$c" || command -v clang || echo clang)
ARM64_FLAGS := --target=aarch64-linux-gnu --sysroot=/usr/aarch64-linux-gnu -O2 -Wall -Werror=implicit-function-declaration
check-arm64:
	@[ -f /usr/aarch64-linux-gnu/include/stdio.h ] || { SUDO=""; [ "$$(id -u)" -ne 0 ] && SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq libc6-dev-arm64-cross; }
	@set -e; start=$$(date +%s); host=$$(mktemp -d); trap 'rm -rf "$$host"' EXIT; n=0; \
	for h in jpeglib.h jmorecfg.h jerror.h png.h pngconf.h pnglibconf.h zlib.h zconf.h; do \
	  if [ -f /usr/include/$$h ]; then ln -s /usr/include/$$h $$host/; fi; done; \
	for h in /usr/include/*-linux-gnu/jconfig.h; do if [ -f $$h ]; then ln -sf $$h $$host/jconfig.h; fi; done; \
	for f in Sources/CHazeKernels/*.c Sources/CHazeMPI/*.c; do \
	  $(CLANG) $(ARM64_FLAGS) -I Sources/CHazeKernels/include -I Sources/CHazeMPI/include -c -o /dev/null $$f; n=$$((n+1)); done; \
	if [ -f $$host/jpeglib.h ] && [ -f $$host/jconfig.h ]; then \
	  $(CLANG) $(ARM64_FLAGS) -idirafter $$host -I Sources/CJPEGShim/include -c -o /dev/null Sources/CJPEGShim/jpeg_shim.c; n=$$((n+1)); \
	else echo "check-arm64: no libjpeg headers (make deps), Sources/CJPEGShim skipped"; fi; \
	for m in CPNG:png.h CZlib:zlib.h; do \
	  if [ -f $$host/$${m#*:} ]; then \
	    $(CLANG) $(ARM64_FLAGS) -idirafter $$host -fsyntax-only -x c Sources/$${m%%:*}/shim.h; n=$$((n+1)); \
	  else echo "check-arm64: no $${m#*:} (make deps), Sources/$${m%%:*}/shim.h skipped"; fi; done; \
	echo "check-arm64: $$n C files compile for aarch64 Linux ($$(( $$(date +%s) - start )) s)"

## test-arm64: the bf16 products on aarch64 (Tests/arm64/gemm_bf16.c, with haze_gemm_bf16*.c and haze_gemm.c),
## linked statically with Swift's clang against Debian's cross libraries (libc6-dev-arm64-cross,
## libgcc-12-dev-arm64-cross; qemu-user for qemu-aarch64; installed when missing) and run on two
## emulated CPUs: `max` (ARMv8.6 BF16: the BFDOT kernel must be chosen) and cortex-a72 (none: the
## portable loop). A few seconds.
ARM64_GCC := $(firstword $(wildcard /usr/lib/gcc-cross/aarch64-linux-gnu/*/libgcc.a))
test-arm64:
	@if [ ! -f /usr/aarch64-linux-gnu/lib/crt1.o ] || [ -z "$(ARM64_GCC)" ] || ! command -v qemu-aarch64 >/dev/null; then \
	  SUDO=""; [ "$$(id -u)" -ne 0 ] && SUDO=sudo; $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq libc6-dev-arm64-cross libgcc-12-dev-arm64-cross qemu-user; fi
	@set -e; dir=$$(mktemp -d); trap 'rm -rf "$$dir"' EXIT; \
	$(CLANG) $(ARM64_FLAGS) --gcc-toolchain=/usr -fuse-ld=lld -static -I Sources/CHazeKernels/include -o $$dir/gemm_bf16 \
	  Tests/arm64/gemm_bf16.c Sources/CHazeKernels/haze_gemm_bf16.c Sources/CHazeKernels/haze_gemm_bf16_arm.c \
	  Sources/CHazeKernels/haze_gemm.c -lm -lpthread; \
	qemu-aarch64 -cpu max $$dir/gemm_bf16 "Arm BF16"; \
	qemu-aarch64 -cpu cortex-a72 $$dir/gemm_bf16 none

## examples: build the Examples package (a separate package that uses Haze by path, as a user's project does;
## debug build) and run its programs on a temporary folder: train-on-tensors for 5 steps, sample-folder on the
## model folder it wrote (the PNG must be written), custom-scheduler on that model and on its analytic predictor
## (it fails when its DDIM differs from Haze's). About half a minute once built, plus about a minute to build from
## scratch; see Examples/README.md
examples: deps
	$(SWIFT) build --package-path Examples
	@set -e; start=$$(date +%s); dir=$$(mktemp -d); trap 'rm -rf "$$dir"' EXIT; \
	bin=$$($(SWIFT) build --package-path Examples --show-bin-path); \
	$$bin/train-on-tensors $$dir/model --steps 5; \
	$$bin/sample-folder $$dir/model $$dir/grid.png --steps 5; \
	[ -s $$dir/grid.png ] || { echo "examples: sample-folder wrote no grid.png"; exit 1; }; \
	$$bin/custom-scheduler $$dir/model --steps 10; \
	$$bin/custom-scheduler --steps 50; \
	echo "examples: train-on-tensors, sample-folder and custom-scheduler ran ($$(( $$(date +%s) - start )) s)"

## docs: the tutorial's pictures and numbers, and its page (Documentation/tutorial/README.md from template.md):
## the Examples package's `tutorial` program in release mode. It trains the chapter-4 model (fmnist-tiny, 2500 steps,
## about 20-40 minutes on 2 cores) into Examples/.build/tutorial-run, which later runs reuse (delete it to retrain).
## DOCS_FLAGS: e.g. --quick (a smoke run into a temporary folder), --steps N
DOCS_FLAGS ?=
docs: deps
	$(SWIFT) build -c release --package-path Examples --product tutorial
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE Examples/.build/release/tutorial $(DOCS_FLAGS)

## bench: release build, then the kernel benchmark (BLAS environment overrides removed)
bench: deps
	$(SWIFT) build -c release --product haze-bench
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .build/release/haze-bench kernels

## demo: train a small model on Fashion-MNIST (about 8 minutes), then samples, a denoising GIF,
## the forward process and the loss curve in demo/, and samples of the checked-in pretrained model
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
	.build/release/haze sample --model assets/fmnist-small-guide --scheduler dpm++2m --steps 20 --count 64 --seed 1 \
	  --out demo/pretrained.png
	cp demo/run/loss.svg demo/loss.svg
	@echo "demo/: samples.png (64 DDIM samples), denoise.gif, forward.png, loss.svg; the run is in demo/run;"
	@echo "  pretrained.png: 64 samples of the checked-in fmnist-small model (8,000 steps), DPM-Solver++ 20 steps"

## install: release build of `haze`, installed as $(DESTDIR)$(PREFIX)/bin/haze with its help: each command's
## `--help` as text in share/doc/haze/ (haze.txt, haze-COMMAND.txt) and all of them in one man page,
## share/man/man1/haze.1 (`man haze`), and evaluate's classifier weights in share/haze/. The version is `haze --version` (Haze.version in Sources/haze/Haze.swift).
## HAZE_COMMANDS must be the subcommands `haze --help` lists; the install stops if they differ.
## uninstall: removes exactly those files, the reference statistics evaluate cached beside the classifier, and
## share/doc/haze, share/haze when they are left empty.
PREFIX ?= /usr/local
BINDIR = $(DESTDIR)$(PREFIX)/bin
MAN1DIR = $(DESTDIR)$(PREFIX)/share/man/man1
HAZE_DOCDIR = $(DESTDIR)$(PREFIX)/share/doc/haze
HAZE_DATADIR = $(DESTDIR)$(PREFIX)/share/haze
HAZE_COMMANDS := train sample inpaint interpolate encode noise evaluate train-classifier predict inspect
# Help text as roff no-fill lines: backslashes and hyphens escaped, every line started with \& (so that
# a leading . or ' is text, not a request).
ROFF_TEXT := sed -e 's/\\/\\e/g' -e 's/-/\\-/g' -e 's/^/\\\&/'
install: deps
	$(SWIFT) build -c release --product haze
	@set -e; haze=.build/release/haze; \
	listed=$$($$haze --help | sed -n '/^SUBCOMMANDS:/,$$s/^  \([a-z][a-z-]*\) .*/\1/p' | tr '\n' ' '); \
	if [ "$$listed" != "$(HAZE_COMMANDS) " ]; then \
	  echo "make install: haze --help lists '$$listed', HAZE_COMMANDS is '$(HAZE_COMMANDS)'"; exit 1; fi
	install -d $(BINDIR) $(MAN1DIR) $(HAZE_DOCDIR)
	install -m 755 .build/release/haze $(BINDIR)/haze
	install -d $(HAZE_DATADIR) && install -m 644 assets/fmnist-classifier.safetensors $(HAZE_DATADIR)/
	@set -e; haze=.build/release/haze; version=$$($$haze --version); \
	$$haze --help > $(HAZE_DOCDIR)/haze.txt; \
	for c in $(HAZE_COMMANDS); do $$haze $$c --help > $(HAZE_DOCDIR)/haze-$$c.txt; done; \
	{ printf '.TH HAZE 1 "%s" "Haze %s" "User Commands"\n' "$$(date +%Y-%m-%d)" "$$version"; \
	  printf '.SH NAME\nhaze \\- train and sample denoising diffusion models on the CPU\n'; \
	  printf '.SH SYNOPSIS\n.B haze\n.I command\n.RI [ options ]\n.br\n.B haze\n.I command\n.B \\-\\-help\n'; \
	  printf '.SH DESCRIPTION\n.nf\n'; $(ROFF_TEXT) $(HAZE_DOCDIR)/haze.txt; printf '.fi\n'; \
	  for c in $(HAZE_COMMANDS); do \
	    printf '.SH "HAZE %s"\n.nf\n' "$$(echo $$c | tr a-z A-Z)"; $(ROFF_TEXT) $(HAZE_DOCDIR)/haze-$$c.txt; printf '.fi\n'; \
	  done; \
	  printf '.SH VERSION\n%s (see CHANGELOG.md in the source)\n' "$$version"; \
	  printf '.SH SEE ALSO\nREADME.md and Documentation/ in the Haze source tree.\n'; \
	} > $(MAN1DIR)/haze.1; \
	echo "installed haze $$version: $(BINDIR)/haze, $(MAN1DIR)/haze.1, $(HAZE_DOCDIR)/haze*.txt, $(HAZE_DATADIR)/fmnist-classifier.safetensors"

uninstall:
	rm -f $(BINDIR)/haze $(MAN1DIR)/haze.1 $(HAZE_DOCDIR)/haze.txt $(foreach c,$(HAZE_COMMANDS),$(HAZE_DOCDIR)/haze-$(c).txt)
	rm -f $(HAZE_DATADIR)/fmnist-classifier.safetensors $(HAZE_DATADIR)/fmnist-classifier.safetensors.*.stats.safetensors
	rmdir $(HAZE_DOCDIR) $(HAZE_DATADIR) 2>/dev/null || true

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
## clear errors and nothing written on bad input; export_notebook_checkpoint.py: round trip and bad folders;
## about 2 minutes). Needs a Python with tensorflow-cpu,
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

## fuzz: libFuzzer with AddressSanitizer on every kind of file Haze reads from a user (Sources/haze-fuzz:
## safetensors, unet-config, scheduler-config, trainer-state, optimizer, idx, png, jpeg, sample-input), each for
## FUZZ_SECONDS (default 60) or FUZZ_RUNS inputs, from a scratch copy of its seeds (Fuzz/corpus, not grown).
## Fails on any crash, sanitizer report, leak, hang (10 s) or allocation over FUZZ_MALLOC_MB. Release build in
## .build-fuzz; findings and logs in .build-fuzz/run/HARNESS/. FUZZ_TARGETS: a subset of the harnesses.
## FUZZ_MALLOC_MB: no input of at most -max_len bytes may make Haze allocate more at once. The largest legitimate
## allocation is an image at the decoder's 64-Mpixel limit, 256 MB of RGBA from libpng (192 MB of RGB from
## libjpeg); every other loader allocates in proportion to its input (at most about 1000 times for gzip), or
## within its own limits (100000 timesteps, 65536 channels). 512 MB leaves twice the largest.
## FUZZ_IMAGE_PIXELS: the pixel limit (HAZE_MAX_IMAGE_PIXELS) while fuzzing PNG and JPEG, 65536: mutated JPEG
## headers declare large images that libjpeg then decodes in full and Haze resizes, with every comparison traced
## (about 180 inputs/s at 1 Mpixel); the code under test is the same. Empty: the default limit (64 Mpixel).
## Leaks: LeakSanitizer is on, with Fuzz/lsan.supp (one leak of swift-foundation, not Haze's).
FUZZ_SECONDS ?= 60
FUZZ_RUNS ?=
FUZZ_TARGETS ?= safetensors unet-config scheduler-config trainer-state optimizer idx png jpeg sample-input
FUZZ_MALLOC_MB ?= 512
FUZZ_IMAGE_PIXELS ?= 65536
fuzz: deps
	$(SWIFT) build -c release --scratch-path .build-fuzz --product haze-fuzz --sanitize=fuzzer --sanitize=address \
	  -Xswiftc -sanitize=fuzzer,address -Xswiftc -DHAZE_FUZZ
	@# (swiftc keeps only its last -sanitize= option: the -Xswiftc one gives Swift code both coverage and ASan.)
	@run=.build-fuzz/run; shm=/dev/shm/haze-fuzz-make-$$$$; failed=""; rm -rf $$run; \
	printf '%-17s %12s %9s %7s  %s\n' harness executions exec/s time result; \
	for h in $(FUZZ_TARGETS); do \
	  dict=-dict=Fuzz/json.dict; len=65536; pixels=; \
	  case $$h in \
	    safetensors|optimizer|sample-input) dict=-dict=Fuzz/safetensors.dict;; \
	    idx) dict=;; \
	    png|jpeg) dict=; len=262144; pixels=$(FUZZ_IMAGE_PIXELS);; \
	  esac; \
	  [ -d Fuzz/corpus/$$h ] || { echo "no seeds in Fuzz/corpus/$$h"; exit 1; }; \
	  mkdir -p $$run/$$h/corpus $$run/$$h/findings && cp Fuzz/corpus/$$h/* $$run/$$h/corpus/; \
	  start=$$(date +%s); \
	  env SWIFT_BACKTRACE=enable=no HAZE_FUZZ_TARGET=$$h HAZE_FUZZ_SCRATCH=$$shm \
	    LSAN_OPTIONS=suppressions=$(CURDIR)/Fuzz/lsan.supp $${pixels:+HAZE_MAX_IMAGE_PIXELS=$$pixels} \
	    .build-fuzz/release/haze-fuzz $$dict -max_len=$$len -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=$(FUZZ_MALLOC_MB) \
	    $(if $(FUZZ_RUNS),-runs=$(FUZZ_RUNS),-max_total_time=$(FUZZ_SECONDS)) -print_final_stats=1 \
	    -artifact_prefix=$$run/$$h/findings/ $$run/$$h/corpus > $$run/$$h/log.txt 2>&1; \
	  status=$$?; seconds=$$(( $$(date +%s) - start )); \
	  execs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $$run/$$h/log.txt); \
	  rate=$$(sed -n 's/^stat::average_exec_per_sec: *//p' $$run/$$h/log.txt); \
	  result=ok; [ $$status -eq 0 ] || { failed="$$failed $$h"; \
	    result="FAILED (exit $$status): $$(grep -m1 -E 'ERROR|deadly' $$run/$$h/log.txt); see $$run/$$h/findings, log.txt"; }; \
	  printf '%-17s %12s %9s %6ss  %s\n' $$h "$${execs:-?}" "$${rate:-?}" $$seconds "$$result"; \
	done; \
	rm -rf $$shm; \
	if [ -n "$$failed" ]; then echo "fuzz: findings in$$failed"; exit 1; fi

clean:
	rm -rf .build
