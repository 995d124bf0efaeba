// Per-step cost of resource accounting (issue 18): the real Engine running 500 exec steps of
// /bin/true, in three set-ups of the same supervisor:
//
//   BM_Steps/0   controllers off (STEP_RUNNER_CONTROLLERS=off): no accounting group, usage from
//                wait4 — the cost of a step before issue 18
//   BM_Steps/1   accounting: each step in its own group in every writable hierarchy, counters
//                read at its end (the default)
//   BM_Steps/2   accounting + limits: each step with memory, pids and cpus limits
//
// Each reports `us_per_step`. Goal: /1 and /2 at most 5 % above /0. Run it alone on a quiet
// machine (the figures are wall time of real processes):
//   build/usage_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <string>

#include "engine/engine.h"
#include "stepfile/stepfile.h"
#include "util/tempdir.h"

namespace {

constexpr int kSteps = 500;

class NullSink : public sr::OutputSink {
 public:
  void Write(sr::OutputStream, std::string_view) override {}
};

std::string StepFileText(bool limits) {
  std::string t = "spec: {}\n---\nrun:\n";
  for (int i = 0; i < kSteps; ++i) {
    t += "  - name: s" + std::to_string(i) + "\n    step: ./true.yml\n";
    if (limits) t += "    resources: {memory: 256Mi, pids: 100, cpus: 1.5}\n";
  }
  return t;
}

void BM_Steps(benchmark::State& state) {
  const int mode = static_cast<int>(state.range(0));
  sr::Supervisor::Options options;
  options.controllers = mode != 0;  // mode 0: as STEP_RUNNER_CONTROLLERS=off
  auto loop = sr::EventLoop::Create();
  auto sup = sr::Supervisor::Create(**loop, options);
  auto dir = sr::TempDir::Create("usage-bench-");
  if (!loop.ok() || !sup.ok() || !dir.ok()) {
    state.SkipWithError("setup failed");
    return;
  }
  state.SetLabel((*sup)->controllers().Describe());
  (void)sr::WriteFile(dir->path() + "/true.yml", "spec: {}\n---\nexec:\n  command: [/bin/true]\n", 0644);
  const std::string text = StepFileText(mode == 2);
  NullSink sink;
  for (auto _ : state) {
    auto file = sr::stepfile::ParseStepFile(text, "bench.yml");
    sr::RunOptions options;
    options.temp_dir = dir->path();
    options.root_step_dir = dir->path();
    options.work_dir = dir->path();
    options.base_env = {{"PATH", "/usr/bin:/bin"}};
    sr::Engine engine(**loop, **sup, sink);
    std::optional<sr::RunOutcome> out;
    sr::StartTask<sr::RunOutcome>(engine.Run(std::move(*file), options),
                                  [&](sr::RunOutcome o) { out = std::move(o); });
    (*loop)->RunUntil([&] { return out.has_value(); });
    if (out->error) {
      state.SkipWithError(out->error->message.c_str());
      return;
    }
    benchmark::DoNotOptimize(out);
  }
  state.counters["us_per_step"] = benchmark::Counter(
      kSteps / 1e6, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

}  // namespace

BENCHMARK(BM_Steps)->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->Iterations(3);

BENCHMARK_MAIN();
