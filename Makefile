# tcplab: `make` builds lua/tcplab/core.so; `make demo`, `make test`.
SHELL := /bin/bash
LUA       ?= lua5.4
LUA_INC   ?= $(shell pkg-config --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4)
PREFIX    ?= /usr/local
LUA_LIBDIR = $(PREFIX)/lib/lua/5.4
LUA_SHARE  = $(PREFIX)/share/lua/5.4

CWARNS = -Wall -Wextra -pedantic -Wcast-align -Wcast-qual -Wpointer-arith -Wshadow \
         -Wredundant-decls -Wnested-externs -Wundef -Wwrite-strings -Wmissing-prototypes
CFLAGS ?= -O2 -g
WERROR ?= -Werror
ALL_CFLAGS = -std=gnu11 -D_GNU_SOURCE -fPIC $(CWARNS) $(WERROR) $(LUA_INC) $(CFLAGS)
LDLIBS = -lmnl -lm

SRCS = $(wildcard csrc/*.c)
OBJS = $(SRCS:csrc/%.c=build/%.o)
MODULE = lua/tcplab/core.so

# Debian packages the build, the tests and the demo need.
DEB_BUILD = gcc make pkg-config lua5.4 liblua5.4-dev libmnl-dev
DEB_TEST  = lua-busted iproute2 net-tools nftables gawk luarocks
SPEC_ENV  = LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/spec/?.lua;;" LUA_CPATH="$(CURDIR)/lua/?.so;;"
# busted's summary, restated as the plain "N passed, N failed" line CI reads.
SUMMARY   = awk '{print} / successes? \/ .* failures? \/ .* errors? \/ .* pending/ {s=$$1" passed, "$$4+$$7" failed, "$$10" skipped"} END {if (s) print s}'

.PHONY: all deps deps-test test demo install clean bench

all: $(MODULE)

build/%.o: csrc/%.c csrc/tcplab.h | build
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

build:
	mkdir -p build

$(MODULE): $(OBJS)
	$(CC) -shared -o $@ $(OBJS) $(LDFLAGS) $(LDLIBS)

# Install what is missing (needs root); a no-op when all is there.
deps:
	@sh .ci/deps.sh $(DEB_BUILD)

deps-test:
	@sh .ci/deps.sh $(DEB_BUILD) $(DEB_TEST)

test: deps-test
	$(MAKE) all
	set -o pipefail; $(SPEC_ENV) $(LUA) /usr/bin/busted spec 2>&1 | $(SUMMARY)

demo: deps-test
	$(MAKE) all
	$(SPEC_ENV) $(LUA) bin/tcplab demo

bench/floor: bench/floor.c
	$(CC) -O2 $(CWARNS) $(WERROR) -o $@ $<

bench: deps-test
	$(MAKE) all bench/floor
	$(SPEC_ENV) $(LUA) bench/run.lua $(BENCH_ARGS)

install: $(MODULE)
	install -d $(DESTDIR)$(LUA_LIBDIR)/tcplab $(DESTDIR)$(LUA_SHARE)/tcplab $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(MODULE) $(DESTDIR)$(LUA_LIBDIR)/tcplab/core.so
	cp -r lua/tcplab/*.lua $(DESTDIR)$(LUA_SHARE)/tcplab/
	install -m 755 bin/tcplab $(DESTDIR)$(PREFIX)/bin/tcplab

clean:
	rm -rf build $(MODULE)
