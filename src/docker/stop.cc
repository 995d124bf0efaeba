// The stop at the job's end: find the job's containers, stop each like `docker stop` (stop
// signal, SIGKILL when the grace runs out), record how each ended, remove it with its anonymous
// volumes, then remove the job's networks. Every container moves on its own, in parallel.
#include <csignal>

#include <nlohmann/json.hpp>

#include "docker/docker.h"
#include "docker/internal.h"
#include "docker/proxy.h"

namespace sr::docker {

using json = nlohmann::json;

// How long past the grace the daemon gets to answer the kills, waits and removals before the
// stop gives up on it (a hung daemon must not hold the job's end forever).
constexpr Duration kDaemonSlack = std::chrono::seconds(15);

google::protobuf::Timestamp Now() {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                      WallNow().time_since_epoch()).count();
  google::protobuf::Timestamp t;
  t.set_seconds(ns / 1'000'000'000);
  t.set_nanos(static_cast<int32_t>(ns % 1'000'000'000));
  return t;
}

struct DockerGuard::StopRun : std::enable_shared_from_this<StopRun> {
  struct Item {
    ContainerRecord record;
    bool running = false, killed = false, ended = false, done = false;
    int stop_signo = SIGTERM;
    std::string stop_signal = "SIGTERM";
    EventLoop::TimerId kill_timer = 0;
  };

  EventLoop& loop;
  std::string socket, job_id;
  LogLine log;
  Clock::time_point kill_at;
  bool forced = false;
  std::shared_ptr<std::vector<std::string>> networks;
  std::function<void(std::vector<ContainerRecord>)> done;
  std::vector<Item> items;
  size_t open_items = 0;
  std::vector<std::shared_ptr<ApiRequest>> calls;
  EventLoop::TimerId give_up_timer = 0;
  bool finished = false;

  StopRun(EventLoop& l, std::string s, std::string j, LogLine lg)
      : loop(l), socket(std::move(s)), job_id(std::move(j)), log(std::move(lg)) {}

  void Call(const std::string& method, const std::string& target, ApiDone cb) {
    calls.push_back(ApiCall(loop, socket, method, target, "", std::move(cb)));
  }

  void Begin() {
    auto self = shared_from_this();
    give_up_timer = loop.At(kill_at + kDaemonSlack, [self] {
      self->give_up_timer = 0;
      self->log("step-runner: docker: the daemon did not answer in time; giving up on the rest");
      self->Finish();
    });
    json filters = {{"label", json::array({std::string(kJobLabel) + "=" + job_id,
                                           std::string(kInstanceLabel) + "=" + InstanceId()})}};
    Call("GET", "/containers/json?all=1&filters=" + UrlEncode(filters.dump()),
         [self](Result<ApiResponse> r) { self->Listed(std::move(r)); });
  }

  void Listed(Result<ApiResponse> r) {
    json list = r.ok() && r->status == 200 ? json::parse(r->body, nullptr, false) : json();
    if (!list.is_array()) {
      log("step-runner: docker: listing the job's containers failed: " +
          (r.ok() ? "status " + std::to_string(r->status) + " " + r->body : r.error().message));
      return RemoveNetworks();
    }
    for (const auto& c : list) {
      Item item;
      item.record.set_id(c.value("Id", ""));
      auto names = c.value("Names", json::array());
      std::string name = names.empty() || !names[0].is_string() ? "" : names[0].get<std::string>();
      item.record.set_name(name.starts_with("/") ? name.substr(1) : name);
      item.record.set_image(c.value("Image", ""));
      item.running = c.value("State", "") == "running";
      auto labels = c.value("Labels", json::object());
      item.record.set_kept(labels.is_object() && labels.value(kKeepLabel, "") == "true");
      items.push_back(std::move(item));
    }
    size_t running = 0, kept = 0;
    for (const auto& i : items) {
      if (i.record.kept()) ++kept;
      else if (i.running) ++running;
    }
    if (!items.empty()) {
      const Duration grace = std::max(Duration(0), kill_at - Clock::now());
      log("step-runner: docker: stopping " + std::to_string(running) + " running container(s) of" +
          " the job (" + std::to_string(items.size() - kept - running) + " already ended, " +
          std::to_string(kept) + " kept); " +
          (forced ? std::string("forced: SIGKILL now")
                  : "stop signal, SIGKILL after " +
                        FormatDuration(std::chrono::ceil<std::chrono::milliseconds>(grace))));
    }
    open_items = items.size();
    for (size_t i = 0; i < items.size(); ++i) StartItem(i);
    if (items.empty()) RemoveNetworks();
  }

  std::string Target(size_t i, const std::string& rest) {
    return "/containers/" + items[i].record.id() + rest;
  }

  void StartItem(size_t i) {
    if (items[i].record.kept()) return ItemDone(i);
    auto self = shared_from_this();
    Call("GET", Target(i, "/json"), [self, i](Result<ApiResponse> r) { self->Inspected(i, r); });
  }

  void Inspected(size_t i, const Result<ApiResponse>& r) {
    Item& item = items[i];
    json info = r.ok() && r->status == 200 ? json::parse(r->body, nullptr, false) : json();
    if (!info.is_object()) return Remove(i);  // gone already (--rm) or unreadable: remove anyway
    auto config = info.value("Config", json::object());
    item.stop_signal = NormalizeSignal(config.value("StopSignal", ""), &item.stop_signo);
    auto state = info.value("State", json::object());
    item.running = state.value("Running", false);
    if (!item.running) {
      item.record.set_ending(proto::Termination::ProcessRecord::exited);
      item.record.set_exit_code(state.value("ExitCode", 0));
      return Remove(i);
    }
    auto self = shared_from_this();
    const bool now = forced || Clock::now() >= kill_at;
    item.record.set_signal(now ? "SIGKILL" : item.stop_signal);
    *item.record.mutable_signal_time() = Now();
    item.killed = now;
    Call("POST", Target(i, "/kill?signal=" + UrlEncode(item.record.signal())),
         [self, i](Result<ApiResponse>) { self->AwaitEnd(i); });
    if (!now) item.kill_timer = loop.At(kill_at, [self, i] { self->Kill(i); });
  }

  void AwaitEnd(size_t i) {
    auto self = shared_from_this();
    Call("POST", Target(i, "/wait?condition=not-running"),
         [self, i](Result<ApiResponse> r) { self->Ended(i, r); });
  }

  void Kill(size_t i) {
    Item& item = items[i];
    item.kill_timer = 0;
    if (item.ended || item.killed) return;
    item.killed = true;
    Call("POST", Target(i, "/kill?signal=SIGKILL"), [](Result<ApiResponse>) {});
  }

  void Ended(size_t i, const Result<ApiResponse>& r) {
    Item& item = items[i];
    if (item.ended) return;
    item.ended = true;
    if (item.kill_timer) loop.CancelTimer(item.kill_timer);
    item.kill_timer = 0;
    *item.record.mutable_end_time() = Now();
    json body = r.ok() && r->status == 200 ? json::parse(r->body, nullptr, false) : json();
    const int code = body.is_object() ? body.value("StatusCode", -1) : -1;
    using P = proto::Termination::ProcessRecord;
    if (code >= 0) item.record.set_exit_code(code);
    if (item.killed && (code == 128 + SIGKILL || code < 0)) {
      item.record.set_ending(forced ? P::killed_forced : P::killed_after_grace);
    } else if (code == 128 + item.stop_signo) {
      item.record.set_ending(P::ended_by_signal);
    } else if (code >= 0) {
      item.record.set_ending(P::exited);
    }
    Remove(i);
  }

  void Remove(size_t i) {
    auto self = shared_from_this();
    // 404: gone; 409: the daemon is already removing it (--rm). Either way it will not stay.
    Call("DELETE", Target(i, "?v=1&force=1"), [self, i](Result<ApiResponse> r) {
      if (!r.ok() || (r->status != 204 && r->status != 404 && r->status != 409)) {
        self->log("step-runner: docker: removing container " + self->items[i].record.id() +
                  " failed: " + (r.ok() ? r->body : r.error().message));
      }
      self->ItemDone(i);
    });
  }

  void ItemDone(size_t i) {
    Item& item = items[i];
    if (item.done) return;
    item.done = true;
    log("step-runner: " + DescribeRecord(item.record));
    if (--open_items == 0) RemoveNetworks();
  }

  void RemoveNetworks() {
    if (finished) return;
    auto ids = networks ? *networks : std::vector<std::string>{};
    if (ids.empty()) return Finish();
    auto left = std::make_shared<size_t>(ids.size());
    auto self = shared_from_this();
    for (const auto& id : ids) {
      Call("DELETE", "/networks/" + id, [self, id, left](Result<ApiResponse> r) {
        if (r.ok() && (r->status == 204 || r->status == 200)) {
          self->log("step-runner: docker: removed network " + id.substr(0, 12));
        } else if (!r.ok() || r->status != 404) {
          self->log("step-runner: docker: removing network " + id.substr(0, 12) + " failed: " +
                    (r.ok() ? r->body : r.error().message));
        }
        if (--*left == 0) self->Finish();
      });
    }
  }

  void ForceNow() {
    forced = true;
    kill_at = Clock::now();
    for (size_t i = 0; i < items.size(); ++i) {
      if (items[i].kill_timer) {
        loop.CancelTimer(items[i].kill_timer);
        Kill(i);
      }
    }
  }

  void Finish() {
    if (finished) return;
    finished = true;
    if (give_up_timer) loop.CancelTimer(give_up_timer);
    for (auto& item : items) {
      if (item.kill_timer) loop.CancelTimer(item.kill_timer);
      item.kill_timer = 0;
    }
    for (auto& c : calls) Abort(c);  // long waits of a daemon that gave no answer
    calls.clear();
    std::vector<ContainerRecord> records;
    for (auto& item : items) records.push_back(item.record);
    auto cb = std::move(done);
    if (cb) cb(std::move(records));
  }
};

std::string DescribeRecord(const ContainerRecord& r) {
  using P = proto::Termination::ProcessRecord;
  std::string s = "docker: container " + r.id().substr(0, 12) + " " + r.name() + " (image " +
                  r.image() + "): ";
  if (r.kept()) return s + "kept running (labelled " + kKeepLabel + "=true)";
  switch (r.ending()) {
    case P::exited:
      s += (r.signal().empty() ? "had exited" : "exited after " + r.signal()) + " with code " +
           std::to_string(r.exit_code());
      break;
    case P::ended_by_signal: s += "ended by " + r.signal(); break;
    case P::killed_after_grace: s += "killed (SIGKILL) after the grace"; break;
    case P::killed_forced: s += "killed (SIGKILL, forced)"; break;
    default: s += "already gone"; break;
  }
  return s + "; removed";
}

DockerGuard::DockerGuard(EventLoop& loop, GuardOptions options)
    : loop_(loop),
      options_(std::move(options)),
      networks_(std::make_shared<std::vector<std::string>>()) {}

void DockerGuard::Stop(Duration remaining_grace, bool forced,
                       std::function<void(std::vector<ContainerRecord>)> done) {
  if (proxy_) proxy_->Shutdown();
  stop_ = std::make_shared<StopRun>(loop_, options_.daemon_socket, options_.job_id, options_.log);
  stop_->kill_at = Clock::now() + std::max(Duration(0), remaining_grace);
  stop_->forced = forced;
  stop_->networks = networks_;
  stop_->done = std::move(done);
  if (*creates_ == 0 && networks_->empty()) {
    auto run = stop_;
    loop_.After(Duration(0), [run] { run->Finish(); });
    return;
  }
  stop_->Begin();
}

void DockerGuard::Force() {
  if (stop_ && !stop_->finished) stop_->ForceNow();
}

}  // namespace sr::docker
