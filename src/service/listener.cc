#include "service/listener.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <grpcpp/server.h>
#include <grpcpp/server_posix.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace sr::service {
namespace {

// How long accepting pauses when the process (or the system) has no descriptor to spare.
constexpr auto kRetryAfter = std::chrono::milliseconds(20);

}  // namespace

Result<std::unique_ptr<Listener>> Listener::Open(EventLoop& loop, const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoError("socket", errno);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);  // the length was checked before
  const mode_t old_umask = ::umask(0177);  // the socket is born 0600
  const int bound = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  const int bind_errno = errno;
  ::umask(old_umask);
  if (bound != 0) return ErrnoError("listening on " + path, bind_errno);
  if (::listen(fd.get(), SOMAXCONN) != 0) {
    const int err = errno;
    ::unlink(path.c_str());
    return ErrnoError("listening on " + path, err);
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
