// The supervisor's one implementation (supervisor.h), shared by its two source files:
// supervisor.cc (start, reaping, shutdown) and supervisor_spawn.cc (a tree's start: its leaf,
// pipes and spawn). Internal to src/supervisor.
#pragma once

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "supervisor/cgroup.h"
#include "supervisor/controllers.h"
#include "supervisor/proc_census.h"
#include "supervisor/proc_scan.h"
#include "supervisor/spawn.h"
#include "supervisor/supervisor.h"
#include "supervisor/tree.h"

namespace sr {

/// A random number per Supervisor, part of every marker and leaf name: a marker or leaf left by
/// an earlier Supervisor in the same process must never match a new tree, and tree ids alone
/// restart with each Supervisor.
uint64_t InstanceNonce();

class SupervisorImpl final : public Supervisor, public TreeOwner {
 public:
  SupervisorImpl(EventLoop& loop, Options options)
      : loop_(loop),
        options_(std::move(options)),
        spawner_(options_.clone3),
        census_(ProcCensus::Create(&loop)),
        fd_relief_(std::make_shared<FdRelief>([this] { ReleaseSpareFds(); })) {
    census_->set_fd_relief(fd_relief_);
  }
  ~SupervisorImpl() override;

  Status Init();
  Result<std::shared_ptr<ProcessTree>> Spawn(const ProcessSpec& spec, OutputCallback on_output,
                                             ExitCallback on_exit) override;
  std::string mechanism() const override;
  Controllers& controllers() override { return *controllers_; }
  size_t live_trees() const override { return trees_.size(); }
  void KillAll() override;

  void ReapNow() override;
  void Reap(bool always);
  void TreeDelivered(uint64_t id) override {
    trees_.erase(id);
    rusage_.erase(id);
  }
  uint64_t census_rounds() const override { return census_->rounds(); }
  void ReleaseSpareFds() override {
    close_later_.clear();
    spare_pipes_.clear();
    for (auto& leaf : idle_leaves_) leaf->CloseStateFds();
  }
  void CloseLater(UniqueFd fd) override {
    close_later_.push_back(std::move(fd));
    // A busy `serve` ends trees faster than it starts them: never hold more than a few.
    if (close_later_.size() > kCloseLaterMax) close_later_.clear();
    // Nor for long when no spawn follows: an idle server keeps no fd of an ended tree (the
    // soak compares an idle server's fds before and after). The timer is left armed across the
    // flushes after spawns (arming and cancelling one per step costs more than it saves): what
    // is put off is closed by the next spawn or within kCloseLaterFor, whichever comes first.
    if (close_timer_ == 0) {
      close_timer_ = loop_.At(Clock::now() + kCloseLaterFor, [this] {
        close_timer_ = 0;
        close_later_.clear();
      });
    }
  }

 private:
  std::vector<std::shared_ptr<TreeImpl>> Snapshot() const;
  void KillOrphans();
  /// A pipe for a child's output: one made ahead if there is one, else a new one.
  Status TakePipe(UniqueFd& read_end, UniqueFd& write_end, CgroupLeaf* leaf);
  /// Runs `attempt`; when it is refused for lack of fds (kExhausted), the fds kept only for speed
  /// give way (ReleaseSpareFds, and the state files of `leaf`, the tree's own leaf) and it runs
  /// once more: what a step needs is never refused for them.
  template <class Attempt>
  auto WithFdsToSpare(CgroupLeaf* leaf, const Attempt& attempt) {
    auto result = attempt();
    if (result.ok() || result.error().kind != Error::Kind::kExhausted) return result;
    ReleaseSpareFds();
    if (leaf) leaf->CloseStateFds();
    return attempt();
  }
  /// After a spawn, while its child runs: the next spawn's pipes, and the closes put off.
  void WorkAfterSpawn(size_t pipes);
  void DebugLog(const std::string& message) const {
    if (options_.debug_log) options_.debug_log(message);
  }

  EventLoop& loop_;
  Options options_;
  Spawner spawner_;
  // The fallback's one look at /proc per round, shared by every tree (proc_census.h). Shared:
  // a tree's members may outlive the supervisor in a caller's handle.
  std::shared_ptr<ProcCensus> census_;
  // What a stop short of fds lets go (ReleaseSpareFds), and the reserve its reads borrow: shared
  // with the census and every tree's members, which may outlive the supervisor (Detach).
  std::shared_ptr<FdRelief> fd_relief_;
  const uint64_t instance_ = InstanceNonce();
  const std::string self_ = std::to_string(::getpid());  // the runner's pid, in every marker
  uint64_t next_tree_id_ = 1;
  UniqueFd sigchld_fd_;
  EventLoop::WatchId sigchld_watch_ = 0;
  std::unique_ptr<CgroupRoot> cgroup_;
  // Leaves of trees that ended cleanly, empty, for the next trees: a leaf's mkdir and rmdir
  // cost more than the rest of the runner's work for a trivial step (docs/performance.md).
  // Only while the runner's directory gives its leaves no controller (nothing a step could set
  // on its own leaf, like memory.max, can then reach the next tree).
  std::vector<std::unique_ptr<CgroupLeaf>> idle_leaves_;
  bool leaf_reuse_ = false;
  std::unique_ptr<Controllers> controllers_;
  std::map<uint64_t, std::shared_ptr<TreeImpl>> trees_;
  std::map<uint64_t, std::shared_ptr<ResourceUsage>> rusage_;  // wait4 totals per live tree
  // Work kept off the path between one tree's end and the next tree's start, done after the
  // next spawn instead (docs/performance.md, issue 17 round 3): pipes made ahead, each pair
  // (read, write) close-on-exec, and the read ends of ended trees' pipes, closed then.
  static constexpr size_t kSparePipes = 2;
  // Idle leaves kept for reuse: about the number of trees that start and end together. They
  // are let go (rmdir, their fds closed) once no tree has ended into one for kIdleLeavesFor: an
  // idle server keeps no cgroup and no fd of ended trees, a busy one reuses them.
  static constexpr size_t kIdleLeaves = 16;
  static constexpr auto kIdleLeavesFor = std::chrono::seconds(1);
  EventLoop::TimerId leaves_timer_ = 0;
  uint64_t leaves_kept_ = 0;  // leaves kept so far: the timer lets go only after a quiet spell
  void KeepIdleLeaf(std::unique_ptr<CgroupLeaf> leaf);
  void ArmLeavesTimer();
  static constexpr size_t kCloseLaterMax = 8;
  static constexpr auto kCloseLaterFor = std::chrono::milliseconds(100);
  EventLoop::TimerId close_timer_ = 0;  // closes what is put off, at most kCloseLaterFor after
  std::vector<std::pair<UniqueFd, UniqueFd>> spare_pipes_;
  std::vector<UniqueFd> close_later_;
  bool reaping_ = false;
  bool reaped_once_ = false;  // the first reap looks even without a SIGCHLD (see Reap)
  bool initialized_ = false;
};

}  // namespace sr
