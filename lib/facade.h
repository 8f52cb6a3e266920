/*
 * Transitional: transporter.c still records ErrorInfo through this name. Its calls become
 * email__error_set / email__error_clear (error.h), then this header goes: nothing but the facade
 * belongs above the transporter, and the facade needs no header of its own.
 */
#ifndef EMAIL_FACADE_H
#define EMAIL_FACADE_H

#include "error.h"

/* Records the calling thread's last error (code 0 clears it). */
static inline void facade_set_error(int code, const char *text)
{
    email__error_set(code, "%s", text ? text : "");
}

#endif
