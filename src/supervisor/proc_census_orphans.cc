// ProcCensus::Orphans (proc_census.h): the runner's own children that belong to a tree, found
// without a pass over /proc. Its answers are kept per child (until the runner reaps it or its
// tree ends) and shared by the stops of one loop turn.
#include <unistd.h>

#include "supervisor/proc_census.h"
#include "supervisor/proc_scan.h"

namespace sr {
namespace {

// Adds `s`'s orphan `pid`, as `st` shows it, to a look's answer when it is live and no older than
// the tree (Signal pins it against pid reuse).
void AddIfLive(ProcCensus::Subject* s, pid_t pid, ProcStat& st,
               std::vector<ProcCensus::Found>& out) {
  if (st.ending() || st.start_ticks < s->start_ticks()) return;
  out.push_back({pid, st.ppid, st.pgrp, st.start_ticks, std::move(st.comm)});
}

}  // namespace

ProcCensus::Child ProcCensus::ClassifyChild(const Owners& owners, const ProcStat& st,
                                            bool& out_of_fds) {
  // The same rules as a round's, for a process whose parent is the runner: the tree whose
  // process group it is in, else the tree whose marker it carries. An ending process never
  // runs again: "no tree's" is its answer for good.
  Child c;
  c.start_ticks = st.start_ticks;
  if (st.ending()) return c;
  if (auto g = owners.by_group.find(st.pgrp);
      g != owners.by_group.end() && st.start_ticks >= g->second->start_ticks()) {
    c.owner = g->second;
  } else {
    c.owner = TokenOwner(owners.by_token, st, tokens_, out_of_fds);
    // An environment that read as empty (a process in the middle of an exec) is not kept by
    // TokenOwner, and "no tree's" is then not an answer to keep either.
    c.settled = c.owner || tokens_.count(st.pid);
  }
  c.main = c.owner && st.pid == c.owner->pgid();
  return c;
}

std::optional<std::vector<ProcCensus::Found>> ProcCensus::Orphans(Subject* s) {
  // Short of fds, the relief's way (the runner at its fd limit still finds the daemons at once,
  // and its cancel line counts them); refused even then, the census's round answers.
  std::optional<std::vector<Found>> out;
  auto look = [&] {
    bool refused = false;
    out = LookForOrphans(s, refused);
    return !refused;
  };
  if (!(relief_ ? relief_->Attempt(look) : look())) return std::nullopt;
  return out;
}

std::optional<std::vector<ProcCensus::Found>> ProcCensus::LookForOrphans(Subject* s,
                                                                         bool& refused) {
  const uint64_t turn = loop_ ? loop_->turn() : 0;
  if (turn != 0 && turn == listed_turn_) return KnownOrphans(s, refused);
  // The kernel re-parents an orphan to the subreaper's first live thread, the main thread
  // (find_new_reaper): its children file lists every orphan, whichever thread started the tree.
  const pid_t self = ::getpid();
  auto children = ReadChildren(self, 1, refused);
  if (!children) return std::nullopt;
  const uint64_t call = ++orphan_calls_;
  std::optional<Owners> owners;  // gathered only if a child needs classifying
  bool whole = true;             // every listed child has an answer kept
  std::vector<Found> out;
  for (pid_t pid : *children) {
    auto [it, fresh] = children_.try_emplace(pid);
    it->second.listed = call;
    // Another tree's child, or no tree's: nothing to read (the one cost that grew with the
    // number of trees, a stat per child per call).
    // Its own main process is never an orphan: no stat either (its pid is not reused before the
    // runner reaps it, and Reaped() drops the entry then).
    if (!fresh && (it->second.owner != s || it->second.main)) continue;
    auto st = ReadProcStat(pid, refused);
    if (!st) {
      children_.erase(it);  // reaped meanwhile (or unreadable): classified again if listed
      continue;
    }
    if (fresh || st->start_ticks != it->second.start_ticks) {
      bool short_of_fds = false;
      const Child c = ClassifyChild(owners ? *owners : owners.emplace(GatherOwners()), *st,
                                    short_of_fds);
      // Classified without its environment: not kept, so that it is read next time.
      refused = refused || short_of_fds;
      if (short_of_fds || !c.settled) {
        children_.erase(it);
        whole = false;
        continue;
      }
      it->second = c;
      it->second.listed = call;
    }
    if (it->second.owner == s && !it->second.main) AddIfLive(s, pid, *st, out);
  }
  // Children no longer listed were reaped by someone else: forget them.
  if (children_.size() > children->size()) {
    std::erase_if(children_, [call](const auto& e) { return e.second.listed != call; });
  }
  listed_turn_ = whole && !refused ? turn : 0;
  orphans_indexed_ = false;
  return out;
}

std::vector<ProcCensus::Found> ProcCensus::KnownOrphans(Subject* s, bool& refused) {
  // Each tree's orphans, gathered from the kept answers once per listing (a pass over 400
  // answers per call would cost a quarter of what the listing did).
  if (!orphans_indexed_) {
    orphans_indexed_ = true;
    orphans_by_owner_.clear();
    for (const auto& [pid, c] : children_) {
      if (c.owner && !c.main) orphans_by_owner_[c.owner].push_back(pid);
    }
  }
  std::vector<Found> out;
  auto own = orphans_by_owner_.find(s);
  if (own == orphans_by_owner_.end()) return out;
  for (pid_t pid : own->second) {
    // Reaped since (Reaped() dropped it), or its tree's answers went with the tree.
    auto it = children_.find(pid);
    if (it == children_.end() || it->second.owner != s) continue;
    bool short_of_fds = false;
    auto st = ReadProcStat(pid, short_of_fds);
    refused = refused || short_of_fds;
    if (short_of_fds) continue;  // the relief tries again, from these same answers
    if (!st || st->start_ticks != it->second.start_ticks) {
      children_.erase(it);  // gone, or its pid names another process now: the next listing decides
      continue;
    }
    AddIfLive(s, pid, *st, out);
  }
  return out;
}

}  // namespace sr
