// Runner instances and the cleanup after a dead one (contract 7.1 for containers): a container's
// io.step-runner.instance label says which runner process labelled it; a runner that starts
// removes the containers of instances that are gone.
#include <unistd.h>

#include <climits>
#include <sstream>

#include <nlohmann/json.hpp>

#include "docker/docker.h"
#include "docker/internal.h"
#include "util/fd.h"

namespace sr::docker {
namespace {

using json = nlohmann::json;

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string BootId() {
  auto id = ReadFile("/proc/sys/kernel/random/boot_id");
  return id.ok() ? Trim(*id) : "unknown";
}

// The pid namespace's inode: pids mean something only inside one namespace.
std::string PidNamespace() {
  char buf[64] = {};
  ssize_t n = ::readlink("/proc/self/ns/pid", buf, sizeof buf - 1);
  std::string link(buf, n > 0 ? static_cast<size_t>(n) : 0);  // "pid:[4026531836]"
  std::string digits;
  for (char c : link) {
    if (c >= '0' && c <= '9') digits += c;
  }
  return digits.empty() ? "0" : digits;
}

// Field 22 of /proc/<pid>/stat (clock ticks since boot); "" if the process is gone.
std::string StartTime(long pid) {
  auto stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  if (!stat.ok()) return "";
  const size_t paren = stat->rfind(')');  // the command name may hold spaces and parentheses
  if (paren == std::string::npos) return "";
  std::istringstream rest(stat->substr(paren + 1));
  std::string field;
  for (int i = 3; i <= 22 && rest >> field; ++i) {
    if (i == 22) return field;
  }
  return "";
}

struct ParsedInstance {
  std::string boot, pidns, start;
  long pid = 0;
};

std::optional<ParsedInstance> Parse(const std::string& instance) {
  std::vector<std::string> parts;
  std::stringstream in(instance);
  for (std::string p; std::getline(in, p, '.');) parts.push_back(p);
  if (parts.size() != 4) return std::nullopt;
  char* end = nullptr;
  long pid = std::strtol(parts[2].c_str(), &end, 10);
  if (*end != '\0' || pid <= 0) return std::nullopt;
  return ParsedInstance{parts[0], parts[1], parts[3], pid};
}

}  // namespace

const std::string& InstanceId() {
  static const std::string id = BootId() + "." + PidNamespace() + "." +
                                std::to_string(::getpid()) + "." + StartTime(::getpid());
  return id;
}

bool InstanceAlive(const std::string& instance) {
  auto p = Parse(instance);
  if (!p) return true;  // not a label we wrote: not ours to judge
  if (p->pidns != PidNamespace()) return true;
  if (p->boot != BootId()) return false;  // the machine restarted since
  const std::string start = StartTime(p->pid);
  return !start.empty() && start == p->start;
}

std::string RemovedContainersLine(const Result<std::vector<std::string>>& removed) {
  if (!removed.ok() || removed->empty()) return "";
  std::string list;
  for (const auto& c : *removed) list += (list.empty() ? "" : ", ") + c;
  return "step-runner: removed " + std::to_string(removed->size()) +
         " container(s) of dead runner instances: " + list + "\n";
}

void RemoveDeadInstanceContainers(EventLoop& loop, const std::string& daemon_socket,
                                  std::function<void(Result<std::vector<std::string>>)> done) {
  json filters = {{"label", json::array({std::string(kInstanceLabel)})}};
  auto socket = std::make_shared<std::string>(daemon_socket);
  ApiCall(loop, daemon_socket, "GET", "/containers/json?all=1&filters=" + UrlEncode(filters.dump()), "",
          [&loop, socket, done](Result<ApiResponse> r) {
            json list = r.ok() && r->status == 200 ? json::parse(r->body, nullptr, false) : json();
            if (!list.is_array()) {
              return done(InternalError("docker: listing containers on " + *socket + " failed: " +
                                        (r.ok() ? r->body : r.error().message)));
            }
            auto removed = std::make_shared<std::vector<std::string>>();
            auto left = std::make_shared<size_t>(1);  // one for the loop below
            auto one_done = [removed, left, done] {
              if (--*left == 0) done(std::move(*removed));
            };
            for (const auto& c : list) {
              auto labels = c.value("Labels", json::object());
              if (!labels.is_object() || labels.value(kKeepLabel, "") == "true") continue;
              if (InstanceAlive(labels.value(kInstanceLabel, ""))) continue;
              const std::string id = c.value("Id", "");
              auto names = c.value("Names", json::array());
              std::string name = names.empty() || !names[0].is_string() ? "" : names[0].get<std::string>();
              if (name.starts_with("/")) name.erase(0, 1);
              ++*left;
              ApiCall(loop, *socket, "DELETE", "/containers/" + id + "?v=1&force=1", "",
                      [removed, one_done, id, name](Result<ApiResponse> d) {
                        if (d.ok() && (d->status == 204 || d->status == 404)) {
                          removed->push_back(id.substr(0, 12) + " " + name);
                        }
                        one_done();
                      });
            }
            one_done();
          });
}

}  // namespace sr::docker
