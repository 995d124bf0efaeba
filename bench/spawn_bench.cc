// The cost of starting one step process, in-process, beside posix_spawn (issue 8 profiling aid).
//
//   BM_PosixSpawn/H       posix_spawn(/bin/true) + waitpid: glibc uses clone(CLONE_VM|CLONE_VFORK),
//                         no page tables are copied (the baseline)
//   BM_ForkExec/H         sr::Spawner::ForkExec (src/supervisor/spawn.cc) of the same + waitpid
//   BM_SupervisorSpawn/M  Supervisor::Spawn of /bin/true until on_exit, M = 0 cgroup v2 leaf,
//                         1 process group fallback: everything the runner does per exec step
//
// H is the MiB of heap the process has touched before (0 or 256): fork() copies the page tables
// of the whole address space and makes every writable page copy-on-write, so its cost grows with
// the runner's size; a vfork-style spawn does not. The runner's heap grows with the job (result
// tree, logs of a server with many jobs), so H = 256 shows where a long-lived `serve` goes.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "loop/loop.h"
#include "supervisor/spawn.h"
#include "supervisor/supervisor.h"

extern char** environ;

namespace {

std::vector<std::string> Environ() {
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) env.emplace_back(*e);
  return env;
}

// Sets the process's touched anonymous memory ("heap") to exactly `mib` MiB, whatever ran before
// (benchmarks are run in random interleaving).
void SetHeap(size_t mib) {
  static void* block = nullptr;
  static size_t have = 0;
  if (have == mib) return;
  if (block) ::munmap(block, have << 20);
  block = nullptr;
  have = 0;
  if (mib == 0) return;
  block = ::mmap(nullptr, mib << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (block == MAP_FAILED) {
    block = nullptr;
    return;
  }
  std::memset(block, 1, mib << 20);
  have = mib;
}

void BM_PosixSpawn(benchmark::State& state) {
  SetHeap(static_cast<size_t>(state.range(0)));
  char* argv[] = {const_cast<char*>("/bin/true"), nullptr};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);  // a group of its own, like a tree
  posix_spawnattr_setpgroup(&attr, 0);
  for (auto _ : state) {
    pid_t pid;
    if (posix_spawn(&pid, "/bin/true", &fa, &attr, argv, environ) != 0) {
      state.SkipWithError("posix_spawn failed");
      break;
    }
    int st;
    waitpid(pid, &st, 0);
  }
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
}

void BM_ForkExec(benchmark::State& state) {
  SetHeap(static_cast<size_t>(state.range(0)));
  int null_fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  sr::ExecRequest req;
  req.path = "/bin/true";
  req.argv = {"/bin/true"};
  req.env = Environ();
  req.stdout_fd = null_fd;
  req.stderr_fd = null_fd;
  sr::Spawner spawner;
  for (auto _ : state) {
    auto started = spawner.ForkExec(req);
    if (!started.ok() || started->exec_error) {
      state.SkipWithError("ForkExec failed");
      break;
    }
    int st;
    waitpid(started->pid, &st, 0);
  }
  ::close(null_fd);
}

void BM_SupervisorSpawn(benchmark::State& state) {
  SetHeap(0);
  auto loop = sr::EventLoop::Create();
  sr::Supervisor::Options options;
  options.mechanism = state.range(0) == 0 ? sr::Supervisor::Options::Mechanism::kCgroup
                                          : sr::Supervisor::Options::Mechanism::kProcessGroup;
  auto sup = sr::Supervisor::Create(**loop, options);
  if (!loop.ok() || !sup.ok()) {
    state.SkipWithError(sup.ok() ? "loop" : sup.error().message.c_str());
    return;
  }
  state.SetLabel((*sup)->mechanism());
  sr::ProcessSpec spec;
  spec.argv = {"/bin/true"};
  spec.env = Environ();
  for (auto _ : state) {
    bool done = false;
    auto tree = (*sup)->Spawn(spec, [](sr::OutputStream, std::string_view) {},
                              [&](sr::TreeExit) { done = true; });
    if (!tree.ok()) {
      state.SkipWithError(tree.error().message.c_str());
      break;
    }
    (*loop)->RunUntil([&] { return done; });
  }
}

}  // namespace

BENCHMARK(BM_SupervisorSpawn)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_PosixSpawn)->Arg(0)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_ForkExec)->Arg(0)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_PosixSpawn)->Arg(256)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_ForkExec)->Arg(256)->Unit(benchmark::kMicrosecond)->UseRealTime();

BENCHMARK_MAIN();
