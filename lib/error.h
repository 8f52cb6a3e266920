/*
 * The calling thread's last error: what email_error_occurred, email_error_info and
 * email_last_error answer (WLanguage's ErrorInfo). It sits at the bottom of the library, above
 * nothing but the error texts, so that every public call sets it on failure and clears it on
 * success from whatever layer it lives in, without including the facade.
 */
#ifndef EMAIL_ERROR_H
#define EMAIL_ERROR_H

#include <stdarg.h>

#include "util.h"

/*
 * Records code (EMAIL_E...) with the text fmt makes (email_strerror(code) when it makes "",
 * cut at 1023 bytes) and returns code; code 0 clears instead. The arguments may point into
 * email__error_text(): the text is made before the old one is replaced.
 */
int email__error_set(int code, const char *fmt, ...) EMAIL_PRINTF(2, 3);
int email__error_vset(int code, const char *fmt, va_list ap) EMAIL_PRINTF(2, 0);
/* Records code with "what: " and the status's text, plus the server's reply code and enhanced
 * code when the server answered; returns code. */
struct email_status_s;
int email__error_set_status(int code, const char *what, const struct email_status_s *s);
/* No error: what a public call does when it succeeds. */
void email__error_clear(void);
/* The recorded text ("" when none), for a layer that hands it on in its own words. */
const char *email__error_text(void);

#endif
