// The per-job Docker endpoint (issue 16) against the daemon's own socket, interleaved so that
// machine noise hits both sides alike. Starts a daemon of its own (like tests/docker) and a
// DockerGuard on an event-loop thread, then measures:
//
//   ping           GET /_ping on one keep-alive connection, 2000 requests per side in blocks
//                  of 100, alternating: the time the proxy adds per request (median, p90)
//   docker ps      the CLI (2 requests: ping + list), 30 runs per side, alternating (median)
//   run --rm true  `docker run --rm --network none busybox true`, 15 runs per side (median)
//   docker logs    `docker logs ID >/dev/null` of a container that wrote 128 MiB in 8 KiB lines, 5 runs per
//                  side (MB/s, best and median)
//
// Goal: through the proxy >= 0.9x direct, <= 1 ms added per request. Run as root:
//   build/docker_proxy_bench
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "docker/docker.h"
#include "loop/loop.h"

namespace {

using Seconds = std::chrono::duration<double>;

std::string Sh(const std::string& cmd, int* rc = nullptr) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  char buf[4096];
  size_t n;
  while (p && (n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int status = p ? ::pclose(p) : -1;
  if (rc) *rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

double Time(const std::string& cmd) {
  auto t0 = std::chrono::steady_clock::now();
  int rc = 0;
  Sh(cmd + " >/dev/null 2>&1", &rc);
  if (rc != 0) std::fprintf(stderr, "failed: %s\n", cmd.c_str());
  return Seconds(std::chrono::steady_clock::now() - t0).count();
}

double CpuSeconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
double Pct(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

// A blocking keep-alive client: one connection, GET /_ping repeatedly.
class PingClient {
 public:
  explicit PingClient(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) std::perror("connect");
  }
  ~PingClient() { ::close(fd_); }
  // One request/answer; returns seconds.
  double Ping() {
    static const char kReq[] = "GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n";
    auto t0 = std::chrono::steady_clock::now();
    if (::write(fd_, kReq, sizeof kReq - 1) < 0) return 0;
    std::string got;
    char buf[4096];
    // The answer is small and has "OK" as its body, after a Content-Length: 2 header.
    while (got.find("\r\n\r\nOK") == std::string::npos) {
      ssize_t n = ::read(fd_, buf, sizeof buf);
      if (n <= 0) return 0;
      got.append(buf, static_cast<size_t>(n));
    }
    return Seconds(std::chrono::steady_clock::now() - t0).count();
  }

 private:
  int fd_ = -1;
};

}  // namespace

int main() {
  char tmpl[] = "/tmp/sr-bench-dockerd-XXXXXX";
  if (!::mkdtemp(tmpl)) return 1;
  const std::string dir = tmpl, sock = dir + "/docker.sock", host = "unix://" + sock;
  pid_t dockerd = ::fork();
  if (dockerd == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    std::string log = dir + "/dockerd.log";
    FILE* f = std::fopen(log.c_str(), "w");
    ::dup2(::fileno(f), 1);
    ::dup2(::fileno(f), 2);
    std::string data = dir + "/data", exec = dir + "/exec", h = "unix://" + sock;
    ::execl("/usr/sbin/dockerd", "dockerd", "--iptables=false", "--ip6tables=false",
            "--bridge=none", "--storage-driver=vfs", "--data-root", data.c_str(), "--exec-root",
            exec.c_str(), "-H", h.c_str(), nullptr);
    ::_exit(127);
  }
  const std::string direct = "DOCKER_HOST=" + host + " docker ";
  int rc = 1;
  for (int i = 0; i < 600 && rc != 0; ++i) {
    Sh(direct + "version >/dev/null 2>&1", &rc);
    if (rc != 0) ::usleep(100000);
  }
  Sh("mkdir -p " + dir + "/rootfs/bin && cp /bin/busybox " + dir + "/rootfs/bin/ && for a in sh "
     "true yes head sleep; do ln -s busybox " + dir + "/rootfs/bin/$a; done && tar -C " + dir +
     "/rootfs -c . | " + direct + "import - busybox >/dev/null");

  auto loop = std::move(sr::EventLoop::Create().value());
  std::thread loop_thread([&] { loop->Run(); });
  std::unique_ptr<sr::docker::DockerGuard> guard;
  std::promise<void> started;
  loop->Post([&] {
    sr::docker::GuardOptions o;
    o.daemon_socket = sock;
    o.socket_path = dir + "/job.sock";
    o.job_id = "bench";
    o.log = [](std::string_view) {};
    guard = std::move(sr::docker::DockerGuard::Start(*loop, std::move(o)).value());
    started.set_value();
  });
  started.get_future().wait();
  const std::string proxied = "DOCKER_HOST=unix://" + dir + "/job.sock docker ";

  // 1. Per-request latency on keep-alive connections.
  {
    PingClient d(sock), p(dir + "/job.sock");
    std::vector<double> dv, pv;
    for (int block = 0; block < 20; ++block) {
      for (int i = 0; i < 100; ++i) dv.push_back(d.Ping());
      for (int i = 0; i < 100; ++i) pv.push_back(p.Ping());
    }
    std::printf("ping (keep-alive)  direct median %.1f us p90 %.1f us | proxy median %.1f us p90 "
                "%.1f us | added %.1f us per request\n",
                Median(dv) * 1e6, Pct(dv, 0.9) * 1e6, Median(pv) * 1e6, Pct(pv, 0.9) * 1e6,
                (Median(pv) - Median(dv)) * 1e6);
  }
  // 2. docker ps, 3. docker run --rm true: whole CLI invocations.
  auto compare = [&](const char* what, const std::string& args, int runs) {
    std::vector<double> dv, pv;
    for (int i = 0; i < runs; ++i) {
      dv.push_back(Time(direct + args));
      pv.push_back(Time(proxied + args));
    }
    std::printf("%-18s direct median %.1f ms | proxy median %.1f ms | added %.2f ms | "
                "proxy/direct speed %.3fx\n",
                what, Median(dv) * 1e3, Median(pv) * 1e3, (Median(pv) - Median(dv)) * 1e3,
                Median(dv) / Median(pv));
  };
  compare("docker ps", "ps", 30);
  compare("run --rm true", "run --rm --network none busybox true", 15);
  // 4. docker logs throughput.
  {
    // 8 KiB lines: the daemon stores and decodes a JSON record per line, and with short lines
    // its decoding, not the transport, is what a measure would show.
    const double mib = 128;
    std::string id = Sh(direct + "run -d --network none busybox sh -c 'a=0123456789abcdef; for i "
                                 "in 1 2 3 4 5 6 7 8 9; do a=$a$a; done; yes $a | head -c 134217728'");
    Sh(direct + "wait " + id + " >/dev/null");
    std::vector<double> dv, pv;
    double proxy_cpu = 0;  // this process is the proxy: its CPU time while the proxied runs ran
    for (int i = 0; i < 5; ++i) {
      dv.push_back(mib / Time(direct + "logs " + id));
      const double before = CpuSeconds();
      pv.push_back(mib / Time(proxied + "logs " + id));
      proxy_cpu += CpuSeconds() - before;
    }
    std::printf("docker logs: the proxy's own CPU %.2f ms per MiB (%.0f MiB/s of one core)\n",
                proxy_cpu * 1e3 / (5 * mib), 5 * mib / proxy_cpu);
    std::printf("docker logs 128MiB direct median %.0f MiB/s best %.0f | proxy median %.0f MiB/s "
                "best %.0f | proxy/direct %.3fx\n",
                Median(dv), *std::max_element(dv.begin(), dv.end()), Median(pv),
                *std::max_element(pv.begin(), pv.end()), Median(pv) / Median(dv));
    Sh(direct + "rm -f " + id + " >/dev/null");
  }

  std::promise<void> stopped;
  loop->Post([&] {
    guard->Stop(sr::Duration(0), true, [&](auto) {
      guard.reset();
      stopped.set_value();
    });
  });
  stopped.get_future().wait();
  loop->Stop();
  loop_thread.join();
  ::kill(dockerd, SIGTERM);
  ::waitpid(dockerd, nullptr, 0);
  Sh("grep -o ' " + dir + "[^ ]*' /proc/self/mounts | sort -r | xargs -r -n1 umount -l; rm -rf " + dir);
  return 0;
}
