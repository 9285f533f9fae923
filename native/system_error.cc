#include "system_error.h"

#include <cerrno>
#include <cstring>

namespace vtoe {

SystemError::SystemError(int err, const std::string &message)
	: std::runtime_error(message), err_(err)
{
}

const char *SystemError::code() const noexcept
{
	return errno_name(err_);
}

const char *errno_name(int err) noexcept
{
	// strerrorname_np (glibc >= 2.32) returns null for unknown numbers.
	const char *name = strerrorname_np(err);
	if (name)
		return name;
	static thread_local char unknown[24];
	snprintf(unknown, sizeof(unknown), "E#%d", err);
	return unknown;
}

void throw_system_error(int err, const std::string &what, const std::string &advice)
{
	std::string message = what + ": " + strerror(err);
	if (!advice.empty())
		message += "; " + advice;
	throw SystemError(err, message);
}

void throw_errno(const std::string &what, const std::string &advice)
{
	throw_system_error(errno, what, advice);
}

} // namespace vtoe
