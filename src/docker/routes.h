// The Docker API calls the per-job proxy (proxy.h) treats specially. A route is a request path
// without its query, its API version prefix (/v1.41/containers/create → /containers/create) and
// a trailing slash. Internal to src/docker.
#pragma once

#include <string>

namespace sr::docker {

/// A request target without its query string.
std::string PathOf(const std::string& target);
/// `POST /containers/create`: its JSON body gains the job's labels.
bool IsContainerCreate(const std::string& method, const std::string& path);
/// `POST /networks/create`: the job's network, removed with the job.
bool IsNetworkCreate(const std::string& method, const std::string& path);
/// Routes the daemon may hijack (turn into a raw stream) even without an `Upgrade` header:
/// attach, exec start, session and grpc.
bool MayHijack(const std::string& path);

}  // namespace sr::docker
