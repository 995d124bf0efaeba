#include "util/owner.h"

#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>

#include "util/fd.h"

namespace sr {

unsigned long long TicksSinceBoot() {
  static const long hz = ::sysconf(_SC_CLK_TCK);
  timespec ts{};
  ::clock_gettime(CLOCK_BOOTTIME, &ts);
  return static_cast<unsigned long long>(ts.tv_sec) * static_cast<unsigned long long>(hz) +
         static_cast<unsigned long long>(ts.tv_nsec) / (1000000000ULL / static_cast<unsigned long long>(hz));
}

unsigned long long ProcessStartTicks(pid_t pid, bool* zombie) {
  auto text = ReadFilePrefix("/proc/" + std::to_string(pid) + "/stat", 4096);
  if (!text.ok()) return 0;
  // The command name may hold spaces and ')': the fields start after the last ')'.
  size_t close = text->rfind(')');
  if (close == std::string::npos || close + 2 >= text->size()) return 0;
  const char* p = text->c_str() + close + 2;
  if (zombie) *zombie = (*p == 'Z' || *p == 'X');
  ++p;
  unsigned long long v = 0;
  for (int i = 0; i < 19; ++i) {  // ppid ... starttime: starttime is the 19th after the state
    char* end = nullptr;
    v = std::strtoull(p, &end, 10);
    if (end == p) return 0;
    p = end;
  }
  return v;
}

unsigned long long SelfStartTicks() {
  // Read once per process (a fork is another process): later calls need no fd, which matters
  // to a runner whose fd table is full.
  static std::atomic<unsigned long long> cached{0};
  static std::atomic<pid_t> cached_for{0};
  const pid_t self = ::getpid();
  if (cached_for.load() == self) return cached.load();
  const unsigned long long ticks = ProcessStartTicks(self);
  if (ticks != 0) {
    cached.store(ticks);
    cached_for.store(self);
  }
  return ticks;
}

std::string SelfOwnerMark() {
  return std::to_string(::getpid()) + " " + std::to_string(SelfStartTicks()) + "\n";
}

Status MarkOwned(const std::string& dir) { return WriteFile(dir + "/" + kOwnerFile, SelfOwnerMark()); }

Owner OwnerFromMark(const std::string& text, pid_t* pid, unsigned long long* start_ticks) {
  char* end = nullptr;
  long owner = std::strtol(text.c_str(), &end, 10);
  if (end == text.c_str() || *end != ' ' || owner <= 0) return Owner::kUnknown;
  const char* p = end + 1;
  unsigned long long ticks = std::strtoull(p, &end, 10);
  if (end == p || *end != '\n' || ticks == 0) return Owner::kUnknown;
  if (pid) *pid = static_cast<pid_t>(owner);
  if (start_ticks) *start_ticks = ticks;
  return OwnerOfProcess(static_cast<pid_t>(owner), ticks);
}

Owner OwnerOfProcess(pid_t pid, unsigned long long start_ticks) {
  bool zombie = false;
  return ProcessStartTicks(pid, &zombie) == start_ticks && !zombie ? Owner::kLive : Owner::kDead;
}

std::string SelfTransitPrefix() {
  return std::string(kTransitPrefix) + std::to_string(::getpid()) + "-" + std::to_string(SelfStartTicks()) + "-";
}

Owner OwnerFromTransitName(const std::string& name, pid_t* pid, unsigned long long* start_ticks) {
  if (name.rfind(kTransitPrefix, 0) != 0) return Owner::kUnknown;
  const char* p = name.c_str() + (sizeof kTransitPrefix - 1);
  if (*p < '1' || *p > '9') return Owner::kUnknown;  // no sign, no space, no leading zero
  char* end = nullptr;
  const long owner = std::strtol(p, &end, 10);
  if (*end != '-' || owner <= 0) return Owner::kUnknown;
  p = end + 1;
  if (*p < '1' || *p > '9') return Owner::kUnknown;
  const unsigned long long ticks = std::strtoull(p, &end, 10);
  if (*end != '-' || ticks == 0) return Owner::kUnknown;
  if (pid) *pid = static_cast<pid_t>(owner);
  if (start_ticks) *start_ticks = ticks;
  return OwnerOfProcess(static_cast<pid_t>(owner), ticks);
}

Owner OwnerOfDir(const std::string& dir, pid_t* pid, unsigned long long* start_ticks) {
  auto text = ReadFilePrefix(dir + "/" + kOwnerFile, 256, /*regular_only=*/true);
  if (!text.ok()) return Owner::kUnknown;
  return OwnerFromMark(*text, pid, start_ticks);
}

}  // namespace sr
