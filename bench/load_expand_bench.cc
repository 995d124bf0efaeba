// Step file load + expand (issue 8): how the cost per step grows with the number of steps.
//
//   BM_Parse/N        ParseStepFile of an N-step sequence whose invocations carry deep
//                     expressions (nested inputs, several expressions per string, env)
//   BM_Expand/N       expr::Expand / ExpandString of every invocation's inputs and env against a
//                     view holding the outputs of all N steps (the parser and expression
//                     library alone, no engine)
//   BM_Engine/N       the real Engine running the same file, every step `dist://outputs` (an
//                     in-process builtin: no process is started), so the figure is the engine's
//                     own per-step cost: load, view, expand, type check, result record
//
// Each reports `us_per_step`. Target: linear growth, time(10 N) <= 11 × time(N).
// scripts/bench runs this with --benchmark_format=json and prints the growth ratios.
#include <benchmark/benchmark.h>

#include <string>

#include "engine/engine.h"
#include "expr/expr.h"
#include "stepfile/stepfile.h"
#include "util/tempdir.h"

namespace {

using json = nlohmann::json;

// Step i reads step i-1's nested output four levels deep, mixes several expressions in one
// string, and exports an env variable built from expressions.
std::string StepFileText(int n) {
  std::string t = "spec:\n  inputs:\n    who: {type: string, default: bench}\n---\n";
  t += "env:\n  ROOT_ENV: \"${{ inputs.who }}\"\nrun:\n";
  for (int i = 0; i < n; ++i) {
    const std::string name = "s" + std::to_string(i);
    const std::string prev = "steps.s" + std::to_string(i - 1) + ".outputs";
    t += "  - name: " + name + "\n    step: dist://outputs\n";
    if (i == 0) {
      t += "    inputs:\n      v: {a: {b: {c: {d: start}}}}\n      n: 0\n"
           "      s: \"first ${{ inputs.who }} in ${{ work_dir }}\"\n";
      continue;
    }
    t += "    env:\n      E1: \"${{ " + prev + ".v.a.b.c.d }}-${{ job.J }}-${{ inputs.who }}\"\n";
    t += "    inputs:\n";
    t += "      v: {a: {b: {c: {d: \"${{ " + prev + ".v.a.b.c.d }}\"}}}}\n";
    t += "      n: \"${{ " + prev + ".n }}\"\n";
    t += "      s: \"step " + std::to_string(i) + " after ${{ " + prev + ".v.a.b.c.d }} of ${{ " +
         prev + ".n }} in ${{ work_dir }} for ${{ job.J }}\"\n";
  }
  return t;
}

void PerStep(benchmark::State& state, int n) {
  state.counters["us_per_step"] = benchmark::Counter(
      static_cast<double>(n) / 1e6, benchmark::Counter::kIsIterationInvariantRate |
                                        benchmark::Counter::kInvert);
  state.counters["steps"] = n;
}

void BM_Parse(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  const std::string text = StepFileText(n);
  for (auto _ : state) {
    auto file = sr::stepfile::ParseStepFile(text, "bench.yml");
    if (!file.ok()) {
      state.SkipWithError(file.error().message.c_str());
      return;
    }
    benchmark::DoNotOptimize(file);
  }
  PerStep(state, n);
  state.counters["bytes_per_step"] = static_cast<double>(text.size()) / n;
}

void BM_Expand(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  auto file = sr::stepfile::ParseStepFile(StepFileText(n), "bench.yml");
  if (!file.ok()) {
    state.SkipWithError(file.error().message.c_str());
    return;
  }
  json view = {{"inputs", {{"who", "bench"}}},
               {"job", {{"J", "job-value"}}},
               {"env", {{"PATH", "/usr/bin:/bin"}}},
               {"work_dir", "/work"},
               {"step_dir", "/work"},
               {"steps", json::object()}};
  for (int i = 0; i < n; ++i) {
    view["steps"]["s" + std::to_string(i)] = {
        {"outputs", {{"v", {{"a", {{"b", {{"c", {{"d", "start"}}}}}}}}}, {"n", 0}, {"s", "x"}}}};
  }
  const auto& run = file->definition.run;
  for (auto _ : state) {
    for (const auto& inv : run) {
      for (const auto& [k, raw] : inv.inputs) {
        auto v = sr::expr::Expand(raw, view);
        if (!v.ok()) {
          state.SkipWithError(v.error().message.c_str());
          return;
        }
        benchmark::DoNotOptimize(v);
      }
      for (const auto& [k, raw] : inv.env) {
        auto v = sr::expr::ExpandString(raw, view);
        benchmark::DoNotOptimize(v);
      }
    }
  }
  PerStep(state, n);
}

class NullSink : public sr::OutputSink {
 public:
  void Write(sr::OutputStream, std::string_view) override {}
};

void BM_Engine(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  const std::string text = StepFileText(n);
  auto loop = sr::EventLoop::Create();
  auto sup = sr::Supervisor::Create(**loop);
  auto dir = sr::TempDir::Create("load-expand-bench-");
  if (!loop.ok() || !sup.ok() || !dir.ok()) {
    state.SkipWithError("setup failed");
    return;
  }
  NullSink sink;
  for (auto _ : state) {
    auto file = sr::stepfile::ParseStepFile(text, "bench.yml");  // load is part of the figure
    sr::RunOptions options;
    options.temp_dir = dir->path();
    options.root_step_dir = dir->path();
    options.work_dir = dir->path();
    options.base_env = {{"PATH", "/usr/bin:/bin"}};
    options.job_vars = {{"J", "job-value"}};
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
  PerStep(state, n);
}

}  // namespace

BENCHMARK(BM_Parse)->Arg(10)->Arg(100)->Arg(1000)->Arg(10000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Expand)->Arg(10)->Arg(100)->Arg(1000)->Arg(10000)->Unit(benchmark::kMillisecond);
// Not 10000: the engine is quadratic in the number of steps today (docs/performance.md,
// Findings) and one run would take minutes.
BENCHMARK(BM_Engine)->Arg(10)->Arg(100)->Arg(1000)->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
