#ifndef CLINUX_SHIM_H
#define CLINUX_SHIM_H
// Linux headers the Glibc module does not export (after swift-nio's CNIOLinux). Only Runtime imports it.
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/socket.h>
static inline int clinux_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags) { return accept4(fd, addr, len, flags); }
#include <unistd.h>
#include <sys/syscall.h>
static inline int clinux_gettid(void) { return (int)syscall(SYS_gettid); }
#endif
