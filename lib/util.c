/* Small internal helpers shared by every module. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "emailsession.h"

void email__buf_init(email_buf_t *b)
{
    b->data = NULL;
    b->len = b->cap = 0;
}

void email__buf_free(email_buf_t *b)
{
    free(b->data);
    email__buf_init(b);
}

void email__buf_reset(email_buf_t *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

int email__buf_reserve(email_buf_t *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len - 1)
        return EMAIL_ENOMEM;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return EMAIL_ENOMEM;
    if (!b->data)
        p[0] = '\0'; /* a buffer that holds memory is always a string */
    b->data = p;
    b->cap = cap;
    return 0;
}

int email__buf_append(email_buf_t *b, const void *data, size_t n)
{
    if (email__buf_reserve(b, n))
        return EMAIL_ENOMEM;
    if (n)
        memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int email__buf_puts(email_buf_t *b, const char *s)
{
    return email__buf_append(b, s, strlen(s));
}

int email__buf_putc(email_buf_t *b, char c)
{
    return email__buf_append(b, &c, 1);
}

int email__buf_printf(email_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return EMAIL_EINVAL;
    if (email__buf_reserve(b, (size_t)n))
        return EMAIL_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void email__buf_consume(email_buf_t *b, size_t n)
{
    if (n >= b->len) {
        email__buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

char *email__buf_steal(email_buf_t *b, size_t *len)
{
    if (!b->data && email__buf_reserve(b, 0))
        return NULL;
    char *p = b->data;
    if (len)
        *len = b->len;
    email__buf_init(b);
    return p;
}

void email__free_secret(char *s)
{
    if (s) {
        /* volatile: the wipe must not be optimised away as a dead store before free */
        volatile char *p = s;
        while (*p)
            *p++ = '\0';
        free(s);
    }
}

char *email__strdup(const char *s)
{
    return s ? email__strndup(s, strlen(s)) : NULL;
}

char *email__strndup(const char *s, size_t n)
{
    if (!s)
        return NULL;
    char *p = malloc(n + 1);
    if (!p)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

int email__strcasecmp(const char *a, const char *b)
{
    for (;; a++, b++) {
        int d = lower((unsigned char)*a) - lower((unsigned char)*b);
        if (d || !*a)
            return d;
    }
}

int email__strncasecmp(const char *a, const char *b, size_t n)
{
    for (; n; n--, a++, b++) {
        int d = lower((unsigned char)*a) - lower((unsigned char)*b);
        if (d || !*a)
            return d;
    }
    return 0;
}

void email__strlcpy(char *dst, const char *src, size_t size)
{
    if (!size)
        return;
    size_t n = strlen(src);
    if (n >= size) {
        n = size - 1;
        /* do not cut a UTF-8 sequence in two */
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}

bool email__has_crlf(const char *s)
{
    return strpbrk(s, "\r\n") != NULL;
}

bool email__utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        unsigned min;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            len = 2, min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3, min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4, min = 0x10000;
        } else {
            return false;
        }
        if (i + len > n)
            return false;
        unsigned cp = c & (0x7F >> len);
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

bool email__is_ascii(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80)
            return false;
    return true;
}

int email__file_size(const char *path, uint64_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    struct stat st;
    int rc = fstat(fd, &st) ? errno : S_ISREG(st.st_mode) ? 0 : EISDIR;
    close(fd);
    if (!rc)
        *size = (uint64_t)st.st_size;
    return rc;
}
