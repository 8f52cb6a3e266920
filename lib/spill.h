/*
 * Spill files: the bytes of a large decoded part (SPILL_THRESHOLD and more) go to an unlinked
 * temporary file instead of the heap, and are then read through a read-only mapping of it, so a
 * 50 MiB attachment costs no 50 MiB of malloc. The file is created unlinked (O_TMPFILE, or
 * mkstemp then unlink) with mode 0600 in $TMPDIR, else /tmp: nothing is left behind if the process
 * dies, and no other user can read it. The descriptor is closed once the bytes are mapped; the
 * mapping lasts until email__spill_unmap (email_message_free).
 */
#ifndef EMAIL_SPILL_H
#define EMAIL_SPILL_H

#include <stddef.h>
#include <stdint.h>

/* Decoded parts this large or larger go to a spill file (1 MiB: below it the heap is cheaper
   than a file, a mapping and its page faults; above it the memory a message costs is bounded). */
#define SPILL_THRESHOLD ((size_t)1 << 20)
/* Once spilling, the decoded bytes are written out whenever this many are waiting. */
#define SPILL_CHUNK ((size_t)64 << 10)

typedef struct spill {
    int fd;           /* -1 when no file is open */
    uint64_t length;  /* bytes written so far */
} spill_t;

void email__spill_init(spill_t *s);
/* Creates the unlinked file. 0, or EMAIL_EIO (no temporary directory would take it). */
int email__spill_open(spill_t *s);
/* Appends n bytes. 0, or EMAIL_EIO (the disk is full, ...). */
int email__spill_write(spill_t *s, const void *data, size_t n);
/* The bytes written, mapped read-only into *data (*length bytes; at least one byte must have
   been written); the file is closed either way. 0, EMAIL_ENOMEM (no address space) or EMAIL_EIO. */
int email__spill_map(spill_t *s, char **data, size_t *length);
/* Closes the file if still open (a part abandoned half way). */
void email__spill_close(spill_t *s);
/* Ends a mapping made by email__spill_map. */
void email__spill_unmap(char *data, size_t length);

#endif
