/*
 * vtoe.h - internal interfaces of libvtoe.so.  Include it first in every preload/ file.
 *
 * Nothing here is exported: the library is built with -fvisibility=hidden and only the
 * wrapped libc entry points (VTOE_EXPORT) leave it, as listed in libvtoe.map.
 */
#ifndef VTOE_H
#define VTOE_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

#include "vtoe_abi.h"

#define VTOE_EXPORT __attribute__((visibility("default")))
#define vtoe_likely(x) __builtin_expect(!!(x), 1)
#define vtoe_unlikely(x) __builtin_expect(!!(x), 0)
#define VTOE_MIN(a, b) ((a) < (b) ? (a) : (b))

/* ------------------------------------------------------------------------------------------ */
/* vtoe_real.c: the libc functions we interpose, resolved once with dlsym(RTLD_NEXT).          */
/* ------------------------------------------------------------------------------------------ */
struct vtoe_real_fns {
	int (*socket)(int, int, int);
	int (*connect)(int, const struct sockaddr *, socklen_t);
	int (*listen)(int, int);
	int (*accept)(int, struct sockaddr *, socklen_t *);
	int (*accept4)(int, struct sockaddr *, socklen_t *, int);
	int (*close)(int);
	int (*shutdown)(int, int);
	ssize_t (*read)(int, void *, size_t);
	ssize_t (*write)(int, const void *, size_t);
	ssize_t (*readv)(int, const struct iovec *, int);
	ssize_t (*writev)(int, const struct iovec *, int);
	ssize_t (*recv)(int, void *, size_t, int);
	ssize_t (*recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
	ssize_t (*recvmsg)(int, struct msghdr *, int);
	ssize_t (*send)(int, const void *, size_t, int);
	ssize_t (*sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
	ssize_t (*sendmsg)(int, const struct msghdr *, int);
	int (*sendmmsg)(int, struct mmsghdr *, unsigned int, int);
	int (*recvmmsg)(int, struct mmsghdr *, unsigned int, int, struct timespec *);
	int (*getsockname)(int, struct sockaddr *, socklen_t *);
	int (*getpeername)(int, struct sockaddr *, socklen_t *);
	int (*getsockopt)(int, int, int, void *, socklen_t *);
	int (*setsockopt)(int, int, int, const void *, socklen_t);
	int (*fcntl)(int, int, ...);
	int (*fcntl64)(int, int, ...);
	int (*ioctl)(int, unsigned long, ...);
	int (*dup)(int);
	int (*dup2)(int, int);
	int (*dup3)(int, int, int);
	ssize_t (*sendfile)(int, int, off_t *, size_t);
	ssize_t (*sendfile64)(int, int, off64_t *, size_t);
	ssize_t (*splice)(int, off64_t *, int, off64_t *, size_t, unsigned int);
	int (*execve)(const char *, char *const[], char *const[]);
	int (*execvpe)(const char *, char *const[], char *const[]);
	int (*fexecve)(int, char *const[], char *const[]);
	int (*posix_spawn)(pid_t *, const char *, const posix_spawn_file_actions_t *,
			   const posix_spawnattr_t *, char *const[], char *const[]);
	int (*posix_spawnp)(pid_t *, const char *, const posix_spawn_file_actions_t *,
			    const posix_spawnattr_t *, char *const[], char *const[]);
	int (*system)(const char *);
	FILE *(*fdopen)(int, const char *);
	int (*fileno)(FILE *);
	int (*fileno_unlocked)(FILE *);
	FILE *(*popen)(const char *, const char *);
	int (*epoll_ctl)(int, int, int, struct epoll_event *);
	ssize_t (*read_chk)(int, void *, size_t, size_t);
	ssize_t (*recv_chk)(int, void *, size_t, size_t, int);
	ssize_t (*recvfrom_chk)(int, void *, size_t, size_t, int, struct sockaddr *, socklen_t *);
	int (*ppoll)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);
	int (*epoll_create1)(int);
	int (*select)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
	int (*pselect)(int, fd_set *, fd_set *, fd_set *, const struct timespec *, const sigset_t *);
	int (*epoll_pwait)(int, struct epoll_event *, int, int, const sigset_t *);
	int (*epoll_pwait2)(int, struct epoll_event *, int, const struct timespec *,
			    const sigset_t *);
	/* calls that create descriptors, for vtoe_fdnew.c */
	int (*open)(const char *, int, ...);
	int (*open64)(const char *, int, ...);
	int (*openat)(int, const char *, int, ...);
	int (*openat64)(int, const char *, int, ...);
	int (*open_2)(const char *, int);
	int (*open64_2)(const char *, int);
	int (*openat_2)(int, const char *, int);
	int (*openat64_2)(int, const char *, int);
	int (*pipe)(int[2]);
	int (*pipe2)(int[2], int);
	int (*socketpair)(int, int, int, int[2]);
};

extern struct vtoe_real_fns vtoe_real_tab;
extern atomic_int vtoe_real_ready;
const struct vtoe_real_fns *vtoe_real_slow(void);

/* The real functions; before the library is initialised this initialises it. */
static inline const struct vtoe_real_fns *vtoe_real(void)
{
	if (vtoe_likely(atomic_load_explicit(&vtoe_real_ready, memory_order_acquire)))
		return &vtoe_real_tab;
	return vtoe_real_slow();
}
#define REAL(fn) (vtoe_real()->fn)

/* One step of a spin: tells the other hyper-thread, and the hypervisor, that we wait. */
static inline void vtoe_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ volatile("yield" ::: "memory");
#endif
}

/* ------------------------------------------------------------------------------------------ */
/* vtoe_seccomp.c: the library's own calls under the program's seccomp filter                 */
/* ------------------------------------------------------------------------------------------ */
long vtoe_syscall6(long nr, long a, long b, long c, long d, long e, long f); /* -1 and errno */
#define VTOE_SYSCALL7_(nr, a, b, c, d, e, f, ...)                                             \
	vtoe_syscall6((long)(nr), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), (long)(f))
/* A system call by number, never through our own syscall() wrapper. */
#define vtoe_syscall(...) VTOE_SYSCALL7_(__VA_ARGS__, 0, 0, 0, 0, 0, 0)

extern atomic_bool vtoe_sandbox_on; /* the program installed a seccomp filter */
static inline bool vtoe_sandboxed(void)
{
	return atomic_load_explicit(&vtoe_sandbox_on, memory_order_relaxed);
}
bool vtoe_sandbox_allows6(long nr, long a, long b, long c, long d, long e, long f);
#define VTOE_ALLOWS7_(nr, a, b, c, d, e, f, ...)                                              \
	vtoe_sandbox_allows6((long)(nr), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e),  \
			     (long)(f))
/* May the library make this call of its own (number, arguments)?  Always, unless the
 * program installed a seccomp filter that would not allow it. */
#define VTOE_MAY(...) (!vtoe_sandboxed() || VTOE_ALLOWS7_(__VA_ARGS__, 0, 0, 0, 0, 0, 0))
ssize_t vtoe_bell_send(int fd, const void *buf, size_t n); /* send(MSG_DONTWAIT|MSG_NOSIGNAL) */
ssize_t vtoe_bell_recv(int fd, void *buf, size_t n, bool owed); /* recv(MSG_DONTWAIT) */
void vtoe_ctl_sandboxed(bool allowed); /* vtoe_ctl.c: a filter is in force; the channel goes on? */
void vtoe_conns_take_bells(void); /* vtoe_socket.c: before the channel is lost to a filter */

/* poll(2) for the library's own waits: never our own wrapper. */
static inline int vtoe_kpoll(struct pollfd *p, nfds_t n, int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	return REAL(ppoll)(p, n, ms < 0 ? NULL : &ts, NULL);
}

/* open's mode argument: there only with O_CREAT or O_TMPFILE (flags is the last named one). */
#define VTOE_OPEN_MODE(flags, mode)                                                          \
	do {                                                                                 \
		va_list ap_;                                                                 \
		va_start(ap_, flags);                                                        \
		mode = ((flags) & (O_CREAT | __O_TMPFILE)) ? va_arg(ap_, mode_t) : 0;        \
		va_end(ap_);                                                                 \
	} while (0)

/* fcntl's third argument depends on the command. */
enum vtoe_fcntl_arg { VTOE_FCNTL_NONE, VTOE_FCNTL_INT, VTOE_FCNTL_PTR };
enum vtoe_fcntl_arg vtoe_fcntl_arg_kind(int cmd);

/* Settings read from the environment at initialisation. */
struct vtoe_config {
	bool offload;            /* VTOE_OFFLOAD != 0 */
	int agent_timeout_ms;    /* VTOE_AGENT_TIMEOUT_MS */
	char agent_path[108];    /* VTOE_AGENT_SOCKET */
	int internal_fd_base;    /* where internal fds are moved to */
	uint32_t poll_kernel_us; /* VTOE_POLL_KERNEL_US: how stale a kernel fd's readiness may be */
	bool peer_bells;         /* VTOE_PEER_BELLS != 0: a shm connection keeps its peer's bell */
};

/* The process ran out of descriptors: new shm connections hold no bell of their own (the
 * agent rings it for them, VTOE_OP_BELL), so an offloaded socket costs one fd, until a new
 * socket gets a low number again (vtoe_socket.c). */
extern atomic_bool vtoe_fds_short;
/* Out of descriptors (EMFILE): give up the bells of up to VTOE_SHED_BATCH connections, so the
 * call can be tried again; false if there was none to give. */
#define VTOE_SHED_BATCH 64
bool vtoe_fds_shed(void);
/* A new descriptor at fd: drop what the table still says of a number closed behind our back. */
void vtoe_fd_forget_stale(int fd);
/* The call failed with EMFILE and bells were given up: try it again. */
static inline bool vtoe_retry_emfile(int r)
{
	return r < 0 && errno == EMFILE && vtoe_fds_shed();
}
extern struct vtoe_config vtoe_cfg;

/* Fork generation: bumped in both processes at fork; sockets of an older one are shared. */
extern atomic_uint vtoe_fork_gen;
/* Our process ID, as of the last fork we saw: a vfork child (which runs on its parent's
 * memory, with no fork handler) differs from getpid(). */
extern atomic_int vtoe_pid;

/* ------------------------------------------------------------------------------------------ */
/* vtoe_log.c                                                                                  */
/* ------------------------------------------------------------------------------------------ */
enum vtoe_log_level { VTOE_LOG_ERROR = 0, VTOE_LOG_WARN, VTOE_LOG_INFO, VTOE_LOG_DEBUG };
extern int vtoe_log_level;
void vtoe_log_init(void);
void vtoe_log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define vtoe_log(lvl, ...)                                                                 \
	do {                                                                               \
		if (vtoe_unlikely((lvl) <= vtoe_log_level))                                \
			vtoe_log_write((lvl), __VA_ARGS__);                                \
	} while (0)
#define vtoe_err(...) vtoe_log(VTOE_LOG_ERROR, __VA_ARGS__)
#define vtoe_warn(...) vtoe_log(VTOE_LOG_WARN, __VA_ARGS__)
#define vtoe_info(...) vtoe_log(VTOE_LOG_INFO, __VA_ARGS__)
#define vtoe_dbg(...) vtoe_log(VTOE_LOG_DEBUG, __VA_ARGS__)

/* ------------------------------------------------------------------------------------------ */
/* Socket objects (vtoe_fdtab.c)                                                               */
/* ------------------------------------------------------------------------------------------ */
enum vtoe_kind {
	VTOE_KIND_FREE = 0,
	VTOE_KIND_INTERNAL,  /* one of our own fds: the application may not touch it */
	VTOE_KIND_PLAIN,     /* a kernel TCP socket we no longer care about */
	VTOE_KIND_CANDIDATE, /* AF_INET/AF_INET6 stream socket, not yet connected or listening */
	VTOE_KIND_LISTENER,  /* kernel listener registered with the agent */
	VTOE_KIND_CONN,      /* offloaded connection: the fd is the agent's socketpair end */
	VTOE_KIND_EPOLL,     /* an epoll instance this process created (vtoe_epoll.c) */
};

/* Per-connection flags (struct vtoe_conn.flags). */
#define VTOE_CF_WR_SHUT (1u << 0)
#define VTOE_CF_RD_SHUT (1u << 1)
#define VTOE_CF_PEER_GONE (1u << 2)
#define VTOE_CF_RESET_REPORTED (1u << 3)
#define VTOE_CF_BROKEN (1u << 4)       /* peer wrote impossible indices: treat as reset */
#define VTOE_CF_CONNECT_PENDING (1u << 5) /* connect returned EINPROGRESS, not yet re-called */
#define VTOE_CF_EDGE (1u << 6)   /* registered with EPOLLET: wants an edge for every arrival */
#define VTOE_CF_RST_ASKED (1u << 7) /* wrote after the peer's socket was gone; reset requested */
#define VTOE_CF_KWATCH (1u << 8) /* watched by a kernel epoll the shim cannot answer (inherited):
				  * keep the fd's kernel readiness exact after every read */

/* Socket options answered on behalf of the kernel socket that was replaced. */
enum vtoe_opt_id {
	VTOE_OPT_REUSEADDR,
	VTOE_OPT_REUSEPORT,
	VTOE_OPT_KEEPALIVE,
	VTOE_OPT_OOBINLINE,
	VTOE_OPT_PRIORITY,
	VTOE_OPT_RCVLOWAT,
	VTOE_OPT_DONTROUTE,
	VTOE_OPT_BROADCAST,
	VTOE_OPT_MARK,
	VTOE_OPT_TIMESTAMP,
	VTOE_OPT_BUSY_POLL,
	VTOE_OPT_TCP_NODELAY,
	VTOE_OPT_TCP_CORK,
	VTOE_OPT_TCP_QUICKACK,
	VTOE_OPT_TCP_KEEPIDLE,
	VTOE_OPT_TCP_KEEPINTVL,
	VTOE_OPT_TCP_KEEPCNT,
	VTOE_OPT_TCP_USER_TIMEOUT,
	VTOE_OPT_TCP_MAXSEG,
	VTOE_OPT_TCP_SYNCNT,
	VTOE_OPT_TCP_LINGER2,
	VTOE_OPT_TCP_DEFER_ACCEPT,
	VTOE_OPT_TCP_WINDOW_CLAMP,
	VTOE_OPT_TCP_NOTSENT_LOWAT,
	VTOE_OPT_IP_TOS,
	VTOE_OPT_IP_TTL,
	VTOE_OPT_IPV6_V6ONLY,
	VTOE_OPT_IPV6_TCLASS,
	VTOE_OPT_IPV6_UNICAST_HOPS,
	VTOE_OPT__COUNT
};

/* An option outside the table that the program set: the kernel's read-back of it. */
#define VTOE_OPT_EXTRA 4
#define VTOE_OPT_EXTRA_LEN 32
struct vtoe_opt_extra {
	bool used;
	int level, name;
	socklen_t len;
	unsigned char val[VTOE_OPT_EXTRA_LEN];
};

struct vtoe_opts {
	struct vtoe_opt_extra extra[VTOE_OPT_EXTRA];
	int val[VTOE_OPT__COUNT];
	int err[VTOE_OPT__COUNT]; /* errno the kernel socket gave on get, 0 if the value is valid */
	int rcvbuf, sndbuf;       /* as set by the application; 0 = never set */
	struct linger linger;
	atomic_llong rcvtimeo_us, sndtimeo_us; /* 0 = wait forever */
	char congestion[16];
};

/* The process's half of one offloaded connection. */
struct vtoe_conn {
	struct vtoe_conn_region *reg;
	size_t map_len;
	uint32_t size;  /* each ring's small area */
	uint32_t large; /* each ring's large area, 0 if none (vtoe_abi.h, "Elastic rings") */
	uint32_t ring_auto; /* how far it fills for ends that set no buffers (vtoe_large_fill()) */
	uint32_t side;
	struct vtoe_ring_ctl *tx, *rx;
	unsigned char *tx_area[3], *rx_area[3]; /* small, large, bulk */
	int fd;   /* one of the application's numbers for the socket, or, once the application
		   * closed that one, a number of ours (vtoe_socket.c, vtoe_conn_fd_leaving) */
	int fd_retired; /* a number the application closed while a call may still use it */
	int bell; /* the peer's doorbell; -1 on the shm fabric: the agent rings it (VTOE_OP_BELL) */
	int memfd; /* the region on the verbs fabric, kept (internal, close-on-exec) for an exec to
		    * hand on; -1 on the shm fabric, whose agent gives it again (ATTACH) */
	uint32_t sid;
	uint64_t cid;
	uint32_t fabric;     /* enum vtoe_fabric; VTOE_FABRIC_NONE when inherited from an older shim */
	uint32_t spin_us;
	unsigned int gen;    /* vtoe_fork_gen at attach: differs once shared with a fork */
	atomic_uint flags;   /* VTOE_CF_* */
	atomic_int nonblock; /* cached O_NONBLOCK of the application's fd */
	pthread_mutex_t rx_lock, tx_lock;
	uint64_t tx_head;          /* tx_lock */
	uint64_t tx_geo;           /* tx_lock: our tx ring's geo, as we last wrote it */
	uint64_t tx_base;          /* tx_lock: our tx ring's base, as we last wrote it */
	uint64_t rebase_checked;   /* tx_lock: head when we last looked whether we may rebase */
	uint64_t stall_tail, stall_since; /* tx_lock: the reader's tail when a writer first
					   * waited on it, and when (vtoe_tx_grow) */
	_Atomic uint64_t tx_tail_seen; /* the consumer's tail as last read: never ahead of it */
	atomic_uint tx_nospace;    /* nonblocking writes that found the ring full (EPOLLET OUT) */
	bool sndbuf_raised;        /* tx_lock */
	bool fuse_spent;           /* tx_lock: filler went out; the fuse goes with it */
	uint64_t rx_tail;          /* rx_lock */
	uint64_t rx_base;          /* rx_lock: the rx ring's base as last read (read with head;
				    * before it, where the next bytes are likely to be) */
	uint32_t owed;             /* rx_lock: doorbell bytes sent for our arms, not yet read */
	uint64_t hup_checked_ns;   /* last time a nonblocking read asked the kernel for a hang-up */
	uint64_t bytes_tx, bytes_rx;
	struct vtoe_opts opts;
};

struct vtoe_sock {
	atomic_int ref;  /* fd table slots + operations in progress */
	atomic_int nfds; /* fd table slots only */
	atomic_int kind; /* enum vtoe_kind */
	int family;
	unsigned gen; /* vtoe_fork_gen when created */
	bool made_here; /* by socket() in this process: its options are the kernel's defaults
			 * but for those set through setsockopt() */
	atomic_ullong opts_touched; /* which were set (vtoe_opts_capture) */
	pthread_mutex_t lock; /* connect/listen/close-time state */
	uint32_t sid;         /* listener: its SID; 0 while the agent has not registered it */
	int backlog;          /* listener: as given to listen(), for registering it again */
	unsigned ctl_losses;  /* listener: vtoe_ctl_losses() when it was registered */
	atomic_uint accept_quiet_until; /* listener: the agent offloads nothing to it until
					 * then (vtoe_ms32_now); accept need not ask */
	/* listener: the agent's count of offloaded connections waiting on its port (mapped
	 * read-only; NULL: ask on every accept), and kernel clients accepted without asking
	 * that the agent has not been told of yet */
	const struct vtoe_listener_page *_Atomic lpage;
	atomic_uint kernel_untold;
	atomic_bool kernel_told; /* listener: the first kernel client went to the agent at once */
	bool listen_declined; /* listener: the agent's policy keeps it on kernel TCP */
	struct sockaddr_storage local, peer;
	socklen_t local_len, peer_len;
	struct vtoe_conn c;
	struct vtoe_ep *ep;          /* VTOE_KIND_EPOLL: the interest list (vtoe_epoll.c) */
	atomic_uint incarnation;     /* bumped at each release: weak references compare it */
	struct vtoe_sock *pool_next; /* free list */
	struct vtoe_sock *all_next;  /* every object ever allocated (for fork) */
};

typedef _Atomic(struct vtoe_sock *) vtoe_slot_t;

#define VTOE_FDTAB_SHIFT 10
#define VTOE_FDTAB_CHUNK (1u << VTOE_FDTAB_SHIFT)
extern _Atomic(vtoe_slot_t *) *vtoe_fdtab;
extern unsigned int vtoe_fdtab_max;
extern struct vtoe_sock vtoe_internal_sock;

void vtoe_fdtab_init(void);
int vtoe_fd_of(const struct vtoe_sock *s);
void vtoe_fdtab_atfork_child(void);

/* Lock-free look-up without a reference: only to decide the fast path. */
static inline struct vtoe_sock *vtoe_fd_peek(int fd)
{
	vtoe_slot_t *chunk;

	if (vtoe_unlikely((unsigned int)fd >= vtoe_fdtab_max))
		return NULL;
	chunk = atomic_load_explicit(&vtoe_fdtab[(unsigned int)fd >> VTOE_FDTAB_SHIFT],
				     memory_order_acquire);
	if (vtoe_likely(!chunk))
		return NULL;
	return atomic_load_explicit(&chunk[(unsigned int)fd & (VTOE_FDTAB_CHUNK - 1)],
				    memory_order_acquire);
}

/* A reference to s unless it is being released (increment if not zero). */
static inline bool vtoe_sock_tryget(struct vtoe_sock *s)
{
	int r = atomic_load(&s->ref);

	while (r > 0 && !atomic_compare_exchange_weak(&s->ref, &r, r + 1))
		;
	return r > 0;
}

struct vtoe_sock *vtoe_fd_get(int fd);
void vtoe_sock_put(struct vtoe_sock *s);
void vtoe_sock_free(struct vtoe_sock *s); /* the last reference is gone: release it */
struct vtoe_sock *vtoe_sock_new(int kind, int family);
struct vtoe_sock *vtoe_sock_first(void);
void vtoe_fd_install(int fd, struct vtoe_sock *s);
struct vtoe_sock *vtoe_fd_remove(int fd);
void vtoe_fd_set_internal(int fd, bool internal);
int vtoe_fd_move_high(int fd);
bool vtoe_fds_free(int n);
bool vtoe_fd_swap(int *holder, int from, int to);
int vtoe_fd_rehome_internal(int fd);
/* close, read and write as the application sees them, for callers inside the library. */
int vtoe_fd_close(int fd);
ssize_t vtoe_fd_read(int fd, void *buf, size_t len);
ssize_t vtoe_fd_write(int fd, const void *buf, size_t len);
void vtoe_stdio_adopt(void);
/* Each holder of internal fds moves one from `from` to `to` if it has it. */
bool vtoe_ctl_fd_rehome(int from, int to);
bool vtoe_log_fd_rehome(int from, int to);
bool vtoe_park_fd_rehome(int from, int to);

/* vtoe_exec.c: connections inherited across exec (VTOE_INHERIT), adopted at load; the same
 * records carry connections passed with SCM_RIGHTS (vtoe_scm.c). */
void vtoe_exec_adopt(void);
int vtoe_handover_describe(struct vtoe_sock *s, const char *fds, int memfd, int bell, char *out,
			   size_t cap);
void vtoe_adopt_record(char *rec, bool scan_low);
/* The region of connection cid from the agent (ATTACH), the socket fd as the proof; with
 * VTOE_ATTACH_BELL in flags also its peer's doorbell, in *bell.  The memfd, or -1. */
int vtoe_attach(int fd, uint64_t cid, uint32_t flags, struct vtoe_ctl_rep *rep, int *bell);

/* vtoe_scm.c: SCM_RIGHTS with offloaded fds.  Return true when they handled the call. */
bool vtoe_scm_sendmsg(int fd, const struct msghdr *msg, int flags, ssize_t *result);
bool vtoe_scm_recvmsg(int fd, struct msghdr *msg, int flags, ssize_t *result);

/* ------------------------------------------------------------------------------------------ */
/* vtoe_ctl.c: the control channel to the agent                                               */
/* ------------------------------------------------------------------------------------------ */
int vtoe_ctl_up(void);
int vtoe_ctl_rpc(struct vtoe_ctl_req *req, struct vtoe_ctl_rep *rep, int fds[VTOE_FD__COUNT]);
int vtoe_ctl_rpc_fd(struct vtoe_ctl_req *req, int send_fd, struct vtoe_ctl_rep *rep,
		    int fds[VTOE_FD__COUNT]);
void vtoe_ctl_note(uint16_t op, uint32_t sid, uint64_t cid, uint32_t arg);
void vtoe_ctl_note_fd(uint16_t op, uint32_t sid, uint64_t cid, uint32_t arg, int fd);
uint32_t vtoe_ctl_spin_us(void);
void vtoe_ctl_atfork_child(void);
void vtoe_ctl_serving(void);
/* Channels to an agent lost so far (the agent went away or stopped answering). */
unsigned vtoe_ctl_losses(void);
bool vtoe_ctl_alive(unsigned since); /* the channel of registration `since` is up, agent there */
/* vtoe_socket.c: register again the listeners a new agent does not know. */
void vtoe_listen_reregister(void);
void vtoe_ctl_req_init(struct vtoe_ctl_req *req, uint16_t op);
/* One reply read from fd (the channel), checked against the request's seq; -1 with errno. */
int vtoe_ctl_recv_reply(int fd, uint32_t seq, struct vtoe_ctl_rep *rep, int fds[VTOE_FD__COUNT],
			long long deadline);
int vtoe_addr_to_wire(const struct sockaddr *sa, socklen_t len, struct vtoe_sockaddr *w);
const char *vtoe_ev_name(unsigned int ev);

/* ------------------------------------------------------------------------------------------ */
/* vtoe_ring.c: the data path                                                                  */
/* ------------------------------------------------------------------------------------------ */
int vtoe_conn_map(struct vtoe_conn *c, int memfd, const struct vtoe_ctl_rep *rep);
void vtoe_conn_unmap(struct vtoe_conn *c);
ssize_t vtoe_conn_recv(struct vtoe_conn *c, const struct iovec *iov, int iovcnt, int flags);
ssize_t vtoe_conn_send(struct vtoe_conn *c, const struct iovec *iov, int iovcnt, int flags);
ssize_t vtoe_conn_sendfile(struct vtoe_conn *c, int in_fd, off64_t *offset, size_t count);
ssize_t vtoe_conn_splice_out(struct vtoe_conn *c, int pipe_fd, size_t count, bool nonblock);
int vtoe_conn_shutdown(struct vtoe_conn *c, int how);
/* Last reference dropped: FIN or reset, then unmap; returns VTOE_CLOSE_* for the note. */
uint32_t vtoe_conn_close(struct vtoe_conn *c, bool shared);
/* Close our copy of the peer's bell, from now on rung through the agent; false if the
 * connection is busy or has none to give. */
bool vtoe_conn_drop_bell(struct vtoe_conn *c);
/* The peer reset the connection (or it broke), reported yet or not. */
bool vtoe_conn_reset_seen(struct vtoe_conn *c);
/* getsockopt(TCP_INFO) in the kernel's layout; mss: what TCP_MAXSEG reads. */
int vtoe_conn_tcp_info(struct vtoe_conn *c, uint32_t mss, void *optval, socklen_t *optlen);
uint32_t vtoe_conn_rx_bytes(struct vtoe_conn *c);
uint32_t vtoe_conn_tx_bytes(struct vtoe_conn *c);
int vtoe_conn_take_error(struct vtoe_conn *c);
/* Readiness from the rings (vtoe_ready.c); the kernel is asked only in rare states. */
short vtoe_conn_poll(struct vtoe_conn *c, short events, int krev);
/* About to sleep in the kernel on c's fd for `events`: ask for a doorbell, drop stale ones,
 * and for POLLOUT on a full ring grow it or make the fd unwritable.  The caller checks
 * readiness again afterwards, and wakes by *wake_ns (CLOCK_MONOTONIC; lowered here, 0 = no
 * need) to look again: the ring grows once its reader has stalled long enough. */
void vtoe_conn_sleep_prepare(struct vtoe_conn *c, short events, uint64_t *wake_ns);
bool vtoe_conn_rx_ready(struct vtoe_conn *c);
void vtoe_conn_rx_room_changed(struct vtoe_conn *c);
#define VTOE_CF_UNUSUAL                                                                      \
	(VTOE_CF_WR_SHUT | VTOE_CF_RD_SHUT | VTOE_CF_PEER_GONE | VTOE_CF_RESET_REPORTED |     \
	 VTOE_CF_BROKEN | VTOE_CF_RST_ASKED)
/* What vtoe_conn_poll answers, 0, where a progress engine spends its calls: input asked
 * for, an established connection with nothing to read.  Inline, so such a call costs a few
 * loads and no call; false sends the caller to vtoe_conn_poll. */
static inline bool vtoe_conn_poll_idle(struct vtoe_conn *c, short events)
{
	return !(events & POLLOUT) &&
	       !(atomic_load_explicit(&c->flags, memory_order_relaxed) & VTOE_CF_UNUSUAL) &&
	       atomic_load_explicit(&c->rx->head, memory_order_acquire) ==
		       atomic_load_explicit(&c->rx->tail, memory_order_relaxed) &&
	       !atomic_load_explicit(&c->rx->fin, memory_order_acquire) &&
	       !atomic_load_explicit(&c->rx->reset, memory_order_acquire);
}

/* ------------------------------------------------------------------------------------------ */
/* vtoe_poll.c / vtoe_epoll.c: readiness answered from the rings                               */
/* ------------------------------------------------------------------------------------------ */
uint64_t vtoe_now_ns(void);
uint64_t vtoe_coarse_ns(void);
void vtoe_deadline_in(struct timespec *deadline, const struct timespec *rel); /* MONOTONIC */
int64_t vtoe_left_ns(const struct timespec *deadline);
static inline bool vtoe_timeout_zero(const struct timespec *t)
{
	return t && !t->tv_sec && !t->tv_nsec;
}
/* VTOE_POLL_KERNEL_US passed since *at_ns?  Then *at_ns is now. */
bool vtoe_kernel_due_at(uint64_t *at_ns);
bool vtoe_ep_legacy(const struct vtoe_ep *ep); /* shared over fork: the kernel answers it */
/* A tracked object poll answers from user space: a connection or one of our epoll instances. */
static inline bool vtoe_obj_polled(struct vtoe_sock *s)
{
	int k = atomic_load(&s->kind);

	return k == VTOE_KIND_CONN || (k == VTOE_KIND_EPOLL && s->ep && !vtoe_ep_legacy(s->ep));
}
/* Readiness of such an object; krev is the kernel's answer for its fd if known, else -1. */
short vtoe_obj_poll(struct vtoe_sock *s, short events, int krev);
/* About to sleep in the kernel on the object's fd (see vtoe_conn_sleep_prepare). */
void vtoe_obj_sleep_prepare(struct vtoe_sock *s, short events, uint64_t *wake_ns);
uint32_t vtoe_spin_budget_us(void); /* for this wait: 0 when spinning does not pay */
/* A sleep of *ns (-1: unbounded) shortened to end at wake_ns (0: none) if that comes first;
 * true if it did: waking then is for the sleep's preparation, not a timeout to report. */
bool vtoe_wake_sooner(uint64_t wake_ns, int64_t *ns);
/* Adaptive spinning (vtoe_poll.c): the budget for a wait that could spin budget_us, and
 * whether the spin found what it waited for. */
uint32_t vtoe_spin_begin(uint32_t budget_us);
void vtoe_spin_end(bool found);
void vtoe_ep_release(struct vtoe_sock *s);
void vtoe_ep_atfork_prepare(void);
void vtoe_ep_atfork_parent(void);
void vtoe_ep_atfork_child(void);
void vtoe_ep_follow(int fd, struct vtoe_sock *candidate, struct vtoe_sock *conn);
/* An epoll instance: any event to report (nested epoll, poll on an epoll fd)? */
bool vtoe_ep_ready(struct vtoe_sock *s, bool kernel_says, int depth);
void vtoe_ep_sleep_prepare(struct vtoe_sock *s, int depth, uint64_t *wake_ns);

/* ------------------------------------------------------------------------------------------ */
/* vtoe_rcu.c: read-side sections, where calls that do not wait read sockets without references */
/* ------------------------------------------------------------------------------------------ */
#define VTOE_RCU_NEST_MASK 0xffffull
#define VTOE_RCU_GEN_ONE (VTOE_RCU_NEST_MASK + 1)

struct vtoe_rcu_reader {
	_Atomic uint64_t word;       /* low 16 bits: sections this thread is in; above: how many
				      * it has left (so a waiter sees a new section as progress) */
	atomic_bool used;            /* by a live thread */
	struct vtoe_sock *deferred;  /* released inside our own section (vtoe_rcu_defer) */
	struct vtoe_rcu_reader *next;
};

/* Thread-local data on the hot path: the library is loaded at start-up (LD_PRELOAD), so its
 * thread-local block is static and is reached without a call to __tls_get_addr. */
#define VTOE_TLS_FAST __thread __attribute__((tls_model("initial-exec")))

extern VTOE_TLS_FAST struct vtoe_rcu_reader *vtoe_rcu_self;
struct vtoe_rcu_reader *vtoe_rcu_register(void); /* NULL: no sections (take references) */
void vtoe_rcu_run_deferred(struct vtoe_rcu_reader *r);

/* Enter a section (NULL: not available, take references).  Inside one, a socket found in the
 * fd table, or an epoll item whose incarnation matches, stays mapped until the section ends,
 * if it is a connection or an epoll instance.  A section must never wait: no lock but a
 * trylock, no kernel call but with a zero timeout, no vtoe_sock_put(). */
static inline struct vtoe_rcu_reader *vtoe_rcu_read_begin(void)
{
	struct vtoe_rcu_reader *r = vtoe_rcu_self;

	if (vtoe_unlikely(!r) && !(r = vtoe_rcu_register()))
		return NULL;
	/* a plain store: the releasing thread's membarrier orders it before our look-ups */
	atomic_store_explicit(&r->word, atomic_load_explicit(&r->word, memory_order_relaxed) + 1,
			      memory_order_relaxed);
	atomic_signal_fence(memory_order_seq_cst);
	return r;
}

static inline void vtoe_rcu_read_end(struct vtoe_rcu_reader *r)
{
	uint64_t w = atomic_load_explicit(&r->word, memory_order_relaxed) - 1;

	if (!(w & VTOE_RCU_NEST_MASK))
		w += VTOE_RCU_GEN_ONE;
	atomic_store_explicit(&r->word, w, memory_order_release);
	if (vtoe_unlikely(r->deferred != NULL) && !(w & VTOE_RCU_NEST_MASK))
		vtoe_rcu_run_deferred(r);
}

/* For the last release of a connection or epoll instance: wait until every other thread has
 * left the sections it was in; or, called inside this thread's own section (a signal
 * handler), true: the release is deferred to the section's end. */
bool vtoe_rcu_wait_readers(void); /* false: no barrier allowed (seccomp): never free */
bool vtoe_rcu_defer(struct vtoe_sock *s);
void vtoe_rcu_atfork_child(void);

/* ------------------------------------------------------------------------------------------ */
/* vtoe_socket.c / vtoe_sockopt.c                                                              */
/* ------------------------------------------------------------------------------------------ */
void vtoe_sock_release(struct vtoe_sock *s);
void vtoe_park_rendezvous(int cfd);
void vtoe_park_sweep(void);
void vtoe_park_atfork_child(void);
void vtoe_opts_capture(struct vtoe_conn *c, int kfd, int family, struct vtoe_sock *origin);
void vtoe_addr_copy_out(const struct sockaddr_storage *ss, socklen_t len, struct sockaddr *addr,
			socklen_t *alen);

/* ------------------------------------------------------------------------------------------ */
/* vtoe_held.c: destinations the agent keeps on kernel TCP for a while                         */
/* ------------------------------------------------------------------------------------------ */
uint32_t vtoe_ms32_now(void); /* CLOCK_MONOTONIC's low 32 bits in ms: the agent's skip_until_ms */
bool vtoe_ms_before(uint32_t now, uint32_t until); /* until is set and still ahead */
bool vtoe_held_skip(const struct vtoe_sockaddr *to); /* connect to `to` without asking? */
void vtoe_held_flush(const struct vtoe_sockaddr *to); /* tell the agent what skip counted */
void vtoe_held_learn(const struct vtoe_sockaddr *to, uint32_t until_ms, uint32_t reason);
void vtoe_held_atfork_child(void);

#endif /* VTOE_H */
