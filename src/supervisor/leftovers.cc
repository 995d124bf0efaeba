#include "supervisor/leftovers.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
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
constexpr auto kCgroupWait = std::chrono::seconds(2);

bool StartsWith(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

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
  if (OwnerFromMark(*text, &owner, &ticks) != Owner::kDead) return;
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
    if (!KillCgroupTree(dir, kCgroupWait)) return;  // still busy: the next start tries again
    ++report.cgroups;
    report.owners.insert(owner);
  }
  ::unlink(record.c_str());
}

void RemoveDir(const std::string& path, int& counter, LeftoverReport& report) {
  if (!OwnedByUs(path, true)) return;
  const std::string mark = path + "/" + kOwnerFile;
  if (!OwnedByUs(mark, false)) return;
  pid_t owner = 0;
  unsigned long long ticks = 0;
  if (OwnerOfDir(path, &owner, &ticks) != Owner::kDead) return;
  // Its processes first (the guardian may have died with the runner): nothing may run in the
  // files we are about to remove.
  if (!report.dead.count(owner)) {
    report.dead[owner] = ticks;
    report.processes += KillRunnerProcesses(owner, ticks);
  }
  if (!RemoveTree(path).ok()) return;
  ++counter;
  report.owners.insert(owner);
}

// Temporary clones and checkouts of git steps (`.clone-*`, `.tree-*` in a repository's directory
// of the cache, engine/git_cache.cc): a runner killed during a clone leaves them half made.
void RemoveGitTemps(const std::string& cache, LeftoverReport& report) {
  if (!OwnedByUs(cache, true)) return;
  std::vector<std::string> repos;
  if (DIR* d = ::opendir(cache.c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name != "." && name != "..") repos.push_back(cache + "/" + name);
    }
    ::closedir(d);
  }
  for (const auto& repo : repos) {
    if (!OwnedByUs(repo, true)) continue;
    std::vector<std::string> temps;
    if (DIR* d = ::opendir(repo.c_str())) {
      while (dirent* e = ::readdir(d)) {
        std::string name = e->d_name;
        if (StartsWith(name, kGitCloneTemp) || StartsWith(name, kGitTreeTemp)) temps.push_back(name);
      }
      ::closedir(d);
    }
    for (const auto& name : temps) RemoveDir(repo + "/" + name, report.git_temps, report);
  }
}

std::string Count(int n, const char* what) {
  return std::to_string(n) + " " + what + (n == 1 ? "" : "s");
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
  add(processes, "process");
  return "removed what dead step-runner instances (pid " + pids + ") left in " + base + ": " + what;
}

LeftoverReport RemoveDeadLeftovers(const std::string& base) {
  LeftoverReport report;
  std::vector<std::string> records, dirs;
  if (DIR* d = ::opendir(base.c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (StartsWith(name, kCgroupRecordPrefix)) records.push_back(name);
      else if (StartsWith(name, kRunnerPrefix)) dirs.push_back(name);
    }
    ::closedir(d);
  }
  // Cgroups first: their processes must be gone before the files they may use go.
  for (const auto& name : records) RemoveCgroup(base + "/" + name, report);
  for (const auto& name : dirs) {
    RemoveDir(base + "/" + name, StartsWith(name, kJobDirPrefix) ? report.job_dirs : report.temp_dirs,
              report);
  }
  RemoveGitTemps(base + "/" + kGitCacheDir, report);
  return report;
}

}  // namespace sr
