#ifndef CLIBPQ_SHIM_H
#define CLIBPQ_SHIM_H
#include <libpq-fe.h>
#include <errno.h>
#include <poll.h>

/// Waits until `sock` is readable (and writable when `for_write`), for at most `timeout_ms`.
/// Returns 1 when ready, 0 on timeout, -1 on error (EINTR is retried by the caller).
static inline int cpq_wait_socket(int sock, int for_write, int timeout_ms) {
    struct pollfd p;
    p.fd = sock;
    p.events = POLLIN | (for_write ? POLLOUT : 0);
    p.revents = 0;
    int rc = poll(&p, 1, timeout_ms);
    if (rc < 0) return errno == EINTR ? 0 : -1;
    return rc > 0 ? 1 : 0;
}
#endif
