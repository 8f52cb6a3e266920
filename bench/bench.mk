# Builds the benchmark drivers; bench/run calls `make -C bench -f bench.mk`.
# (Not named Makefile: the project's .gitignore ignores every Makefile, as automake makes them.)
# Links against the freshly built library in ../.libs, found at run time through an rpath,
# so nothing has to be installed.

CC ?= cc
CFLAGS ?= -O2 -g
WARN = -std=c11 -Wall -Wextra
TOP = ..
ES_CFLAGS = -I$(TOP)/include
ES_LIBS = -L$(TOP)/.libs -Wl,-rpath,$(abspath $(TOP)/.libs) -lemailsession
CURL_CFLAGS := $(shell pkg-config --cflags libcurl)
CURL_LIBS := $(shell pkg-config --libs libcurl)

all: build/es_bench build/curl_bench

build/es_bench: es_bench.c common.h $(TOP)/include/emailsession.h $(TOP)/.libs/libemailsession.so
	@mkdir -p build
	$(CC) $(WARN) $(CFLAGS) $(ES_CFLAGS) -o $@ es_bench.c $(ES_LIBS) -lpthread

build/curl_bench: curl_bench.c common.h
	@mkdir -p build
	$(CC) $(WARN) $(CFLAGS) $(CURL_CFLAGS) -o $@ curl_bench.c $(CURL_LIBS)

build/pop3_bench: pop3_bench.c common.h $(TOP)/include/emailsession.h $(TOP)/.libs/libemailsession.so
	@mkdir -p build
	$(CC) $(WARN) $(CFLAGS) $(ES_CFLAGS) $(CURL_CFLAGS) -o $@ pop3_bench.c $(ES_LIBS) $(CURL_LIBS) -lpthread

clean:
	rm -rf build

.PHONY: all clean
