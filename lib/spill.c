/* Spill files for large decoded parts: see spill.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* O_TMPFILE */
#endif
#include "spill.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "emailsession.h"

void email__spill_init(spill_t *s)
{
    s->fd = -1;
    s->length = 0;
}

/* An unlinked 0600 file in dir: O_TMPFILE where the kernel and file system have it, else a
   mkstemp name removed at once. -1 when dir takes neither. */
static int open_unlinked(const char *dir)
{
#ifdef O_TMPFILE
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0)
        return fd;
#endif
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/emailsession-part-XXXXXX", dir);
    if (n < 0 || (size_t)n >= sizeof path)
        return -1;
    int fd2 = mkstemp(path); /* 0600 (no umask change: it is the whole process's) */
    if (fd2 < 0)
        return -1;
    unlink(path);
    (void)fcntl(fd2, F_SETFD, FD_CLOEXEC);
    return fd2;
}

int email__spill_open(spill_t *s)
{
    const char *dir = getenv("TMPDIR");
    s->length = 0;
    s->fd = dir && *dir ? open_unlinked(dir) : -1;
    if (s->fd < 0)
        s->fd = open_unlinked("/tmp");
    return s->fd < 0 ? EMAIL_EIO : 0;
}

int email__spill_write(spill_t *s, const void *data, size_t n)
{
    const char *p = data;
    while (n) {
        ssize_t w = write(s->fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return EMAIL_EIO;
        p += w;
        n -= (size_t)w;
        s->length += (uint64_t)w;
    }
    return 0;
}

int email__spill_map(spill_t *s, char **data, size_t *length)
{
    int rc = 0;
    *data = NULL;
    *length = 0;
    if (s->fd < 0 || !s->length || s->length > SIZE_MAX)
        rc = EMAIL_EIO;
    void *map = rc ? MAP_FAILED
                   : mmap(NULL, (size_t)s->length, PROT_READ, MAP_PRIVATE, s->fd, 0);
    if (!rc && map == MAP_FAILED)
        rc = errno == ENOMEM ? EMAIL_ENOMEM : EMAIL_EIO;
    if (!rc) {
        *data = map;
        *length = (size_t)s->length;
    }
    email__spill_close(s);
    return rc;
}

void email__spill_close(spill_t *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

void email__spill_unmap(char *data, size_t length)
{
    if (data)
        munmap(data, length);
}
