// The guard's endpoint: where the daemon is, and the per-job proxy in front of it.
#include <sys/stat.h>
#include <sys/un.h>

#include "docker/docker.h"
#include "docker/internal.h"
#include "docker/proxy.h"
#include "util/tempdir.h"

namespace sr::docker {

std::optional<std::string> DaemonSocket(const std::map<std::string, std::string>& env) {
  std::string path = "/var/run/docker.sock";
  if (auto it = env.find("DOCKER_HOST"); it != env.end() && !it->second.empty()) {
    constexpr std::string_view kUnix = "unix://";
    if (!std::string_view(it->second).starts_with(kUnix)) return std::nullopt;
    path = it->second.substr(kUnix.size());
  }
  struct stat st {};
  if (path.empty() || ::stat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) return std::nullopt;
  return path;
}

std::optional<std::string> DaemonToGuard(const std::map<std::string, std::string>& env,
                                         const std::map<std::string, std::string>& job_vars,
                                         std::string_view mode) {
  auto var = job_vars.find(kModeVariable);
  if (mode == kPassthrough || (var != job_vars.end() && var->second == kPassthrough)) {
    return std::nullopt;
  }
  return DaemonSocket(env);
}

Result<std::unique_ptr<DockerGuard>> DockerGuard::Start(EventLoop& loop, GuardOptions options) {
  std::unique_ptr<DockerGuard> guard(new DockerGuard(loop, std::move(options)));
  // A unix socket path has at most 107 bytes; a job dir under a deep TMPDIR with a long job id
  // can be longer. Such a job's endpoint lives in a private directory under /tmp instead.
  if (guard->options_.socket_path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    auto dir = TempDir::Create("step-runner-docker-", "/tmp");
    if (!dir.ok()) return dir.error().Wrap("docker endpoint for job \"" + guard->options_.job_id + "\"");
    guard->short_dir_ = std::move(*dir);
    guard->options_.socket_path = guard->short_dir_.path() + "/docker.sock";
  }
  ProxyHooks hooks;
  hooks.create_labels = {{kJobLabel, guard->options_.job_id}, {kInstanceLabel, InstanceId()}};
  auto networks = guard->networks_;
  hooks.network_created = [networks](const std::string& id) { networks->push_back(id); };
  auto creates = guard->creates_;
  hooks.container_create = [creates] { ++*creates; };
  auto proxy = Proxy::Listen(loop, guard->options_.socket_path, guard->options_.daemon_socket,
                             std::move(hooks));
  if (!proxy.ok()) return proxy.error().Wrap("docker endpoint for job \"" + guard->options_.job_id + "\"");
  guard->proxy_ = std::move(*proxy);
  return guard;
}

// The proxy goes first: its socket file lives in short_dir_ when there is one.
DockerGuard::~DockerGuard() { proxy_.reset(); }

std::string DockerGuard::docker_host() const { return "unix://" + options_.socket_path; }

}  // namespace sr::docker
