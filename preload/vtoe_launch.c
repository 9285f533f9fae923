/*
 * vtoe_launch.c - `vtoe run` without starting Node: the launcher behind bin/vtoe.
 *
 *   vtoe-launch [--mode offload|ipoib] [--socket PATH] [--] CMD [ARGS...]
 *
 * With a standing agent answering, it puts libvtoe.so first in LD_PRELOAD, names the agent in
 * VTOE_AGENT_SOCKET and execs CMD: a millisecond, where Node's start-up costs a quarter of a
 * second, which a job launcher wrapping every rank would pay each time.  `--mode ipoib` takes the
 * shim out of LD_PRELOAD and execs CMD.  Anything else (no agent, so one must be embedded; other
 * options; the sanitized build) goes to the Node CLI, `node bin/vtoe.js run ...`, unchanged.
 * It never prints to stdout: that is the program's.
 */
#include "vtoe_agent_path.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define VTOE_ADMIN_SUFFIX ".admin"

/* The package's root: this program lives in its preload/ directory. */
static bool vtoe_launch_root(char *root, size_t size)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n <= 0)
		return false;
	exe[n] = '\0';
	return (size_t)snprintf(root, size, "%s", dirname(dirname(exe))) < size;
}

/* Does an agent answer at `sock`?  Its admin socket (owner-only) accepts a connection. */
static bool vtoe_agent_answers(const char *sock)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd, r;

	if ((size_t)snprintf(sun.sun_path, sizeof(sun.sun_path), "%s" VTOE_ADMIN_SUFFIX, sock) >=
	    sizeof(sun.sun_path))
		return false;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	r = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
	close(fd);
	return r == 0;
}

static bool vtoe_is_shim(const char *entry, size_t len)
{
	static const char *const names[] = { "libvtoe.so", "libvtoe-asan.so" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		size_t n = strlen(names[i]);

		if (len >= n && memcmp(entry + len - n, names[i], n) == 0 &&
		    (len == n || entry[len - n - 1] == '/'))
			return true;
	}
	return false;
}

/* LD_PRELOAD with every copy of the shim taken out, then `first` put in front (NULL: none). */
static int vtoe_set_preload(const char *first)
{
	const char *old = getenv("LD_PRELOAD");
	size_t cap = (old ? strlen(old) : 0) + (first ? strlen(first) : 0) + 2;
	char *out = malloc(cap);
	size_t len = 0;

	if (!out)
		return -1;
	out[0] = '\0';
	if (first)
		len += (size_t)snprintf(out, cap, "%s", first);
	for (const char *p = old; p && *p;) {
		size_t n = strcspn(p, ": \t");

		if (n && !vtoe_is_shim(p, n)) {
			if (len)
				out[len++] = ':';
			memcpy(out + len, p, n);
			len += n;
			out[len] = '\0';
		}
		p += n;
		p += strspn(p, ": \t");
	}
	int r = len ? setenv("LD_PRELOAD", out, 1) : unsetenv("LD_PRELOAD");

	free(out);
	return r;
}

/* The Node CLI with the arguments as given: `node ROOT/bin/vtoe.js run ARGS...`. */
static void vtoe_exec_node(const char *root, int argc, char **argv)
{
	char cli[PATH_MAX];
	char **args = calloc((size_t)argc + 3, sizeof(*args));

	if (!args || (size_t)snprintf(cli, sizeof(cli), "%s/bin/vtoe.js", root) >= sizeof(cli)) {
		fprintf(stderr, "vtoe run: out of memory or path too long\n");
		exit(127);
	}
	args[0] = "node";
	args[1] = cli;
	args[2] = "run";
	for (int i = 1; i < argc; i++)
		args[i + 2] = argv[i];
	execvp("node", args);
	fprintf(stderr, "vtoe run: cannot start node (%s): is Node.js installed and on PATH?\n",
		strerror(errno));
	exit(127);
}

static void vtoe_exec_program(char **cmd)
{
	execvp(cmd[0], cmd);
	fprintf(stderr, "vtoe run: %s: %s\n", cmd[0], strerror(errno));
	exit(errno == ENOENT ? 127 : 126);
}

int main(int argc, char **argv)
{
	char root[PATH_MAX], shim[PATH_MAX], sock[sizeof(((struct sockaddr_un *)0)->sun_path)];
	const char *mode = "offload", *socket_opt = NULL, *env;
	int i = 1;

	if (!vtoe_launch_root(root, sizeof(root))) {
		fprintf(stderr, "vtoe run: cannot find the vtoe package (/proc/self/exe unreadable)\n");
		return 127;
	}
	for (; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		}
		if (strcmp(argv[i], "--mode") == 0 && i + 1 < argc)
			mode = argv[++i];
		else if (strncmp(argv[i], "--mode=", 7) == 0)
			mode = argv[i] + 7;
		else if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc)
			socket_opt = argv[++i];
		else if (strncmp(argv[i], "--socket=", 9) == 0)
			socket_opt = argv[i] + 9;
		else if (argv[i][0] == '-')
			vtoe_exec_node(root, argc, argv); /* an option only the CLI knows */
		else
			break;
	}
	env = getenv("VTOE_SANITIZE");
	if (i >= argc || (env && *env && strcmp(env, "0") != 0))
		vtoe_exec_node(root, argc, argv);
	if (strcmp(mode, "ipoib") == 0) {
		if (vtoe_set_preload(NULL) < 0)
			return 127;
		unsetenv("VTOE_AGENT_SOCKET");
		vtoe_exec_program(argv + i);
	}
	if (strcmp(mode, "offload") != 0)
		vtoe_exec_node(root, argc, argv); /* the CLI says what --mode takes */
	env = socket_opt ? socket_opt : getenv("VTOE_AGENT_SOCKET");
	if (env && *env) {
		if ((size_t)snprintf(sock, sizeof(sock), "%s", env) >= sizeof(sock))
			vtoe_exec_node(root, argc, argv);
	} else {
		vtoe_agent_path_default(sock, sizeof(sock));
	}
	if ((size_t)snprintf(shim, sizeof(shim), "%s/preload/libvtoe.so", root) >= sizeof(shim) ||
	    access(shim, R_OK) != 0 || !vtoe_agent_answers(sock))
		vtoe_exec_node(root, argc, argv); /* no standing agent: the CLI embeds one */
	if (vtoe_set_preload(shim) < 0 || setenv("VTOE_AGENT_SOCKET", sock, 1) < 0)
		return 127;
	vtoe_exec_program(argv + i);
	return 127;
}
