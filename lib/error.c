/* The calling thread's last error (ErrorInfo): one code and one text per thread. */
#include "error.h"

#include <stdbool.h>
#include <stdio.h>

#include "emailsession.h"

#define TEXT_MAX 1024

static _Thread_local struct {
    int code;
    char text[TEXT_MAX];
} last;

int email__error_vset(int code, const char *fmt, va_list ap)
{
    if (!code) {
        email__error_clear();
        return 0;
    }
    char text[TEXT_MAX];
    vsnprintf(text, sizeof text, fmt, ap);
    email__strlcpy(last.text, text[0] ? text : email_strerror(code), sizeof last.text);
    last.code = code;
    return code;
}

int email__error_set(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = email__error_vset(code, fmt, ap);
    va_end(ap);
    return rc;
}

int email__error_set_status(int code, const char *what, const email_status_t *s)
{
    if (s->status && s->enhanced_code[0])
        return email__error_set(code, "%s: %s (server reply %d %s)", what, s->status_text,
                                s->status, s->enhanced_code);
    if (s->status)
        return email__error_set(code, "%s: %s (server reply %d)", what, s->status_text,
                                s->status);
    return email__error_set(code, "%s: %s", what,
                            s->status_text[0] ? s->status_text : email_strerror(code));
}

void email__error_clear(void)
{
    last.code = 0;
    last.text[0] = '\0';
}

const char *email__error_text(void)
{
    return last.text;
}

bool email_error_occurred(void)
{
    return last.code != 0;
}

const char *email_error_info(void)
{
    return last.text;
}

int email_last_error(void)
{
    return last.code;
}
