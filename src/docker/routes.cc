// Which Docker API calls the proxy treats specially (docker/routes.h).
#include "docker/routes.h"

#include <cctype>
#include <string_view>

namespace sr::docker {
namespace {

// A route without its API version prefix (/v1.41/containers/create → /containers/create) and
// without a trailing slash. (Not std::regex: GCC 12 warns inside it under the sanitizers.)
std::string_view Route(std::string_view path) {
  if (path.size() > 2 && path.starts_with("/v") && std::isdigit(static_cast<unsigned char>(path[2]))) {
    size_t i = 2;
    while (i < path.size() && (std::isdigit(static_cast<unsigned char>(path[i])) || path[i] == '.')) ++i;
    if (i < path.size() && path[i] == '/') path.remove_prefix(i);
  }
  if (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  return path;
}

// `/<first>/<one segment>/<last>`
bool Matches(std::string_view route, std::string_view first, std::string_view last) {
  if (!route.starts_with(first) || !route.ends_with(last)) return false;
  if (route.size() <= first.size() + last.size()) return false;
  std::string_view middle = route.substr(first.size(), route.size() - first.size() - last.size());
  return middle.find('/') == std::string_view::npos;
}

}  // namespace

std::string PathOf(const std::string& target) { return target.substr(0, target.find('?')); }

bool IsContainerCreate(const std::string& method, const std::string& path) {
  return method == "POST" && Route(path) == "/containers/create";
}

bool IsNetworkCreate(const std::string& method, const std::string& path) {
  return method == "POST" && Route(path) == "/networks/create";
}

bool MayHijack(const std::string& path) {
  std::string_view r = Route(path);
  return Matches(r, "/containers/", "/attach") || Matches(r, "/exec/", "/start") ||
         r == "/session" || r == "/grpc";
}

}  // namespace sr::docker
