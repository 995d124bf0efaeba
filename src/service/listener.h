// The server's unix socket and its accept loop, on the event loop. Internal to src/service.
//
// gRPC's own listener (1.51, Debian 12) gives up for good at the first accept4 that fails with
// anything but EAGAIN: a server whose fd table was full once — many clients at once under a low
// `ulimit -n` — never took a connection again (grpc/grpc#16058, #20418). Here a full fd table
// only pauses accepting: the connections wait in the socket's backlog, and the loop tries again
// shortly, so they are served as soon as descriptors are free. Each accepted connection is
// handed to gRPC with AddInsecureChannelFromFd.
#pragma once

#include <memory>
#include <string>

#include "loop/loop.h"
#include "util/fd.h"
#include "util/result.h"

namespace grpc {
class Server;
}

namespace sr::service {

class Listener {
 public:
  /// Binds and listens on `path` (born 0600). The socket file must not exist.
  static Result<std::unique_ptr<Listener>> Open(EventLoop& loop, const std::string& path);
  ~Listener();

  /// Starts accepting connections for `server`, which must outlive Close().
  Status Start(grpc::Server* server);
  /// Stops accepting and closes the socket (connections already taken stay with gRPC).
  void Close();

 private:
  Listener(EventLoop& loop, UniqueFd fd) : loop_(loop), fd_(std::move(fd)) {}
  Status Watch();
  void AcceptAll();
  // Accepting paused: watch the socket again after a while.
  void WatchLater();

  EventLoop& loop_;
  UniqueFd fd_;
  grpc::Server* server_ = nullptr;
  EventLoop::WatchId watch_ = 0;
  EventLoop::TimerId retry_ = 0;
  bool reported_ = false;  // the first pause is said on stderr, once
};

}  // namespace sr::service
