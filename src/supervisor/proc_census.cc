#include "supervisor/proc_census.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <ctime>
#include <unordered_set>

#include "supervisor/guardian.h"
#include "supervisor/proc_scan.h"

namespace sr {
namespace {

constexpr auto kMaxPause = std::chrono::milliseconds(20);
constexpr auto kMaxYield = std::chrono::milliseconds(30);

// CPU time of the calling thread: what a round cost, without the time it waited for a CPU.
Duration ThreadCpu() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return std::chrono::duration_cast<Duration>(std::chrono::seconds(ts.tv_sec) +
                                              std::chrono::nanoseconds(ts.tv_nsec));
}

// The values of `key` in an environment block ("K=V\0K=V\0..."), split at commas.
std::vector<std::string> TokensOf(std::string_view environ, std::string_view key) {
  std::vector<std::string> out;
  for (std::string_view t : EnvironTokens(environ, key)) out.emplace_back(t);
  return out;
}

}  // namespace

std::shared_ptr<ProcCensus> ProcCensus::Create(EventLoop* loop) {
  return std::shared_ptr<ProcCensus>(new ProcCensus(loop));
}

void ProcCensus::Add(Subject* s) {
  if (std::find(subjects_.begin(), subjects_.end(), s) == subjects_.end()) subjects_.push_back(s);
  // A child found to be no tree's may be this one's: a main process can fork a daemon before
  // its tree is added. Classified again when next listed.
  std::erase_if(children_, [](const auto& e) { return e.second.owner == nullptr; });
  listed_turn_ = 0;
  // Its main process is a child of the runner, not reaped yet (a tree is added right after its
  // spawn): known without a stat until Reaped(). The first look of a burst of cancels then
  // classifies only the daemons, not every job's main process as well.
  Child main;
  main.owner = s;
  main.start_ticks = s->start_ticks();
  main.main = true;
  children_.insert_or_assign(s->pgid(), main);
}

void ProcCensus::Remove(Subject* s) {
  subjects_.erase(std::remove(subjects_.begin(), subjects_.end(), s), subjects_.end());
  wanting_.erase(s);
  // Its children are no tree's now (and a tree added later may be given its address).
  std::erase_if(children_, [s](const auto& e) { return e.second.owner == s; });
}

void ProcCensus::Want(Subject* s) {
  wanting_.insert(s);
  Schedule();
}

void ProcCensus::WantLater(Subject* s, Duration after) {
  wanting_.insert(s);
  Schedule(Clock::now() + after);
}

void ProcCensus::ArmRound(Clock::time_point at, bool deferred) {
  round_at_ = at;
  deferred_ = deferred;
  round_timer_ = loop_->At(at, [weak = weak_from_this()] {
    if (auto self = weak.lock()) {
      self->round_timer_ = 0;
      self->ScheduledRound();
    }
  });
}

void ProcCensus::Schedule(Clock::time_point not_before) {
  if (!loop_ || posted_) return;
  const auto at = std::max(next_round_, not_before);
  if (round_timer_) {
    // A round put off only as a safety net (WantLater) gives way to one wanted sooner: another
    // tree's request must not wait for it. A pause or a yield to timers is kept.
    if (!deferred_ || at >= round_at_) return;
    loop_->CancelTimer(round_timer_);
    round_timer_ = 0;
  }
  // A posted task runs after the fd events and timers of this loop turn: every stop requested
  // in the same turn (a burst of Cancel RPCs) shares the round.
  if (Clock::now() >= at) {
    posted_ = true;
    loop_->Post([weak = weak_from_this()] {
      if (auto self = weak.lock()) {
        self->posted_ = false;
        self->ScheduledRound();
      }
    });
  } else {
    ArmRound(at, not_before > next_round_);
  }
}

void ProcCensus::ScheduledRound() {
  if (!YieldToTimers()) Round();
}

bool ProcCensus::YieldToTimers() {
  if (running_ || wanting_.empty() || last_cpu_ == Duration(0)) return false;
  const auto now = Clock::now();
  if (yield_from_ == Clock::time_point{}) yield_from_ = now;
  const auto due = loop_->NextTimerDue();
  if (now - yield_from_ >= kMaxYield || !due || *due > now + last_cpu_) {
    yield_from_ = {};
    return false;
  }
  // Armed after the timer that is due (timers due at the same moment fire in the order armed).
  ArmRound(*due, false);
  return true;
}

void ProcCensus::RunNow(Subject* s) {
  if (s) wanting_.insert(s);
  Round();
}

void ProcCensus::Round() {
  if (running_ || wanting_.empty()) return;
  running_ = true;
  ++rounds_;
  // Requests made while the round reports belong to the next round.
  std::unordered_set<Subject*> asking;
  asking.swap(wanting_);
  const Duration cpu = ThreadCpu();
  std::unordered_map<Subject*, Result> results;
  auto classify = [&] {
    bool refused = false;
    results = Classify(asking, refused);
    return !refused;
  };
  if (!(relief_ ? relief_->Attempt(classify) : classify())) {
    for (auto& [s, r] : results) r.complete = false;
  }
  // Only after a round for several trees (a burst): one job's steps ending one after the other
  // each get their answer at once.
  last_cpu_ = std::min<Duration>(ThreadCpu() - cpu, kMaxPause);
  next_round_ = asking.size() > 1 ? Clock::now() + last_cpu_ : Clock::time_point{};
  // Signals first, for every tree; reports after. A subject may be removed by another's report
  // (a tree that finishes): look each one up again.
  std::vector<Subject*> order(asking.begin(), asking.end());
  for (Subject* s : order) s->OnCensus(std::move(results[s]));
  for (Subject* s : order) {
    if (std::find(subjects_.begin(), subjects_.end(), s) != subjects_.end()) s->AfterCensus();
  }
  running_ = false;
  if (!wanting_.empty()) Schedule();
}

ProcCensus::Subject* ProcCensus::TokenOwner(
    const std::unordered_map<std::string_view, Subject*>& token_owner, const ProcStat& st,
    std::unordered_map<pid_t, std::pair<unsigned long long, std::vector<std::string>>>& keep,
    bool& out_of_fds) {
  auto cached = tokens_.find(st.pid);
  std::vector<std::string> read;
  const std::vector<std::string>* found = nullptr;
  if (cached != tokens_.end() && cached->second.first == st.start_ticks) {
    found = &cached->second.second;
    keep.insert(*cached);
  } else {
    // An empty read is not remembered: a process in the middle of an exec reads as empty.
    const std::string environ = ReadEnviron(st.pid, out_of_fds);
    read = TokensOf(environ, kTreeMarkerKey);
    if (!environ.empty()) keep.insert_or_assign(st.pid, std::make_pair(st.start_ticks, read));
    found = &read;
  }
  for (const std::string& t : *found) {
    auto o = token_owner.find(t);
    if (o != token_owner.end() && st.start_ticks >= o->second->start_ticks()) return o->second;
  }
  return nullptr;
}

ProcCensus::Owners ProcCensus::GatherOwners() const {
  Owners o;
  for (Subject* t : subjects_) {
    for (pid_t g : t->groups()) o.by_group.emplace(g, t);
    o.by_token.emplace(t->token(), t);
  }
  return o;
}

std::unordered_map<ProcCensus::Subject*, ProcCensus::Result> ProcCensus::Classify(
    const std::unordered_set<Subject*>& asking, bool& out_of_fds) {
  std::unordered_map<Subject*, Result> out;
  for (Subject* s : asking) out[s];
  if (subjects_.empty()) return out;
  const pid_t self = ::getpid();
  unsigned long long min_start = ULLONG_MAX;
  for (Subject* s : subjects_) min_start = std::min(min_start, s->start_ticks());
  const Owners owners = GatherOwners();
  // Pass 1: every process that started no earlier than the oldest tree (no member can be
  // older). Zombies and exiting tasks are dead already, but still links in the parent chain.
  // A mark is a subject (the process is its member) or one of these:
  Subject* const kUnknown = nullptr;
  Subject* const kOurs = reinterpret_cast<Subject*>(1);     // the runner's, no tree's
  Subject* const kForeign = reinterpret_cast<Subject*>(2);  // not a descendant of the runner
  struct Young {
    ProcStat st;
    Subject* mark = nullptr;
  };
  std::unordered_map<pid_t, Young> young;
  std::unordered_set<pid_t> old;
  auto pids = TryListPids();
  if (!pids) out_of_fds = true;
  for (pid_t pid : pids.value_or(std::vector<pid_t>{})) {
    auto st = ReadProcStat(pid, out_of_fds);
    if (!st) continue;  // gone: in neither map, so a link through it counts as unknown
    if (st->start_ticks < min_start || pid == self) {
      old.insert(pid);
    } else {
      young.emplace(pid, Young{std::move(*st), kUnknown});
    }
  }
  decltype(tokens_) tokens;
  // Pass 2, as GroupMembers always decided for one tree, now for all trees at once: a process
  // belongs to the tree its parent belongs to (children of members are members, whatever their
  // environment), else to the tree whose process group it is in, else to the tree whose marker
  // it carries. The marker means reading the environment, the expensive part: only for live
  // descendants of the runner that nothing cheaper decided, and once per process.
  auto owns = [](Subject* s, const ProcStat& st) { return st.start_ticks >= s->start_ticks(); };
  auto decide = [&](const Young& y, Subject* parent) -> Subject* {
    if (parent == kForeign) return kForeign;
    if (parent != kOurs && owns(parent, y.st)) return parent;
    if (auto g = owners.by_group.find(y.st.pgrp);
        g != owners.by_group.end() && owns(g->second, y.st)) {
      return g->second;
    }
    if (y.st.ending()) return kOurs;
    Subject* owner = TokenOwner(owners.by_token, y.st, tokens, out_of_fds);
    return owner ? owner : kOurs;
  };
  auto mark_of = [&](pid_t pid) {
    std::vector<Young*> path;
    Subject* top = kOurs;
    pid_t cur = pid;
    for (int depth = 0; depth < 256; ++depth) {
      if (cur == self) break;
      auto it = young.find(cur);
      if (it == young.end()) {
        // Older than every tree (or init): not ours. Vanished mid-pass: stay on the safe side.
        top = old.count(cur) || cur <= 1 ? kForeign : kOurs;
        break;
      }
      if (it->second.mark != kUnknown) {
        top = it->second.mark;
        break;
      }
      path.push_back(&it->second);
      cur = it->second.st.ppid;
    }
    for (auto r = path.rbegin(); r != path.rend(); ++r) top = (*r)->mark = decide(**r, top);
    return top;
  };
  // The newest live process of each group: a group is "seen" for a tree when a live process in
  // it is young enough to be one of its members (and so keeps the group id pinned).
  std::unordered_map<pid_t, unsigned long long> newest_in_group;
  for (auto& [pid, y] : young) {
    if (y.st.ending()) continue;
    auto& newest = newest_in_group[y.st.pgrp];
    newest = std::max(newest, y.st.start_ticks);
    Subject* m = mark_of(pid);
    if (m == kOurs || m == kForeign) continue;
    auto it = out.find(m);
    if (it == out.end()) continue;  // a tree that did not ask
    it->second.members.push_back({pid, y.st.ppid, y.st.pgrp, y.st.start_ticks, y.st.comm});
  }
  for (auto& [s, r] : out) {
    auto g = newest_in_group.find(s->pgid());
    r.group_seen = g != newest_in_group.end() && g->second >= s->start_ticks();
  }
  tokens_.swap(tokens);
  return out;
}

}  // namespace sr
