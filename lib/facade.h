/* The calling thread's ErrorInfo, shared by the facade and the transporter's public calls. */
#ifndef EMAIL_FACADE_H
#define EMAIL_FACADE_H

/* Records the calling thread's last error (code 0 clears it). */
void facade_set_error(int code, const char *text);

#endif
