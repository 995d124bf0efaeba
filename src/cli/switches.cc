#include "cli/switches.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

extern char** environ;

namespace sr::cli {

std::map<std::string, std::string> ProcessEnv() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string kv(*e);
    auto eq = kv.find('=');
    if (eq == std::string::npos) continue;
    env.emplace(kv.substr(0, eq), kv.substr(eq + 1));
  }
  return env;
}

Switches ReadSwitches(std::map<std::string, std::string> env) {
  Switches s;
  auto value = [&env](const char* key) {
    auto it = env.find(key);
    return it == env.end() ? std::string() : it->second;
  };
  if (!value("TMPDIR").empty()) s.temp_base = value("TMPDIR");
  s.cgroup_off = value("STEP_RUNNER_CGROUP") == "off";
  s.debug = env.count("STEP_RUNNER_DEBUG") > 0;
  s.controllers_off = value("STEP_RUNNER_CONTROLLERS") == "off";
  s.full_accounting = value("STEP_RUNNER_ACCOUNTING") == "full";
  s.guardian_off = value("STEP_RUNNER_GUARDIAN") == "off";
  s.env = std::move(env);
  return s;
}

std::string AbsoluteTempBase(const std::string& value, const std::string& cwd) {
  if (value.empty() || value.front() == '/' || cwd.empty()) return value;
  return (cwd == "/" ? "" : cwd) + "/" + value;
}

void MakeTempBaseAbsolute() {
  const char* value = std::getenv("TMPDIR");
  if (value == nullptr || *value == '\0' || *value == '/') return;
  // getcwd fails when the cwd was removed: the value stays, and CheckTempBase names it.
  std::vector<char> buf(PATH_MAX + 1);
  if (::getcwd(buf.data(), buf.size()) == nullptr) return;
  ::setenv("TMPDIR", AbsoluteTempBase(value, buf.data()).c_str(), 1);
}

Status CheckTempBase(const Switches& switches) {
  const std::string& dir = switches.temp_base;
  struct stat st {};
  int err = 0;
  if (::stat(dir.c_str(), &st) != 0) {
    err = errno;
  } else if (!S_ISDIR(st.st_mode)) {
    err = ENOTDIR;
  } else if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    err = errno;
  }
  if (err == 0) return Ok();
  auto set = switches.env.find("TMPDIR");
  const bool from_env = set != switches.env.end() && !set->second.empty();
  return InvalidError((from_env ? "TMPDIR " + dir : dir + " (TMPDIR is not set)") + ": " +
                      std::strerror(err) + " (the runner keeps its jobs' files there)");
}

Supervisor::Options SupervisorOptionsFor(const Switches& switches) {
  Supervisor::Options o;
  if (switches.cgroup_off) o.mechanism = Supervisor::Options::Mechanism::kProcessGroup;
  o.controllers = !switches.controllers_off;
  o.full_accounting = switches.full_accounting;
  o.temp_base = switches.temp_base;
  if (switches.debug) {
    o.debug_log = [](const std::string& line) { std::fprintf(stderr, "step-runner: %s\n", line.c_str()); };
  }
  if (switches.cgroup_off && o.debug_log) {
    o.debug_log("supervisor: STEP_RUNNER_CGROUP=off, using process group + subreaper");
  }
  return o;
}

}  // namespace sr::cli
