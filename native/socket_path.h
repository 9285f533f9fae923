// Claiming a filesystem path for a listening AF_UNIX socket without stealing a live one.
#ifndef VTOE_NATIVE_SOCKET_PATH_H
#define VTOE_NATIVE_SOCKET_PATH_H

#include <sys/socket.h>
#include <sys/un.h>

#include <string>

namespace vtoe {

// The sockaddr for `path`; throws ENAMETOOLONG/EINVAL for paths a sockaddr_un cannot hold.
sockaddr_un unix_address(const std::string &path);

// Makes `path` ready for bind(): creates missing parent directories with mode 0700, and
// removes a stale socket that nobody answers on.  Throws EADDRINUSE when something answers,
// EEXIST when the path is not a socket (it is never removed then).
void claim_socket_path(const std::string &path);

} // namespace vtoe

#endif
