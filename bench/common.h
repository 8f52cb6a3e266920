/*
 * Helpers shared by the C benchmark drivers (es_bench.c, curl_bench.c).
 *
 * Every driver prints exactly one line starting with "RESULT " followed by key=value pairs on
 * success, and exits non-zero with a "FAIL ..." line on stderr otherwise: bench/run parses the
 * first and reports the second verbatim, so a misbehaving client is never silently averaged in.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define BENCH_HOST "127.0.0.1"
#define BENCH_FROM "bench@example.test"
#define BENCH_RCPT "sink@example.test"

static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static inline void bench_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("FAIL ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

/* A "Vm...: N kB" line of /proc/self/status, in KiB; -1 if absent. */
static inline long bench_proc_status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    size_t n = strlen(field);
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':' && sscanf(line + n + 1, "%ld", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

/* Resident set size now, in KiB (what the kernel charges us). */
static inline long bench_vmrss_kb(void)
{
    return bench_proc_status_kb("VmRSS");
}

/*
 * Peak resident set size of this process, in KiB. VmHWM rather than getrusage's ru_maxrss:
 * Linux carries ru_maxrss over exec from the forked copy of the parent, so a child of a
 * 15 MB runner could never report less than 15 MB. VmHWM belongs to the new image only.
 */
static inline long bench_maxrss_kb(void)
{
    return bench_proc_status_kb("VmHWM");
}

/* CPU seconds (user + system) this process has used so far, all its threads together. */
static inline double bench_cpu(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* Many concurrent sessions need one descriptor each: take the whole hard limit. */
static inline void bench_raise_nofile(long need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (need > 0 && rl.rlim_cur != RLIM_INFINITY && (long)rl.rlim_cur < need)
        bench_die("RLIMIT_NOFILE hard limit %ld is below the %ld descriptors needed",
                  (long)rl.rlim_cur, need);
}

/* A whole file in memory (the prebuilt-message variants hand the bytes to the client). */
static inline char *bench_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        bench_die("open %s: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0)
        bench_die("seek %s: %s", path, strerror(errno));
    long size = ftell(f);
    rewind(f);
    char *buf = malloc(size > 0 ? (size_t)size : 1);
    if (!buf)
        bench_die("out of memory reading %s", path);
    if (size > 0 && fread(buf, 1, (size_t)size, f) != (size_t)size)
        bench_die("read %s: short read", path);
    fclose(f);
    *len = (size_t)size;
    return buf;
}

static inline long bench_file_size(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        bench_die("open %s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    return size;
}

static inline long bench_atol(const char *s, const char *what)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v <= 0)
        bench_die("%s: \"%s\" is not a positive number", what, s);
    return v;
}

#endif
