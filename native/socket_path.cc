#include "socket_path.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "system_error.h"
#include "unique_fd.h"

namespace vtoe {

namespace {

void make_parent_dirs(const std::string &path)
{
	size_t slash = path.rfind('/');
	if (slash == std::string::npos || slash == 0)
		return;
	const std::string parent = path.substr(0, slash);
	struct stat st;
	if (stat(parent.c_str(), &st) == 0) {
		if (!S_ISDIR(st.st_mode))
			throw_system_error(ENOTDIR, "cannot create the agent socket " + path,
					   parent + " is not a directory");
		return;
	}
	if (errno != ENOENT)
		throw_errno("cannot reach the directory " + parent);
	make_parent_dirs(parent);
	// 0700: the directory holds a socket that hands out connections; only its owner may enter.
	if (mkdir(parent.c_str(), 0700) != 0 && errno != EEXIST)
		throw_errno("cannot create the directory " + parent);
}

// The directory that holds the socket decides who can put a socket of their own at its path:
// another user's directory, or one others may write to without the sticky bit, would let them
// answer in the agent's place (and take every connection handed out there).
void check_parent_dir(const std::string &path)
{
	size_t slash = path.rfind('/');
	const std::string parent = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
	struct stat st;
	if (stat(parent.c_str(), &st) != 0)
		throw_errno("cannot reach the directory " + parent);
	const uid_t self = geteuid();
	if (st.st_uid != self && st.st_uid != 0)
		throw_system_error(EACCES, "the agent's directory " + parent + " belongs to uid " +
						   std::to_string(st.st_uid) + ", not to you",
				   "someone else made it, maybe to answer in the agent's place: remove it, "
				   "or give the agent a socket in a directory of your own");
	if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX))
		throw_system_error(EACCES, "the agent's directory " + parent + " is writable by others",
				   "chmod go-w " + parent + ", or give the agent a socket in a directory of your own");
}

[[noreturn]] void throw_in_use(const std::string &path)
{
	throw_system_error(EADDRINUSE, "an agent is already running at " + path,
			   "stop it, or give this agent another socket path");
}

// Whether something accepts connections at `path`.
bool someone_answers(const std::string &path)
{
	unique_fd probe(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
	if (!probe)
		throw_errno("cannot create a socket to probe " + path);
	sockaddr_un addr = unix_address(path);
	if (connect(probe.get(), reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) == 0)
		return true;
	switch (errno) {
	case ECONNREFUSED: // a socket file that nobody listens on: left by a dead agent
	case ENOENT:       // removed meanwhile
		return false;
	case EAGAIN:     // a listener whose backlog is full
	case EINPROGRESS:
	case EPROTOTYPE: // a listener of another socket type: alive, and not ours to remove
		return true;
	default:
		throw_errno("cannot probe the existing socket " + path);
	}
}

} // namespace

sockaddr_un unix_address(const std::string &path)
{
	sockaddr_un addr;
	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	if (path.empty() || path.find('\0') != std::string::npos)
		throw_system_error(EINVAL, "invalid socket path '" + path + "'",
				   "give a non-empty path without NUL bytes");
	if (path.size() >= sizeof(addr.sun_path))
		throw_system_error(ENAMETOOLONG, "socket path " + path + " is too long",
				   "AF_UNIX paths hold at most " +
					   std::to_string(sizeof(addr.sun_path) - 1) + " bytes");
	memcpy(addr.sun_path, path.data(), path.size());
	return addr;
}

void claim_socket_path(const std::string &path)
{
	unix_address(path); // reject unusable paths before touching the filesystem
	make_parent_dirs(path);
	check_parent_dir(path);
	struct stat st;
	if (lstat(path.c_str(), &st) != 0) {
		if (errno == ENOENT)
			return;
		throw_errno("cannot inspect " + path);
	}
	if (!S_ISSOCK(st.st_mode))
		throw_system_error(EEXIST, path + " exists and is not a socket",
				   "remove it or choose another socket path");
	if (someone_answers(path))
		throw_in_use(path);
	if (unlink(path.c_str()) != 0 && errno != ENOENT)
		throw_errno("cannot remove the stale socket " + path);
}

} // namespace vtoe
