// Shared pieces of src/docker: unix sockets, and one-shot Docker API calls on the event loop
// (what the stop and the crash cleanup use to talk to the daemon).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "loop/loop.h"
#include "util/fd.h"
#include "util/result.h"

namespace sr::docker {

/// A non-blocking, close-on-exec stream socket connected to `path`. Unix connects finish at
/// once or fail (EAGAIN: the daemon's backlog is full), so this never waits.
Result<UniqueFd> ConnectUnix(const std::string& path);
/// A non-blocking listening socket at `path`, mode 0600; a stale file there is replaced.
Result<UniqueFd> ListenUnix(const std::string& path);
/// Percent-encodes a query parameter value.
std::string UrlEncode(std::string_view s);

struct ApiResponse {
  int status = 0;
  std::string body;
};
using ApiDone = std::function<void(Result<ApiResponse>)>;

/// One API request on its own connection to the daemon. `done` runs exactly once, on the loop,
/// never inside ApiCall, unless the handle's Abort() ran first (then never).
class ApiRequest;
std::shared_ptr<ApiRequest> ApiCall(EventLoop& loop, const std::string& socket,
                                    const std::string& method, const std::string& target,
                                    std::string body, ApiDone done);
/// Drops a request in flight: closes its connection, its callback will not run.
void Abort(const std::shared_ptr<ApiRequest>& request);

/// "SIGTERM" for "SIGTERM", "TERM" or "15"; the signal number in *signo (0 if unknown).
std::string NormalizeSignal(const std::string& docker_signal, int* signo);

}  // namespace sr::docker
