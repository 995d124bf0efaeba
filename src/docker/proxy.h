// The per-job Docker API endpoint: a unix socket that forwards every connection to the real
// daemon on the event loop, one upstream connection per client connection. Requests and
// responses pass byte for byte, framed by HttpFramer so the proxy knows where each message ends;
// the one change is a container create, whose JSON body gains the job's labels. A hijacked
// connection (attach, exec, `Upgrade`) becomes a plain two-way byte pipe. Internal to src/docker.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "loop/loop.h"
#include "util/fd.h"
#include "util/result.h"

namespace sr::docker {

struct ProxyHooks {
  /// Labels added to every container and network create.
  std::map<std::string, std::string> create_labels;
  /// Called for every container create passed on (before the daemon answers).
  std::function<void()> container_create;
  /// Called with the id of every network created through the proxy (answer 201).
  std::function<void(const std::string& network_id)> network_created;
};

class Proxy {
 public:
  /// Listens on `listen_path` (0600; an existing file there is replaced) and forwards to the
  /// daemon's socket `daemon_path`.
  static Result<std::unique_ptr<Proxy>> Listen(EventLoop& loop, std::string listen_path,
                                               std::string daemon_path, ProxyHooks hooks);
  /// Stops listening, closes every connection and removes the socket file.
  ~Proxy();
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  const std::string& path() const { return listen_path_; }
  size_t connections() const { return connections_.size(); }
  /// Stops accepting and closes every open connection (the job's processes are gone).
  void Shutdown();

  class Connection;  // internal

 private:
  Proxy(EventLoop& loop, std::string listen_path, std::string daemon_path, ProxyHooks hooks);
  void Accept();
  void Remove(uint64_t id);

  EventLoop& loop_;
  const std::string listen_path_, daemon_path_;
  ProxyHooks hooks_;
  UniqueFd listener_;
  EventLoop::WatchId listen_watch_ = 0;
  uint64_t next_id_ = 1;
  std::map<uint64_t, std::unique_ptr<Connection>> connections_;
  friend class Connection;
};

}  // namespace sr::docker
