# tcplab: `make` builds lua/tcplab/core.so; `make demo`, `make test`.
SHELL := /bin/bash
LUA       ?= lua5.4
LUA_INC   ?= $(shell pkg-config --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4)
PREFIX    ?= /usr/local
LUA_LIBDIR = $(PREFIX)/lib/lua/5.4
LUA_SHARE  = $(PREFIX)/share/lua/5.4
MANDIR     = $(PREFIX)/share/man

CWARNS = -Wall -Wextra -pedantic -Wcast-align -Wcast-qual -Wpointer-arith -Wshadow \
         -Wredundant-decls -Wnested-externs -Wundef -Wwrite-strings -Wmissing-prototypes
CFLAGS ?= -O2 -g
WERROR ?= -Werror
ALL_CFLAGS = -std=gnu11 -D_GNU_SOURCE -fPIC $(CWARNS) $(WERROR) $(LUA_INC) $(CFLAGS)
LDLIBS = -lmnl -lm

SRCS = $(wildcard csrc/*.c)
HDRS = $(wildcard csrc/*.h) csrc/bpf/iter_rec.h csrc/bpf/state_ev.h csrc/bpf/live_rec.h
OBJS = $(SRCS:csrc/%.c=build/%.o)
MODULE = lua/tcplab/core.so
ASAN_DIR = build/asan

.DEFAULT_GOAL := all

# ---- the optional BPF iterator backend (csrc/bpf_backend.c, csrc/bpf/) ----
# Built where clang, bpftool, libbpf's headers and the kernel's BTF are all
# there; BPF=0 builds without it. Without it the module still has a "bpf"
# backend that says why it cannot answer (tcplab.backend()).
BPF      ?= auto
BPFTOOL  ?= $(firstword $(shell command -v bpftool 2>/dev/null) $(wildcard /usr/sbin/bpftool /sbin/bpftool))
BPF_CLANG ?= clang
ifeq ($(BPF),0)
BPF_MISSING = BPF=0
BPF_NOTE    = BPF=0
else
BPF_MISSING = $(strip $(if $(shell command -v $(BPF_CLANG) 2>/dev/null),,clang) $(if $(BPFTOOL),,bpftool) \
  $(if $(shell pkg-config --exists libbpf 2>/dev/null && echo y),,libbpf-dev) \
  $(if $(wildcard /sys/kernel/btf/vmlinux),,/sys/kernel/btf/vmlinux))
BPF_NOTE    = no $(BPF_MISSING)
endif
ifeq ($(BPF_MISSING),)
BPF_CFLAGS = -DTL_HAVE_BPF -Ibuild
LDLIBS    += $(shell pkg-config --libs libbpf)
BPF_STAMP  = build/bpf-on.stamp
BPF_SAY    = tcplab: the BPF iterator backend is built in
build/bpf_backend.o $(ASAN_DIR)/bpf_backend.o: build/iter_tcp.skel.h
build/lbpf_trace.o $(ASAN_DIR)/lbpf_trace.o: build/state_tp.skel.h
build/live.o $(ASAN_DIR)/live.o: build/live_bpf.skel.h
else
BPF_CFLAGS = -DTL_BPF_WHY='"built without BPF ($(BPF_NOTE))"'
BPF_STAMP  = build/bpf-off.stamp
BPF_SAY    = tcplab: building without the BPF iterator backend ($(BPF_NOTE))
endif
ALL_CFLAGS += $(BPF_CFLAGS)

# A change between with and without rebuilds every object.
$(BPF_STAMP): | build
	rm -f build/bpf-on.stamp build/bpf-off.stamp
	touch $@

build/vmlinux.h: | build
	$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c >$@.tmp && mv $@.tmp $@

build/iter_tcp.bpf.o: csrc/bpf/iter_tcp.bpf.c csrc/bpf/iter_rec.h build/vmlinux.h
	$(BPF_CLANG) -O2 -g -target bpf -D__TARGET_ARCH_x86 -Ibuild -Icsrc/bpf -Wall -Werror -c -o $@ $<

build/iter_tcp.skel.h: build/iter_tcp.bpf.o
	$(BPFTOOL) gen skeleton $< name iter_tcp >$@.tmp && mv $@.tmp $@

build/state_tp.bpf.o: csrc/bpf/state_tp.bpf.c csrc/bpf/state_ev.h build/vmlinux.h
	$(BPF_CLANG) -O2 -g -target bpf -mcpu=v3 -D__TARGET_ARCH_x86 -Ibuild -Icsrc/bpf -Wall -Werror -c -o $@ $<

build/state_tp.skel.h: build/state_tp.bpf.o
	$(BPFTOOL) gen skeleton $< name state_tp >$@.tmp && mv $@.tmp $@

# The live counters (csrc/live.c, doc/kernel-live.md).
build/live.bpf.o: csrc/bpf/live.bpf.c csrc/bpf/live_rec.h build/vmlinux.h
	$(BPF_CLANG) -O2 -g -target bpf -mcpu=v3 -D__TARGET_ARCH_x86 -Ibuild -Icsrc/bpf -Wall -Werror -c -o $@ $<

build/live_bpf.skel.h: build/live.bpf.o
	$(BPFTOOL) gen skeleton $< name live_bpf >$@.tmp && mv $@.tmp $@

# Debian packages the build, the tests and the demo need.
# (lua-http, lua-cqueues: tcplab serve's HTTP server, at run time.)
DEB_BUILD = gcc libc6-dev make pkg-config lua5.4 liblua5.4-dev libmnl-dev lua-argparse lua-cjson \
            clang libbpf-dev bpftool lua-http lua-cqueues
DEB_TEST  = lua-busted iproute2 net-tools nftables iptables gawk luarocks procps prometheus-node-exporter prometheus unzip tcpdump \
            libxml2-utils $(DEB_DOC)
# The API reference (make doc) and the man page check of the suite (man -l).
DEB_DOC   = lua-ldoc man-db
SPEC_ENV  = LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/spec/?.lua;;" LUA_CPATH="$(CURDIR)/lua/?.so;;"
# busted's summary, restated as the plain "N passed, N failed" line CI reads.
SUMMARY   = awk '{print} / successes? \/ .* failures? \/ .* errors? \/ .* pending/ {s=$$1" passed, "$$4+$$7" failed, "$$10" skipped"} END {if (s) print s}'

DEB_FUZZ  = clang libclang-rt-14-dev valgrind
FUZZ_SECONDS ?= 60
FUZZ_CC   ?= clang

.PHONY: all deps deps-test test test-unit demo doc install rock clean bench bench-scale fuzz fuzz-bpf fuzz-nfqueue fuzz-corpus test-asan test-valgrind mutate

all: $(MODULE)

build/%.o: csrc/%.c $(HDRS) $(BPF_STAMP) | build
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

build:
	mkdir -p build

$(MODULE): $(OBJS)
	@echo "$(BPF_SAY)"
	$(CC) -shared -o $@ $(OBJS) $(LDFLAGS) $(LDLIBS)

# Install what is missing (needs root); a no-op when all is there.
deps:
	@sh .ci/deps.sh $(DEB_BUILD)

deps-test:
	@sh .ci/deps.sh $(DEB_BUILD) $(DEB_TEST)

test: deps-test
	$(MAKE) all
	set -o pipefail; $(SPEC_ENV) TCPLAB_CPATH="$(CURDIR)/lua/?.so" TCPLAB_EXPECT_CORE="$(CURDIR)/$(MODULE)" $(LUA) /usr/bin/busted spec 2>&1 | $(SUMMARY)

# The specs tagged unit (describe names with #unit): parsers, formats, repair,
# filters, argument checks; no root, no namespace, no kernel state. Seconds,
# as any user; needs only the build and busted (lua-busted).
test-unit: all
	set -o pipefail; $(SPEC_ENV) TCPLAB_CPATH="$(CURDIR)/lua/?.so" TCPLAB_EXPECT_CORE="$(CURDIR)/$(MODULE)" $(LUA) /usr/bin/busted --tags=unit spec 2>&1 | $(SUMMARY)

# The API reference from the modules' doc comments (LDoc), into doc/api/.
doc:
	@sh .ci/deps.sh $(DEB_DOC)
	rm -rf doc/api
	ldoc -c doc/config.ld .

# Plant each bug listed in spec/mutations/*.lua in a copy of the tree under
# /tmp and require its specs to fail (doc/testing.md). MUTATE=substring picks
# entries; MUTATE_TIMEOUT=seconds per mutant.
mutate: deps-test
	$(MAKE) all
	MUTATE="$(MUTATE)" MUTATE_TIMEOUT="$(MUTATE_TIMEOUT)" $(LUA) spec/mutate.lua

demo: deps-test
	$(MAKE) all
	$(SPEC_ENV) $(LUA) bin/tcplab demo

bench/floor: bench/floor.c
	$(CC) -O2 $(CWARNS) $(WERROR) -o $@ $<

bench: deps-test
	$(MAKE) all bench/floor
	$(SPEC_ENV) $(LUA) bench/run.lua $(BENCH_ARGS)
	$(SPEC_ENV) $(LUA) bench/live.lua $(BENCH_LIVE_ARGS)

# A million sockets in a private namespace, measured at 10k, 100k and 1M side
# by side; writes the "A million sockets" section of bench/results.md
# (doc/scale.md). BENCH_SCALE_ARGS="--sizes 10000,100000 --reps 3" for less.
bench-scale: deps-test
	$(MAKE) all bench/floor
	$(SPEC_ENV) $(LUA) bench/scale.lua $(BENCH_SCALE_ARGS)

install: $(MODULE)
	install -d $(DESTDIR)$(LUA_LIBDIR)/tcplab $(DESTDIR)$(LUA_SHARE)/tcplab $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(MODULE) $(DESTDIR)$(LUA_LIBDIR)/tcplab/core.so
	cd lua && find tcplab -name '*.lua' -exec install -D -m 644 {} $(DESTDIR)$(LUA_SHARE)/{} \;
	install -m 755 bin/tcplab $(DESTDIR)$(PREFIX)/bin/tcplab
	install -d $(DESTDIR)$(MANDIR)/man1
	install -m 644 doc/tcplab.1 $(DESTDIR)$(MANDIR)/man1/tcplab.1

# A source rock, offline: the tree as a tarball, a rockspec pointing at it
# (file://), then luarocks pack. Install: luarocks --lua-version 5.4 install
# --deps-mode none ./tcplab-scm-1.src.rock (argparse, lua-cjson from Debian).
ROCK = tcplab-scm-1.src.rock
rock:
	rm -rf build/rock && mkdir -p build/rock/tcplab
	cp -r csrc lua bin rockspec build/rock/tcplab/
	mkdir -p build/rock/tcplab/doc && cp doc/tcplab.1 build/rock/tcplab/doc/
	rm -f build/rock/tcplab/lua/tcplab/core.so
	tar -C build/rock -czf build/rock/tcplab-scm.tar.gz tcplab
	sed 's|^  url = "git+file:///tcplab",.*|  url = "file://$(CURDIR)/build/rock/tcplab-scm.tar.gz", dir = "tcplab",|' \
	  rockspec/tcplab-scm-1.rockspec >build/rock/tcplab-scm-1.rockspec
	grep -q 'build/rock/tcplab-scm.tar.gz' build/rock/tcplab-scm-1.rockspec
	cd build/rock && luarocks --lua-version 5.4 pack tcplab-scm-1.rockspec
	mv build/rock/$(ROCK) $(ROCK)

clean:
	rm -rf build $(MODULE) $(ROCK)

# ---- reliability: fuzzing, sanitizers, valgrind ----
# No $(LUA_INC): the parser and the request builder build without Lua.
build/diag_fuzz: fuzz/diag_fuzz.c csrc/diag_parse.c csrc/diag.h csrc/backend.h | build
	$(FUZZ_CC) -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	  -o $@ fuzz/diag_fuzz.c csrc/diag_parse.c -lmnl

build/capture_fuzz: fuzz/capture_fuzz.c csrc/capture_parse.c csrc/capture.h | build
	$(FUZZ_CC) -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	  -o $@ fuzz/capture_fuzz.c csrc/capture_parse.c

# The NFQUEUE message walk (csrc/nfqueue_msg.c): no Lua.
build/nfqueue_fuzz: fuzz/nfqueue_fuzz.c csrc/nfqueue_msg.c csrc/capture_parse.c csrc/nfqueue.h csrc/capture.h | build
	$(FUZZ_CC) -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	  -o $@ fuzz/nfqueue_fuzz.c csrc/nfqueue_msg.c csrc/capture_parse.c -lmnl

# The BPF iterator's record parser: no Lua, no libbpf.
build/bpf_fuzz: fuzz/bpf_fuzz.c csrc/bpf_parse.c csrc/sockstat.c csrc/bpf.h csrc/bpf/iter_rec.h csrc/bpf/state_ev.h csrc/backend.h | build
	$(FUZZ_CC) -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	  -o $@ fuzz/bpf_fuzz.c csrc/bpf_parse.c csrc/sockstat.c

build/capture: fuzz/capture.c csrc/diag_req.c csrc/diag.h csrc/backend.h | build
	$(CC) -O2 -D_GNU_SOURCE -o $@ fuzz/capture.c csrc/diag_req.c -lmnl

# Refresh the seed corpora from this machine's kernel (root): sock_diag
# replies, and frames captured on lo for the packet decoder.
fuzz-corpus: build/capture all
	build/capture fuzz/corpus
	$(SPEC_ENV) $(LUA) fuzz/capture_corpus.lua fuzz/capture_corpus

# Run each fuzzer on a copy of its seeds (FUZZ_SECONDS in all: half the
# time each); replay the regressions.
FUZZ_HALF = $$(( ($(FUZZ_SECONDS) + 1) / 2 ))
FUZZ_GREP = grep -E "^(\#[0-9]+ +DONE|INFO: (seed corpus|-max_total_time)|stat::(number_of_executed_units|peak_rss|new_units_added)|==[0-9]+==ERROR|SUMMARY)"
fuzz:
	@sh .ci/deps.sh $(DEB_BUILD) $(DEB_FUZZ)
	$(MAKE) build/diag_fuzz build/capture_fuzz
	rm -rf build/fuzz-work build/fuzz-capture-work && mkdir -p build/fuzz-work build/fuzz-capture-work
	@echo "== diag_fuzz (sock_diag replies)"
	build/diag_fuzz -max_total_time=$(FUZZ_HALF) -print_final_stats=1 -artifact_prefix=fuzz/regress/ \
	  build/fuzz-work fuzz/corpus 2>&1 | $(FUZZ_GREP) ; test $${PIPESTATUS[0]} -eq 0
	@echo "corpus after the run: $$(find build/fuzz-work fuzz/corpus -type f | wc -l) inputs ($$(ls fuzz/corpus | wc -l) committed seeds)"
	@echo "== capture_fuzz (captured frames)"
	build/capture_fuzz -max_total_time=$(FUZZ_HALF) -print_final_stats=1 -artifact_prefix=fuzz/regress/capture- \
	  build/fuzz-capture-work fuzz/capture_corpus 2>&1 | $(FUZZ_GREP) ; test $${PIPESTATUS[0]} -eq 0
	@echo "corpus after the run: $$(find build/fuzz-capture-work fuzz/capture_corpus -type f | wc -l) inputs ($$(ls fuzz/capture_corpus | wc -l) committed seeds)"
	@if ls fuzz/regress/crash-* fuzz/regress/leak-* fuzz/regress/timeout-* >/dev/null 2>&1; then \
	  build/diag_fuzz fuzz/regress/crash-* fuzz/regress/leak-* fuzz/regress/timeout-* 2>/dev/null; fi
	@if ls fuzz/regress/capture-* >/dev/null 2>&1; then build/capture_fuzz fuzz/regress/capture-* 2>/dev/null; fi

# The same for the BPF record parsers and the sockstat reader, from fuzz/bpf_corpus.
fuzz-bpf:
	@sh .ci/deps.sh $(DEB_BUILD) $(DEB_FUZZ)
	$(MAKE) build/bpf_fuzz
	rm -rf build/fuzz-bpf-work && mkdir -p build/fuzz-bpf-work
	build/bpf_fuzz -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -artifact_prefix=fuzz/regress/bpf- \
	  build/fuzz-bpf-work fuzz/bpf_corpus 2>&1 | grep -E "^(#[0-9]+ +DONE|stat::(number_of_executed_units|new_units_added)|==[0-9]+==ERROR|SUMMARY)" ; \
	  test $${PIPESTATUS[0]} -eq 0

# The same for the NFQUEUE message walk, from fuzz/nfqueue_corpus (seeds:
# fuzz/nfqueue_corpus.lua wraps the capture corpus as queue messages).
fuzz-nfqueue:
	@sh .ci/deps.sh $(DEB_BUILD) $(DEB_FUZZ)
	$(MAKE) build/nfqueue_fuzz
	rm -rf build/fuzz-nfqueue-work && mkdir -p build/fuzz-nfqueue-work
	build/nfqueue_fuzz -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -artifact_prefix=fuzz/regress/nfqueue- \
	  build/fuzz-nfqueue-work fuzz/nfqueue_corpus 2>&1 | grep -E "^(#[0-9]+ +DONE|stat::(number_of_executed_units|new_units_added)|==[0-9]+==ERROR|SUMMARY)" ; \
	  test $${PIPESTATUS[0]} -eq 0

# The whole suite against a module built with AddressSanitizer and UBSan.
ASAN_OBJS = $(SRCS:csrc/%.c=$(ASAN_DIR)/%.o)
$(ASAN_DIR)/%.o: csrc/%.c $(HDRS) $(BPF_STAMP)
	@mkdir -p $(ASAN_DIR)
	$(CC) -std=gnu11 -D_GNU_SOURCE -fPIC $(CWARNS) $(WERROR) $(LUA_INC) $(BPF_CFLAGS) -g -O1 \
	  -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -c -o $@ $<
$(ASAN_DIR)/tcplab/core.so: $(ASAN_OBJS)
	@mkdir -p $(ASAN_DIR)/tcplab
	$(CC) -shared -fsanitize=address,undefined -o $@ $(ASAN_OBJS) $(LDLIBS)

test-asan: deps-test
	$(MAKE) all $(ASAN_DIR)/tcplab/core.so   # all: bin/tcplab in the specs wants the tree's module
	set -o pipefail; LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 TCPLAB_ASAN_CHILD_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/spec/?.lua;;" \
	  LUA_CPATH="$(CURDIR)/$(ASAN_DIR)/?.so;;" TCPLAB_CPATH="$(CURDIR)/$(ASAN_DIR)/?.so" TCPLAB_EXPECT_CORE="$(CURDIR)/$(ASAN_DIR)/tcplab/core.so" \
	  $(LUA) /usr/bin/busted spec 2>&1 | $(SUMMARY)

# Every C entry point under valgrind: no definite leak, no invalid access.
test-valgrind: deps-test
	@sh .ci/deps.sh valgrind
	$(MAKE) all
	$(SPEC_ENV) valgrind --quiet --leak-check=full --errors-for-leak-kinds=definite \
	  --show-leak-kinds=definite --error-exitcode=99 --track-fds=no --suppressions=.ci/valgrind-libbpf.supp \
	  $(LUA) spec/walk_entry_points.lua
