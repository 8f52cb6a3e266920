/*
 * Shared by the libFuzzer targets in tests/fuzz: a property check that stops the run with a
 * message (libFuzzer saves the input as a crash-* artifact), and a reader that takes the
 * configuration bytes off the front of an input.
 */
#ifndef EMAIL_FUZZ_COMMON_H
#define EMAIL_FUZZ_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The harness's own loops are not worth coverage feedback (only the library's are): they would
   slow every run with comparison tracing. */
#if defined(__clang__) && __clang_major__ >= 13
#define FUZZ_NOCOV __attribute__((no_sanitize("coverage")))
#else
#define FUZZ_NOCOV
#endif

static void fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));
static void fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "\n==== property violated at %s:%d: (%s) ", file, line, cond);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n", stderr);
    abort();
}

/* A property that must hold: when it does not, the input is a finding. */
#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fuzz_fail(__FILE__, __LINE__, #cond, "" __VA_ARGS__);                                  \
    } while (0)

/*
 * FUZZ_STRICT=1 in the environment: also check the inputs of known, reported library issues
 * (tests/fuzz/crashes/); without it they are skipped so that a run can find something new.
 */
static inline bool fuzz_strict(void)
{
    static int strict = -1;
    if (strict < 0) {
        const char *v = getenv("FUZZ_STRICT");
        strict = v && *v && strcmp(v, "0");
    }
    return strict;
}

/* Out of memory in the harness itself is not a finding about the library. */
static inline void *fuzz_xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p) {
        fputs("fuzz harness: out of memory\n", stderr);
        abort();
    }
    return p;
}

/* Input consumed front to back; past the end every byte reads as 0. */
typedef struct fuzz_input {
    const uint8_t *p;
    size_t n;
} fuzz_input_t;

static inline uint8_t fuzz_byte(fuzz_input_t *in)
{
    if (!in->n)
        return 0;
    in->n--;
    return *in->p++;
}

/* Up to want bytes; returns how many (fewer at the end of the input). */
static inline size_t fuzz_bytes(fuzz_input_t *in, size_t want, const uint8_t **out)
{
    size_t n = want < in->n ? want : in->n;
    *out = in->p;
    in->p += n;
    in->n -= n;
    return n;
}

static inline uint64_t fuzz_xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* FNV-1a: a seed derived from the data itself, so a split point follows the input. */
FUZZ_NOCOV static inline uint64_t fuzz_hash(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h ? h : 1;
}

/* A growable byte string for the harnesses' own bookkeeping. */
typedef struct fuzz_str {
    char *p;
    size_t len, cap;
} fuzz_str_t;

FUZZ_NOCOV static inline void fuzz_str_add(fuzz_str_t *s, const void *data, size_t n)
{
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 64;
        while (cap < s->len + n + 1)
            cap *= 2;
        s->p = fuzz_xrealloc(s->p, cap);
        s->cap = cap;
    }
    if (n)
        memcpy(s->p + s->len, data, n);
    s->len += n;
    s->p[s->len] = '\0';
}

static inline void fuzz_str_puts(fuzz_str_t *s, const char *t)
{
    fuzz_str_add(s, t, strlen(t));
}

static inline void fuzz_str_free(fuzz_str_t *s)
{
    free(s->p);
    memset(s, 0, sizeof *s);
}

/*
 * Line endings normalised the way SMTP wants them: CRLF, a bare CR and a bare LF each become one
 * CRLF. Written independently of lib/encode.c, as the reference the library is checked against.
 */
FUZZ_NOCOV static inline void fuzz_crlf_normalise(fuzz_str_t *out, const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t run = i;
        while (run < n && p[run] != '\r' && p[run] != '\n')
            run++;
        fuzz_str_add(out, p + i, run - i);
        if (run == n)
            break;
        if (p[run] == '\r' && run + 1 < n && p[run + 1] == '\n')
            run++;
        fuzz_str_add(out, "\r\n", 2);
        i = run + 1;
    }
}

static inline int fuzz_b64v(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Reference base64 decoder, independent of the library's: strict (canonical padding) into out;
 * false when malformed. */
FUZZ_NOCOV static inline bool fuzz_b64_decode(const char *s, size_t n, fuzz_str_t *out)
{
    if (n % 4)
        return false;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        size_t pad = 0;
        for (int k = 0; k < 4; k++) {
            if (s[i + k] == '=' && i + 4 == n && k >= 2) {
                v[k] = 0;
                pad++;
                continue;
            }
            if (pad || (v[k] = fuzz_b64v((unsigned char)s[i + k])) < 0)
                return false;
        }
        unsigned char o[3] = {(unsigned char)(v[0] << 2 | v[1] >> 4),
                              (unsigned char)(v[1] << 4 | v[2] >> 2),
                              (unsigned char)(v[2] << 6 | v[3])};
        fuzz_str_add(out, o, 3 - pad);
    }
    return true;
}

#endif
