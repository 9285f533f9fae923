// notifyService(message): systemd's readiness protocol (sd_notify) without libsystemd: one
// datagram to the AF_UNIX socket named by $NOTIFY_SOCKET ('@' for the abstract namespace).
// Node has no Unix datagram sockets, hence this.  Returns false when no manager asked for it.
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "bindings.h"
#include "js_boundary.h"
#include "system_error.h"
#include "unique_fd.h"

namespace vtoe {

Napi::Value notify_service_js(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	if (!info[0].IsString())
		throw Napi::TypeError::New(env, "notifyService: message must be a string");
	std::string message = info[0].As<Napi::String>();
	const char *path = std::getenv("NOTIFY_SOCKET");
	if (!path || (path[0] != '/' && path[0] != '@'))
		return Napi::Boolean::New(env, false);
	at_js_boundary(env, [&] {
		sockaddr_un sun{};
		sun.sun_family = AF_UNIX;
		size_t len = std::strlen(path);
		if (len >= sizeof(sun.sun_path))
			throw_system_error(ENAMETOOLONG, "NOTIFY_SOCKET is too long");
		std::memcpy(sun.sun_path, path, len);
		if (sun.sun_path[0] == '@')
			sun.sun_path[0] = '\0';
		unique_fd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
		if (fd.get() < 0)
			throw_system_error(errno, "socket(AF_UNIX, SOCK_DGRAM) for NOTIFY_SOCKET");
		socklen_t addr_len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
		if (sendto(fd.get(), message.data(), message.size(), MSG_NOSIGNAL,
			   reinterpret_cast<const sockaddr *>(&sun), addr_len) < 0)
			throw_system_error(errno, "sendto NOTIFY_SOCKET");
		return 0;
	});
	return Napi::Boolean::New(env, true);
}

} // namespace vtoe
