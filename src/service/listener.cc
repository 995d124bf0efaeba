#include "service/listener.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <sys/un.h>
#include <unistd.h>

#include <grpcpp/server.h>
#include <grpcpp/server_posix.h>

#include <cerrno>
#include <cstdio>
#include <stdio.h>
#include <cstring>

namespace sr::service {
namespace {

// How long accepting pauses when the process (or the system) has no descriptor to spare.
constexpr auto kRetryAfter = std::chrono::milliseconds(20);

}  // namespace

Result<std::unique_ptr<Listener>> Listener::Open(EventLoop& loop, const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoError("socket", errno);
  // Bound under a temporary name beside `path`, renamed into place once listening: a client that
  // waits for the file and connects at once was refused between bind and listen (and gRPC then
  // backs off for a second). A temporary name too long for sun_path binds `path` directly.
  sockaddr_un addr{};
  const std::string temp = path.substr(0, path.rfind('/') + 1) + ".step-runner-" +
                           std::to_string(::getpid()) + ".sock";
  const bool via_temp = temp.size() < sizeof addr.sun_path;
  const std::string& bound_path = via_temp ? temp : path;
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, bound_path.c_str(), bound_path.size() + 1);  // lengths were checked
  // Ours, from a run of this pid that died (pids are reused). `path` itself is never removed
  // here: a file there belongs to a server that bind must refuse.
  if (via_temp) ::unlink(temp.c_str());
  const mode_t old_umask = ::umask(0177);  // the socket is born 0600
  const int bound = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  const int bind_errno = errno;
  ::umask(old_umask);
  if (bound != 0) return ErrnoError("listening on " + path, bind_errno);
  auto fail = [&](int err) {
    ::unlink(bound_path.c_str());
    return ErrnoError("listening on " + path, err);
  };
  if (::listen(fd.get(), SOMAXCONN) != 0) return fail(errno);
  // NOREPLACE: a socket file that appeared meanwhile is another server's, as bind would say.
  if (via_temp && ::renameat2(AT_FDCWD, temp.c_str(), AT_FDCWD, path.c_str(), RENAME_NOREPLACE) != 0) {
    return fail(errno == EEXIST ? EADDRINUSE : errno);
  }
  return std::unique_ptr<Listener>(new Listener(loop, std::move(fd)));
}

Listener::~Listener() { Close(); }

Status Listener::Start(grpc::Server* server) {
  server_ = server;
  return Watch();
}

Status Listener::Watch() {
  auto w = loop_.Watch(fd_.get(), EPOLLIN, [this](uint32_t) { AcceptAll(); });
  if (!w.ok()) return w.error();
  watch_ = *w;
  return Ok();
}

void Listener::Close() {
  if (watch_ != 0) loop_.Unwatch(watch_);
  watch_ = 0;
  if (retry_ != 0) loop_.CancelTimer(retry_);
  retry_ = 0;
  fd_.Reset();
}

void Listener::WatchLater() {
  retry_ = loop_.After(kRetryAfter, [this] {
    retry_ = 0;
    if (!Watch().ok()) WatchLater();  // epoll_ctl without memory: later again
  });
}

void Listener::AcceptAll() {
  for (;;) {
    const int conn = ::accept4(fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (conn >= 0) {
      grpc::AddInsecureChannelFromFd(server_, conn);  // gRPC owns the descriptor from here
      continue;
    }
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    // No descriptor (EMFILE, ENFILE) or no memory for one: the listening socket is level
    // triggered, so it would wake the loop at once, again and again. Pause instead; the client
    // waits in the backlog (its connection attempt has its own deadline).
    if (!reported_) {
      reported_ = true;
      std::fprintf(stderr, "step-runner: accepting a connection failed (%s); retrying every %lld ms "
                           "while it does\n",
                   std::strerror(errno), static_cast<long long>(kRetryAfter.count()));
    }
    loop_.Unwatch(watch_);
    watch_ = 0;
    WatchLater();
    return;
  }
}

}  // namespace sr::service
