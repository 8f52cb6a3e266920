/*
 * The outbox directory: shared by every transporter of this process that names it (one handle,
 * found by device and inode), with the ids it leases and the entries it claims.
 *
 * Ids: a process leases a range of 2^32 ids from <dir>/.ids (under a lock) when it first opens
 * the outbox, and its message counter jumps there, so new ids never meet an entry's id, whether
 * the entry was left by an earlier run or by another process sharing the directory.
 * Claims: an id is claimed in this process (a sorted array) and across processes by a write lock
 * on byte <id> of <dir>/.lock (an open file description lock, dropped by the kernel when the
 * process dies, so a crash leaves no stale claim).
 */
#define _GNU_SOURCE /* F_OFD_SETLK */
#include "outbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "log.h"
#include "registry.h"
#include "util.h"

#ifndef F_OFD_SETLK /* not Linux: process locks, which one descriptor per directory allows */
#define F_OFD_SETLK F_SETLK
#define F_OFD_SETLKW F_SETLKW
#endif

#define ID_LEASE (UINT64_C(1) << 32)

struct outbox {
    outbox_t *next;              /* in `all` */
    int refs;                    /* under all_lock */
    dev_t dev;
    ino_t ino;
    char *dir;
    int dirfd, lockfd;
    pthread_mutex_t lock;        /* the claims, and the directory's syncs */
    uint64_t *claimed;           /* sorted */
    size_t nclaimed, cap;
    outbox_gsync_t dir_sync;     /* one fsync of the directory covers the renames before it */
    outbox_marks_t *marks;
};

static pthread_mutex_t all_lock = PTHREAD_MUTEX_INITIALIZER;
static outbox_t *all;
static outbox_t *global;

void email__outbox_name(uint64_t id, bool temporary, char out[32])
{
    snprintf(out, 32, temporary ? ".tmp-%016" PRIx64 : "%016" PRIx64 ".msg", id);
}

/* The id of an entry file name (temporary false) or temporary file name, or 0. */
static uint64_t parse_name(const char *name, bool temporary)
{
    const char *hex = temporary ? name + 5 : name;
    if (temporary ? strncmp(name, ".tmp-", 5) != 0 || strlen(name) != 21
                  : strlen(name) != 20 || strcmp(name + 16, ".msg") != 0)
        return 0;
    uint64_t id = 0;
    for (int i = 0; i < 16; i++) {
        int c = hex[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0)
            return 0;
        id = id << 4 | (uint64_t)v;
    }
    return id;
}

/* Locks (or unlocks) byte `at` of the lock file; wait: until it is free. */
static int byte_lock(int fd, uint64_t at, short type, bool wait)
{
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = (off_t)at, .l_len = 1};
    return fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl);
}

/* The highest id among the names in the directory. */
static uint64_t highest_entry_id(int dirfd)
{
    int fd = dup(dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    uint64_t high = 0;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    rewinddir(d);
    struct dirent *de;
    while ((de = readdir(d))) {
        uint64_t id = parse_name(de->d_name, de->d_name[0] == '.');
        high = id > high ? id : high;
    }
    closedir(d);
    return high;
}

/* Leases this process its range of ids (see the top of the file). */
static int lease_ids(outbox_t *ob, char *err, size_t errlen)
{
    int fd = openat(ob->dirfd, ".ids", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || byte_lock(ob->lockfd, 0, F_WRLCK, true) != 0) {
        snprintf(err, errlen, "outbox \"%s\": .ids: %s", ob->dir, strerror(errno));
        if (fd >= 0)
            close(fd);
        return EMAIL_EIO;
    }
    char text[32] = "";
    ssize_t got = pread(fd, text, sizeof text - 1, 0);
    uint64_t high = got > 0 ? strtoull(text, NULL, 10) : 0;
    uint64_t entries = highest_entry_id(ob->dirfd);
    uint64_t base = email__registry_ids_above(high > entries ? high : entries);
    int n = snprintf(text, sizeof text, "%020" PRIu64 "\n", base + ID_LEASE);
    int rc = pwrite(fd, text, (size_t)n, 0) == n && fsync(fd) == 0 ? 0 : EMAIL_EIO;
    if (rc)
        snprintf(err, errlen, "outbox \"%s\": cannot write .ids: %s", ob->dir, strerror(errno));
    byte_lock(ob->lockfd, 0, F_UNLCK, false);
    close(fd);
    return rc;
}

static void outbox_free(outbox_t *ob)
{
    if (ob->dirfd >= 0)
        close(ob->dirfd);
    if (ob->lockfd >= 0)
        close(ob->lockfd);
    email__marks_free(ob->marks);
    pthread_mutex_destroy(&ob->lock);
    pthread_cond_destroy(&ob->dir_sync.cond);
    free(ob->claimed);
    free(ob->dir);
    free(ob);
}

/* Opens dir as an outbox (all_lock held); *code is why not. */
static outbox_t *outbox_create(const char *dir, const struct stat *st, char *err, size_t errlen)
{
    outbox_t *ob = calloc(1, sizeof *ob);
    if (!ob || !(ob->dir = email__strdup(dir))) {
        free(ob);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&ob->lock, NULL);
    pthread_cond_init(&ob->dir_sync.cond, NULL);
    ob->dev = st->st_dev;
    ob->ino = st->st_ino;
    ob->refs = 1;
    ob->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ob->lockfd = ob->dirfd >= 0 ? openat(ob->dirfd, ".lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600)
                                : -1;
    if (ob->lockfd < 0 || !(ob->marks = email__marks_open(ob->dirfd))) {
        snprintf(err, errlen, "outbox \"%s\" is not writable: %s", dir, strerror(errno));
        outbox_free(ob);
        return NULL;
    }
    if (lease_ids(ob, err, errlen) != 0) {
        outbox_free(ob);
        return NULL;
    }
    return ob;
}

outbox_t *email__outbox_open(const char *dir, char *err, size_t errlen)
{
    struct stat st;
    if (!dir || !*dir) {
        snprintf(err, errlen, "the outbox directory is empty");
        return NULL;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "outbox \"%s\" cannot be created: %s", dir, strerror(errno));
        return NULL;
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "outbox \"%s\" is not a directory", dir);
        return NULL;
    }
    if (access(dir, W_OK | X_OK) != 0) {
        snprintf(err, errlen, "outbox \"%s\" is not writable: %s", dir, strerror(errno));
        return NULL;
    }
    pthread_mutex_lock(&all_lock);
    outbox_t *ob = all;
    while (ob && (ob->dev != st.st_dev || ob->ino != st.st_ino))
        ob = ob->next;
    if (ob) {
        ob->refs++;
    } else if ((ob = outbox_create(dir, &st, err, errlen))) {
        ob->next = all;
        all = ob;
    }
    pthread_mutex_unlock(&all_lock);
    return ob;
}

outbox_t *email__outbox_ref(outbox_t *ob)
{
    pthread_mutex_lock(&all_lock);
    ob->refs++;
    pthread_mutex_unlock(&all_lock);
    return ob;
}

void email__outbox_release(outbox_t *ob)
{
    if (!ob)
        return;
    pthread_mutex_lock(&all_lock);
    bool last = --ob->refs == 0;
    if (last) {
        outbox_t **p = &all;
        while (*p != ob)
            p = &(*p)->next;
        *p = ob->next;
    }
    pthread_mutex_unlock(&all_lock);
    if (last)
        outbox_free(ob);
}

outbox_t *email__outbox_global(void)
{
    pthread_mutex_lock(&all_lock);
    outbox_t *ob = global;
    if (ob)
        ob->refs++;
    pthread_mutex_unlock(&all_lock);
    return ob;
}

const char *email__outbox_dir(const outbox_t *ob)
{
    return ob->dir;
}

int email__outbox_dirfd(const outbox_t *ob)
{
    return ob->dirfd;
}

int email__outbox_sync_dir(outbox_t *ob)
{
    pthread_mutex_lock(&ob->lock);
    int rc = email__outbox_gsync(&ob->dir_sync, &ob->lock, ob->dirfd, false);
    pthread_mutex_unlock(&ob->lock);
    return rc;
}

int email__outbox_mark(outbox_t *ob, const uint64_t *ids, size_t n)
{
    return email__marks_append(ob->marks, ids, n, true, true);
}

outbox_marks_t *email__outbox_marks(const outbox_t *ob)
{
    return ob->marks;
}

/* Where id is, or would go, in the sorted claims (lock held). */
static size_t claim_slot(const outbox_t *ob, uint64_t id)
{
    size_t lo = 0, hi = ob->nclaimed;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ob->claimed[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int email__outbox_claim(outbox_t *ob, uint64_t id)
{
    int rc = 0;
    pthread_mutex_lock(&ob->lock);
    size_t at = claim_slot(ob, id);
    if (at < ob->nclaimed && ob->claimed[at] == id) {
        rc = EMAIL_EBUSY;
    } else if (ob->nclaimed == ob->cap) {
        size_t cap = ob->cap ? ob->cap * 2 : 64;
        uint64_t *v = realloc(ob->claimed, cap * sizeof *v);
        if (v) {
            ob->claimed = v;
            ob->cap = cap;
        } else {
            rc = EMAIL_ENOMEM;
        }
    }
    if (!rc && byte_lock(ob->lockfd, id, F_WRLCK, false) != 0)
        rc = errno == EACCES || errno == EAGAIN ? EMAIL_EBUSY : EMAIL_EIO;
    if (!rc) {
        memmove(ob->claimed + at + 1, ob->claimed + at, (ob->nclaimed - at) * sizeof id);
        ob->claimed[at] = id;
        ob->nclaimed++;
    }
    pthread_mutex_unlock(&ob->lock);
    return rc;
}

void email__outbox_unclaim(outbox_t *ob, uint64_t id)
{
    pthread_mutex_lock(&ob->lock);
    size_t at = claim_slot(ob, id);
    if (at < ob->nclaimed && ob->claimed[at] == id) {
        byte_lock(ob->lockfd, id, F_UNLCK, false);
        ob->nclaimed--;
        memmove(ob->claimed + at, ob->claimed + at + 1, (ob->nclaimed - at) * sizeof id);
    }
    pthread_mutex_unlock(&ob->lock);
}

void email__outbox_corrupt(outbox_t *ob, const char *name, const char *why)
{
    char aside[64], line[400];
    snprintf(aside, sizeof aside, "corrupt/%s.%lld", name[0] == '.' ? name + 1 : name,
             (long long)time(NULL));
    if (mkdirat(ob->dirfd, "corrupt", 0700) != 0 && errno != EEXIST)
        snprintf(aside, sizeof aside, "(nowhere)");
    else if (renameat(ob->dirfd, name, ob->dirfd, aside) != 0)
        snprintf(aside, sizeof aside, "(nowhere: %s)", strerror(errno));
    else
        fsync(ob->dirfd);
    snprintf(line, sizeof line, "Outbox %s: entry %s is damaged (%s), moved to %s", ob->dir, name,
             why, aside);
    email__log_event(NULL, 0, '#', line);
    email__log_flush(NULL);
}

static int by_age(const void *a, const void *b)
{
    const outbox_entry_t *x = *(outbox_entry_t *const *)a, *y = *(outbox_entry_t *const *)b;
    if (x->meta.queued != y->meta.queued)
        return x->meta.queued < y->meta.queued ? -1 : 1;
    return x->meta.id < y->meta.id ? -1 : x->meta.id > y->meta.id;
}

static bool same(const char *a, const char *b)
{
    return a && b ? strcmp(a, b) == 0 : a == b;
}

static bool filter_takes(const outbox_filter_t *f, const outbox_meta_t *m)
{
    if (f->name || m->name)
        return same(f->name, m->name);
    return m->host && f->host && strcasecmp(f->host, m->host) == 0 && f->port == m->port &&
           same(f->user, m->user);
}

/*
 * One name met by a scan: a leftover temporary file nobody writes is moved aside; an entry
 * nobody holds is claimed and checked (*e, claimed; corrupt ones moved aside). 0, or
 * EMAIL_ENOMEM.
 */
static int scan_one(outbox_t *ob, const char *name, outbox_entry_t **e)
{
    *e = NULL;
    bool temporary = name[0] == '.';
    uint64_t id = parse_name(name, temporary);
    if (!id || email__outbox_claim(ob, id) != 0)
        return 0; /* not ours to judge: another thread or process writes or sends it */
    char why[200];
    int rc = temporary ? EMAIL_EIO : email__outbox_load(ob, name, true, e, why, sizeof why);
    if (rc == EMAIL_EIO)
        email__outbox_corrupt(ob, name, temporary ? "a temporary file left by a crash" : why);
    if (rc)
        email__outbox_unclaim(ob, id);
    return rc == EMAIL_ENOMEM ? rc : 0;
}

/* Calls each(entry, arg) for every entry or leftover of ob (see scan_one); each takes *e. */
static int scan(outbox_t *ob, int (*each)(outbox_entry_t *e, const char *name, void *arg),
                void *arg, char *err, size_t errlen)
{
    int fd = dup(ob->dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        snprintf(err, errlen, "outbox \"%s\" cannot be read: %s", ob->dir, strerror(errno));
        if (fd >= 0)
            close(fd);
        return EMAIL_EIO;
    }
    rewinddir(d);
    int rc = 0;
    struct dirent *de;
    while (!rc && (de = readdir(d))) {
        outbox_entry_t *e;
        if (!(rc = scan_one(ob, de->d_name, &e)))
            rc = each(e, de->d_name, arg);
    }
    closedir(d);
    if (rc == EMAIL_ENOMEM)
        snprintf(err, errlen, "out of memory");
    return rc;
}

typedef struct take {
    const outbox_filter_t *f;
    outbox_entry_t **v;
    size_t n, cap;
} take_t;

static int take_each(outbox_entry_t *e, const char *name, void *arg)
{
    take_t *t = arg;
    (void)name;
    if (!e)
        return 0;
    if (!filter_takes(t->f, &e->meta)) {
        email__outbox_entry_free(e, true);
        return 0;
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 32;
        outbox_entry_t **v = realloc(t->v, cap * sizeof *v);
        if (!v) {
            email__outbox_entry_free(e, true);
            return EMAIL_ENOMEM;
        }
        t->v = v;
        t->cap = cap;
    }
    t->v[t->n++] = e;
    return 0;
}

int email__outbox_take(outbox_t *ob, const outbox_filter_t *f, outbox_entry_t ***out, size_t *n,
                       char *err, size_t errlen)
{
    take_t t = {.f = f};
    int rc = scan(ob, take_each, &t, err, errlen);
    if (rc) {
        for (size_t i = 0; i < t.n; i++)
            email__outbox_entry_free(t.v[i], true);
        free(t.v);
        return rc;
    }
    /* the marks once the entries are claimed: nobody can mark them any more */
    if (t.n && (rc = email__marks_apply(ob->marks, t.v, t.n)) != 0) {
        snprintf(err, errlen, "outbox \"%s\": .marks cannot be read: %s", ob->dir, strerror(rc));
        for (size_t i = 0; i < t.n; i++)
            email__outbox_entry_free(t.v[i], true);
        free(t.v);
        return EMAIL_EIO;
    }
    if (t.n)
        qsort(t.v, t.n, sizeof *t.v, by_age);
    *out = t.v;
    *n = t.n;
    return 0;
}

/* ------------------------------------------------------------------------------------------- */
/* The public calls                                                                             */

int email_set_outbox(const char *directory)
{
    char err[512];
    outbox_t *ob = NULL;
    if (directory && !(ob = email__outbox_open(directory, err, sizeof err)))
        return email__error_set(strstr(err, "memory") ? EMAIL_ENOMEM : EMAIL_EIO,
                                "email_set_outbox: %s", err);
    pthread_mutex_lock(&all_lock);
    outbox_t *old = global;
    global = ob;
    pthread_mutex_unlock(&all_lock);
    email__outbox_release(old);
    email__error_clear();
    return 0;
}

/* Who an entry waits for, as the list shows it: its session, or its server's user or host. */
static const char *owner(const outbox_meta_t *m)
{
    return m->name ? m->name : m->user ? m->user : m->host;
}

typedef struct list {
    const char *user;
    email_outbox_cb cb;
    void *user_data;
    outbox_t *ob;
    int count;
} list_t;

/* A scan hands claimed entries only: those it skipped (on their way in this process or
 * another) are read without a claim, as they are. */
static int list_each(outbox_entry_t *e, const char *name, void *arg)
{
    list_t *l = arg;
    bool claimed = e != NULL;
    char why[200];
    if (!e && (name[0] == '.' || !parse_name(name, false) ||
               email__outbox_load(l->ob, name, false, &e, why, sizeof why) != 0))
        return 0;
    if (!l->user || same(l->user, owner(&e->meta))) {
        l->count++;
        if (l->cb)
            l->cb(e->meta.id, owner(&e->meta), e->meta.subject, e->meta.queued, l->user_data);
    }
    email__outbox_entry_free(e, claimed);
    return 0;
}

int email_outbox_list(const char *user_or_NULL, email_outbox_cb cb, void *user_data)
{
    outbox_t *ob = email__outbox_global();
    if (!ob)
        return email__error_set(EMAIL_EINVAL, "email_outbox_list: no outbox is set "
                                              "(email_set_outbox)");
    char err[512];
    list_t l = {.user = user_or_NULL, .cb = cb, .user_data = user_data, .ob = ob};
    int rc = scan(ob, list_each, &l, err, sizeof err);
    email__outbox_release(ob);
    if (rc)
        return email__error_set(rc, "email_outbox_list: %s", err);
    email__error_clear();
    return l.count;
}

int email_outbox_corrupt_count(void)
{
    outbox_t *ob = email__outbox_global();
    if (!ob)
        return email__error_set(EMAIL_EINVAL, "email_outbox_corrupt_count: no outbox is set "
                                              "(email_set_outbox)");
    int fd = openat(ob->dirfd, "corrupt", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        n += de->d_name[0] != '.';
    if (d)
        closedir(d);
    else if (fd >= 0)
        close(fd);
    email__outbox_release(ob);
    email__error_clear();
    return n;
}
