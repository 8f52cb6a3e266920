/* Small internal helpers shared by every module: growable byte buffer, strings. */
#ifndef EMAIL_UTIL_H
#define EMAIL_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __GNUC__
#define EMAIL_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define EMAIL_PRINTF(f, a)
#endif

typedef struct email_buf {
    char *data;  /* always NUL-terminated when non-NULL (the NUL is not counted in len) */
    size_t len, cap;
} email_buf_t;

void email__buf_init(email_buf_t *b);
void email__buf_free(email_buf_t *b);
void email__buf_reset(email_buf_t *b);           /* len = 0, memory kept */
int email__buf_reserve(email_buf_t *b, size_t extra);   /* 0 or EMAIL_ENOMEM */
int email__buf_append(email_buf_t *b, const void *data, size_t n);
int email__buf_puts(email_buf_t *b, const char *s);
int email__buf_putc(email_buf_t *b, char c);
int email__buf_printf(email_buf_t *b, const char *fmt, ...) EMAIL_PRINTF(2, 3);
/* Drops the first n bytes. */
void email__buf_consume(email_buf_t *b, size_t n);
/* Hands the data over to the caller (malloc'ed, NUL-terminated) and empties b. */
char *email__buf_steal(email_buf_t *b, size_t *len);

/* Wipes a secret string and frees it (NULL is fine). */
void email__free_secret(char *s);
/* strdup that accepts NULL (returns NULL). */
char *email__strdup(const char *s);
char *email__strndup(const char *s, size_t n);
/* ASCII case-insensitive compare. */
int email__strcasecmp(const char *a, const char *b);
int email__strncasecmp(const char *a, const char *b, size_t n);
/* snprintf into a fixed array, always terminated, truncating on a UTF-8 character boundary. */
void email__strlcpy(char *dst, const char *src, size_t size);
/* True when s[0..n) holds CR, LF or NUL (n = strlen when s is a string). */
bool email__has_crlf(const char *s);
/* True when s is valid UTF-8 (no overlongs, no surrogates). */
bool email__utf8_valid(const char *s, size_t n);
/* True when every byte is < 0x80. */
bool email__is_ascii(const char *s, size_t n);
/* Size of the regular file at path, which must be readable: 0, or an errno value (EISDIR when it
   is not a regular file). */
int email__file_size(const char *path, uint64_t *size);

/* n bytes of v at p, little-endian, and back (file formats: the outbox). */
static inline void email__put_le(unsigned char *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static inline uint64_t email__get_le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

#endif
