// A tree's start (SupervisorImpl::Spawn): its cgroup leaf (a recycled one if it may), its output
// pipes (made ahead after the previous spawn), the spawn itself, and its members.
#include "supervisor/supervisor_impl.h"

#include <fcntl.h>

#include <algorithm>
#include <cerrno>

#include "supervisor/members.h"
#include "supervisor/proc_scan.h"

namespace sr {
namespace {

std::string JoinArgv(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    if (!out.empty()) out += ' ';
    out += a;
    if (out.size() >= 256) break;
  }
  if (out.size() > 256) out.resize(256);
  return out;
}

// A close-on-exec pipe for a child's output.
Status MakePipe(UniqueFd& read_end, UniqueFd& write_end) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return ErrnoError("pipe2", errno);
  read_end.Reset(fds[0]);
  write_end.Reset(fds[1]);
  return Ok();
}

}  // namespace

Result<std::shared_ptr<ProcessTree>> SupervisorImpl::Spawn(const ProcessSpec& spec,
                                                           OutputCallback on_output,
                                                           ExitCallback on_exit) {
  if (spec.argv.empty()) return InvalidError("spawn: empty argv");
  const uint64_t id = next_tree_id_++;
  const std::string tree_name = std::to_string(instance_) + "-" + std::to_string(id);
  const std::string token = self_ + "." + tree_name;
  TreeImpl::Config config;
  config.loop = &loop_;
  config.owner = this;
  config.id = id;
  config.command = JoinArgv(spec.argv);
  config.leftovers = spec.leftovers.value_or(StopPolicy{SIGTERM, options_.leftover_grace});
  config.leftover_grace = options_.leftover_grace;
  config.on_output = spec.capture_output ? std::move(on_output) : nullptr;
  if (config.on_output) {
    config.move_output = spec.move_output;
    if (spec.output_paused && spec.when_output_room) {
      config.output_paused = spec.output_paused;
      config.when_output_room = spec.when_output_room;
    }
  }
  auto usage = std::make_shared<ResourceUsage>();
  config.on_exit = [usage, on_exit = std::move(on_exit)](TreeExit e) {
    e.rusage = *usage;
    if (on_exit) on_exit(std::move(e));
  };
  auto tree = std::make_shared<TreeImpl>(std::move(config));

  const std::vector<std::string>& env = spec.environment();
  auto path = LookPath(spec.argv[0], EnvValue(env, "PATH").value_or(""));
  if (!path.ok()) {
    trees_[id] = tree;
    rusage_[id] = usage;
    tree->FailToStart(path.error());
    return std::shared_ptr<ProcessTree>(tree);
  }

  std::unique_ptr<CgroupLeaf> leaf;
  bool recyclable = false;
  if (cgroup_) {
    const std::string in = spec.resources ? spec.resources->v2_dir() : "";
    // Only leaves directly in the runner's directory are recycled: one inside a resource group
    // belongs to that group, which goes away with its step.
    recyclable = in.empty() && leaf_reuse_;
    while (recyclable && !leaf && !idle_leaves_.empty()) {
      // Looked at again as it is taken: something of the same user may have frozen it meanwhile.
      if (idle_leaves_.back()->Idle()) leaf = std::move(idle_leaves_.back());
      idle_leaves_.pop_back();
    }
    if (!leaf) {
      auto created = cgroup_->CreateLeaf("tree-" + tree_name, in);
      if (created.ok()) {
        leaf = std::move(created).value();
      } else {
        DebugLog("supervisor: " + created.error().message + "; tree " + std::to_string(id) +
                 " uses its process group");
      }
    }
  }

  // The child's stdout and stderr. One write end serves both when they are merged (or go to
  // /dev/null): the child's dup2 onto 1 and 2 makes the two descriptors it needs.
  UniqueFd out_read, out_write, err_read, err_write;
  if (spec.capture_output) {
    SR_RETURN_IF_ERROR(TakePipe(out_read, out_write, leaf.get()));
    if (!spec.merge_stderr) SR_RETURN_IF_ERROR(TakePipe(err_read, err_write, leaf.get()));
  } else {
    out_write.Reset(::open("/dev/null", O_WRONLY | O_CLOEXEC));
    if (!out_write.valid()) return ErrnoError("open /dev/null", errno);
  }

  ExecRequest request;
  request.path = *path;
  request.argv = spec.argv;
  AddTreeMarker(env, token, request);
  request.work_dir = spec.work_dir;
  request.stdout_fd = out_write.get();
  request.stderr_fd = err_write.valid() ? err_write.get() : out_write.get();
  request.cgroup_procs_fd = leaf ? leaf->procs_fd() : -1;
  request.cgroup_dir_fd = leaf ? leaf->dir_fd() : -1;
  if (spec.resources) request.join_fds = spec.resources->join_fds();
  // The spawn's own fds too: its copies of the child's ends, the sanitizer builds' error pipe.
  SR_ASSIGN_OR_RETURN(Started started,
                      WithFdsToSpare(leaf.get(), [&] { return spawner_.ForkExec(request); }));
  // From here on the child exists: every path must hand it to a tree so it gets reaped.
  // Besides the child, only the tree holds the pipes' write ends, until the main process is
  // reaped (TreeImpl::Pipe::held_write): EOF then means "all writers gone".
  if (!spec.capture_output) out_write.Reset();
  // A leaf that may serve again keeps its fds for the next child; the others never need them.
  if (leaf && !recyclable) leaf->CloseProcsFd();
  WorkAfterSpawn(!spec.capture_output ? 0 : spec.merge_stderr ? 1 : 2);

  // No pidfd for the main process: until we reap it, its pid cannot name another process.
  UniqueFd pidfd;
  std::unique_ptr<Members> members;
  if (leaf) {
    CgroupMembers::Recycler recycle;
    if (recyclable) {
      recycle = [this](std::unique_ptr<CgroupLeaf> idle) { KeepIdleLeaf(std::move(idle)); };
    }
    members = std::make_unique<CgroupMembers>(std::move(leaf), started.pid, std::move(recycle));
  } else {
    auto st = ReadProcStat(started.pid);
    members = std::make_unique<GroupMembers>(started.pid, token, st ? st->start_ticks : 0, census_);
  }
  members->set_fd_relief(fd_relief_);
  trees_[id] = tree;
  rusage_[id] = usage;
  Status ok = tree->Start(started.pid, std::move(pidfd), std::move(members), std::move(out_read),
                          std::move(err_read), std::move(started.exec_error),
                          std::move(out_write), std::move(err_write));
  if (!ok.ok()) {
    tree->Abandon();  // killed and reaped quietly; the caller gets the error instead of on_exit
    return ok.error().Wrap("spawn");
  }
  return std::shared_ptr<ProcessTree>(tree);
}

Status SupervisorImpl::TakePipe(UniqueFd& read_end, UniqueFd& write_end, CgroupLeaf* leaf) {
  if (spare_pipes_.empty()) {
    return WithFdsToSpare(leaf, [&] { return MakePipe(read_end, write_end); });
  }
  read_end = std::move(spare_pipes_.back().first);
  write_end = std::move(spare_pipes_.back().second);
  spare_pipes_.pop_back();
  return Ok();
}

void SupervisorImpl::WorkAfterSpawn(size_t pipes) {
  close_later_.clear();
  fd_relief_->TakeReserve();  // before the spare pipes: a stop at the fd limit needs it more
  // As many as this spawn took: a run of alike steps finds its pipes made. Failing here costs
  // nothing; TakePipe makes them then.
  while (spare_pipes_.size() < std::min(pipes, kSparePipes)) {
    UniqueFd read_end, write_end;
    if (!MakePipe(read_end, write_end).ok()) break;
    spare_pipes_.emplace_back(std::move(read_end), std::move(write_end));
  }
}

void SupervisorImpl::KeepIdleLeaf(std::unique_ptr<CgroupLeaf> leaf) {
  if (idle_leaves_.size() >= kIdleLeaves) return;  // its destructor removes it
  idle_leaves_.push_back(std::move(leaf));
  ++leaves_kept_;
  // Armed once per quiet spell, not per step: the timer looks again while leaves keep coming.
  if (leaves_timer_ == 0) ArmLeavesTimer();
}

void SupervisorImpl::ArmLeavesTimer() {
  leaves_timer_ = loop_.At(Clock::now() + kIdleLeavesFor, [this, seen = leaves_kept_] {
    leaves_timer_ = 0;
    if (idle_leaves_.empty()) return;
    if (leaves_kept_ != seen) return ArmLeavesTimer();
    idle_leaves_.clear();  // rmdir each
  });
}

}  // namespace sr
