# Build, install and package torcx.
#   make                          build the release binary (static PIE: target/HOST/release/torcx)
#   make install DESTDIR=/stage   install into a staging root (PREFIX=/usr)
#   make deb                      build target/debian/torcx_VERSION_ARCH.deb
#   make fuzz                     fuzz every target (FUZZ_SECONDS each, FUZZ_JOBS processes)
#   make fuzz-seeds               rebuild the seed corpora from the test suite's images
# TORCX_BIN=path installs an already built binary instead of building one.

PREFIX  ?= /usr
DESTDIR ?=
CARGO   ?= cargo
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
ARCH    := $(shell dpkg --print-architecture 2>/dev/null || uname -m)
HOST    := $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')
# The binary that ships: linked statically (a static PIE, so still placed at
# a random address) with packed relocations. It starts in 1.3 ms where the
# dynamically linked one takes 1.7 (no libraries to map, no 10,000
# relocation entries to read), twice per boot, and needs no library of the
# image it runs on. `cargo build` and the tests keep the default linking.
STATIC_RUSTFLAGS := -C target-feature=+crt-static -C link-arg=-Wl,-z,pack-relative-relocs
TORCX_BIN ?= target/$(HOST)/release/torcx
# dpkg-deb's compressor (xz for releases; the tests use a faster one)
DEB_COMPRESS ?= xz

.PHONY: all build install deb clean-deb fuzz fuzz-seeds fuzz-cmin

all: build

build:
	@if [ "$(TORCX_BIN)" = target/$(HOST)/release/torcx ]; then \
	    RUSTFLAGS="$(STATIC_RUSTFLAGS)" $(CARGO) build --release --locked --target $(HOST); fi

install: build
	install -D -m 0755 $(TORCX_BIN) $(DESTDIR)$(PREFIX)/bin/torcx
	install -d $(DESTDIR)$(PREFIX)/lib/systemd/system-generators
	ln -sfn ../../../bin/torcx $(DESTDIR)$(PREFIX)/lib/systemd/system-generators/torcx-generator
	install -D -m 0644 units/torcx-apply.service $(DESTDIR)$(PREFIX)/lib/systemd/system/torcx-apply.service
	install -D -m 0644 units/torcx.target $(DESTDIR)$(PREFIX)/lib/systemd/system/torcx.target
	install -d $(DESTDIR)$(PREFIX)/share/man/man5 $(DESTDIR)$(PREFIX)/share/man/man8
	for p in man/*.5; do gzip -9n -c $$p > $(DESTDIR)$(PREFIX)/share/man/man5/$$(basename $$p).gz; done
	for p in man/*.8; do gzip -9n -c $$p > $(DESTDIR)$(PREFIX)/share/man/man8/$$(basename $$p).gz; done
	install -D -m 0644 completions/torcx.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/torcx
	install -D -m 0644 completions/_torcx $(DESTDIR)$(PREFIX)/share/zsh/vendor-completions/_torcx
	install -D -m 0644 completions/torcx.fish $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/torcx.fish
	install -d $(DESTDIR)$(PREFIX)/share/torcx/store $(DESTDIR)$(PREFIX)/share/torcx/profiles
	install -D -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/torcx/README.md

DEBROOT := target/debian/root

deb:
	rm -rf $(DEBROOT)
	$(MAKE) install DESTDIR=$(CURDIR)/$(DEBROOT) PREFIX=/usr TORCX_BIN=$(TORCX_BIN)
	install -d $(DEBROOT)/DEBIAN $(DEBROOT)/etc/torcx/profiles $(DEBROOT)/var/lib/torcx/store
	sed -e 's/@VERSION@/$(VERSION)/' -e 's/@ARCH@/$(ARCH)/' \
	    -e "s/@SIZE@/$$(du -sk $(DEBROOT) | cut -f1)/" packaging/debian/control > $(DEBROOT)/DEBIAN/control
	dpkg-deb --root-owner-group -Z$(DEB_COMPRESS) --build $(DEBROOT) target/debian/torcx_$(VERSION)_$(ARCH).deb

# Fuzzing (cargo-fuzz on the stable toolchain: `cargo install cargo-fuzz`).
# Each target runs FUZZ_SECONDS from its kept corpus in fuzz/corpus/TARGET,
# then the corpus is minimized again so only inputs that add coverage are
# kept. Findings land in fuzz/artifacts/TARGET; `cargo test --test
# fuzz_corpus` replays the kept corpora (copy a fixed finding there).
FUZZ_TARGETS ?= extract reader_tar reader_fsimage reader_oci parse
FUZZ_SECONDS ?= 1200
FUZZ_JOBS    ?= 1
FUZZ_FLAGS   ?= -rss_limit_mb=512 -max_len=1048576 -timeout=20

fuzz:
	cd fuzz && cargo fuzz build -s none
	for t in $(FUZZ_TARGETS); do \
	  (cd fuzz && cargo fuzz run -s none $$t corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) \
	    $(if $(filter-out 1,$(FUZZ_JOBS)),-fork=$(FUZZ_JOBS)) -print_final_stats=1 $(FUZZ_FLAGS)) || exit 1; \
	done
	$(MAKE) fuzz-cmin

fuzz-cmin:
	for t in $(FUZZ_TARGETS); do (cd fuzz && cargo fuzz cmin -s none $$t corpus/$$t) || exit 1; done

fuzz-seeds:
	rm -rf target/fuzz-seeds
	TORCX_FUZZ_SEEDS=$(CURDIR)/target/fuzz-seeds $(CARGO) test --locked --test hostile --test formats \
	  --test generator --test oci --test pack --test policy --test regressions --test attach -- --test-threads=2
	python3 fuzz/seed.py target/fuzz-seeds fuzz/corpus
	$(MAKE) fuzz-cmin
