/*
 * emailsession — send email over SMTP without blocking.
 *
 * One header for the whole public API. Conventions:
 *  - functions returning int give 0 on success or a negative EMAIL_E... code;
 *  - functions returning bool (the WLanguage-style facade) give true on success;
 *  - whatever they return, calls that fail record why in the calling thread's ErrorInfo
 *    (email_error_info(), email_last_error()) and calls that succeed clear it: the rule and its
 *    few exceptions are written once, above email_error_occurred;
 *  - every function may be called from any thread;
 *  - strings are UTF-8 and are copied: the caller keeps ownership of what it passes in.
 *
 * The function that takes a caller's libuv loop is declared in <emailsession-uv.h>.
 */
#ifndef EMAILSESSION_H
#define EMAILSESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "emailsession-version.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(BUILDING_EMAILSESSION) && defined(__GNUC__)
#define EMAIL_EXTERN __attribute__((visibility("default")))
#else
#define EMAIL_EXTERN
#endif

/* ---------------------------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------------------------- */

/* One table for the codes, their symbols and their texts (see email_strerror). */
#define EMAIL_ERRNO_MAP(XX)                                                                        \
    XX(EINVAL, -1, "invalid argument")                                                             \
    XX(ENOMEM, -2, "out of memory")                                                                \
    XX(EEXIST, -3, "a session with this name is already open")                                    \
    XX(ENOSESSION, -4, "no session with this name")                                                \
    XX(ETIMEDOUT, -5, "timed out waiting for the server")                                         \
    XX(ERESOLVE, -6, "the server's host name could not be resolved")                             \
    XX(ECONNECT, -7, "could not connect to the server")                                            \
    XX(ECLOSED, -8, "the server closed the connection")                                            \
    XX(EPROTO, -9, "the server broke the SMTP protocol")                                           \
    XX(ESERVER, -10, "the server refused the command")                                             \
    XX(EAUTH, -11, "authentication failed")                                                        \
    XX(EAUTHMECH, -12, "no usable authentication mechanism")                                       \
    XX(EINSECURE, -13, "credentials would be sent unencrypted")                                    \
    XX(ETLS, -14, "TLS failure")                                                                   \
    XX(ETLSREQUIRED, -15, "encryption required but the server does not offer it")                  \
    XX(ECERT, -16, "the server's certificate is not trusted")                                      \
    XX(ECERTNAME, -17, "the server's certificate does not match its name")                        \
    XX(ECERTEXPIRED, -18, "the server's certificate has expired or is not yet valid")              \
    XX(ERECIPIENTS, -19, "every recipient was refused")                                            \
    XX(ESIZE, -20, "the message is larger than the server accepts")                                \
    XX(EUNKNOWN, -21, "the outcome is unknown: the message may have been delivered")               \
    XX(ECANCELED, -22, "canceled")                                                                 \
    XX(EWOULDBLOCK, -23, "a synchronous call on the loop's own thread would deadlock")            \
    XX(ESHUTDOWN, -24, "the library is shutting down")                                             \
    XX(EIO, -25, "input/output error")                                                             \
    XX(ENOTSUP, -26, "not supported")                                                              \
    XX(EBUSY, -27, "busy")                                                                         \
    XX(ECHARSET, -28, "text cannot be represented in the chosen charset")                          \
    XX(ENOTFOUND, -29, "no such message")                                                          \
    XX(ESTALE, -30, "the mailbox changed: its message numbers or UIDs are no longer valid")

typedef enum {
#define EMAIL_XX_(name, value, text) EMAIL_##name = (value),
    EMAIL_ERRNO_MAP(EMAIL_XX_)
#undef EMAIL_XX_
    EMAIL_OK = 0
} email_error_t;

/* The English text of an EMAIL_E... code ("unknown error" for anything else). Static storage. */
EMAIL_EXTERN const char *email_strerror(int code);
/* The symbol of a code, such as "EMAIL_EAUTH" ("EMAIL_OK" for 0). Static storage. */
EMAIL_EXTERN const char *email_error_name(int code);

/* ---------------------------------------------------------------------------------------------
 * Status of a send or a connection check (4D's status object)
 * ------------------------------------------------------------------------------------------- */

/*
 * Who owns the lists of a status (its refused recipients, and the chain of causes of a failure
 * that was not the server's): the status itself, at its address. The library keeps the lists of
 * a status it filled (email_transporter_send, _check_connection) until email_status_clear(status),
 * until the library fills that same status again (the old lists are freed first), or
 * email_shutdown(); from any thread, however many statuses there are. So: call
 * email_status_clear when done with a status that failed or whose `rejected` is non-zero; a
 * zero-initialised or cleared status may be reused, and an uninitialised one may be passed to be
 * filled. A copy of the struct has the fields but not the lists (its email_status_recipient and
 * email_status_error answer NULL); clearing a copy frees nothing of the original. A status
 * handed to a completion callback is the library's: valid during the call only, freed after it.
 *
 * A failure that was not the server's (status 0: no connection, TLS refused, timeout, a message
 * that cannot be composed...) has, as in 4D, status_text "Failed to send email: " and our own
 * text (for email_transporter_check_connection too), and the chain of what the library knows of
 * its causes, outermost first (email_status_error). A failure the server replied to (status
 * non-zero) has the server's text and no chain. Statuses of named sessions (their callbacks)
 * carry the chain but not the prefix: email_error_info() is made of their texts.
 */
typedef struct email_status_s {
    bool success;
    int status;              /* last SMTP reply code; 0 when the failure was not the server's */
    char status_text[512];   /* the server's text, or ours ("Failed to send email: ...") */
    char enhanced_code[16];  /* RFC 3463 code such as "5.7.8", "" if none */
    int error;               /* 0 or EMAIL_E... */
    size_t recipients;       /* recipients in the envelope */
    size_t rejected;         /* how many of them the server refused */
    void *internal_;         /* the library's handle of the refused recipients; never touch */
    void *reserved_[8];      /* room to grow (see email_server_t); zero, never touch */
} email_status_t;

/*
 * The i-th refused recipient (0 <= i < status->rejected) with the server's reply code in *code
 * (code may be NULL). NULL when i is out of range, for a copy of the struct, and after
 * email_status_clear. The string stays valid as long as the list (see above).
 */
EMAIL_EXTERN const char *email_status_recipient(const email_status_t *status, size_t i, int *code);
/* The server's text for the i-th refused recipient, or NULL. */
EMAIL_EXTERN const char *email_status_recipient_text(const email_status_t *status, size_t i);
/*
 * The chain of causes of a failure that was not the server's (4D's status.errors), outermost
 * first: how many links it has (0 for a success, a server's refusal, a copy of the struct, after
 * email_status_clear), and the i-th one's text, with its EMAIL_E... code in *code and the layer
 * it comes from in *component ("transport": resolving, connecting, the connection lost or
 * silent; "tls"; "auth"; "smtp": the protocol; "mime": composing the message; "transporter": the
 * library's own refusals). code and component may be NULL. NULL when i is out of range. The
 * text lives as long as the list (see above); the component is static.
 * E.g. an untrusted certificate: one link {EMAIL_ECERT, "... not trusted ...", "tls"}; a message
 * whose retry on a fresh connection could not connect: {EMAIL_ECONNECT, ..., "transport"}, then
 * why the first connection failed it.
 */
EMAIL_EXTERN size_t email_status_error_count(const email_status_t *status);
EMAIL_EXTERN const char *email_status_error(const email_status_t *status, size_t i, int *code,
                                            const char **component);
/*
 * Frees the lists of this status and zeroes it. Call it when done with a status that failed or
 * whose `rejected` is non-zero. Safe on a zeroed, cleared (clearing twice is fine), copied or
 * uninitialised status (NULL too); never pass the status a completion callback was given.
 */
EMAIL_EXTERN void email_status_clear(email_status_t *status);

/* ---------------------------------------------------------------------------------------------
 * Messages
 * ------------------------------------------------------------------------------------------- */

typedef struct email_message_s email_message_t;

enum {
    EMAIL_PRIORITY_NORMAL = 0,
    EMAIL_PRIORITY_HIGHEST = 1,
    EMAIL_PRIORITY_HIGH = 2,
    EMAIL_PRIORITY_LOW = 4,
    EMAIL_PRIORITY_LOWEST = 5
};

/* Charset modes (4D's mail modes), for email_message_set_charsets and the transporter. */
#define EMAIL_MAIL_MODE_UTF8 "US-ASCII_UTF8_QP"
#define EMAIL_MAIL_MODE_UTF8_IN_BASE64 "US-ASCII_UTF8_B64"
#define EMAIL_MAIL_MODE_ISO88591 "ISO-8859-1"
#define EMAIL_MAIL_MODE_ISO2022JP "US-ASCII_ISO-2022-JP_UTF8_QP"

/* A new empty message with a fresh process-unique id; NULL (ErrorInfo EMAIL_ENOMEM) when out of
 * memory. */
EMAIL_EXTERN email_message_t *email_message_new(void);
EMAIL_EXTERN void email_message_free(email_message_t *message);

/*
 * Addresses: "a@b" or "Display Name <a@b>"; add_to/cc/bcc also take comma-separated lists
 * (a quoted display name may contain commas). Each call adds; set_* replaces.
 * EMAIL_EINVAL when the address is malformed or holds CR, LF or NUL; the message is unchanged.
 * International addresses (UTF-8) are welcome. A domain must be a valid international domain
 * name (IDNA2008; EMAIL_EINVAL naming the address otherwise). A message whose addresses have
 * ASCII local parts goes to every server: a UTF-8 domain is written as its A-label ("xn--...")
 * in the header fields, and in the envelope too unless the server offers SMTPUTF8, which then
 * gets it as it is. A local part that is not ASCII (in any address, Bcc included) makes the
 * message need SMTPUTF8 (RFC 6531): its header addresses are then written in UTF-8 (RFC 6532),
 * and a server without SMTPUTF8 refuses it before anything goes (EMAIL_ENOTSUP, the text naming
 * the address). Display names are always encoded words (RFC 2047) where not ASCII.
 */
EMAIL_EXTERN int email_message_set_from(email_message_t *message, const char *address);
EMAIL_EXTERN int email_message_set_sender(email_message_t *message, const char *address);
EMAIL_EXTERN int email_message_set_reply_to(email_message_t *message, const char *address);
EMAIL_EXTERN int email_message_add_to(email_message_t *message, const char *address);
EMAIL_EXTERN int email_message_add_cc(email_message_t *message, const char *address);
EMAIL_EXTERN int email_message_add_bcc(email_message_t *message, const char *address);

/* Subject and bodies, UTF-8 (EMAIL_EINVAL when not valid UTF-8; subject: no CR/LF/NUL). */
EMAIL_EXTERN int email_message_set_subject(email_message_t *message, const char *utf8);
EMAIL_EXTERN int email_message_set_text_body(email_message_t *message, const char *utf8);
EMAIL_EXTERN int email_message_set_html_body(email_message_t *message, const char *utf8);

/*
 * Attachments. From a file: the file is read while the message goes out (not loaded in memory);
 * it must exist and be readable when added (EMAIL_EIO otherwise). name NULL → the file's base
 * name; content_type NULL → guessed from the name, else application/octet-stream.
 * From memory: the bytes are copied.
 */
EMAIL_EXTERN int email_message_add_attachment_file(email_message_t *message, const char *path,
                                                   const char *name, const char *content_type);
EMAIL_EXTERN int email_message_add_attachment_data(email_message_t *message, const void *data,
                                                   size_t length, const char *name,
                                                   const char *content_type);
/* An inline part (an image the HTML body shows with src="cid:content_id"), from a file or memory. */
EMAIL_EXTERN int email_message_add_inline(email_message_t *message, const char *path_or_NULL,
                                          const void *data, size_t length,
                                          const char *content_id, const char *content_type);

/* A header of the caller's (name: printable ASCII without ':'; value UTF-8, no CR/LF/NUL). */
EMAIL_EXTERN int email_message_add_header(email_message_t *message, const char *name,
                                          const char *value);
/*
 * Threading (RFC 5322 3.6.4): the Message-ID this message answers, and the References chain
 * (each call appends one id, oldest first). Ids are written "<left@right>"; EMAIL_EINVAL
 * otherwise. add_header refuses these two names: use these functions.
 */
EMAIL_EXTERN int email_message_set_in_reply_to(email_message_t *message, const char *message_id);
EMAIL_EXTERN int email_message_add_reference(email_message_t *message, const char *message_id);
EMAIL_EXTERN int email_message_set_priority(email_message_t *message, int priority);
EMAIL_EXTERN int email_message_set_disposition_notification(email_message_t *message, bool on);
/* header_mode / body_mode: EMAIL_MAIL_MODE_...; NULL keeps the current one. */
EMAIL_EXTERN int email_message_set_charsets(email_message_t *message, const char *header_mode,
                                            const char *body_mode);

/* Delivery status notifications (RFC 3461), for email_message_set_dsn. */
enum {
    EMAIL_NOTIFY_NEVER = 1,
    EMAIL_NOTIFY_SUCCESS = 2,
    EMAIL_NOTIFY_FAILURE = 4,
    EMAIL_NOTIFY_DELAY = 8
};
/*
 * Asks for delivery status notifications: notify is EMAIL_NOTIFY_NEVER alone, or any combination
 * of SUCCESS, FAILURE and DELAY, or 0 (no NOTIFY: the server's default, failures); ret "FULL"
 * (the whole message comes back in a notification) or "HDRS" (its header only), NULL for the
 * server's choice; envid an envelope id of up to 100 printable ASCII characters that
 * notifications quote (NULL or "" for none). 0, 0, NULL, NULL asks for nothing again.
 * Sent as RET= and ENVID= (xtext) on MAIL FROM, NOTIFY= and ORCPT=rfc822; on each RCPT TO,
 * only to a server that offers DSN: one that does not gets the message without them (it is a
 * request, not a condition of sending), and the conversation log says so once a connection.
 * Prebuilt messages (email_send_mime, email_transporter_send_mime) carry no DSN request.
 * EMAIL_EINVAL naming the argument (a NOTIFY combination, a RET, an ENVID too long or not
 * printable); the message is unchanged then.
 */
EMAIL_EXTERN int email_message_set_dsn(email_message_t *message, int notify, const char *ret,
                                       const char *envid);

/* The message's id, used by email_message_status and the callbacks. */
EMAIL_EXTERN uint64_t email_message_id(const email_message_t *message);

/*
 * The message as RFC 5322 / MIME bytes (WLanguage's EmailBuildSource), CRLF line endings, Bcc not
 * included. *mime is malloc'ed and NUL-terminated, free it with free().
 * EMAIL_ECHARSET (with email_error_info() naming the field) when a field cannot be written in
 * the chosen charset mode (ISO-8859-1 has no fallback; attachment file names follow the header
 * mode); EMAIL_EIO when an attachment file cannot be read. Sending reports the same errors.
 */
EMAIL_EXTERN int email_message_to_mime(const email_message_t *message, char **mime,
                                       size_t *length);

/* ---------------------------------------------------------------------------------------------
 * Reading messages
 * ------------------------------------------------------------------------------------------- */

/* What email_message_get_parse_problems reports: bits, each a kind of damage that was repaired
 * or worked around (the message is still returned). */
enum {
    EMAIL_PARSE_HEADER = 1,      /* a header line that is no field, or folded before any field */
    EMAIL_PARSE_CHARSET = 2,     /* a charset the system lacks, or octets it cannot read: those
                                    texts hold U+FFFD (or the octets made valid UTF-8) */
    EMAIL_PARSE_8BIT_HEADER = 4, /* raw 8-bit octets in a header that are not UTF-8 */
    EMAIL_PARSE_ENCODING = 8,    /* broken base64 or quoted-printable (decoded as far as it goes) */
    EMAIL_PARSE_MULTIPART = 16,  /* a multipart without boundary, or a final boundary missing */
    EMAIL_PARSE_ADDRESS = 32,    /* an address that is not an addr-spec (kept as written) */
    EMAIL_PARSE_LIMIT = 64       /* a cap was reached and something was dropped: nesting over 32,
                                    over 1000 parts, a header over 256 KiB, decoded parts over
                                    EMAIL_PARSE_MAX_DECODED in all */
};
/* The decoded bytes (bodies and attachments together) a parsed message may hold. */
#define EMAIL_PARSE_MAX_DECODED (512u * 1024 * 1024)

/*
 * Reads an RFC 5322 / MIME message (4D's MAIL Convert from MIME) into a new message for the
 * getters below: headers unfolded and their encoded words (RFC 2047) decoded, parameters
 * (RFC 2231) joined and decoded, base64 and quoted-printable bodies decoded, the first text/plain
 * and text/html parts that are not attachments as the text and HTML bodies in UTF-8 (from their
 * charset; 8-bit text without one is UTF-8 when it reads as UTF-8, else windows-1252), every other
 * leaf part as an attachment or inline part with its decoded bytes; a message/rfc822 part is an
 * attachment whose data is the enclosed message (read it with this function again). Line breaks
 * in bodies are CRLF, as on the wire. A message whose encoding is broken is still returned, its
 * damage in email_message_get_parse_problems. Lines of any length and LF-only line ends are read.
 * Sending the result again (email_send_message, email_transporter_send) re-composes it from its
 * fields: From, Sender, Reply-To, To, Cc, Subject, Date, Message-ID, the bodies, attachments,
 * inline parts, In-Reply-To, References and the other fields that are not about transport (no
 * Received, Return-Path, DKIM-Signature, ARC-*, Content-*, MIME-Version, ...); a Bcc field read
 * is kept for the envelope only.
 * A message with an address that could not be read as one is refused then (EMAIL_EINVAL).
 * EMAIL_EINVAL when mime or out is NULL (length 0 is an empty message), EMAIL_ENOMEM, EMAIL_EIO
 * when a large part's temporary file (see email_message_get_attachment) cannot be written.
 */
EMAIL_EXTERN int email_message_from_mime(const char *mime, size_t length, email_message_t **out);

/*
 * The getters read any message, parsed or built; the strings they return are the message's, valid
 * until it changes or is freed. They cannot fail (NULL, 0 or an empty answer when the message is
 * NULL or has no such field) and leave ErrorInfo as it was, except email_message_get_attachment
 * and email_message_get_attachment_info, which set it when they fail and clear it otherwise.
 */
enum { EMAIL_RECIPIENT_TO = 0, EMAIL_RECIPIENT_CC = 1, EMAIL_RECIPIENT_BCC = 2 };
/* The subject, decoded, UTF-8; NULL when none. */
EMAIL_EXTERN const char *email_message_get_subject(const email_message_t *message);
/* The first From address as "Name <a@b>" (or "a@b" without a name), UTF-8; NULL when none. */
EMAIL_EXTERN const char *email_message_get_from(const email_message_t *message);
/* To, Cc or Bcc (EMAIL_RECIPIENT_...): how many addresses, and the i-th as "Name <a@b>". */
EMAIL_EXTERN size_t email_message_get_recipient_count(const email_message_t *message, int kind);
EMAIL_EXTERN const char *email_message_get_recipient(const email_message_t *message, int kind,
                                                     size_t i);
/* The bodies in UTF-8, or NULL. */
EMAIL_EXTERN const char *email_message_get_text_body(const email_message_t *message);
EMAIL_EXTERN const char *email_message_get_html_body(const email_message_t *message);
/* "<id@host>"; NULL when none (a built message has one only once sent or composed). */
EMAIL_EXTERN const char *email_message_get_message_id(const email_message_t *message);
/* The first header field of that name (any case), unfolded and decoded, UTF-8; NULL when none.
 * A built message answers for its own fields (From, To, ... joined with ", ", Subject) and those
 * added by email_message_add_header. */
EMAIL_EXTERN const char *email_message_get_header(const email_message_t *message,
                                                  const char *name);
/* The Date field as Unix time (obsolete forms read too), 0 when none or not a date. */
EMAIL_EXTERN int64_t email_message_get_date(const email_message_t *message);
/* The server's UIDL or IMAP UID of a received message; NULL for any other. */
EMAIL_EXTERN const char *email_message_get_uid(const email_message_t *message);
/* Size in bytes on the server (a received message) or of the MIME text parsed; 0 when built. */
EMAIL_EXTERN uint64_t email_message_get_size(const email_message_t *message);
/* Attachments and inline parts, in order. */
EMAIL_EXTERN size_t email_message_get_attachment_count(const email_message_t *message);
/*
 * The i-th one: its name (UTF-8, NULL when none), content type ("type/subtype") and decoded
 * bytes (NULL with length 0 for an attachment built from a file: it is read when sent). A parsed
 * part of 1 MiB or more is a read-only mapping of an unlinked temporary file (0600, in $TMPDIR,
 * else /tmp) written as it was decoded, never one heap block; valid until email_message_free.
 * Each pointer may be NULL. EMAIL_EINVAL when message is NULL or i is out of range.
 */
EMAIL_EXTERN int email_message_get_attachment(const email_message_t *message, size_t i,
                                              const char **name, const char **content_type,
                                              const void **data, size_t *length);
enum { EMAIL_DISPOSITION_ATTACHMENT = 0, EMAIL_DISPOSITION_INLINE = 1 };
/* The i-th part's Content-ID (without angle brackets, NULL when none) and disposition
 * (EMAIL_DISPOSITION_...); either pointer may be NULL. EMAIL_EINVAL as above. */
EMAIL_EXTERN int email_message_get_attachment_info(const email_message_t *message, size_t i,
                                                   const char **content_id, int *disposition);
/* EMAIL_PARSE_... bits of what was wrong in a parsed message; 0 for a built one. */
EMAIL_EXTERN unsigned email_message_get_parse_problems(const email_message_t *message);

/* ---------------------------------------------------------------------------------------------
 * The transporter (4D's SMTP transporter)
 * ------------------------------------------------------------------------------------------- */

enum {
    EMAIL_SECURITY_STARTTLS = 0, /* plain TCP then STARTTLS (default, port 587) */
    EMAIL_SECURITY_TLS = 1,      /* TLS from the first byte (port 465) */
    EMAIL_SECURITY_NONE = 2      /* plain TCP, never encrypted */
};

/*
 * The settings of a transporter. Zero-initialise it (`email_server_t s = {0};`) or call
 * email_server_init, then set what you need; never leave it uninitialised.
 *
 * How it grows without breaking compiled programs (the same for email_status_t): its size and
 * the offset of every field are fixed for the life of the soname. A field added in a later
 * version takes the place of slots of `reserved_` (one slot per field: a pointer, or an int or
 * bool padded to a pointer), and its zero value means what the library did before the field
 * existed. A program built against an older header leaves those slots zero, so it keeps the old
 * behaviour; a newer program gets the field. `make abi-check` fails when a change moves or
 * resizes anything. Opaque objects with setters would grow too, but would lose 4D's and
 * WLanguage's way of passing settings as one object, and designated initialisers.
 */
typedef struct email_server_s {
    const char *host;            /* mandatory: a name or an IP address */
    int port;                    /* 0 → 587, or 465 when security is EMAIL_SECURITY_TLS */
    const char *user, *password;
    const char *oauth2_token;    /* XOAUTH2 / OAUTHBEARER */
    /* NULL = the most secure the server offers (OAuth when a token is given, then
     * SCRAM-SHA-256, SCRAM-SHA-1, CRAM-MD5, PLAIN, LOGIN; EXTERNAL with a client certificate
     * and neither password nor token). 4D's values "CRAM-MD5", "LOGIN", "PLAIN", "OAUTH2"
     * (XOAUTH2, or OAUTHBEARER when only that is offered) and the SASL names "XOAUTH2",
     * "OAUTHBEARER", "SCRAM-SHA-256", "SCRAM-SHA-1", "EXTERNAL", in any case. SCRAM verifies
     * the server's signature (a wrong one: EMAIL_EAUTH) and refuses fewer than 4096 iterations
     * (and more than 1000000, which would stall the library's thread);
     * it takes printable ASCII passwords only (no SASLprep of others): with another password
     * NULL skips SCRAM, and asking for it is EMAIL_ENOTSUP. */
    const char *authentication_mode;
    int security;                /* EMAIL_SECURITY_STARTTLS (default), _TLS, _NONE */
    bool accept_unsecure_connection; /* false: fail when encryption is impossible (4D default) */
    int connection_timeout;      /* seconds, 0 → 30 */
    int send_timeout;            /* seconds, 0 → 100: silence allowed while a send goes on */
    bool keep_alive;             /* connection kept between sends (email_server_init: true) */
    const char *log_file;        /* extended log: this connection + MIME of every mail */
    const char *header_charset, *body_charset; /* EMAIL_MAIL_MODE_... defaults for messages */
    const char *ca_file;         /* extra trust anchors (PEM); system store always used */
    const char *helo_name;       /* EHLO argument; default: the machine's host name */
    /* Connections to the server a transporter may spread its queue over (0 → 1, at most
     * EMAIL_MAX_CONNECTIONS): more open as the queue grows past what the open ones hold, and
     * each one QUITs once idle with nothing waiting (the oldest stays when keep_alive). Messages
     * may then be accepted out of order; each still gets exactly one outcome. An int takes a
     * whole slot: the pointers around it align it so. */
    int max_connections;
    /* A TLS client certificate (PEM, may hold the chain) and its private key (PEM, unencrypted;
     * NULL: in client_cert_file), presented when the server asks; NULL: none. */
    const char *client_cert_file;
    const char *client_key_file;
    /* The transporter's durable outbox (a directory, created when missing): its asynchronous
     * sends are written there first (see email_set_outbox). NULL: the global outbox, if any. */
    const char *outbox;
    void *reserved_[12];         /* room to grow (see above); zero, never touch */
} email_server_t;

/* The largest email_server_t.max_connections. */
#define EMAIL_MAX_CONNECTIONS 64

typedef struct email_transporter_s email_transporter_t;

/* Completion of an asynchronous send. status is valid during the call only. */
typedef void (*email_send_cb)(uint64_t message_id, const email_status_t *status, void *user_data);
/* Progress of a body going out. */
typedef void (*email_progress_cb)(uint64_t message_id, uint64_t bytes_sent, uint64_t bytes_total,
                                  void *user_data);

/*
 * TLS: certificates are always verified (the system store, plus ca_file). A transporter keeps
 * its last TLS session and offers it on its next connection (a reconnect, a retry, another
 * connection of its pool), so they skip the full handshake when the server agrees; the log says
 * "### SMTP TLS session resumed". Before closing a TLS connection after QUIT it sends the TLS
 * close_notify alert (without waiting for the server's).
 */
/* Fills 4D's defaults: everything zero/NULL except keep_alive = true. */
EMAIL_EXTERN void email_server_init(email_server_t *server);
/*
 * A transporter for one server. Strings are copied. Does not connect yet.
 * NULL on bad settings (email_error_info says which, email_last_error is EMAIL_EINVAL), among
 * them a user or oauth2_token with a control character (it would split a SASL payload: XOAUTH2
 * separates its fields with \x01), a client certificate and key that cannot be loaded (the
 * file named), "EXTERNAL" without client_cert_file; EMAIL_ENOTSUP for "SCRAM-SHA-256" /
 * "SCRAM-SHA-1" with a password SCRAM cannot take as it is (not printable ASCII), rather than
 * another mechanism silently; EMAIL_EIO for an outbox that is not a writable directory (it is
 * created when missing).
 * OAUTHBEARER writes ',' and '=' of the user name as "=2C" and "=3D" (RFC 5801).
 */
EMAIL_EXTERN email_transporter_t *email_transporter_new(const email_server_t *server);
/*
 * The transporter's settings as it uses them (4D's readable properties): port, connection_timeout
 * and send_timeout with their defaults resolved (587 or 465; 30 and 100 s), helo_name the name
 * sent, header_charset / body_charset those applied to a message that sets none (a message's own
 * win), authentication_mode in upper case ("OAUTH2" stays "OAUTH2"; NULL: the strongest offered).
 * password and oauth2_token come back NULL. The strings belong to the transporter: valid until it
 * is freed, never to be freed by the caller. 0, or EMAIL_EINVAL when an argument is NULL.
 */
EMAIL_EXTERN int email_transporter_get_server(const email_transporter_t *transporter,
                                              email_server_t *out);
/* Connects, greets, secures and authenticates, then closes (4D's checkConnection). status may
 * be NULL; call email_status_clear on it when done (a failure has a chain of causes). A
 * failure's ErrorInfo is the status's text with the server's reply code and enhanced code, also
 * when status is NULL; so is email_transporter_send's. */
EMAIL_EXTERN int email_transporter_check_connection(email_transporter_t *transporter,
                                                    email_status_t *status);
/* Sends one message and waits for the outcome. status may be NULL. */
EMAIL_EXTERN int email_transporter_send(email_transporter_t *transporter,
                                        const email_message_t *message, email_status_t *status);
/* Sends without waiting; done is called with the outcome (see email_set_callback_thread). */
EMAIL_EXTERN int email_transporter_send_async(email_transporter_t *transporter,
                                              const email_message_t *message, email_send_cb done,
                                              void *user_data, uint64_t *message_id);
/*
 * A prebuilt message (what email_send_mime sends on a session): envelope sender `from` (""
 * for the null sender), a NULL-terminated recipient list, and `length` bytes of RFC 5322 text
 * (line endings normalised to CRLF, dots stuffed; no NUL). The text is copied. The synchronous
 * form waits as email_transporter_send does (status may be NULL); the asynchronous one queues it
 * as email_transporter_send_async does, its id in *message_id (may be NULL). EMAIL_EINVAL names
 * the bad envelope address, an empty recipient list, an empty text or a NUL byte.
 */
EMAIL_EXTERN int email_transporter_send_mime(email_transporter_t *transporter, const char *from,
                                             const char *const *recipients, const char *mime,
                                             size_t length, email_status_t *status);
EMAIL_EXTERN int email_transporter_send_mime_async(email_transporter_t *transporter,
                                                   const char *from,
                                                   const char *const *recipients,
                                                   const char *mime, size_t length,
                                                   email_send_cb done, void *user_data,
                                                   uint64_t *message_id);
/*
 * Cancels a queued message that has not started going out: 0, and its callback reports
 * EMAIL_ECANCELED. EMAIL_EBUSY once its commands went out; EMAIL_ENOTFOUND when the transporter
 * holds no such message (never queued, already finished, or waiting to be retried); ErrorInfo
 * then gives the id.
 */
EMAIL_EXTERN int email_transporter_cancel(email_transporter_t *transporter, uint64_t message_id);
EMAIL_EXTERN int email_transporter_set_progress(email_transporter_t *transporter,
                                                email_progress_cb cb, void *user_data);
/*
 * QUIT, waits for queued sends (bounded by the timeout), frees. NULL is allowed. Called on the
 * loop's own thread (a callback, or email_use_loop), it cannot wait: it returns at once and the
 * transporter is freed once its queue is done.
 */
EMAIL_EXTERN void email_transporter_free(email_transporter_t *transporter);

/* ---------------------------------------------------------------------------------------------
 * Receiving: 4D's POP3 transporter (RFC 1939; CAPA, PIPELINING, STLS, SASL AUTH and APOP)
 * ------------------------------------------------------------------------------------------- */

typedef struct email_pop3_transporter_s email_pop3_transporter_t;

/* A mailbox's size (4D's getBoxInfo): messages and their bytes, those marked deleted left out. */
typedef struct email_pop3_box_info_s {
    uint64_t count;
    uint64_t size;
} email_pop3_box_info_t;

/* One message (4D's getMailInfoList): its number in this session (from 1), its size in bytes
 * and its unique id (UIDL, at most 70 characters; "" when the server has no UIDL). */
typedef struct email_pop3_mail_info_s {
    unsigned number;
    uint64_t size;
    char uid[72];
} email_pop3_mail_info_t;

/*
 * A POP3 transporter for one server, with the settings of email_server_t as for SMTP: port 0 →
 * 110, or 995 with EMAIL_SECURITY_TLS; EMAIL_SECURITY_STARTTLS sends STLS and fails when the
 * server refuses it (unless accept_unsecure_connection); a password never goes in clear but to
 * loopback (or with accept_unsecure_connection). authentication_mode NULL: the strongest SASL
 * mechanism offered, APOP rather than PLAIN or LOGIN, else USER/PASS; a SASL name: that one.
 * log_file: the conversation in 4D's format ("### POP3 Connected to ..."), PASS, APOP and AUTH
 * payloads as "****", message bodies never. Does not connect yet: the first call opens the
 * session, which stays open until email_pop3_transporter_free. NULL on bad settings
 * (ErrorInfo says which, as email_transporter_new). Any thread.
 *
 * Every call below waits for the server (the loop's own thread gets EMAIL_EWOULDBLOCK), sets
 * ErrorInfo, fills status when not NULL (success; status 1 for the server's "+OK", -1 for its
 * "-ERR", 0 when the failure was not the server's; status_text the server's line or our text;
 * enhanced_code an RFC 2449 response code such as "IN-USE"), and returns 0 or an EMAIL_E... code
 * (EMAIL_ESERVER for an "-ERR", EMAIL_EAUTH for refused credentials, EMAIL_ETLSREQUIRED, ...).
 * Calls on one transporter take turns. A session that ended (the server closed it, a timeout)
 * is opened again by the next call: deletions marked on it are lost, as POP3 has it.
 */
EMAIL_EXTERN email_pop3_transporter_t *email_pop3_transporter_new(const email_server_t *server);
/* Connects, secures and logs in if not done yet, then NOOP (4D's checkConnection). */
EMAIL_EXTERN int email_pop3_check_connection(email_pop3_transporter_t *transporter,
                                             email_status_t *status);
/* STAT: the mailbox's message count and size into *info (zeroed on failure). */
EMAIL_EXTERN int email_pop3_get_box_info(email_pop3_transporter_t *transporter,
                                         email_pop3_box_info_t *info, email_status_t *status);
/* LIST and UIDL (pipelined when the server offers it): *list gets *count entries in the
 * server's order, to be freed by the caller with free() (NULL and 0 when the box is empty or on
 * failure). */
EMAIL_EXTERN int email_pop3_get_mail_info_list(email_pop3_transporter_t *transporter,
                                               email_pop3_mail_info_t **list, size_t *count,
                                               email_status_t *status);
/* RETR: message `number` (from 1) as the server holds it (CRLF line ends, dots unstuffed), into
 * *data (NUL-terminated, *length bytes before the NUL; the caller frees it with free()). The
 * body arrives in pieces, never one allocation of the size the server announces. */
EMAIL_EXTERN int email_pop3_get_mail_raw(email_pop3_transporter_t *transporter, unsigned number,
                                         char **data, size_t *length, email_status_t *status);
/* RETR, LIST and UIDL pipelined: message `number` (from 1) parsed as it arrives (never held
 * whole as text) into *out, the caller's to free with email_message_free (NULL on failure), with
 * email_message_get_uid (its UIDL; NULL when the server has none) and email_message_get_size
 * (its size on the server) set; a large part goes to a temporary file as it is decoded (see
 * email_message_get_attachment). Errors as above; EMAIL_EINVAL for number 0 or a NULL argument,
 * EMAIL_EIO when that file cannot be written. */
EMAIL_EXTERN int email_pop3_get_mail(email_pop3_transporter_t *transporter, unsigned number,
                                     email_message_t **out, email_status_t *status);
/* DELE: marks message `number` deleted; the server removes it when the session ends with QUIT
 * (email_pop3_transporter_free). */
EMAIL_EXTERN int email_pop3_delete(email_pop3_transporter_t *transporter, unsigned number,
                                   email_status_t *status);
/* RSET: every deletion mark of this session removed (4D's undeleteAll). */
EMAIL_EXTERN int email_pop3_undelete_all(email_pop3_transporter_t *transporter,
                                         email_status_t *status);
/* QUIT (the server then removes the messages marked deleted), waits for its answer, frees.
 * ErrorInfo says when QUIT failed. NULL is allowed. On the loop's own thread (a callback,
 * email_use_loop) it cannot wait: QUIT goes, and the transporter is freed at the session's end. */
EMAIL_EXTERN void email_pop3_transporter_free(email_pop3_transporter_t *transporter);

/*
 * Asynchronous twins of the calls above (4D's transporters with a callback). Each checks its
 * arguments and queues the call: 0, or an EMAIL_E... code (EMAIL_EINVAL for a NULL transporter
 * or number 0, EMAIL_ENOMEM) with ErrorInfo set, and then the callback is never called. Once
 * queued, its callback runs exactly once with the outcome, where the other callbacks run
 * (email_dispatch() in the caller's thread by default; the loop's thread with
 * EMAIL_CALLBACK_LOOP_THREAD or email_use_loop), status as for the synchronous call (valid
 * during the callback only). done may be NULL: the outcome is then dropped.
 * Calls on one transporter, synchronous or not, go to the server in the order they were made
 * from one thread; queued calls are pipelined when the server offers PIPELINING (a thousand
 * reads cost a few round trips). Any thread, the loop's included: a callback may queue the
 * next read. email_pop3_transporter_free lets the calls queued before it
 * finish (each still gets its own outcome, a lost connection's error included: EMAIL_ECLOSED
 * and the like) before its QUIT, as email_transporter_free does with queued sends.
 * The callback types serve every receiving transporter (POP3, IMAP).
 */
/* The outcome of a call bringing a message (message: the callback's, to be freed with
 * email_message_free; NULL on failure and for calls without one, as a DELE). */
typedef void (*email_receive_cb)(email_message_t *message, const email_status_t *status,
                                 void *user_data);
/* What a mailbox call brought, valid during its callback only; fields not its own are zero.
 * Made by the library only: later versions may add fields at the end. */
typedef struct email_mailbox_result_s {
    uint64_t count;  /* get_box_info: messages; get_mail_info_list: entries in pop3_list */
    uint64_t size;   /* get_box_info: their bytes */
    const email_pop3_mail_info_t *pop3_list; /* get_mail_info_list, in the server's order */
    const char *data; /* get_mail_raw: the message as the server holds it, NUL-terminated */
    size_t length;    /* get_mail_raw: bytes of data before the NUL */
    /* IMAP (email_imap_..._async); count is then: select_box: messages (EXISTS);
     * get_box_list: entries in imap_boxes; search: UIDs in uids */
    const struct email_imap_box_info_s *imap_box_info; /* select_box, unseen counted */
    const struct email_imap_box_s *imap_boxes;         /* get_box_list, in the server's order */
    const uint32_t *uids;                               /* search (NULL when none was found) */
} email_mailbox_result_t;
/* The outcome of a mailbox call: result is never NULL (all zero on failure). */
typedef void (*email_mailbox_cb)(const email_mailbox_result_t *result,
                                 const email_status_t *status, void *user_data);
/* NOOP (connecting and logging in first if needed); done gets no message. */
EMAIL_EXTERN int email_pop3_check_connection_async(email_pop3_transporter_t *transporter,
                                                   email_receive_cb done, void *user_data);
/* STAT: result->count and result->size. */
EMAIL_EXTERN int email_pop3_get_box_info_async(email_pop3_transporter_t *transporter,
                                               email_mailbox_cb done, void *user_data);
/* LIST and UIDL: result->pop3_list with result->count entries (uids "" without UIDL). */
EMAIL_EXTERN int email_pop3_get_mail_info_list_async(email_pop3_transporter_t *transporter,
                                                     email_mailbox_cb done, void *user_data);
/* RETR: result->data and result->length, as email_pop3_get_mail_raw. */
EMAIL_EXTERN int email_pop3_get_mail_raw_async(email_pop3_transporter_t *transporter,
                                               unsigned number, email_mailbox_cb done,
                                               void *user_data);
/* RETR, LIST and UIDL: message `number` parsed as it arrives, uid and size set, to done. */
EMAIL_EXTERN int email_pop3_get_mail_async(email_pop3_transporter_t *transporter,
                                           unsigned number, email_receive_cb done,
                                           void *user_data);
/* DELE of message `number`; done gets no message. */
EMAIL_EXTERN int email_pop3_delete_async(email_pop3_transporter_t *transporter, unsigned number,
                                         email_receive_cb done, void *user_data);
/* RSET; done gets no message. */
EMAIL_EXTERN int email_pop3_undelete_all_async(email_pop3_transporter_t *transporter,
                                               email_receive_cb done, void *user_data);

/* ---------------------------------------------------------------------------------------------
 * Receiving: 4D's IMAP transporter (RFC 3501; STARTTLS, SASL-IR, LITERAL+, UIDPLUS)
 * ------------------------------------------------------------------------------------------- */

typedef struct email_imap_transporter_s email_imap_transporter_t;

/* email_imap_select_box's mode. */
enum {
    EMAIL_IMAP_READ_WRITE = 0, /* SELECT */
    EMAIL_IMAP_READ_ONLY = 1   /* EXAMINE: nothing in the box changes, \Seen included */
};

/* A selected mailbox (4D's boxInfo). The caller's; the reserved fields are zeroed by the call. */
typedef struct email_imap_box_info_s {
    uint32_t messages;          /* EXISTS */
    uint32_t recent;            /* RECENT */
    uint32_t unseen;            /* messages without \Seen (UID SEARCH UNSEEN) */
    uint32_t uidvalidity;       /* UIDVALIDITY: UIDs stay valid while it stays the same */
    uint32_t uidnext;           /* UIDNEXT, 0 when the server did not say */
    /* true when this box was selected before on this transporter with another UIDVALIDITY:
     * the UIDs kept from then name other messages now, or none */
    bool uidvalidity_changed;
    void *reserved_[4];
} email_imap_box_info_t;

/* A mailbox's attributes (email_imap_box_t.attributes, bits). */
enum {
    EMAIL_IMAP_NOSELECT = 1,      /* \Noselect: a level of the hierarchy, not a box */
    EMAIL_IMAP_NOINFERIORS = 2,   /* \Noinferiors */
    EMAIL_IMAP_HASCHILDREN = 4,   /* \HasChildren */
    EMAIL_IMAP_HASNOCHILDREN = 8, /* \HasNoChildren */
    EMAIL_IMAP_MARKED = 16,       /* \Marked */
    EMAIL_IMAP_UNMARKED = 32      /* \Unmarked */
};

/* One mailbox of email_imap_get_box_list (4D's getBoxList). */
typedef struct email_imap_box_s {
    char *name;                 /* as the server lists it (modified UTF-7 for non-ASCII) */
    char delimiter[2];          /* the hierarchy delimiter ("/", "."), "" when flat */
    unsigned attributes;        /* EMAIL_IMAP_NOSELECT, ... */
    bool selectable;            /* !(attributes & EMAIL_IMAP_NOSELECT) */
    void *reserved_[2];
} email_imap_box_t;

/*
 * An IMAP transporter for one server, with the settings of email_server_t as for POP3: port 0 →
 * 143, or 993 with EMAIL_SECURITY_TLS; EMAIL_SECURITY_STARTTLS requires STARTTLS (a PREAUTH
 * greeting on a plain connection is then EMAIL_ETLSREQUIRED); a password never goes in clear but
 * to loopback (or with accept_unsecure_connection). authentication_mode NULL: the strongest SASL
 * mechanism offered, else LOGIN. log_file: the conversation in 4D's format ("### IMAP Connected
 * to ..."), LOGIN and AUTHENTICATE payloads as "****", message bodies never. Does not connect
 * yet: the first call opens the session, which stays open until email_imap_transporter_free.
 * NULL on bad settings (ErrorInfo says which, as email_transporter_new). Any thread.
 *
 * Every call below waits for the server (the loop's own thread gets EMAIL_EWOULDBLOCK), sets
 * ErrorInfo, fills status when not NULL (success; status 1 for the server's OK, -1 for its NO,
 * -2 for its BAD, 0 when the failure was not the server's; status_text the server's line or our
 * text; enhanced_code the response code, such as "TRYCREATE" or "NONEXISTENT"), and returns 0
 * or an EMAIL_E... code (EMAIL_ESERVER for a NO or BAD, EMAIL_EAUTH for refused credentials,
 * EMAIL_ETLSREQUIRED, EMAIL_ETIMEDOUT, EMAIL_EPROTO for a malformed or oversized response,
 * EMAIL_EINVAL for a bad argument, ...). Calls on one transporter take turns.
 * The calls that name messages by UID work in the mailbox chosen last by email_imap_select_box
 * (INBOX, read-write, when none was chosen). A session that ended (the server closed it, a
 * timeout) is opened again by the next call, which selects that mailbox again first; when its
 * UIDVALIDITY changed meanwhile the call fails with EMAIL_ESTALE and does nothing (the UIDs it
 * was given may name other messages): the next call goes on with the new UIDVALIDITY.
 */
EMAIL_EXTERN email_imap_transporter_t *email_imap_transporter_new(const email_server_t *server);
/* Connects, secures and logs in if not done yet, then NOOP (4D's checkConnection). */
EMAIL_EXTERN int email_imap_check_connection(email_imap_transporter_t *transporter,
                                             email_status_t *status);
/* SELECT (EMAIL_IMAP_READ_WRITE) or EXAMINE (EMAIL_IMAP_READ_ONLY) the mailbox `name` (as
 * email_imap_get_box_list gives it: modified UTF-7 for non-ASCII names; UTF-8 goes as it is, for
 * servers that accept it), then UID SEARCH UNSEEN for its unseen count: *info (may be NULL)
 * filled, zeroed on failure. It becomes the mailbox of the calls that follow. EMAIL_EINVAL for
 * an empty name or one with CR or LF, or another mode. */
EMAIL_EXTERN int email_imap_select_box(email_imap_transporter_t *transporter, const char *name,
                                       int mode, email_imap_box_info_t *info,
                                       email_status_t *status);
/* LIST "" "*": every mailbox, into *list (*count entries in the server's order; NULL and 0 on
 * failure), freed with email_imap_box_list_free. */
EMAIL_EXTERN int email_imap_get_box_list(email_imap_transporter_t *transporter,
                                         email_imap_box_t **list, size_t *count,
                                         email_status_t *status);
/* Frees a list of email_imap_get_box_list (NULL allowed). Any thread. */
EMAIL_EXTERN void email_imap_box_list_free(email_imap_box_t *list, size_t count);
/*
 * UID FETCH of the message of that UID, parsed as it arrives (never held whole as text) into
 * *out (the caller's, for email_message_free; NULL on failure) with email_message_get_uid (the
 * UID as text) and email_message_get_size (RFC822.SIZE). options: EMAIL_READ_HEADERS (the
 * header only), EMAIL_READ_PEEK (\Seen left as it was); without either the message is marked
 * \Seen (4D's updateSeen), as reading it does. EMAIL_ENOTFOUND when the box has no such UID.
 */
EMAIL_EXTERN int email_imap_get_mail(email_imap_transporter_t *transporter, uint32_t uid,
                                     int options, email_message_t **out, email_status_t *status);
/*
 * email_imap_get_mail for `count` UIDs at once (4D's getMails): out[i] (the caller's array of
 * count pointers) gets the message of uids[i], or NULL when the box has no such UID (4D's
 * notFound; a UID given twice is read once, at its first place). The UIDs go in a few pipelined
 * commands, so a thousand messages take a few round trips. On failure every out[i] is NULL.
 */
EMAIL_EXTERN int email_imap_get_mails(email_imap_transporter_t *transporter,
                                      const uint32_t *uids, size_t count, int options,
                                      email_message_t **out, email_status_t *status);
/*
 * UID SEARCH (4D's searchMails): criteria in IMAP's syntax, ASCII (e.g. "ALL", "UNSEEN",
 * "SUBJECT", "FROM"), then `text` (may be NULL) as its string argument, sent quoted or as a
 * literal, with CHARSET UTF-8 when it is not ASCII. *uids gets the *count UIDs found (freed with
 * free(); NULL when none). EMAIL_EINVAL for criteria with CR, LF or non-ASCII bytes.
 */
EMAIL_EXTERN int email_imap_search(email_imap_transporter_t *transporter, const char *criteria,
                                   const char *text, uint32_t **uids, size_t *count,
                                   email_status_t *status);
/* UID STORE +FLAGS.SILENT / -FLAGS.SILENT of `flags` (e.g. "\\Seen \\Flagged", or keywords) on
 * the count messages of uids (count ≥ 1). EMAIL_EINVAL for flags that are not a list of flag
 * names (no parentheses, quotes, CR, LF or other bytes IMAP's atoms refuse). */
EMAIL_EXTERN int email_imap_add_flags(email_imap_transporter_t *transporter,
                                      const uint32_t *uids, size_t count, const char *flags,
                                      email_status_t *status);
EMAIL_EXTERN int email_imap_remove_flags(email_imap_transporter_t *transporter,
                                         const uint32_t *uids, size_t count, const char *flags,
                                         email_status_t *status);
/* Marks the messages \Deleted (4D's delete); email_imap_expunge removes them. */
EMAIL_EXTERN int email_imap_delete(email_imap_transporter_t *transporter, const uint32_t *uids,
                                   size_t count, email_status_t *status);
/* EXPUNGE: every message of the box marked \Deleted is removed (4D's expunge). */
EMAIL_EXTERN int email_imap_expunge(email_imap_transporter_t *transporter,
                                    email_status_t *status);
/* LOGOUT, waits for its answer, frees. NULL is allowed. On the loop's own thread it cannot
 * wait: LOGOUT goes, and the transporter is freed at the session's end. */
EMAIL_EXTERN void email_imap_transporter_free(email_imap_transporter_t *transporter);

/*
 * Asynchronous twins of the calls above, as the POP3 ones: each checks its arguments as its
 * synchronous twin does and queues the call: 0, or an EMAIL_E... code (EMAIL_EINVAL for a bad
 * argument, EMAIL_ENOMEM) with ErrorInfo set, and then the callback is never called. Once
 * queued, its callback runs exactly once with the outcome (get_mails_async: once per UID),
 * where the other callbacks run, status as for the synchronous call (valid during the callback
 * only); done may be NULL. Calls on one transporter, synchronous or not, go to the server in the
 * order they were made from one thread; the UID commands of queued calls are pipelined. Any
 * thread, the loop's included: a callback may queue the next call. The mailbox is selected again
 * on a new session as for the synchronous calls: when its UIDVALIDITY changed, the calls naming
 * UIDs that were queued before it was seen fail with EMAIL_ESTALE (up to one that selects a
 * mailbox itself); when selecting it fails, the calls queued behind get that error. A call
 * queued behind a select_box_async works in the box that one chooses (when the server refuses
 * that SELECT, it refuses the call's UID commands too: no box is selected then). The
 * outcomes come in the order of the calls (but after a lost connection, whose errors may come
 * in another order).
 * email_imap_transporter_free lets the calls queued before it finish (each gets its own outcome,
 * a lost connection's error included) before its LOGOUT.
 */
/* NOOP (connecting and logging in first if needed); done gets no message. */
EMAIL_EXTERN int email_imap_check_connection_async(email_imap_transporter_t *transporter,
                                                   email_receive_cb done, void *user_data);
/* SELECT or EXAMINE, then UID SEARCH UNSEEN: result->imap_box_info (result->count: messages). */
EMAIL_EXTERN int email_imap_select_box_async(email_imap_transporter_t *transporter,
                                             const char *name, int mode, email_mailbox_cb done,
                                             void *user_data);
/* LIST "" "*": result->imap_boxes with result->count entries. */
EMAIL_EXTERN int email_imap_get_box_list_async(email_imap_transporter_t *transporter,
                                               email_mailbox_cb done, void *user_data);
/* The message of that UID parsed as it arrives, to done (NULL and EMAIL_ENOTFOUND when the box
 * has no such UID). options as email_imap_get_mail. */
EMAIL_EXTERN int email_imap_get_mail_async(email_imap_transporter_t *transporter, uint32_t uid,
                                           int options, email_receive_cb done,
                                           void *user_data);
/*
 * email_imap_get_mail_async for each of the count UIDs (the array is copied): done runs exactly
 * count times, once per UID in the order given (a UID given twice is read twice), each time
 * with that message as soon as it is whole (parsed as it arrives; none waits for the others, so
 * a thousand messages need not be held at once), or NULL and EMAIL_ENOTFOUND when the box has
 * no such UID, or NULL and the error when the read failed. count 0: done never runs. A UID 0 or
 * bad options refuse the whole call (EMAIL_EINVAL, done never runs). The calls' bookkeeping
 * (about 3 KB a UID, no message) is made at once and freed after the last outcome.
 */
EMAIL_EXTERN int email_imap_get_mails_async(email_imap_transporter_t *transporter,
                                            const uint32_t *uids, size_t count, int options,
                                            email_receive_cb done, void *user_data);
/* UID SEARCH: result->uids with result->count UIDs. criteria and text are copied. */
EMAIL_EXTERN int email_imap_search_async(email_imap_transporter_t *transporter,
                                         const char *criteria, const char *text,
                                         email_mailbox_cb done, void *user_data);
/* UID STORE +FLAGS.SILENT / -FLAGS.SILENT (uids copied); done gets no message. */
EMAIL_EXTERN int email_imap_add_flags_async(email_imap_transporter_t *transporter,
                                            const uint32_t *uids, size_t count,
                                            const char *flags, email_receive_cb done,
                                            void *user_data);
EMAIL_EXTERN int email_imap_remove_flags_async(email_imap_transporter_t *transporter,
                                               const uint32_t *uids, size_t count,
                                               const char *flags, email_receive_cb done,
                                               void *user_data);
/* Marks the messages \Deleted; done gets no message. */
EMAIL_EXTERN int email_imap_delete_async(email_imap_transporter_t *transporter,
                                         const uint32_t *uids, size_t count,
                                         email_receive_cb done, void *user_data);
/* EXPUNGE; done gets no message. */
EMAIL_EXTERN int email_imap_expunge_async(email_imap_transporter_t *transporter,
                                          email_receive_cb done, void *user_data);

/* ---------------------------------------------------------------------------------------------
 * WLanguage-style named sessions
 * ------------------------------------------------------------------------------------------- */

enum { EMAIL_SYNCHRONOUS = 0, EMAIL_ASYNCHRONOUS = 1 };

enum {
    EMAIL_OPTION_DEFAULT = 0,  /* plain TCP, STARTTLS whenever the server offers it */
    EMAIL_OPTION_STARTTLS = 1, /* plain TCP, STARTTLS required before anything else */
    EMAIL_OPTION_TLS = 2,      /* TLS from the first byte (port 465) */
    /* Flags that can be or-ed in: */
    EMAIL_OPTION_ALLOW_INSECURE_AUTH = 0x100, /* credentials may go out over cleartext */
    EMAIL_OPTION_NO_VERIFY = 0x200            /* no certificate checks: tests only, logged */
};
/*
 * WLanguage's emailProtocolSMTPS is STARTTLS on a plain connection, not TLS from the first byte:
 * the alias keeps that meaning. Use EMAIL_OPTION_TLS for port 465.
 */
#define EMAIL_PROTOCOL_SMTPS EMAIL_OPTION_STARTTLS

/* Outcome of a message, for email_message_status (WLanguage's EmailStatus). */
enum { EMAIL_PENDING = 1, EMAIL_SENT = 2, EMAIL_ERROR = 3 };

/*
 * Opens a session named `user`: connects, greets, secures and authenticates it, and returns
 * once that is done, in both modes (WLanguage's EmailStartSMTPSession: true means the session
 * is open and authenticated; the mode only changes how messages are sent).
 * password NULL or "" → no authentication; otherwise PLAIN or LOGIN when the server offers one
 * (a refusal fails the session with the server's code), none when it offers neither.
 * port 0 → 25, 587 or 465 by option. mode: EMAIL_SYNCHRONOUS or EMAIL_ASYNCHRONOUS.
 * false + email_error_info() on failure (with the server's code and text, e.g. its 535), and
 * the name is free again; EMAIL_EEXIST when the name is already open or starting.
 * EMAIL_EWOULDBLOCK on the loop's own thread (a callback with EMAIL_CALLBACK_LOOP_THREAD, or
 * the thread of email_use_loop's loop, even before uv_run): use the non-blocking start there.
 */
EMAIL_EXTERN bool email_start_smtp_session(const char *user, const char *password,
                                           const char *server, int port, int mode, int option);
/* The outcome of a non-blocking start: status->success, or why not (status->error, and the
 * server's code and text such as 535). Both are valid during the call only. */
typedef void (*email_start_cb)(const char *user, const email_status_t *status, void *user_data);
/*
 * email_start_smtp_session without waiting (for a GUI, or the loop's own thread): returns at
 * once; false only for what is known without the network (bad arguments, EMAIL_EEXIST for a
 * name already open or starting), with email_error_info(). Then done (may be NULL) reports
 * the outcome exactly once, where the other callbacks run (email_dispatch() by default).
 * The name is usable at once: email_session_set_callback / _set_progress / _set_log_file
 * apply, and messages sent before done wait for the start (a synchronous send waits for it
 * too) — if the start fails, each of them fails with the start's status (one outcome each,
 * reported after done). A failed start frees the name before done runs (done may start it
 * again). email_close_session before done: messages already queued are delivered first, as
 * for any close, once the session is open; with none queued the start is abandoned and done
 * reports EMAIL_ECANCELED. email_shutdown closes starting sessions the same way.
 */
EMAIL_EXTERN bool email_start_smtp_session_async(const char *user, const char *password,
                                                 const char *server, int port, int mode,
                                                 int option, email_start_cb done,
                                                 void *user_data);
/*
 * Sends a message on the session. Synchronous: returns once the server accepted it (true) or
 * refused it (false; email_error_info() holds the server's code and text). Asynchronous: returns
 * once the message is validated and queued. The message is copied; the caller may free it.
 */
EMAIL_EXTERN bool email_send_message(const char *user, const email_message_t *message);
/*
 * Sends a prebuilt message (WLanguage's EmailSend): envelope sender `from`, a NULL-terminated
 * recipient list, and `length` bytes of RFC 5322 text (line endings normalised to CRLF).
 * Each prebuilt message gets its own id, from the same series as email_message_id: the
 * callbacks report it and email_message_status tracks it. On an asynchronous session the
 * session's callback and progress callback apply, as for email_send_message.
 */
EMAIL_EXTERN bool email_send_mime(const char *user, const char *from,
                                  const char *const *recipients, const char *mime, size_t length);
/* email_send_mime that also gives the message's id in *message_id (may be NULL; 0 when the
 * message was refused before it got one). */
EMAIL_EXTERN bool email_send_mime_id(const char *user, const char *from,
                                     const char *const *recipients, const char *mime,
                                     size_t length, uint64_t *message_id);
/*
 * QUIT and free the session, after delivering what is queued (bounded by the timeout). Called on
 * the loop's thread (a callback with EMAIL_CALLBACK_LOOP_THREAD or email_use_loop) it does not
 * wait: the name is free at once and the session closes in the background once its queue is done
 * (each queued message still gets its outcome).
 * It ends every session of that name: an SMTP one and a POP3 or IMAP one sharing it are both
 * closed (an IMAP session with LOGOUT, after EXPUNGE when deletions wait for it). A
 * POP3 session's QUIT commits its deletions; when that QUIT fails (the connection was lost) the
 * session is freed all the same, its deletions are lost, and the call returns false with
 * ErrorInfo saying why. EMAIL_ENOSESSION when no session has that name.
 */
EMAIL_EXTERN bool email_close_session(const char *user);
/*
 * Named POP3 sessions (WLanguage's EmailStartPOP3Session and the Email reading functions). A
 * POP3 and an SMTP session may share a name, as in WLanguage; email_close_session ends both.
 */
enum {
    EMAIL_READ_ALL = 0,
    EMAIL_READ_UNREAD = 1,  /* IMAP only */
    EMAIL_READ_HEADERS = 2, /* the header only (POP3: TOP n 0) */
    EMAIL_READ_PEEK = 4     /* IMAP only: leave \Seen as it was */
};
/*
 * Opens the POP3 session `user` (also the login) and reads the mailbox's list (LIST and UIDL):
 * true once it is open, authenticated and listed. port 0 → 110, or 995 with EMAIL_OPTION_TLS.
 * option as for SMTP: EMAIL_OPTION_DEFAULT uses STLS when offered and never sends the password
 * in clear but to loopback (or with EMAIL_OPTION_ALLOW_INSECURE_AUTH); EMAIL_OPTION_STARTTLS
 * requires STLS; EMAIL_OPTION_TLS is TLS from the first byte. The strongest SASL mechanism
 * offered is used, else APOP, else USER/PASS. Timeout and CA file: email_set_timeout and
 * email_set_ca_file. false + ErrorInfo on failure (EMAIL_EAUTH with the server's line for a
 * refused password, EMAIL_ETLSREQUIRED, EMAIL_EINVAL, EMAIL_EEXIST when a POP3 session of that
 * name is open). Waits for the server: EMAIL_EWOULDBLOCK on the loop's own thread. Any thread.
 * A server without UIDL is read all the same, by number (the messages then have no uid). The
 * log file set for the name before (email_session_set_log_file) and the global log apply.
 */
EMAIL_EXTERN bool email_start_pop3_session(const char *user, const char *password,
                                           const char *server, int port, int option);
/*
 * Opens the IMAP session `user` (also the login), selects INBOX and takes its UIDs (UID SEARCH
 * ALL): true once it is open, authenticated and listed. port 0 → 143, or 993 with
 * EMAIL_OPTION_TLS; option as for POP3 (EMAIL_OPTION_DEFAULT uses STARTTLS when offered and never
 * sends the password in clear but to loopback; EMAIL_OPTION_STARTTLS requires it). A name holds
 * one receiving session, POP3 or IMAP (EMAIL_EEXIST for a second one); an SMTP session may share
 * it. The reading functions below then take EMAIL_READ_UNREAD (only the messages UID SEARCH
 * UNSEEN finds at that moment) and EMAIL_READ_PEEK (\Seen left as it was; without it, reading
 * marks the message \Seen); email_message_get_uid is the UID. email_delete_message marks
 * \Deleted and removes at once (UID EXPUNGE) when the server has UIDPLUS, else when the session
 * closes (EXPUNGE before LOGOUT); email_mailbox_count with EMAIL_READ_UNREAD asks the server for
 * the unseen ones. Errors as email_start_pop3_session. Waits for the server. Any thread.
 */
EMAIL_EXTERN bool email_start_imap_session(const char *user, const char *password,
                                           const char *server, int port, int option);
/*
 * Reads the first, next, previous or last message of the mailbox (RETR, or TOP n 0 with
 * EMAIL_READ_HEADERS), parsed into *out (the caller's, for email_message_free), with its UIDL
 * (email_message_get_uid) and its size on the server. Messages this session deleted are skipped.
 * The first call of next reads the first message, of previous none. Past either end: false with
 * *out NULL and email_last_error() 0 (WLanguage's Email.Out); next after the end's Email.Out
 * stays out, previous then reads the last. EMAIL_ENOTSUP for EMAIL_READ_UNREAD and
 * EMAIL_READ_PEEK (IMAP only), EMAIL_ENOSESSION, EMAIL_EINVAL, and the server's or the
 * connection's errors as email_pop3_get_mail. Waits for the server. Any thread.
 * A session whose connection was lost is not opened again behind the caller's back: the
 * message numbers of its list may name other messages on a new connection and its deletions
 * were not committed, so the reads (and email_delete_message) fail with EMAIL_ESTALE until
 * email_close_session and a new start.
 */
EMAIL_EXTERN bool email_read_first(const char *user, int options, email_message_t **out);
EMAIL_EXTERN bool email_read_next(const char *user, int options, email_message_t **out);
EMAIL_EXTERN bool email_read_previous(const char *user, int options, email_message_t **out);
EMAIL_EXTERN bool email_read_last(const char *user, int options, email_message_t **out);
/*
 * DELE of that message (read on this session; found by its UIDL): the server removes it when
 * the session ends with email_close_session (QUIT); a connection lost before removes nothing.
 * EMAIL_EINVAL for a message without UIDL (not read from a server that has UIDL),
 * EMAIL_ENOTFOUND when the mailbox has no such message or it is already deleted,
 * EMAIL_ENOSESSION, and the server's errors. Waits for the server. Any thread.
 */
EMAIL_EXTERN bool email_delete_message(const char *user, const email_message_t *message);
/* The mailbox's messages, those deleted by this session left out (no round trip: a POP3
 * maildrop is fixed for the session), or a negative EMAIL_E... code (EMAIL_ENOSESSION;
 * EMAIL_ENOTSUP for EMAIL_READ_UNREAD on POP3). Any thread. */
EMAIL_EXTERN int email_mailbox_count(const char *user, int options);
/* The longest timeout accepted, in seconds (about 23 days). */
#define EMAIL_TIMEOUT_MAX 2000000
/* Global timeout in seconds (1 to EMAIL_TIMEOUT_MAX) for sessions started afterwards.
 * Default 60. Another value is refused (the timeout is unchanged): ErrorInfo is EMAIL_EINVAL. */
EMAIL_EXTERN void email_set_timeout(int seconds);
EMAIL_EXTERN int email_get_timeout(void);
/*
 * Connections (1 to EMAIL_MAX_CONNECTIONS, default 1) each session started afterwards may spread
 * its queue over (email_server_t.max_connections): an asynchronous session with many messages
 * queued then delivers them over several connections, in no guaranteed order, each with its own
 * outcome. 0, or EMAIL_EINVAL for another value (the setting is unchanged). Any thread.
 */
EMAIL_EXTERN int email_set_max_connections(int n);
/*
 * ErrorInfo (WLanguage's ErrorOccurred / ErrorInfo): the calling thread's last error, one per
 * thread, never shared between threads.
 * Every function of this header (and email_use_loop) sets it when it fails — the EMAIL_E...
 * code it returns or stands for, and a text naming the argument or field at fault, with the
 * server's code and text when the server refused — and clears it when it succeeds, whatever it
 * returns (int, bool, a pointer, or nothing, as email_set_timeout). Failures that come later,
 * to a callback (an asynchronous send, email_start_smtp_session_async), are in the callback's
 * status, not here.
 * These leave it as it was, so that it can still be read after them:
 *  - the readers of errors and statuses: email_error_occurred, email_error_info,
 *    email_last_error, email_strerror, email_error_name, email_status_recipient,
 *    email_status_recipient_text, email_status_error_count, email_status_error and
 *    email_status_clear;
 *  - the getters that cannot fail: email_version, email_get_timeout, email_message_id, and the
 *    email_message_get_* getters but email_message_get_attachment and
 *    email_message_get_attachment_info;
 *  - the calls that return nothing and cannot fail: email_server_init, email_message_free,
 *    email_transporter_free, email_shutdown;
 *  - email_dispatch (the callbacks it runs may set it, through the calls they make).
 */
/* Whether the calling thread's last call failed (email_last_error() != 0). */
EMAIL_EXTERN bool email_error_occurred(void);
/* Text of the calling thread's last error ("" when none). Valid until the thread's next call
 * that sets or clears it. */
EMAIL_EXTERN const char *email_error_info(void);
/* The EMAIL_E... code of the calling thread's last error (0 when none). */
EMAIL_EXTERN int email_last_error(void);
/* EMAIL_PENDING, EMAIL_SENT, EMAIL_ERROR, or EMAIL_ENOTFOUND for an id never queued (which
 * ErrorInfo records, as any failure). */
EMAIL_EXTERN int email_message_status(uint64_t message_id);
/* Extra trust anchors (PEM file) for sessions started afterwards; NULL removes. */
EMAIL_EXTERN int email_set_ca_file(const char *pem_path);

/* Callbacks of a named session (asynchronous mode). */
EMAIL_EXTERN int email_session_set_callback(const char *user, email_send_cb cb, void *user_data);
EMAIL_EXTERN int email_session_set_progress(const char *user, email_progress_cb cb,
                                            void *user_data);

/* ---------------------------------------------------------------------------------------------
 * The durable outbox
 * ------------------------------------------------------------------------------------------- */

/*
 * With an outbox, an asynchronous send (email_send_message / email_send_mime on an
 * EMAIL_ASYNCHRONOUS session, email_transporter_send_async / _send_mime_async) writes the
 * message — its MIME, attachments copied in — and its envelope to one file of the outbox
 * (a temporary file, fsync, rename, fsync of the directory) before it returns true; it returns
 * false, with the reason in ErrorInfo (EMAIL_EIO: disk full, unwritable...), when the message is
 * not on disk. The message then goes out from that file. The entry is removed once the server
 * accepted the message, or refused it for good (a 5xx to the message, every recipient refused,
 * too large) or it was canceled; a 4xx, a lost connection, a failed start or a shutdown keep
 * it for a later resume. Before its end of data goes out the entry is marked (in
 * <directory>/.marks, fsynced on libuv's thread pool while the end of data waits: the loop
 * never waits for the disk): if no reply comes (the connection breaks, the program dies) the
 * outcome is EMAIL_EUNKNOWN, and a resume reports it so again instead of sending it twice,
 * unless asked to. The next few messages of a connection are marked with it (one fsync for
 * them): a crash can also report those EMAIL_EUNKNOWN though the server never had them.
 * Entries name their session (or, for a transporter, nothing) and server: host, port,
 * security, user — never a password or a token. Synchronous sends do not use the outbox.
 *
 * Ids: opening an outbox leases this process a range of ids above every id the outbox has seen
 * (in earlier runs too), so the messages made afterwards never take an entry's id; an entry
 * keeps its message's id for ever: the callbacks and email_message_status use it after a
 * resume. (A message made before the outbox was opened may meet an old entry's id: its send
 * then fails with EMAIL_EIO. Set the outbox first.)
 * Processes and threads: a process claims an entry while it sends it (a lock per entry in
 * <directory>/.lock, released by the kernel when the process dies), so two processes (or two
 * sessions) resuming one outbox never send one entry twice.
 * Damage: a temporary file left by a crash, a truncated entry, a bad checksum are found by a
 * resume or a list, moved to <directory>/corrupt/, logged ("### Outbox ... is damaged"), and
 * counted by email_outbox_corrupt_count — never sent half.
 * An entry removed in the last moments before a power failure (not a crash) may come back;
 * a crash of the program alone loses nothing and duplicates nothing but EMAIL_EUNKNOWN ones.
 */
/* The global outbox: directory (created, 0700, when missing) for every asynchronous send of a
 * transporter without its own (email_server_t.outbox), named sessions included; NULL turns it
 * off. EMAIL_EIO when the path is not a writable directory (a file, no permission). */
EMAIL_EXTERN int email_set_outbox(const char *directory);
/* An entry waiting in the outbox: its id, its session (or its server's user, or host), its
 * subject (NULL for prebuilt messages), and when it was queued. */
typedef void (*email_outbox_cb)(uint64_t message_id, const char *user, const char *subject,
                                int64_t queued_unix_time, void *user_data);
/* Calls cb (may be NULL) for each entry of the global outbox waiting for user (NULL: all),
 * in directory order, and returns how many; damaged entries met on the way
 * are moved aside. EMAIL_EINVAL without an outbox, EMAIL_EIO when it cannot be read. */
EMAIL_EXTERN int email_outbox_list(const char *user_or_NULL, email_outbox_cb cb, void *user_data);
/* Flags of email_outbox_resume_ex / email_transporter_outbox_resume for entries whose end of
 * data went out without a reply: sent again (maybe a duplicate), or reported EMAIL_EUNKNOWN
 * and removed. Without either they are reported EMAIL_EUNKNOWN and kept. */
enum { EMAIL_OUTBOX_RESEND_UNKNOWN = 1, EMAIL_OUTBOX_DROP_UNKNOWN = 2 };
/* Queues, oldest first, the entries of the global outbox waiting for the open session user
 * (whatever server it now has) that no one else (thread or process) holds; their outcomes come
 * to the session's callback, under their ids. Returns how many it took (those reported
 * EMAIL_EUNKNOWN included), or EMAIL_ENOSESSION, EMAIL_EINVAL (no outbox), EMAIL_EIO. */
EMAIL_EXTERN int email_outbox_resume(const char *user);
EMAIL_EXTERN int email_outbox_resume_ex(const char *user, int flags);
/* The same for a transporter: the entries of its outbox (its own, or the global one) left by
 * transporters (not named sessions) with its host, port and user; outcomes to done. */
EMAIL_EXTERN int email_transporter_outbox_resume(email_transporter_t *t, int flags,
                                                 email_send_cb done, void *user_data);
/* How many damaged entries lie in the global outbox's corrupt/ folder (0 without an outbox's
 * corrupt/; EMAIL_EINVAL without an outbox). */
EMAIL_EXTERN int email_outbox_corrupt_count(void);

/* ---------------------------------------------------------------------------------------------
 * Callbacks, loop, shutdown
 * ------------------------------------------------------------------------------------------- */

/* Where the callbacks run: completion, progress, and the log callback's lines. */
enum {
    EMAIL_CALLBACK_DISPATCH = 0,   /* default: run by email_dispatch() in the caller's thread */
    EMAIL_CALLBACK_LOOP_THREAD = 1 /* run on the library's loop thread */
};
EMAIL_EXTERN int email_set_callback_thread(int where);
/* A descriptor that is readable while callbacks wait to be run by email_dispatch(). */
EMAIL_EXTERN int email_dispatch_fd(void);
/* Runs the waiting callbacks in the calling thread; returns how many ran. Leaves ErrorInfo to
 * what the callbacks did. */
EMAIL_EXTERN int email_dispatch(void);
/*
 * Delivers or reports everything queued, closes every session, stops the library thread, and
 * returns when all that is done. Called on the loop's thread (a callback with
 * EMAIL_CALLBACK_LOOP_THREAD or email_use_loop) it cannot wait: it starts the shutdown and
 * returns; the shutdown completes after the callback returns, and each message still queued
 * gets its one outcome. A later call of the library starts it again. The refused-recipient
 * lists of every status are freed (email_status_recipient answers NULL). ErrorInfo is left as
 * it was (the sessions it closes report nothing there).
 */
EMAIL_EXTERN void email_shutdown(void);

/* ---------------------------------------------------------------------------------------------
 * The conversation log (4D's SMTP log)
 * ------------------------------------------------------------------------------------------- */

/*
 * Lines are "<counter> <time> <pid> <session> <event>" with events C > "...", S < "..." and
 * ### .... In event text, control characters (C0, DEL, C1) and bytes that are not UTF-8 are
 * written \xHH (ESC is \x1b, CR LF \x0d\x0a) and '\' is written \\; inside the quotes of C and
 * S events '"' is written \" as well: a server's text cannot forge a line nor drive a terminal.
 * The MIME blocks of an extended log are the message's bytes, unescaped.
 *
 * The ### events of a session read as 4D writes them: "SMTP " then a capitalised phrase.
 *   ### SMTP Connected to '<host>' on port <port>. (secure)     TLS from the first byte
 *   ### SMTP Connected to '<host>' on port <port>. (not secure) plain, even if STARTTLS follows
 *   ### SMTP Server address: <ip>                 when <host> is a name: the address it reached
 *   ### SMTP TLS established: <version>, cipher <cipher>, <GnuTLS's description>
 *   ### SMTP TLS session resumed                 the transporter's last TLS session was resumed
 *                                                 (no full handshake: see email_transporter_new)
 *   ### SMTP Authenticated as '<user>' (<mechanism>)
 *   ### SMTP No authentication: ...  / SMTP STARTTLS refused (<code>): going on unencrypted
 *   ### SMTP Certificate verification is OFF ...  (EMAIL_OPTION_NO_VERIFY)
 *   ### SMTP Error: <why the session failed>
 *   ### SMTP Connection closed                    always the session's last line
 * After a failed authentication (or another setup failure while the server still listens) the
 * client sends QUIT and reads its reply before closing, as 4D does: S < "535 ...", C > "QUIT",
 * S < "221 ...", then ### SMTP Error; the outcome is still the 535. The extended log's framing
 * lines (### message <id> begins ...) are this library's own, for programs that read it.
 *
 * Relative log paths (email_set_log, email_session_set_log_file, email_server_t.log_file) are
 * resolved against the log directory (email_set_log_directory; by default the current
 * directory) once, at the call that takes the path; logs already open never move.
 */
/* Global log of every session; NULL stops it. Recycled at 10 MB (path, path.1, ...).
 * EMAIL_EIO naming the file when it cannot be opened (the log in use then goes on). */
EMAIL_EXTERN int email_set_log(const char *path);
/*
 * Each log line, as text without the final newline, to cb (NULL stops). The lines reach cb where
 * the other callbacks run (email_dispatch() in the caller's thread by default, see
 * email_set_callback_thread; the loop's thread with email_use_loop). Lines waiting for
 * email_dispatch() when the callback changes are dropped: once this returns, the old callback
 * is never called again, and no call of it is still running, so its user_data may be freed.
 * Called from inside the log callback itself, it does not wait for that call (nor for calls of
 * other threads that are themselves inside this function): the old callback returns after this
 * does, so free its user_data after the callback has returned. Do not call it on the loop's
 * thread while a log callback on another thread waits for the library (a synchronous call).
 */
typedef void (*email_log_cb)(const char *line, void *user_data);
EMAIL_EXTERN int email_set_log_callback(email_log_cb cb, void *user_data);
/*
 * Extended log of one session: its conversation and the full MIME of every message; NULL
 * stops it. EMAIL_EIO when the file cannot be opened for appending.
 * Before the start (no session by that name yet), the path is remembered for the name's next
 * start, so the log holds the whole conversation from the connect line on (EHLO, STARTTLS,
 * AUTH with its secrets written "****", the server's refusal). That start takes it whatever
 * its outcome: after a failed start the file keeps what was written, and the name has no
 * log file any more (set it again before retrying). NULL before the start forgets it.
 * POP3 sessions (email_start_pop3_session) honour it the same way: the next start of either
 * kind takes a path set before it ("### POP3 Connected ...", PASS as "****"), and an open POP3
 * session of that name writes to the new file from now on.
 */
EMAIL_EXTERN int email_session_set_log_file(const char *user, const char *path);
/*
 * The folder relative log paths are resolved against, like 4D's Logs folder (a relative dir is
 * itself resolved against the current directory now). NULL: back to the default, the current
 * directory at the time each path is given. Errors (the setting is then unchanged): EMAIL_EIO
 * when dir does not exist or cannot be reached, EMAIL_EINVAL when it is empty or not a
 * directory; email_error_info() names the path. Any thread.
 */
EMAIL_EXTERN int email_set_log_directory(const char *dir);

/* The running library's version, e.g. "1.0.0": EMAIL_VERSION_STRING of the library that runs
 * (the macros in <emailsession-version.h> are those of the headers compiled against). */
EMAIL_EXTERN const char *email_version(void);

#ifdef __cplusplus
}
#endif
#endif /* EMAILSESSION_H */
