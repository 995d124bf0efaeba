// Errors as values. Every fallible engine function returns Result<T> (or Status for no value):
// either a value or an Error carrying a human-readable message that already names the file, line,
// key, step or job it concerns. Nothing in the engine throws across a module boundary; the gRPC
// edge is the only place an Error becomes a grpc::Status.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace sr {

/// What went wrong. `kind` lets the edges choose an exit code / status code without parsing text.
struct Error {
  enum class Kind {
    kInvalid,    // bad input: step file, arguments, expressions (exit 2, INVALID_ARGUMENT)
    kFailed,     // a step ran and failed (exit 1)
    kCancelled,  // stopped because a cancel was requested (exit 130)
    kTimedOut,   // stopped because the timeout expired (exit 124)
    kNotFound,   // unknown job (NOT_FOUND)
    kInternal,   // the runner itself failed (a syscall, a disk)
    kExhausted,  // the runner ran out of its own resources: fds, memory, disk, processes
  };
  Kind kind = Kind::kFailed;
  std::string message;

  /// Returns a copy whose message is "<prefix>: <message>"; kind is kept.
  Error Wrap(const std::string& prefix) const { return {kind, prefix + ": " + message}; }
};

inline Error InvalidError(std::string m) { return {Error::Kind::kInvalid, std::move(m)}; }
inline Error FailedError(std::string m) { return {Error::Kind::kFailed, std::move(m)}; }
inline Error InternalError(std::string m) { return {Error::Kind::kInternal, std::move(m)}; }
/// "<what>: <strerror(errno)>" as an internal error; kExhausted for EMFILE, ENFILE, ENOMEM,
/// ENOSPC, EDQUOT and EAGAIN (out of fds, memory, disk or processes).
Error ErrnoError(const std::string& what, int err);

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}          // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}      // NOLINT
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_;
  bool ok_ = true;
};

using Status = Result<void>;
inline Status Ok() { return {}; }

}  // namespace sr

#define SR_CONCAT_INNER(a, b) a##b
#define SR_CONCAT(a, b) SR_CONCAT_INNER(a, b)

/// Returns the error of a Status-returning expression from the enclosing function.
#define SR_RETURN_IF_ERROR(expr)          \
  do {                                    \
    auto sr_status_ = (expr);             \
    if (!sr_status_.ok()) return sr_status_.error(); \
  } while (0)

/// `SR_ASSIGN_OR_RETURN(auto x, Foo());` declares x from Foo()'s value or returns its error.
#define SR_ASSIGN_OR_RETURN(lhs, expr) \
  SR_ASSIGN_OR_RETURN_IMPL(SR_CONCAT(sr_result_, __LINE__), lhs, expr)
#define SR_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return tmp.error();             \
  lhs = std::move(tmp).value()
