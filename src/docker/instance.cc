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

namespace {

// True for an object whose labels name a dead instance and do not ask to be kept.
bool OfADeadInstance(const json& item) {
  auto labels = item.value("Labels", json::object());
  if (!labels.is_object() || labels.value(kKeepLabel, "") == "true") return false;
  return !InstanceAlive(labels.value(kInstanceLabel, ""));
}

std::string InstanceFilter() {
  json filters = {{"label", json::array({std::string(kInstanceLabel)})}};
  return UrlEncode(filters.dump());
}

// DELETE of every listed path; `done` once all have answered, with the descriptions of those
// that are gone (204, or 404: gone already).
void DeleteAll(EventLoop& loop, const std::string& socket,
               std::vector<std::pair<std::string, std::string>> paths_and_descriptions,
               std::function<void(std::vector<std::string>)> done) {
  auto removed = std::make_shared<std::vector<std::string>>();
  auto left = std::make_shared<size_t>(paths_and_descriptions.size() + 1);
  auto one_done = [removed, left, done] {
    if (--*left == 0) done(std::move(*removed));
  };
  for (auto& entry : paths_and_descriptions) {
    ApiCall(loop, socket, "DELETE", entry.first, "",
            [removed, one_done, description = entry.second](Result<ApiResponse> d) {
              const bool gone = d.ok() && (d->status == 204 || d->status == 200 || d->status == 404);
              if (gone) removed->push_back(description);
              one_done();
            });
  }
  one_done();
}

}  // namespace

bool DeadInstanceCleanup::empty() const { return containers.empty() && networks.empty(); }

std::string DeadInstanceCleanup::Line() const {
  std::string what, list;
  if (!containers.empty()) what = std::to_string(containers.size()) + " container(s)";
  if (!networks.empty()) {
    what += (what.empty() ? "" : " and ") + std::to_string(networks.size()) + " network(s)";
  }
  for (const auto& c : containers) list += (list.empty() ? "" : ", ") + c;
  for (const auto& n : networks) list += (list.empty() ? "network " : ", network ") + n;
  return "removed " + what + " of dead runner instances: " + list;
}

void RemoveDeadInstanceLeftovers(EventLoop& loop, const std::string& daemon_socket,
                                 std::function<void(Result<DeadInstanceCleanup>)> done) {
  auto socket = std::make_shared<std::string>(daemon_socket);
  auto cleanup = std::make_shared<DeadInstanceCleanup>();
  // Networks second: the daemon refuses to remove one that a container still uses.
  auto networks = [&loop, socket, cleanup, done] {
    ApiCall(loop, *socket, "GET", "/networks?filters=" + InstanceFilter(), "",
            [&loop, socket, cleanup, done](Result<ApiResponse> r) {
              json list = r.ok() && r->status == 200 ? json::parse(r->body, nullptr, false) : json();
              if (!list.is_array()) {
                return done(InternalError("docker: listing networks on " + *socket + " failed: " +
                                          (r.ok() ? r->body : r.error().message)));
              }
              std::vector<std::pair<std::string, std::string>> doomed;
              for (const auto& n : list) {
                if (!n.is_object() || !OfADeadInstance(n)) continue;
                const std::string id = n.value("Id", "");
                doomed.emplace_back("/networks/" + id, id.substr(0, 12) + " " + n.value("Name", ""));
              }
              DeleteAll(loop, *socket, std::move(doomed), [cleanup, done](std::vector<std::string> gone) {
                cleanup->networks = std::move(gone);
                done(std::move(*cleanup));
              });
            });
  };
  ApiCall(loop, daemon_socket, "GET", "/containers/json?all=1&filters=" + InstanceFilter(), "",
          [&loop, socket, cleanup, done, networks](Result<ApiResponse> r) {
            json list = r.ok() && r->status == 200 ? json::parse(r->body, nullptr, false) : json();
            if (!list.is_array()) {
              return done(InternalError("docker: listing containers on " + *socket + " failed: " +
                                        (r.ok() ? r->body : r.error().message)));
            }
            std::vector<std::pair<std::string, std::string>> doomed;
            for (const auto& c : list) {
              if (!c.is_object() || !OfADeadInstance(c)) continue;
              const std::string id = c.value("Id", "");
              auto names = c.value("Names", json::array());
              std::string name = names.empty() || !names[0].is_string() ? "" : names[0].get<std::string>();
              if (name.starts_with("/")) name.erase(0, 1);
              doomed.emplace_back("/containers/" + id + "?v=1&force=1", id.substr(0, 12) + " " + name);
            }
            DeleteAll(loop, *socket, std::move(doomed), [cleanup, networks](std::vector<std::string> gone) {
              cleanup->containers = std::move(gone);
              networks();
            });
          });
}

}  // namespace sr::docker
