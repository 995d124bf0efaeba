#include "supervisor/leftovers.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <string_view>
#include <vector>

#include "supervisor/cgroup.h"
#include "supervisor/guardian.h"
#include "util/fd.h"
#include "util/owner.h"
#include "util/tempdir.h"

namespace sr {
namespace {

constexpr char kRunnerPrefix[] = "step-runner-";
constexpr char kJobDirPrefix[] = "step-runner-output-";
constexpr auto kLeftoverCgroupWait = std::chrono::seconds(2);
// A runner's cgroup unchanged this long, of a pid that no longer runs, is a dead runner's even
// without its record (RemoveDeadRunnerCgroups). A runner's cgroup changes with every step.
constexpr auto kUnrecordedCgroupAge = std::chrono::seconds(60);

bool StartsWith(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

// The names in directory `dir` that `keep` accepts ("." and ".." never); none when it cannot be read.
std::vector<std::string> ListNames(const std::string& dir, const std::function<bool(const std::string&)>& keep) {
  std::vector<std::string> names;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name != "." && name != ".." && keep(name)) names.push_back(std::move(name));
    }
    ::closedir(d);
  }
  return names;
}

// Ours (this user's) and of the expected type, not a symlink.
bool OwnedByUs(const std::string& path, bool dir) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0 || st.st_uid != ::geteuid()) return false;
  return dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode);
}

// A dead runner's cgroup record: kill what is still in the cgroup, remove it, then the record.
void RemoveCgroup(const std::string& record, LeftoverReport& report) {
  if (!OwnedByUs(record, false)) return;
  auto text = ReadFilePrefix(record, 4096, /*regular_only=*/true);
  if (!text.ok()) return;
  pid_t owner = 0;
  unsigned long long ticks = 0;
  const bool temp = record.ends_with(kCgroupRecordTempSuffix);
  const Owner whose = temp ? Owner::kUnknown : OwnerFromMark(*text, &owner, &ticks);
  if (whose == Owner::kUnknown) {
    // Not a whole record: a `.new` whose writer was killed before the rename, or an empty one
    // from a runner before records were renamed into place. Its content names nobody; the pid in
    // its name is its writer's, and once no process has that pid the file is only a leftover.
    // (Its cgroup, if any, is found by name: RemoveDeadRunnerCgroups.)
    const size_t at = record.rfind('/') + 1 + (sizeof kCgroupRecordPrefix - 1);
    char* end = nullptr;
    const long pid = std::strtol(record.c_str() + at, &end, 10);
    const bool named = end != record.c_str() + at &&
                       (*end == '\0' || (temp && std::string_view(end) == kCgroupRecordTempSuffix));
    if (named && pid > 0 && pid != ::getpid() && ::kill(static_cast<pid_t>(pid), 0) != 0 &&
        errno == ESRCH) {
      ::unlink(record.c_str());
    }
    return;
  }
  if (whose != Owner::kDead) return;
  report.dead[owner] = ticks;
  size_t nl = text->find('\n');
  std::string dir = text->substr(nl + 1);
  while (!dir.empty() && dir.back() == '\n') dir.pop_back();
  // Only ever the runner's own step-runner-<pid> directory inside the cgroup2 mount.
  auto mount = FindCgroup2Mount();
  const std::string name = std::string(kRunnerPrefix) + std::to_string(owner);
  const bool plausible = mount.ok() && StartsWith(dir, (*mount + "/").c_str()) &&
                         dir.size() > name.size() &&
                         dir.compare(dir.size() - name.size() - 1, std::string::npos, "/" + name) == 0 &&
                         dir.find("/../") == std::string::npos;
  if (plausible && ::access(dir.c_str(), F_OK) == 0) {
    if (!KillCgroupTree(dir, kLeftoverCgroupWait)) return;  // still busy: the next start tries again
    ++report.cgroups;
    report.owners.insert(owner);
  }
  ::unlink(record.c_str());
}

// `name` in `parent`: a directory marked by its owner, or under a transit name that says whose
// it is (made or being removed when its owner was killed: util/owner.h).
void RemoveDir(const std::string& parent, const std::string& name, int& counter, LeftoverReport& report) {
  const std::string path = parent + "/" + name;
  if (!OwnedByUs(path, true)) return;
  pid_t owner = 0;
  unsigned long long ticks = 0;
  Owner whose = OwnerFromTransitName(name, &owner, &ticks);
  if (whose == Owner::kUnknown) {
    if (!OwnedByUs(path + "/" + kOwnerFile, false)) return;
    whose = OwnerOfDir(path, &owner, &ticks);
  }
  if (whose != Owner::kDead) return;
  // Its processes first (the guardian may have died with the runner): nothing may run in the
  // files we are about to remove.
  if (!report.dead.count(owner)) {
    report.dead[owner] = ticks;
    report.processes += KillRunnerProcesses(owner, ticks);
  }
  // Renamed to a transit name of this runner first: a sweep killed half-way leaves its own
  // leftover, not an unmarked directory.
  std::string removing = path;
  if (!RemoveOwnedTree(removing).ok()) return;
  ++counter;
  report.owners.insert(owner);
}

// Temporary clones and checkouts of git steps (engine/git_cache.cc): a runner killed during a
// clone leaves them half made. Clones (`.clone-*`) are made in the cache itself, checkouts
// (`.tree-*`) in a repository's directory; older runners made clones there too.
void RemoveGitTemps(const std::string& cache, LeftoverReport& report) {
  if (!OwnedByUs(cache, true)) return;
  auto is_temp = [](const std::string& n) {
    return StartsWith(n, kGitCloneTemp) || StartsWith(n, kGitTreeTemp) || StartsWith(n, kTransitPrefix);
  };
  for (const auto& name : ListNames(cache, [](const std::string&) { return true; })) {
    if (is_temp(name)) {
      RemoveDir(cache, name, report.git_temps, report);
      continue;
    }
    const std::string repo = cache + "/" + name;
    if (!OwnedByUs(repo, true)) continue;
    for (const auto& temp : ListNames(repo, is_temp)) RemoveDir(repo, temp, report.git_temps, report);
  }
}

// Blobs of OCI steps half downloaded. A download holds its digest's flock as long as its temp
// exists, and a flock dies with its process: a temp whose lock this sweep can take is a killed
// download's (the lock is held meanwhile, so no download of that digest starts under us).
void RemoveKilledDownloads(const std::string& blobs, LeftoverReport& report) {
  if (!OwnedByUs(blobs, true)) return;
  std::map<std::string, std::vector<std::string>> temps;  // by digest
  for (auto& name : ListNames(blobs, [](const std::string& n) {
         return n[0] == '.' && n.find(kBlobTempInfix) != std::string::npos;
       })) {
    temps[name.substr(1, name.find(kBlobTempInfix) - 1)].push_back(std::move(name));
  }
  for (const auto& [hex, names] : temps) {
    UniqueFd lock(::open((blobs + "/" + hex + ".lock").c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW));
    if (!lock.valid() && errno != ENOENT) continue;  // unknown: leave it
    if (lock.valid() && ::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) continue;  // a download runs
    for (const auto& name : names) {
      if (!OwnedByUs(blobs + "/" + name, false) || ::unlink((blobs + "/" + name).c_str()) != 0) continue;
      ++report.downloads;
      // The pid in its name was the downloader's (the lock, not the pid, says it is dead).
      const long pid = std::strtol(name.c_str() + name.find(kBlobTempInfix) + sizeof kBlobTempInfix - 1,
                                   nullptr, 10);
      if (pid > 0) report.owners.insert(static_cast<pid_t>(pid));
    }
  }
}

std::string Count(int n, const std::string& what) {
  return std::to_string(n) + " " + what + (n == 1 ? "" : what.ends_with('s') ? "es" : "s");
}

}  // namespace

std::string LeftoverReport::Line(const std::string& base) const {
  std::string pids;
  for (pid_t p : owners) pids += (pids.empty() ? "" : ", ") + std::to_string(p);
  std::string what;
  auto add = [&](int n, const char* name) {
    if (n > 0) what += (what.empty() ? "" : ", ") + Count(n, name);
  };
  add(job_dirs, "job dir");
  add(temp_dirs, "temp dir");
  add(cgroups, "cgroup");
  add(git_temps, "temporary git clone");
  add(downloads, "partial download");
  add(processes, "process");
  std::string line = "removed what dead step-runner instances (pid " + pids + ") left";
  if (!what.empty()) line += " in " + base + ": " + what;
  if (unrecorded_cgroups > 0) {
    line += (what.empty() ? ": " : "; ") + Count(unrecorded_cgroups, "cgroup") + " in " +
            unrecorded_parent + " (found by name: " + (unrecorded_cgroups == 1 ? "its" : "their") +
            " record went with another TMPDIR)";
  }
  return line;
}

void RemoveDeadRunnerCgroups(const std::string& parent, std::chrono::seconds min_age,
                             LeftoverReport& report) {
  timespec began{};
  ::clock_gettime(CLOCK_REALTIME, &began);
  constexpr size_t kDigitsAt = sizeof kRunnerPrefix - 1;
  auto names = ListNames(parent, [](const std::string& n) {
    return StartsWith(n, kRunnerPrefix) && n.size() > kDigitsAt &&
           n.find_first_not_of("0123456789", kDigitsAt) == std::string::npos;
  });
  for (const auto& name : names) {
    const pid_t pid = static_cast<pid_t>(std::strtol(name.c_str() + kDigitsAt, nullptr, 10));
    if (pid <= 0 || pid == ::getpid() || ::kill(pid, 0) == 0 || errno != ESRCH) continue;
    const std::string dir = parent + "/" + name;
    struct stat st {};
    if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != ::geteuid() ||
        st.st_ctime > began.tv_sec - min_age.count()) {
      continue;
    }
    if (!KillCgroupTree(dir, kLeftoverCgroupWait)) continue;  // still busy: the next start tries again
    ++report.unrecorded_cgroups;
    report.unrecorded_parent = parent;
    report.owners.insert(pid);
  }
}

LeftoverReport RemoveDeadLeftovers(const std::string& base) {
  LeftoverReport report;
  // One pass over TMPDIR for both kinds (a runner's every start reads it).
  std::vector<std::string> records, dirs;
  for (auto& name : ListNames(base, [](const std::string& n) {
         return StartsWith(n, kCgroupRecordPrefix) || StartsWith(n, kRunnerPrefix) ||
                StartsWith(n, kTransitPrefix);
       })) {
    (StartsWith(name, kCgroupRecordPrefix) ? records : dirs).push_back(std::move(name));
  }
  // Cgroups first: their processes must be gone before the files they may use go.
  for (const auto& name : records) RemoveCgroup(base + "/" + name, report);
  if (auto own = RunnerCgroupDir(::getpid()); own.ok()) {
    RemoveDeadRunnerCgroups(own->substr(0, own->rfind('/')), kUnrecordedCgroupAge, report);
  }
  for (const auto& name : dirs) {
    RemoveDir(base, name, StartsWith(name, kJobDirPrefix) ? report.job_dirs : report.temp_dirs, report);
  }
  RemoveGitTemps(base + "/" + kGitCacheDir, report);
  RemoveKilledDownloads(base + "/" + kGitCacheDir + "/" + kOciBlobDir, report);
  return report;
}

}  // namespace sr
