/*
 * vtoe-pingpong: the project's own TCP ping-pong and stream benchmark.
 *
 * An ordinary blocking TCP program (socket/bind/listen/accept/connect/read/write), so it runs
 * unmodified both over kernel TCP and under the vtoe preload. It is the workload behind
 * `bench/offload-vs-tcp.mjs` and `vtoe demo`.
 *
 *   vtoe-pingpong server [--bind 127.0.0.1] [--port 0] [--count N]
 *       Prints "READY <port>" once listening, serves N connections one after another, exits 0.
 *   vtoe-pingpong client --port P [--host 127.0.0.1] --mode pp|stream|connect --size N
 *                        [--iters N] [--warmup N] [--seconds S]
 *       Prints one JSON line with the result.  connect: warmup + iters short connections one
 *       after another (connect, one ping-pong round trip, close), timed from socket() to
 *       close(); the server must serve that many (--count).
 *
 * Wire protocol: the client's first 16 bytes are a header, all fields big-endian:
 *   u32 mode (1 = ping-pong, 2 = stream), u32 message size, u64 round trips (pp; 0 for stream).
 *   pp:     the server echoes every `size`-byte message back, `round trips` times.
 *   stream: the server reads to EOF, then writes the byte count as a big-endian u64 and closes.
 *
 * Exit codes: 0 success, 1 usage or protocol error, 2 connect failure, 3 data mismatch,
 * 4 other system-call failure.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/perf_event.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define MODE_PP 1u
#define MODE_STREAM 2u
#define HEADER_BYTES 16
#define MAX_SIZE (64u * 1024u * 1024u)
#define MAX_ROUND_TRIPS (UINT64_C(1) << 40)

#define EXIT_USAGE 1
#define EXIT_CONNECT 2
#define EXIT_MISMATCH 3
#define EXIT_SYSCALL 4

static const char *prog = "vtoe-pingpong";

static const char *errno_name(int e)
{
    switch (e) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EINTR: return "EINTR";
    case EIO: return "EIO";
    case EBADF: return "EBADF";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EINVAL: return "EINVAL";
    case ENFILE: return "ENFILE";
    case EMFILE: return "EMFILE";
    case ENOSPC: return "ENOSPC";
    case EPIPE: return "EPIPE";
    case ENOTSOCK: return "ENOTSOCK";
    case EPROTO: return "EPROTO";
    case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EADDRINUSE: return "EADDRINUSE";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case ENETDOWN: return "ENETDOWN";
    case ENETUNREACH: return "ENETUNREACH";
    case ENETRESET: return "ENETRESET";
    case ECONNABORTED: return "ECONNABORTED";
    case ECONNRESET: return "ECONNRESET";
    case ENOBUFS: return "ENOBUFS";
    case EISCONN: return "EISCONN";
    case ENOTCONN: return "ENOTCONN";
    case ETIMEDOUT: return "ETIMEDOUT";
    case ECONNREFUSED: return "ECONNREFUSED";
    case EHOSTDOWN: return "EHOSTDOWN";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    case EALREADY: return "EALREADY";
    case EINPROGRESS: return "EINPROGRESS";
    default: return "E?";
    }
}

/* "<what>: <strerror> (<ERRNO NAME>)" on stderr, then exit. */
static void die_errno(int code, const char *what) __attribute__((noreturn));
static void die_errno(int code, const char *what)
{
    int e = errno;
    fprintf(stderr, "%s: %s: %s (%s)\n", prog, what, strerror(e), errno_name(e));
    exit(code);
}

static void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void die(int code, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(code);
}

static double now_us(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) die_errno(EXIT_SYSCALL, "clock_gettime");
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* Reads exactly n bytes. Returns n, or the short count if EOF came first; -1 on error. */
static ssize_t read_full(int fd, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r > 0) {
            got += (size_t)r;
        } else if (r == 0) {
            break;
        } else if (errno != EINTR) {
            return -1;
        }
    }
    return (ssize_t)got;
}

static int write_full(int fd, const void *buf, size_t n)
{
    size_t put = 0;
    while (put < n) {
        ssize_t w = write(fd, (const char *)buf + put, n - put);
        if (w > 0) {
            put += (size_t)w;
        } else if (w < 0 && errno != EINTR) {
            return -1;
        }
    }
    return 0;
}

static void put_be32(unsigned char *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--) { p[i] = (unsigned char)(v & 0xff); v >>= 8; }
}

static void put_be64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) { p[i] = (unsigned char)(v & 0xff); v >>= 8; }
}

static uint32_t get_be32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v = (v << 8) | p[i];
    return v;
}

static uint64_t get_be64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}

static uint64_t parse_u64(const char *opt, const char *s, uint64_t min, uint64_t max)
{
    char *end;
    errno = 0;
    if (*s == '-' || *s == '\0') die(EXIT_USAGE, "%s: expected a non-negative integer, got '%s'", opt, s);
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0') die(EXIT_USAGE, "%s: expected a non-negative integer, got '%s'", opt, s);
    if (v < min || v > max)
        die(EXIT_USAGE, "%s: %llu is out of range [%" PRIu64 ", %" PRIu64 "]", opt, v, min, max);
    return (uint64_t)v;
}

static double parse_seconds(const char *opt, const char *s)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || end == s || !(v > 0) || v > 86400)
        die(EXIT_USAGE, "%s: expected seconds in (0, 86400], got '%s'", opt, s);
    return v;
}

static void set_nodelay(int fd)
{
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
        die_errno(EXIT_SYSCALL, "setsockopt(TCP_NODELAY)");
}

static void resolve_ipv4(const char *host, struct in_addr *out)
{
    if (inet_pton(AF_INET, host, out) == 1) return;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0 || res == NULL) die(EXIT_USAGE, "cannot resolve '%s': %s", host, gai_strerror(rc));
    *out = ((struct sockaddr_in *)res->ai_addr)->sin_addr;
    freeaddrinfo(res);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL) die(EXIT_SYSCALL, "out of memory allocating %zu bytes", n);
    return p;
}

/* ---------------------------------------------------------------- server */

static unsigned char *srv_buf;
static size_t srv_buf_size;

static void *server_buffer(size_t n)
{
    if (n > srv_buf_size) {
        free(srv_buf);
        srv_buf = xmalloc(n);
        srv_buf_size = n;
    }
    return srv_buf;
}

static void serve_one(int fd, unsigned long conn)
{
    unsigned char hdr[HEADER_BYTES];
    ssize_t r = read_full(fd, hdr, sizeof hdr);
    if (r < 0) die_errno(EXIT_SYSCALL, "read(header)");
    if (r != (ssize_t)sizeof hdr)
        die(EXIT_USAGE, "connection %lu: EOF after %zd of %d header bytes", conn, r, HEADER_BYTES);
    uint32_t mode = get_be32(hdr), size = get_be32(hdr + 4);
    uint64_t count = get_be64(hdr + 8);
    if (size == 0 || size > MAX_SIZE)
        die(EXIT_USAGE, "connection %lu: bad message size %" PRIu32, conn, size);

    if (mode == MODE_PP) {
        if (count > MAX_ROUND_TRIPS)
            die(EXIT_USAGE, "connection %lu: bad round-trip count %" PRIu64, conn, count);
        unsigned char *buf = server_buffer(size);
        for (uint64_t i = 0; i < count; i++) {
            r = read_full(fd, buf, size);
            if (r < 0) die_errno(EXIT_SYSCALL, "read(pp)");
            if (r != (ssize_t)size)
                die(EXIT_USAGE, "connection %lu: EOF in round trip %" PRIu64 " of %" PRIu64, conn, i, count);
            if (write_full(fd, buf, size) != 0) die_errno(EXIT_SYSCALL, "write(pp)");
        }
    } else if (mode == MODE_STREAM) {
        if (count != 0) die(EXIT_USAGE, "connection %lu: stream header with count %" PRIu64, conn, count);
        size_t cap = size < 65536 ? 65536 : size;
        unsigned char *buf = server_buffer(cap);
        uint64_t total = 0;
        for (;;) {
            ssize_t n = read(fd, buf, cap);
            if (n > 0) total += (uint64_t)n;
            else if (n == 0) break;
            else if (errno != EINTR) die_errno(EXIT_SYSCALL, "read(stream)");
        }
        unsigned char out[8];
        put_be64(out, total);
        if (write_full(fd, out, sizeof out) != 0) die_errno(EXIT_SYSCALL, "write(stream count)");
    } else {
        die(EXIT_USAGE, "connection %lu: unknown mode %" PRIu32, conn, mode);
    }
    if (close(fd) != 0 && errno != EINTR) die_errno(EXIT_SYSCALL, "close");
}

static int run_server(int argc, char **argv)
{
    const char *bind_addr = "127.0.0.1";
    uint64_t port = 0, count = 1;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) die(EXIT_USAGE, "server: %s needs a value", a);
        if (strcmp(a, "--bind") == 0) bind_addr = argv[++i];
        else if (strcmp(a, "--port") == 0) port = parse_u64(a, argv[++i], 0, 65535);
        else if (strcmp(a, "--count") == 0) count = parse_u64(a, argv[++i], 1, ULONG_MAX);
        else die(EXIT_USAGE, "server: unknown option %s", a);
    }

    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    resolve_ipv4(bind_addr, &sa.sin_addr);

    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (lfd < 0) die_errno(EXIT_SYSCALL, "socket");
    int one = 1;
    if (setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
        die_errno(EXIT_SYSCALL, "setsockopt(SO_REUSEADDR)");
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0) die_errno(EXIT_SYSCALL, "bind");
    if (listen(lfd, 16) != 0) die_errno(EXIT_SYSCALL, "listen");
    socklen_t len = sizeof sa;
    if (getsockname(lfd, (struct sockaddr *)&sa, &len) != 0) die_errno(EXIT_SYSCALL, "getsockname");
    printf("READY %u\n", (unsigned)ntohs(sa.sin_port));
    if (fflush(stdout) != 0) die_errno(EXIT_SYSCALL, "fflush(stdout)");

    for (uint64_t served = 0; served < count;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            die_errno(EXIT_SYSCALL, "accept");
        }
        set_nodelay(fd);
        serve_one(fd, (unsigned long)++served);
    }
    close(lfd);
    free(srv_buf);
    return 0;
}

/* ---------------------------------------------------------------- client */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Linear interpolation between closest ranks (the same rule as src/bench/stats-math.ts). */
static double percentile_sorted(const double *v, size_t n, double p)
{
    if (n == 1) return v[0];
    double pos = p / 100.0 * (double)(n - 1);
    size_t lo = (size_t)pos;
    if (lo >= n - 1) return v[n - 1];
    double frac = pos - (double)lo;
    return v[lo] + (v[lo + 1] - v[lo]) * frac;
}

static int connect_to(const char *host, uint64_t port)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    resolve_ipv4(host, &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die_errno(EXIT_SYSCALL, "socket");
    set_nodelay(fd);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) return fd;
    if (errno != EINTR) die_errno(EXIT_CONNECT, "connect");
    /* An interrupted connect goes on in the background: wait for it, then read its outcome. */
    struct pollfd pfd = { .fd = fd, .events = POLLOUT };
    for (;;) {
        int n = poll(&pfd, 1, -1);
        if (n > 0) break;
        if (n < 0 && errno != EINTR) die_errno(EXIT_SYSCALL, "poll(connect)");
    }
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) die_errno(EXIT_SYSCALL, "getsockopt(SO_ERROR)");
    if (err != 0) { errno = err; die_errno(EXIT_CONNECT, "connect"); }
    return fd;
}

static void send_header(int fd, uint32_t mode, uint32_t size, uint64_t count)
{
    unsigned char hdr[HEADER_BYTES];
    put_be32(hdr, mode);
    put_be32(hdr + 4, size);
    put_be64(hdr + 8, count);
    if (write_full(fd, hdr, sizeof hdr) != 0) die_errno(EXIT_SYSCALL, "write(header)");
}

static void client_pp(int fd, uint32_t size, uint64_t iters, uint64_t warmup)
{
    unsigned char *buf = xmalloc(size);
    double *rtt = xmalloc((size_t)iters * sizeof *rtt);
    memset(buf, 0xa5, size);
    send_header(fd, MODE_PP, size, warmup + iters);

    for (uint64_t i = 0; i < warmup + iters; i++) {
        /* Stamp the round trip's number so a misordered or stale echo is caught. */
        unsigned char stamp[8];
        put_be64(stamp, i);
        size_t sl = size < 8 ? size : 8;
        memcpy(buf, stamp, sl);
        double t0 = now_us();
        if (write_full(fd, buf, size) != 0) die_errno(EXIT_SYSCALL, "write(pp)");
        ssize_t r = read_full(fd, buf, size);
        double t1 = now_us();
        if (r < 0) die_errno(EXIT_SYSCALL, "read(pp)");
        if (r != (ssize_t)size)
            die(EXIT_MISMATCH, "server closed the connection in round trip %" PRIu64, i);
        if (memcmp(buf, stamp, sl) != 0)
            die(EXIT_MISMATCH, "round trip %" PRIu64 ": echo does not match what was sent", i);
        if (i >= warmup) rtt[i - warmup] = t1 - t0;
    }
    if (close(fd) != 0 && errno != EINTR) die_errno(EXIT_SYSCALL, "close");

    double sum = 0;
    for (uint64_t i = 0; i < iters; i++) sum += rtt[i];
    qsort(rtt, (size_t)iters, sizeof *rtt, cmp_double);
    double p50 = percentile_sorted(rtt, (size_t)iters, 50);
    printf("{\"mode\":\"pp\",\"size\":%" PRIu32 ",\"iters\":%" PRIu64 ",\"warmup\":%" PRIu64
           ",\"rtt_us\":{\"min\":%.3f,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"mean\":%.3f}"
           ",\"latency_us\":%.3f}\n",
           size, iters, warmup, rtt[0], p50, percentile_sorted(rtt, (size_t)iters, 90),
           percentile_sorted(rtt, (size_t)iters, 99), sum / (double)iters, p50 / 2);
    free(rtt);
    free(buf);
}

/*
 * A counter of the page faults this process takes, or -1.  getrusage's ru_minflt also counts
 * pages the kernel maps ahead on request (MADV_POPULATE_WRITE), which cost no fault; the
 * software event counts only the faults taken.
 */
static int fault_counter_open(void)
{
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.size = sizeof attr;
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_PAGE_FAULTS;
    attr.exclude_kernel = 1;
    attr.exclude_hv = 1;
    return (int)syscall(SYS_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
}

static int64_t fault_counter_read(int fd)
{
    uint64_t v;
    return fd >= 0 && read(fd, &v, sizeof v) == (ssize_t)sizeof v ? (int64_t)v : -1;
}

/* Short connections, as HTTP without keep-alive or a connection per job makes them. */
static void client_connect(const char *host, uint64_t port, uint32_t size, uint64_t iters,
                           uint64_t warmup)
{
    unsigned char *buf = xmalloc(size);
    double *took = xmalloc((size_t)iters * sizeof *took);
    struct rusage ru0 = {0}, ru1;
    int faults_fd = fault_counter_open();
    int64_t faults0 = -1;
    memset(buf, 0x5a, size);

    for (uint64_t i = 0; i < warmup + iters; i++) {
        unsigned char stamp[8];
        if (i == warmup) {
            getrusage(RUSAGE_SELF, &ru0);
            faults0 = fault_counter_read(faults_fd);
        }
        size_t sl = size < 8 ? size : 8;
        put_be64(stamp, i);
        memcpy(buf, stamp, sl);
        double t0 = now_us();
        int fd = connect_to(host, port);
        send_header(fd, MODE_PP, size, 1);
        if (write_full(fd, buf, size) != 0) die_errno(EXIT_SYSCALL, "write(connect)");
        ssize_t r = read_full(fd, buf, size);
        if (r < 0) die_errno(EXIT_SYSCALL, "read(connect)");
        if (r != (ssize_t)size || memcmp(buf, stamp, sl) != 0)
            die(EXIT_MISMATCH, "connection %" PRIu64 ": echo does not match what was sent", i);
        if (close(fd) != 0 && errno != EINTR) die_errno(EXIT_SYSCALL, "close");
        if (i >= warmup) took[i - warmup] = now_us() - t0;
    }

    getrusage(RUSAGE_SELF, &ru1);
    int64_t faults1 = fault_counter_read(faults_fd);
    if (faults_fd >= 0) close(faults_fd);
    /* -1: no counter (perf events refused: kernel.perf_event_paranoid, seccomp) */
    double faults = faults0 >= 0 && faults1 >= faults0 ? (double)(faults1 - faults0) / (double)iters : -1;

    /* What each connection cost this process: CPU, page faults, context switches. */
    double cpu_us = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec -
                             ru0.ru_stime.tv_sec) * 1e6 +
                    (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec -
                             ru0.ru_stime.tv_usec);
    double n = (double)iters;
    double sum = 0;
    for (uint64_t i = 0; i < iters; i++) sum += took[i];
    qsort(took, (size_t)iters, sizeof *took, cmp_double);
    printf("{\"mode\":\"connect\",\"size\":%" PRIu32 ",\"iters\":%" PRIu64 ",\"warmup\":%" PRIu64
           ",\"conn_us\":{\"min\":%.3f,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"mean\":%.3f}"
           ",\"per_conn\":{\"cpu_us\":%.1f,\"faults\":%.2f,\"switches\":%.2f}}\n",
           size, iters, warmup, took[0], percentile_sorted(took, (size_t)iters, 50),
           percentile_sorted(took, (size_t)iters, 90), percentile_sorted(took, (size_t)iters, 99),
           sum / n, cpu_us / n, faults,
           (double)(ru1.ru_nvcsw - ru0.ru_nvcsw + ru1.ru_nivcsw - ru0.ru_nivcsw) / n);
    free(took);
    free(buf);
}

static void client_stream(int fd, uint32_t size, double seconds)
{
    unsigned char *buf = xmalloc(size);
    for (uint32_t i = 0; i < size; i++) buf[i] = (unsigned char)(i * 131u + 7u);
    send_header(fd, MODE_STREAM, size, 0);

    uint64_t sent = 0;
    double t0 = now_us(), deadline = t0 + seconds * 1e6;
    for (unsigned n = 0;; n++) {
        if ((n & 63u) == 0 && now_us() >= deadline) break;
        if (write_full(fd, buf, size) != 0) die_errno(EXIT_SYSCALL, "write(stream)");
        sent += size;
    }
    if (shutdown(fd, SHUT_WR) != 0) die_errno(EXIT_SYSCALL, "shutdown(SHUT_WR)");
    unsigned char in[8];
    ssize_t r = read_full(fd, in, sizeof in);
    /* The clock stops when the server has confirmed it received everything. */
    double elapsed = (now_us() - t0) / 1e6;
    if (r < 0) die_errno(EXIT_SYSCALL, "read(stream count)");
    if (r != (ssize_t)sizeof in) die(EXIT_MISMATCH, "server closed before sending its byte count");
    uint64_t got = get_be64(in);
    if (got != sent)
        die(EXIT_MISMATCH, "server counted %" PRIu64 " bytes, client sent %" PRIu64, got, sent);
    if (close(fd) != 0 && errno != EINTR) die_errno(EXIT_SYSCALL, "close");

    printf("{\"mode\":\"stream\",\"size\":%" PRIu32 ",\"bytes\":%" PRIu64 ",\"seconds\":%.6f"
           ",\"gbit_per_s\":%.4f,\"mib_per_s\":%.3f}\n",
           size, sent, elapsed, (double)sent * 8 / elapsed / 1e9,
           (double)sent / elapsed / (1024.0 * 1024.0));
    free(buf);
}

static int run_client(int argc, char **argv)
{
    const char *host = "127.0.0.1", *mode = NULL;
    uint64_t port = 0, size = 0, iters = 10000, warmup = 1000;
    double seconds = 2.0;
    int have_port = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) die(EXIT_USAGE, "client: %s needs a value", a);
        if (strcmp(a, "--port") == 0) { port = parse_u64(a, argv[++i], 1, 65535); have_port = 1; }
        else if (strcmp(a, "--host") == 0) host = argv[++i];
        else if (strcmp(a, "--mode") == 0) mode = argv[++i];
        else if (strcmp(a, "--size") == 0) size = parse_u64(a, argv[++i], 1, MAX_SIZE);
        else if (strcmp(a, "--iters") == 0) iters = parse_u64(a, argv[++i], 1, MAX_ROUND_TRIPS / 2);
        else if (strcmp(a, "--warmup") == 0) warmup = parse_u64(a, argv[++i], 0, MAX_ROUND_TRIPS / 2);
        else if (strcmp(a, "--seconds") == 0) seconds = parse_seconds(a, argv[++i]);
        else die(EXIT_USAGE, "client: unknown option %s", a);
    }
    if (!have_port) die(EXIT_USAGE, "client: --port is required");
    if (mode == NULL) die(EXIT_USAGE, "client: --mode pp|stream|connect is required");
    if (size == 0) die(EXIT_USAGE, "client: --size is required");
    int is_pp = strcmp(mode, "pp") == 0, is_connect = strcmp(mode, "connect") == 0;
    if (!is_pp && !is_connect && strcmp(mode, "stream") != 0)
        die(EXIT_USAGE, "client: unknown mode '%s'", mode);
    if ((is_pp || is_connect) && iters > SIZE_MAX / sizeof(double)) die(EXIT_USAGE, "client: --iters too large");

    if (is_connect) {
        client_connect(host, port, (uint32_t)size, iters, warmup);
        if (fflush(stdout) != 0) die_errno(EXIT_SYSCALL, "fflush(stdout)");
        return 0;
    }
    int fd = connect_to(host, port);
    if (is_pp) client_pp(fd, (uint32_t)size, iters, warmup);
    else client_stream(fd, (uint32_t)size, seconds);
    if (fflush(stdout) != 0) die_errno(EXIT_SYSCALL, "fflush(stdout)");
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s server [--bind 127.0.0.1] [--port 0] [--count N]\n"
            "       %s client --port P [--host 127.0.0.1] --mode pp|stream|connect --size N\n"
            "                 [--iters N] [--warmup N] [--seconds S]\n",
            prog, prog);
}

int main(int argc, char **argv)
{
    /* A vanished peer must show up as EPIPE from write(), not as a silent death. */
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) { usage(stderr); return EXIT_USAGE; }
    if (strcmp(argv[1], "server") == 0) return run_server(argc - 2, argv + 2);
    if (strcmp(argv[1], "client") == 0) return run_client(argc - 2, argv + 2);
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) { usage(stdout); return 0; }
    usage(stderr);
    return EXIT_USAGE;
}
