// What a resource group used (contract 8.2): its cgroup v2 and v1 accounting files read into a
// ResourceUsage. A file the host does not have leaves its field unset, never a guess.
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <sstream>

#include "supervisor/controllers.h"

namespace sr {
namespace {

std::optional<int64_t> ReadNumber(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) return std::nullopt;
  char* end = nullptr;
  long long v = std::strtoll(text->c_str(), &end, 10);
  if (end == text->c_str()) return std::nullopt;
  return v;
}

// "key value" lines (cpu.stat, memory.events, memory.oom_control).
std::optional<int64_t> ReadKey(const std::string& path, const std::string& key) {
  auto text = ReadFile(path);
  if (!text.ok()) return std::nullopt;
  std::istringstream in(*text);
  std::string k;
  long long v;
  while (in >> k >> v) {
    if (k == key) return v;
  }
  return std::nullopt;
}

// v2 io.stat: "8:0 rbytes=1 wbytes=2 rios=...", one line per device.
void ReadIoStat(const std::string& path, ResourceUsage& u) {
  auto text = ReadFile(path);
  if (!text.ok()) return;
  int64_t r = 0, w = 0;
  std::istringstream in(*text);
  std::string word;
  while (in >> word) {
    if (word.rfind("rbytes=", 0) == 0) r += std::strtoll(word.c_str() + 7, nullptr, 10);
    if (word.rfind("wbytes=", 0) == 0) w += std::strtoll(word.c_str() + 7, nullptr, 10);
  }
  u.io_read_bytes = r;
  u.io_write_bytes = w;
}

// v1 blkio: "8:0 Read 4096" lines per device, and a "Total" line.
void ReadBlkio(const std::string& dir, ResourceUsage& u) {
  for (const char* file : {"blkio.io_service_bytes_recursive",
                           "blkio.throttle.io_service_bytes_recursive",
                           "blkio.throttle.io_service_bytes"}) {
    auto text = ReadFile(dir + "/" + file);
    if (!text.ok()) continue;
    int64_t r = 0, w = 0;
    std::istringstream lines(*text);
    for (std::string line; std::getline(lines, line);) {
      std::istringstream in(line);
      std::string dev, op;
      long long v = 0;
      if (!(in >> dev >> op >> v)) continue;
      if (op == "Read") r += v;
      if (op == "Write") w += v;
    }
    u.io_read_bytes = r;
    u.io_write_bytes = w;
    return;
  }
}

}  // namespace

ResourceUsage ResourceGroup::Read() const {
  ResourceUsage u;
  if (!v2_dir_.empty()) {
    // cpu.stat is there in every v2 cgroup, with or without the cpu controller.
    u.cpu_user_usec = ReadKey(v2_dir_ + "/cpu.stat", "user_usec");
    u.cpu_system_usec = ReadKey(v2_dir_ + "/cpu.stat", "system_usec");
    if (v2_kinds_ & Controllers::kMemory) {
      u.memory_peak_bytes = ReadNumber(v2_dir_ + "/memory.peak");
      u.oom_kills = ReadKey(v2_dir_ + "/memory.events", "oom_kill");
    }
    if (v2_kinds_ & Controllers::kPids) u.pids_peak = ReadNumber(v2_dir_ + "/pids.peak");
    if (v2_kinds_ & Controllers::kIo) ReadIoStat(v2_dir_ + "/io.stat", u);
  }
  for (const auto& d : v1_) {
    if (d.kinds & Controllers::kMemory) {
      u.memory_peak_bytes = ReadNumber(d.path + "/memory.max_usage_in_bytes");
      u.oom_kills = ReadKey(d.path + "/memory.oom_control", "oom_kill");
    }
    if (d.kinds & Controllers::kPids) u.pids_peak = ReadNumber(d.path + "/pids.peak");
    if (d.kinds & Controllers::kCpuAcct) {
      auto user = ReadNumber(d.path + "/cpuacct.usage_user");
      auto sys = ReadNumber(d.path + "/cpuacct.usage_sys");
      if (user) u.cpu_user_usec = *user / 1000;
      if (sys) u.cpu_system_usec = *sys / 1000;
    }
    if (d.kinds & Controllers::kIo) ReadBlkio(d.path, u);
  }
  return u;
}

std::optional<int64_t> Controllers::OwnOomKills() const {
  if (own_memory_dir_.empty()) return std::nullopt;
  // Read after every step: the file stays open, one pread each time.
  if (!own_oom_fd_.valid()) {
    const std::string path =
        own_memory_dir_ + (own_memory_v2_ ? "/memory.events" : "/memory.oom_control");
    own_oom_fd_.Reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  }
  char buf[512];
  const ssize_t n = own_oom_fd_.valid() ? ::pread(own_oom_fd_.get(), buf, sizeof buf - 1, 0) : -1;
  last_own_oom_ = std::nullopt;
  if (n > 0) {
    // "key value" lines; no istringstream here (its construction alone costs microseconds).
    buf[n] = '\0';
    for (const char* line = buf; line && *line;) {
      if (std::strncmp(line, "oom_kill ", 9) == 0) {
        last_own_oom_ = std::strtoll(line + 9, nullptr, 10);
      }
      line = std::strchr(line, '\n');
      if (line) ++line;
    }
  }
  return last_own_oom_;
}

}  // namespace sr
