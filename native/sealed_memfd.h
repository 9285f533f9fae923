// sealed_memfd: a memfd of a fixed size that its holders cannot resize (a connection's region,
// a listener page), so that no process's access to its mapping turns into SIGBUS.
#ifndef VTOE_NATIVE_SEALED_MEMFD_H
#define VTOE_NATIVE_SEALED_MEMFD_H

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "system_error.h"
#include "unique_fd.h"

namespace vtoe {

// `what` names it in errors ("the connection region"); seals must include F_SEAL_SHRINK.
inline unique_fd sealed_memfd(const char *name, uint64_t bytes, int seals, const std::string &what)
{
	unique_fd fd(memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING));
	if (!fd)
		throw_errno("memfd_create for " + what + " failed", "raise the fd limit");
	if (ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0)
		throw_errno("cannot size " + what + " to " + std::to_string(bytes) + " bytes");
	if (fcntl(fd.get(), F_ADD_SEALS, seals) != 0)
		throw_errno("cannot seal " + what);
	return fd;
}

} // namespace vtoe

#endif
