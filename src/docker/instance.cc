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

namespace {

// What one kind of object (containers, networks) of a dead instance is: where to list them,
// the DELETE path and the description of one.
struct DoomedKind {
  std::string name;  // "containers", for the error
  std::string list_path;
  std::function<std::pair<std::string, std::string>(const json&)> delete_path_and_description;
};

// Lists `kind`'s objects of dead instances and removes them all; `done` gets what was removed.
void RemoveDead(EventLoop& loop, std::shared_ptr<std::string> socket, DoomedKind kind,
                std::function<void(Result<std::vector<std::string>>)> done) {
  const std::string list_path = kind.list_path;
  ApiCall(loop, *socket, "GET", list_path, "",
          [&loop, socket, kind = std::move(kind), done](Result<ApiResponse> r) {
            json list = r.ok() && r->status == 200 ? json::parse(r->body, nullptr, false) : json();
            if (!list.is_array()) {
              return done(InternalError("docker: listing " + kind.name + " on " + *socket +
                                        " failed: " + (r.ok() ? r->body : r.error().message)));
            }
            std::vector<std::pair<std::string, std::string>> doomed;
            for (const auto& item : list) {
              if (item.is_object() && OfADeadInstance(item)) {
                doomed.push_back(kind.delete_path_and_description(item));
              }
            }
            DeleteAll(loop, *socket, std::move(doomed),
                      [done](std::vector<std::string> gone) { done(std::move(gone)); });
          });
}

}  // namespace

void RemoveDeadInstanceLeftovers(EventLoop& loop, const std::string& daemon_socket,
                                 std::function<void(Result<DeadInstanceCleanup>)> done) {
  auto socket = std::make_shared<std::string>(daemon_socket);
  DoomedKind containers{"containers", "/containers/json?all=1&filters=" + InstanceFilter(),
                        [](const json& c) {
                          const std::string id = c.value("Id", "");
                          auto names = c.value("Names", json::array());
                          std::string name = names.empty() || !names[0].is_string()
                                                 ? ""
                                                 : names[0].get<std::string>();
                          if (name.starts_with("/")) name.erase(0, 1);
                          return std::make_pair("/containers/" + id + "?v=1&force=1",
                                                id.substr(0, 12) + " " + name);
                        }};
  DoomedKind networks{"networks", "/networks?filters=" + InstanceFilter(), [](const json& n) {
                        const std::string id = n.value("Id", "");
                        return std::make_pair("/networks/" + id,
                                              id.substr(0, 12) + " " + n.value("Name", ""));
                      }};
  // Networks second: the daemon refuses to remove one that a container still uses.
  RemoveDead(loop, socket, std::move(containers),
             [&loop, socket, networks = std::move(networks), done](
                 Result<std::vector<std::string>> gone_containers) mutable {
               if (!gone_containers.ok()) return done(gone_containers.error());
               auto cleanup = std::make_shared<DeadInstanceCleanup>();
               cleanup->containers = std::move(*gone_containers);
               RemoveDead(loop, socket, std::move(networks),
                          [cleanup, done](Result<std::vector<std::string>> gone_networks) {
                            if (!gone_networks.ok()) return done(gone_networks.error());
                            cleanup->networks = std::move(*gone_networks);
                            done(std::move(*cleanup));
                          });
             });
}

}  // namespace sr::docker
