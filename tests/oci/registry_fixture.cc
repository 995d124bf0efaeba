#include "oci/registry_fixture.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace sr::test {
namespace {

bool Connects(const std::string& host, int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, host.c_str(), &a.sin_addr);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

IsolatedRunTest::IsolatedRunTest() {
  std::filesystem::create_directories(dir / "tmp");
  std::filesystem::create_directories(dir / "home");
}

Output IsolatedRunTest::Run(const std::vector<std::string>& args,
                            std::map<std::string, std::string> env) {
  Options o;
  o.cwd = dir.path();
  o.env = std::move(env);
  o.env["TMPDIR"] = dir / "tmp";
  o.env.emplace("HOME", dir / "home");
  o.unset_env = {"DOCKER_AUTH_CONFIG", "STEP_RUNNER_OCI_INSECURE"};
  return RunStepRunner(args, o);
}

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

Registry::Registry(const std::string& dir, const std::string& htpasswd, const std::string& host,
                   const std::string& tls_dir)
    : dir_(dir), host_(host) {
  port_ = FreePort();
  std::string config = "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: false\n"
                       "storage:\n  filesystem:\n    rootdirectory: " + storage() + "\n"
                       "http:\n  addr: " + address() + "\n";
  if (!tls_dir.empty()) {
    config += "  tls:\n    certificate: " + tls_dir + "/cert.pem\n    key: " + tls_dir + "/key.pem\n";
  }
  std::string script = "exec docker-registry serve " + dir_ + "/config.yml >" + dir_ + "/log 2>&1";
  if (!htpasswd.empty()) {
    const auto colon = htpasswd.find(':');
    config += "auth:\n  htpasswd:\n    realm: test\n    path: " + dir_ + "/htpasswd\n";
    script = "htpasswd -Bbc " + dir_ + "/htpasswd " + htpasswd.substr(0, colon) + " " +
             htpasswd.substr(colon + 1) + " 2>/dev/null && " + script;
  }
  std::ofstream(dir_ + "/config.yml") << config;
  child_ = std::make_unique<Child>(std::vector<std::string>{"/bin/sh", "-c", script}, Options{});
  for (int i = 0; i < 500 && !Connects(host_, port_); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

Registry::~Registry() { child_.reset(); }

std::string Registry::Log() const { return ReadAll(dir_ + "/log"); }

int Registry::CountGets(const std::string& path) const {
  const std::string log = Log(), needle = "\"GET " + path + " ";
  int n = 0;
  for (size_t at = log.find(needle); at != std::string::npos; at = log.find(needle, at + 1)) ++n;
  return n;
}

std::string Registry::BlobFile(const std::string& digest) const {
  const std::string hex = digest.substr(7);
  return storage() + "/docker/registry/v2/blobs/sha256/" + hex.substr(0, 2) + "/" + hex + "/data";
}

SlowProxy::SlowProxy(int upstream_port) : upstream_(upstream_port) {
  listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len);
  port_ = ntohs(a.sin_port);
  ::listen(listener_, 16);
  acceptor_ = std::thread([this] {
    while (!stop_) {
      pollfd p{listener_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      int client = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client >= 0) workers_.emplace_back([this, client] { Serve(client); });
    }
  });
}

SlowProxy::~SlowProxy() {
  stop_ = true;
  acceptor_.join();
  for (auto& w : workers_) w.join();
  ::close(listener_);
}

void SlowProxy::Serve(int client) {
  int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(upstream_));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(server, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    char buf[8192];
    while (!stop_) {
      pollfd p[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
      if (::poll(p, 2, 50) <= 0) continue;
      if (p[0].revents) {
        ssize_t n = ::read(client, buf, sizeof buf);
        if (n <= 0 || ::write(server, buf, static_cast<size_t>(n)) != n) break;
      }
      if (p[1].revents) {
        ssize_t n = ::read(server, buf, sizeof buf);
        if (n <= 0 || ::write(client, buf, static_cast<size_t>(n)) != n) break;
        forwarded_ += n;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));  // ~160 KiB/s
      }
    }
  }
  ::close(server);
  ::close(client);
}

}  // namespace sr::test
