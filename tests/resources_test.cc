// Resource limits (contract section 8) through the real binary and a live server: OOM kills named,
// pids and CPU limits held, limits refused. Memory-hungry steps stay below 300 MB.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include <google/protobuf/util/time_util.h>
#include <nlohmann/json.hpp>

#include "support/harness.h"
#include "support/resources.h"
#include "support/service_client.h"

namespace sr::test {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;
using google::protobuf::util::TimeUtil;

// An exec step that allocates (and touches) `mb` MiB: the allocation is the main process, so
// the OOM killer's victim is the process the runner reaps.
constexpr const char* kAllocStep =
    "spec:\n  inputs:\n    mb: {type: number, default: 200}\n---\n"
    "exec:\n  command: [python3, -c, \"import sys; x = bytearray(int(sys.argv[1]) * 1048576); "
    "print(len(x))\", \"${{ inputs.mb }}\"]\n";

// The directory the runner `pid` made in this process's memory hierarchy, which must be gone.
std::string RunnerMemoryDir(pid_t pid) {
  std::ifstream self("/proc/self/cgroup");
  std::string line, mount;
  std::ifstream info("/proc/self/mountinfo");
  std::string m;
  while (std::getline(info, m)) {
    if (m.find(" - cgroup ") != std::string::npos && m.find(",memory") != std::string::npos) {
      std::istringstream in(m);
      std::string a, b, c, root;
      in >> a >> b >> c >> root >> mount;
    }
  }
  while (std::getline(self, line)) {
    auto pos = line.find(":memory:");
    if (pos != std::string::npos) {
      std::string path = line.substr(pos + 8);
      return mount + (path == "/" ? "" : path) + "/step-runner-" + std::to_string(pid);
    }
  }
  return "";
}

bool Exists(const std::string& p) {
  struct stat st {};
  return !p.empty() && ::stat(p.c_str(), &st) == 0;
}

void ExpectOomResult(const json& step, const std::string& where) {
  EXPECT_EQ(step["status"], "failure") << where;
  const json& t = step["termination"];
  EXPECT_EQ(t["reason"], "oom_killed") << where << t.dump();
  ASSERT_FALSE(t["processes"].empty()) << where;
  EXPECT_EQ(t["processes"][0]["ending"], "killed_by_oom") << where;
  EXPECT_FALSE(ProcessAlive(static_cast<pid_t>(t["processes"][0].value("pid", 0))));
  const json& u = step["usage"];
  EXPECT_GE(Num(u, "oomKills"), 1) << where;
  EXPECT_GT(Num(u, "memoryPeakBytes"), 0) << where;
  EXPECT_LE(Num(u, "memoryPeakBytes"), 64 << 20) << where;
}

TEST_F(Resources, StepLimitOomKillIsNamedEverywhere) {
  dir.Write("alloc/step.yml", kAllocStep);
  dir.Write("oom.yml", "spec: {}\n---\nrun:\n  - name: build\n    resources: {memory: 64Mi}\n"
                       "    step: ./alloc\n  - name: after\n    script: touch " + dir / "after" + "\n");
  Child child({Binary(), "run", "-f", dir / "oom.yml", "--step-results-file", dir / "r.json"}, {});
  const pid_t runner = child.pid();
  Output o = child.Wait();
  EXPECT_EQ(o.exit_code, 1) << o.err;
  EXPECT_THAT(o.err, HasSubstr("step \"build\": killed by the OOM killer (memory limit 64 MiB, peak "));
  EXPECT_THAT(o.err, ::testing::Not(HasSubstr("signal: killed")));
  EXPECT_FALSE(dir.Exists("after"));
  json r = json::parse(dir.Read("r.json"));
  ExpectOomResult(r["subStepResults"][0], "step level");
  // The run's usage covers its step's.
  EXPECT_GE(Num(r["usage"], "oomKills"), 1);
  // Nothing left: the step's cgroups went with the runner.
  EXPECT_FALSE(Exists(RunnerMemoryDir(runner))) << RunnerMemoryDir(runner);
}

TEST_F(Resources, JobLimitFromTheCommandLineAndOverGrpc) {
  dir.Write("alloc/step.yml", kAllocStep);
  dir.Write("oom.yml", "spec: {}\n---\nrun:\n  - name: big\n    step: ./alloc\n");
  Output o = RunStepRunner({"run", "-f", dir / "oom.yml", "--memory", "64Mi", "--step-results-file",
                            dir / "r.json"});
  EXPECT_EQ(o.exit_code, 1) << o.err;
  EXPECT_THAT(o.err, HasSubstr("step \"big\": killed by the OOM killer (memory limit 64 MiB"));
  ExpectOomResult(json::parse(dir.Read("r.json"))["subStepResults"][0], "run --memory");

  LiveServer server(dir);
  proto::RunRequest req = Request("oom", "spec: {}\n---\nrun:\n  - name: big\n    step: ./alloc\n",
                                  dir.path());
  req.mutable_resources()->set_memory_bytes(64 << 20);
  ASSERT_TRUE(server.Run(req).ok());
  proto::Status st = server.WaitEnded("oom");
  EXPECT_EQ(st.status(), proto::StepResult::failure);
  EXPECT_EQ(st.error().kind(), proto::StatusError::step_failure);
  EXPECT_THAT(st.error().message(), HasSubstr("step \"big\": killed by the OOM killer (memory limit 64 MiB"));
  ASSERT_EQ(st.result().sub_step_results_size(), 1);
  const auto& step = st.result().sub_step_results(0);
  EXPECT_EQ(step.termination().reason(), proto::Termination::oom_killed);
  ASSERT_GE(step.termination().processes_size(), 1);
  EXPECT_EQ(step.termination().processes(0).ending(), proto::Termination::ProcessRecord::killed_by_oom);
  EXPECT_GE(step.usage().oom_kills(), 1);

  // `client status ID` shows it: the message, the step's row and its OOM record.
  Output c = RunStepRunner({"client", "--socket", server.socket(), "status", "oom"});
  EXPECT_THAT(c.out, HasSubstr("killed by the OOM killer"));
  EXPECT_THAT(c.out, HasSubstr("PEAK MEM"));
  EXPECT_THAT(c.out, HasSubstr("step big: oom_killed"));
  EXPECT_THAT(c.out, HasSubstr("killed_by_oom"));
  ASSERT_TRUE(server.CloseJob("oom").ok());
}

TEST_F(Resources, TheSmallestEnclosingLimitWins) {
  // The sequence's 64 MiB covers its step, whose own limit is larger.
  dir.Write("alloc/step.yml", kAllocStep);
  dir.Write("inner.yml", "spec: {}\n---\nresources: {memory: 64Mi}\nrun:\n  - name: big\n"
                         "    resources: {memory: 1Gi}\n    step: ./alloc\n");
  dir.Write("outer.yml", "spec: {}\n---\nrun:\n  - name: seq\n    step: ./inner.yml\n");
  Output o = RunStepRunner({"run", "-f", dir / "outer.yml", "--step-results-file", dir / "r.json"});
  EXPECT_EQ(o.exit_code, 1) << o.err;
  EXPECT_THAT(o.err, HasSubstr("step \"seq\": step \"big\": killed by the OOM killer (memory limit 64 MiB"));
  json r = json::parse(dir.Read("r.json"));
  ExpectOomResult(r["subStepResults"][0]["subStepResults"][0], "inside a limited sequence");
  EXPECT_GE(Num(r["subStepResults"][0]["usage"], "oomKills"), 1) << "the sequence adds up its steps";
}

TEST_F(Resources, PidsLimitHoldsAgainstAFanOut) {
  // 100 forks under a limit of 20: the parent counts what started, waits on a FIFO (no fork
  // needed) while the test looks at every child, then kills them.
  ASSERT_EQ(::mkfifo((dir / "go").c_str(), 0600), 0);
  dir.Write("fan.py",
            "import os, sys, time\npids = []\n"
            "for i in range(100):\n"
            "    try:\n        p = os.fork()\n    except OSError:\n        continue\n"
            "    if p == 0:\n        time.sleep(60)\n        os._exit(0)\n    pids.append(p)\n"
            "open(sys.argv[1] + '/pids', 'w').write(' '.join(map(str, pids)))\n"
            "open(sys.argv[1] + '/started', 'w').close()\n"
            "open(sys.argv[1] + '/go').read()\n"
            "for p in pids: os.kill(p, 9)\n");
  dir.Write("fan/step.yml", "spec: {}\n---\nexec:\n  command: [python3, " + dir / "fan.py" + ", " +
                                dir.path() + "]\n");
  dir.Write("pids.yml", "spec: {}\n---\nrun:\n  - name: fan\n    resources: {pids: 20}\n    step: ./fan\n");
  Child child({Binary(), "run", "-f", dir / "pids.yml", "--step-results-file", dir / "r.json"}, {});
  ASSERT_TRUE(child.WaitForFile(dir / "started"));
  std::vector<pid_t> pids = ReadPids(dir / "pids");
  size_t alive = 0;
  for (pid_t p : pids) alive += ProcessAlive(p) ? 1 : 0;
  EXPECT_GT(alive, 0u);
  EXPECT_LE(alive + 1, 20u) << "children alive beside their parent";
  { std::ofstream(dir / "go") << "go\n"; }
  Output o = child.Wait();
  EXPECT_EQ(o.exit_code, 0) << o.err;
  json u = json::parse(dir.Read("r.json"))["subStepResults"][0]["usage"];
  EXPECT_GE(Num(u, "pidsPeak"), static_cast<int64_t>(alive));
  for (pid_t p : pids) EXPECT_FALSE(ProcessAlive(p)) << p;
}

TEST_F(Resources, HalfACpuHalvesTheCpuTimeOfABusyLoop) {
  // The same 2 s (wall) busy loop twice. CPU time, not wall time, is compared: as a ratio.
  dir.Write("busy/step.yml", "spec: {}\n---\nexec:\n  command: [python3, -c, \"import time\\n"
                             "t = time.time()\\nwhile time.time() - t < 2: pass\"]\n");
  dir.Write("cpu.yml", "spec: {}\n---\nrun:\n  - name: free\n    step: ./busy\n"
                       "  - name: half\n    resources: {cpus: 0.5}\n    step: ./busy\n");
  Output o = RunStepRunner({"run", "-f", dir / "cpu.yml", "--step-results-file", dir / "r.json"});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  json r = json::parse(dir.Read("r.json"));
  auto cpu = [&](int i) {
    const json& u = r["subStepResults"][i]["usage"];
    return static_cast<double>(Num(u, "cpuUserUsec") + Num(u, "cpuSystemUsec"));
  };
  const double free_cpu = cpu(0), half_cpu = cpu(1);
  ASSERT_GT(free_cpu, 0);
  ASSERT_GT(half_cpu, 0);
  // The quota caps the limited step at half a CPU of its own wall time, whatever the load: 2 s
  // of loop plus Python's start, which a loaded machine stretches (at load 10 it once took the
  // step past 2.6 s, and a fixed 1.3 s bound failed). Slack: two 100 ms quota periods (with one,
  // an idle machine once measured 1.2 ms over it).
  const json& half_usage = r["subStepResults"][1]["usage"];
  google::protobuf::Timestamp start, end;
  ASSERT_TRUE(TimeUtil::FromString(half_usage["startTime"].get<std::string>(), &start));
  ASSERT_TRUE(TimeUtil::FromString(half_usage["endTime"].get<std::string>(), &end));
  const double wall = static_cast<double>(TimeUtil::DurationToMicroseconds(end - start));
  EXPECT_LT(half_cpu, 0.5 * wall + 200000) << "limited step used " << half_cpu << " us of CPU in "
                                            << wall << " us";
  // Against the free loop, when the machine let that one have nearly a whole CPU for its 2 s
  // and let the limited one finish inside 2.4 s of wall (so its cap is at most 1.4 s). With a
  // 1.5 s guard and a 0.75 bound this failed once under parallel load: 1.55 s free against a
  // limited step whose stretched wall allowed it 1.2 s, each within what the quota permits.
  if (free_cpu > 1.9e6 && wall < 2.4e6) {
    EXPECT_LT(half_cpu / free_cpu, 0.75) << half_cpu << " vs " << free_cpu;
  } else {
    GTEST_LOG_(INFO) << "machine busy (free loop got " << free_cpu << " us, limited wall " << wall
                     << " us): ratio not compared";
  }
}

TEST_F(Resources, LimitsWithoutControllersAreRefusedBeforeAnythingRuns) {
  dir.Write("l.yml", "spec: {}\n---\nrun:\n  - name: big\n    resources: {memory: 64Mi}\n"
                     "    script: touch " + dir / "ran" + "\n");
  Output o = RunStepRunner({"run", "-f", dir / "l.yml"}, {.env = {{"STEP_RUNNER_CGROUP", "off"}}});
  EXPECT_EQ(o.exit_code, 2);
  EXPECT_THAT(o.err, HasSubstr("l.yml:4:5: step \"big\": a memory limit needs a writable memory cgroup "
                               "controller, and cgroups are switched off"));
  EXPECT_FALSE(dir.Exists("ran"));
  Output job = RunStepRunner({"run", "-f", dir / "l.yml", "--pids", "10"},
                             {.env = {{"STEP_RUNNER_CGROUP", "off"}}});
  EXPECT_EQ(job.exit_code, 2);
  EXPECT_THAT(job.err, HasSubstr("job resources: a pids limit needs a writable pids cgroup controller"));

  // The server (its environment is the test's, plus TMPDIR) answers INVALID_ARGUMENT at Run.
  ::setenv("STEP_RUNNER_CGROUP", "off", 1);
  LiveServer server(dir);
  ::unsetenv("STEP_RUNNER_CGROUP");
  proto::RunRequest req = Request("big", "spec: {}\n---\nrun:\n  - name: x\n    script: touch " +
                                             dir / "ran" + "\n", dir.path());
  req.mutable_resources()->set_memory_bytes(64 << 20);
  grpc::Status s = server.Run(req);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("job resources: a memory limit needs a writable memory"));
  req.mutable_resources()->set_memory_bytes(0);
  req.mutable_resources()->set_pids(-1);
  s = server.Run(req);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_FALSE(dir.Exists("ran"));
}

// README "Limits and what a step used": the step file and the command, exactly as written there;
// the output as shown except for the peak, which the kernel records a little differently each run.
TEST_F(Resources, ReadmeTranscriptIsReal) {
  std::ifstream in(std::string(STEP_RUNNER_SOURCE_DIR) + "/README.md");
  std::stringstream whole;
  whole << in.rdbuf();
  const std::string readme = whole.str();
  const size_t section = readme.find("## Limits and what a step used");
  ASSERT_NE(section, std::string::npos);
  auto block = [&](const std::string& fence, size_t from) {
    size_t start = readme.find(fence + "\n", from);
    EXPECT_NE(start, std::string::npos) << fence;
    start += fence.size() + 1;
    return readme.substr(start, readme.find("```\n", start) - start);
  };
  const std::string yaml = block("```yaml", section);
  const std::string console = block("```console", section);
  dir.Write("build.yml", yaml);
  const std::string command = "$ build/step-runner run -f build.yml --step-results-file step-results.json\n";
  ASSERT_EQ(console.rfind(command, 0), 0u) << console;
  Output o = RunStepRunner({"run", "-f", "build.yml", "--step-results-file", "step-results.json"},
                           {.cwd = dir.path()});
  auto without_peak = [](std::string text) {
    const size_t p = text.find(", peak ");
    if (p != std::string::npos) text.erase(p, text.find(')', p) - p);
    return text;
  };
  EXPECT_EQ(without_peak(command + o.out + o.err + "$ echo $?\n" + std::to_string(o.exit_code) + "\n"),
            without_peak(console));
  json r = json::parse(dir.Read("step-results.json"));
  EXPECT_EQ(r["subStepResults"][0]["termination"]["reason"], "oom_killed");
  EXPECT_EQ(r["subStepResults"].size(), 1u) << "test never started";
}

TEST_F(Resources, BadValuesNameFileLineAndKey) {
  struct Case {
    std::string text, want;
  } cases[] = {
      {"resources: {memory: lots}", "b.yml:5:25: run[0] \"x\" resources memory: \"lots\" is not a size"},
      {"resources: {cpus: -1}", "run[0] \"x\" resources cpus: \"-1\" is not a positive number of CPUs"},
      {"resources: {disk: 1}", "unknown key \"disk\" in run[0] \"x\" resources"},
      {"timeout: soon", "run[0] \"x\": timeout: "},
  };
  for (const auto& c : cases) {
    dir.Write("b.yml", "spec: {}\n---\nrun:\n  - name: x\n    " + c.text + "\n    script: echo x\n");
    Output o = RunStepRunner({"run", "-f", dir / "b.yml"});
    EXPECT_EQ(o.exit_code, 2) << c.text;
    EXPECT_THAT(o.err, HasSubstr(c.want)) << c.text;
  }
}

}  // namespace
}  // namespace sr::test
