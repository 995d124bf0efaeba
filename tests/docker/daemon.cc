#include "docker/daemon.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <thread>

namespace sr::test {
namespace {

DockerDaemon* g_daemon = nullptr;
std::string g_missing;

bool Executable(const char* path) { return ::access(path, X_OK) == 0; }

std::string FindDockerd() {
  for (const char* p : {"/usr/sbin/dockerd", "/usr/bin/dockerd", "/usr/local/bin/dockerd"}) {
    if (Executable(p)) return p;
  }
  return "";
}

// Starts the daemon before the first test and stops it after the last one.
class DaemonEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (FindDockerd().empty()) {
      g_missing = "dockerd is not installed (scripts/bootstrap installs docker.io)";
      return;
    }
    g_daemon = new DockerDaemon();
    g_daemon->Start();
  }
  void TearDown() override {
    if (g_daemon) g_daemon->Stop();
    delete g_daemon;
    g_daemon = nullptr;
  }
};

[[maybe_unused]] auto* const g_environment =
    ::testing::AddGlobalTestEnvironment(new DaemonEnvironment());

}  // namespace

DockerDaemon::Result Shell(const std::string& command) {
  DockerDaemon::Result r;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

DockerDaemon* DockerDaemon::Get(std::string* why) {
  if (!g_daemon) *why = g_missing.empty() ? "the docker daemon did not start" : g_missing;
  return g_daemon;
}

DockerDaemon::Result DockerDaemon::Docker(const std::string& args, const std::string& host) const {
  return Shell("DOCKER_HOST='" + (host.empty() ? this->host() : host) + "' docker " + args);
}

std::string DockerDaemon::Out(const std::string& args) const {
  std::string out = Docker(args).out;
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

std::vector<std::string> DockerDaemon::ContainersWithLabel(const std::string& label) const {
  std::istringstream in(Out("ps -aq --no-trunc --filter label=" + label));
  std::vector<std::string> ids;
  for (std::string id; in >> id;) ids.push_back(id);
  return ids;
}

void DockerDaemon::Start() {
  // Under /tmp, not a deep TMPDIR: containerd's sockets live in the exec root and a unix
  // socket path has at most 107 bytes.
  char tmpl[] = "/tmp/sr-dockerd-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  dir_ = tmpl;
  socket_ = dir_ + "/docker.sock";
  log_ = dir_ + "/dockerd.log";
  const std::string dockerd = FindDockerd();
  std::vector<std::string> argv = {dockerd, "--iptables=false", "--ip6tables=false",
                                   "--bridge=none", "--storage-driver=vfs",
                                   "--data-root", dir_ + "/data", "--exec-root", dir_ + "/exec",
                                   "-H", "unix://" + socket_, "--pidfile", dir_ + "/dockerd.pid"};
  pid_ = ::fork();
  ASSERT_GE(pid_, 0);
  if (pid_ == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);  // a crashed test binary takes its daemon along
    ::setpgid(0, 0);
    FILE* log = std::fopen(log_.c_str(), "w");
    if (log) {
      ::dup2(::fileno(log), 1);
      ::dup2(::fileno(log), 2);
    }
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (Docker("version --format '{{.Server.Version}}'").exit_code != 0) {
    int status;
    ASSERT_EQ(::waitpid(pid_, &status, WNOHANG), 0) << "dockerd exited; its log:\n"
                                                     << Shell("cat " + log_).out;
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << Shell("tail -20 " + log_).out;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  // The image: busybox-static and a few applet links, imported without a registry.
  const std::string rootfs = dir_ + "/rootfs";
  std::string links;
  for (const char* applet : {"sh", "sleep", "echo", "cat", "true", "yes", "head", "seq", "touch",
                             "test", "dd", "ls", "wc"}) {
    links += std::string(" && ln -s busybox ") + rootfs + "/bin/" + applet;
  }
  auto built = Shell("mkdir -p " + rootfs + "/bin " + rootfs + "/tmp && cp /bin/busybox " +
                     rootfs + "/bin/busybox" + links + " && tar -C " + rootfs +
                     " -c . | DOCKER_HOST=" + host() + " docker import - " + kImage + " && DOCKER_HOST=" + host() + " docker tag " + kImage +
                     " busybox");
  ASSERT_EQ(built.exit_code, 0) << built.out;
}

void DockerDaemon::Stop() {
  if (pid_ > 0) {
    Shell("DOCKER_HOST=" + host() + " docker ps -aq | xargs -r env DOCKER_HOST=" + host() +
          " docker rm -fv >/dev/null");
    ::kill(pid_, SIGTERM);
    int status;
    for (int i = 0; i < 300 && ::waitpid(pid_, &status, WNOHANG) == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (::waitpid(pid_, &status, WNOHANG) == 0) {
      ::kill(-pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
    }
    pid_ = -1;
  }
  // containerd (started by dockerd, in its process group) is gone with it; what it mounted
  // under the exec root is unmounted before the tree goes.
  if (!dir_.empty()) {
    Shell("grep -o ' " + dir_ + "[^ ]*' /proc/self/mounts | sort -r | xargs -r -n1 umount -l");
    Shell("rm -rf '" + dir_ + "'");
    dir_.clear();
  }
}

}  // namespace sr::test
