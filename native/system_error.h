// vtoe::SystemError: a failed system call, carried as errno + a message that says what to do.
// It is plain C++ so the core classes stay free of N-API; js_boundary.h converts it for JS.
#ifndef VTOE_NATIVE_SYSTEM_ERROR_H
#define VTOE_NATIVE_SYSTEM_ERROR_H

#include <stdexcept>
#include <string>

namespace vtoe {

class SystemError : public std::runtime_error {
public:
	SystemError(int err, const std::string &message);

	int err() const noexcept { return err_; }
	// The errno name, e.g. "EADDRINUSE"; "E#<n>" for numbers glibc has no name for.
	const char *code() const noexcept;

private:
	int err_;
};

// "EADDRINUSE" for EADDRINUSE; never null.
const char *errno_name(int err) noexcept;

// Throws SystemError(err, "<what>: <strerror>[; <advice>]").
[[noreturn]] void throw_system_error(int err, const std::string &what,
				     const std::string &advice = std::string());

// Same, with the current errno.
[[noreturn]] void throw_errno(const std::string &what, const std::string &advice = std::string());

} // namespace vtoe

#endif
