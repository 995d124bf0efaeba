// Fidelity with GitLab's Go step-runner (issue 15): step files and clients written for it work
// unchanged. Everything through the built binary (`run`, `client`) and a live server over gRPC.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>
#include <signal.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/harness.h"
#include "support/service_client.h"

namespace sr::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using json = nlohmann::json;

json ReadJson(const std::string& path) {
  std::ifstream in(path);
  return json::parse(in, nullptr, /*allow_exceptions=*/false);
}

Output RunIn(const TestDir& dir, const std::vector<std::string>& args, Options o = {}) {
  o.cwd = dir.path();
  return RunStepRunner(args, o);
}

// Runs a shell command line in `dir` (for `2>&1`, pipes and a terminal through `script`).
Output Shell(const TestDir& dir, const std::string& command) {
  Options o;
  o.cwd = dir.path();
  Child child({"/bin/sh", "-c", command}, o);
  return child.Wait();
}

std::string Bin() { return "'" + Binary() + "'"; }

// ---- compatibility fixtures (tests/fixtures/compat) -------------------------------------------

TEST(Compat, FixturesRunWithTheirOutputsExportsAndResults) {
  TestDir dir;
  std::filesystem::copy(std::string(STEP_RUNNER_SOURCE_DIR) + "/tests/fixtures/compat", dir.path(),
                        std::filesystem::copy_options::recursive);
  Output o = RunIn(dir, {"run", "-f", "pipeline.yml", "--step-results-file", "r.json"});
  ASSERT_EQ(o.exit_code, 0) << o.out << o.err;
  EXPECT_THAT(o.out, HasSubstr("step dir ok\nwork dir ok\nhello CI\n"));
  EXPECT_THAT(o.out, HasSubstr("GREETED=CI SHARED=hello CI length=8 seen=hello CI"));
  json r = ReadJson(dir / "r.json");
  ASSERT_TRUE(r.is_object());
  EXPECT_EQ(r["status"], "success");
  const json& steps = r["subStepResults"];
  ASSERT_EQ(steps.size(), 5u);
  EXPECT_EQ(steps[0]["outputs"], json({{"greeting", "hello CI"}, {"length", 8}}));
  EXPECT_EQ(steps[0]["exports"], json({{"GREETED", "CI"}}));
  EXPECT_EQ(steps[1]["outputs"], json({{"region", "eu-west"}, {"replicas", 2}, {"dry_run", true},
                                       {"labels", {{"tier", "web"}, {"port", 80}}}}));
  EXPECT_EQ(steps[2]["outputs"], json({{"region", "us-east"}, {"replicas", 5}, {"dry_run", false},
                                       {"labels", {{"tier", "db"}}}}));
  EXPECT_EQ(steps[3]["outputs"], json({{"seen", "hello CI"}}));
  ASSERT_EQ(steps[3]["subStepResults"].size(), 2u);
  EXPECT_EQ(steps[3]["subStepResults"][0]["exports"], json({{"SHARED", "hello CI"}}));
  // The definition env holds the step's own files while it runs (they are gone after).
  EXPECT_THAT(steps[0]["env"]["STEP_RUNNER_OUTPUT"].get<std::string>(), HasSubstr(".out"));
}

TEST(Compat, FixturesRunOverGrpc) {
  TestDir dir;
  std::filesystem::copy(std::string(STEP_RUNNER_SOURCE_DIR) + "/tests/fixtures/compat",
                        dir / "work", std::filesystem::copy_options::recursive);
  LiveServer server(dir);
  std::ifstream in(dir / "work/pipeline.yml");
  std::stringstream text;
  text << in.rdbuf();
  ASSERT_TRUE(server.Run(Request("fixtures", text.str(), dir / "work")).ok());
  proto::Status s = server.WaitEnded("fixtures");
  EXPECT_EQ(s.status(), proto::StepResult::success) << s.message();
  grpc::Status fs;
  std::string log = server.Follow("fixtures", 0, &fs);
  EXPECT_THAT(log, HasSubstr("GREETED=CI SHARED=hello CI length=8 seen=hello CI"));
  ASSERT_EQ(s.result().sub_step_results_size(), 5);
  EXPECT_EQ(s.result().sub_step_results(0).exports().at("GREETED"), "CI");
  EXPECT_EQ(s.result().sub_step_results(3).outputs().at("seen").string_value(), "hello CI");
}

// ---- 1: the step's files are in the view of its env: ----------------------------------------

TEST(Compat, RunningStepIsPrintedBeforeEnvIsExpanded) {
  TestDir dir;
  dir.Write("s.yml", "spec: {}\n---\nenv:\n  X: ${{ nope }}\nexec:\n  command: [echo, hi]\n");
  Output o = RunIn(dir, {"run", "-f", "s.yml"});
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_EQ(o.out, "Running step \"\"\n");
  EXPECT_THAT(o.err, HasSubstr("expand step env: env variable \"X\""));
}

// ---- 2: sensitive root inputs ------------------------------------------------------------------

TEST(Compat, SensitiveRootInputIsMaskedOnTheTerminalAndInResults) {
  TestDir dir;
  dir.Write("s.yml",
            "spec:\n  inputs:\n    token: {type: string, sensitive: true}\n---\n"
            "exec:\n  command: [sh, -c, 'echo \"token is $0\"', '${{ inputs.token }}']\n");
  Output o = RunIn(dir, {"run", "-f", "s.yml", "--inputs", "token=hunter2-secret",
                       "--step-results-file", "r.json"});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_THAT(o.out, HasSubstr("token is [MASKED]"));
  EXPECT_THAT(o.out + o.err + dir.Read("r.json"), Not(HasSubstr("hunter2")));
}

TEST(Compat, SensitiveRootInputIsMaskedOverGrpc) {
  TestDir dir;
  LiveServer server(dir);
  // The service takes no root inputs: the sensitive value is the input's default.
  std::string steps =
      "spec:\n  inputs:\n    token: {type: string, sensitive: true, default: hunter2-secret}\n---\n"
      "exec:\n  command: [sh, -c, 'echo \"token is $0\"; exit 1', '${{ inputs.token }}']\n";
  ASSERT_TRUE(server.Run(Request("masked", steps, dir.path())).ok());
  proto::Status s = server.WaitEnded("masked");
  grpc::Status fs;
  std::string log = server.Follow("masked", 0, &fs);
  EXPECT_THAT(log, HasSubstr("token is [MASKED]"));
  EXPECT_THAT(log + s.DebugString(), Not(HasSubstr("hunter2")));
}

// ---- 3: outputs and exports of script steps, the README example -------------------------------

std::string ReadReadme() {
  std::ifstream in(std::string(STEP_RUNNER_SOURCE_DIR) + "/README.md");
  std::stringstream readme;
  readme << in.rdbuf();
  return readme.str();
}

std::string ReadmeBlock(const std::string& readme, const std::string& label, const std::string& lang) {
  std::string open = "`" + label + "`:\n\n```" + lang + "\n";
  size_t at = readme.find(open);
  if (at == std::string::npos) return "";
  at += open.size();
  return readme.substr(at, readme.find("```", at) - at);
}

// What the README shows `$ build/step-runner <args>` printing, in the first console block after
// `after` that starts with that command (the block minus its `$ ` line); "" when there is none.
std::string ReadmeConsoleOutput(const std::string& readme, const std::string& after,
                                const std::string& args) {
  const std::string open = "```console\n$ build/step-runner " + args + "\n";
  size_t at = readme.find(open, readme.find(after) + after.size());
  if (at == std::string::npos) return "";
  at += open.size();
  return readme.substr(at, readme.find("```", at) - at);
}

TEST(Compat, ReadmeFirstStepRunsAsWritten) {
  TestDir dir;
  const std::string readme = ReadReadme();
  const std::string hello = ReadmeBlock(readme, "hello.yml", "yaml");
  ASSERT_FALSE(hello.empty());
  dir.Write("hello.yml", hello);
  const std::string expected = ReadmeConsoleOutput(readme, hello, "run -f hello.yml --inputs who=CI");
  ASSERT_FALSE(expected.empty());
  Output o = RunIn(dir, {"run", "-f", "hello.yml", "--inputs", "who=CI"});
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_EQ(o.out, expected);
}

TEST(Compat, ReadmePipelineRunsAsWritten) {
  TestDir dir;
  const std::string readme = ReadReadme();
  std::string pipeline = ReadmeBlock(readme, "pipeline.yml", "yaml");
  std::string build = ReadmeBlock(readme, "steps/build/step.yml", "yaml");
  ASSERT_FALSE(pipeline.empty());
  ASSERT_FALSE(build.empty());
  dir.Write("pipeline.yml", pipeline);
  dir.Write("steps/build/step.yml", build);
  // The console block right after the step file.
  const std::string expected = ReadmeConsoleOutput(readme, build, "run -f pipeline.yml");
  ASSERT_FALSE(expected.empty());
  Output o = RunIn(dir, {"run", "-f", "pipeline.yml"});
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_EQ(o.out, expected);
}

// Pids whose parent's parent is `pid` and whose argv is `argv`.
std::vector<pid_t> GrandchildrenRunning(pid_t pid, const std::vector<std::string>& argv) {
  std::string cmdline;
  for (const auto& a : argv) cmdline += a + std::string(1, '\0');
  auto parent_of = [](const std::string& p) {
    std::ifstream stat("/proc/" + p + "/stat");
    std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    const size_t paren = text.rfind(')');
    return paren == std::string::npos ? -1 : std::atoi(text.c_str() + paren + 4);  // ") S <ppid>"
  };
  std::vector<pid_t> out;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in("/proc/" + name + "/cmdline");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (text != cmdline) continue;
    const int parent = parent_of(name);
    if (parent > 0 && parent_of(std::to_string(parent)) == pid) out.push_back(std::stoi(name));
  }
  return out;
}

// README "Cleanup that survives Ctrl-C": its step file and its console block, exactly as
// written. The command runs, gets SIGINT where the block shows `^C`, and prints the lines the
// block shows (stdout and stderr together; their order between the two streams is not kept by
// two files) and exits with the code shown after `$ echo $?`.
TEST(Compat, ReadmeCtrlCExampleRunsAsWritten) {
  BecomeSubreaper();
  TestDir dir;
  const std::string readme = ReadReadme();
  const size_t section = readme.find("## Cleanup that survives Ctrl-C");
  ASSERT_NE(section, std::string::npos);
  auto block = [&](const std::string& lang) {
    const std::string open = "```" + lang + "\n";
    const size_t at = readme.find(open, section) + open.size();
    return readme.substr(at, readme.find("```", at) - at);
  };
  dir.Write("pipeline.yml", block("yaml"));
  std::vector<std::string> console;
  std::istringstream lines(block("console"));
  for (std::string line; std::getline(lines, line);) console.push_back(line);
  const std::string prompt = "$ build/step-runner ";
  ASSERT_GE(console.size(), 4u);
  ASSERT_EQ(console[0].rfind(prompt, 0), 0u) << console[0];
  std::vector<std::string> argv{Binary()};
  std::istringstream words(console[0].substr(prompt.size()));
  for (std::string w; words >> w;) argv.push_back(w);
  std::vector<std::string> expected;
  std::string interrupt_after;
  size_t i = 1;
  for (; i < console.size() && console[i].rfind("$ ", 0) != 0; ++i) {
    std::string line = console[i];
    if (line.rfind("^C", 0) == 0) {
      interrupt_after = console[i - 1];
      line = line.substr(2);
    }
    expected.push_back(line);
  }
  ASSERT_FALSE(interrupt_after.empty());
  ASSERT_EQ(console.at(i), "$ echo $?");
  const int code = std::stoi(console.at(i + 1));

  Options o;
  o.cwd = dir.path();
  Child run(argv, o);
  bool seen = false;
  for (int n = 0; n < 3000 && !seen; ++n) {
    seen = run.StdoutSoFar().find(interrupt_after + "\n") != std::string::npos;
    if (!seen) ::usleep(20000);
  }
  ASSERT_TRUE(seen) << "never printed: " << interrupt_after;
  // A user presses Ctrl-C while the step sleeps ("press Ctrl-C here"), not the moment its name
  // is printed: before that, its shell may not have started `sleep` yet.
  bool sleeping = false;
  for (int n = 0; n < 3000 && !sleeping; ++n) {
    sleeping = !GrandchildrenRunning(run.pid(), {"sleep", "600"}).empty();
    if (!sleeping) ::usleep(10000);
  }
  ASSERT_TRUE(sleeping) << "the step never started sleep 600";
  run.Signal(SIGINT);
  Output out = run.Wait();
  EXPECT_EQ(out.exit_code, code) << out.err;
  std::vector<std::string> got;
  std::istringstream all(out.out + out.err);
  for (std::string line; std::getline(all, line);) got.push_back(line);
  std::sort(expected.begin(), expected.end());
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, expected) << "stdout:\n" << out.out << "stderr:\n" << out.err;
  ReapOrphans();
}

TEST(Compat, ScriptStepWritesOutputsOfAnyTypeAndExports) {
  TestDir dir;
  dir.Write("s.yml",
            "spec: {}\n---\nrun:\n"
            "  - name: a\n"
            "    script: |\n"
            "      echo '{\"name\":\"n\",\"value\":3}' >> \"${{ output_file }}\"\n"
            "      echo '{\"name\":\"s\",\"value\":{\"k\":\"v\"}}' >> \"${{ output_file }}\"\n"
            "      echo '{\"name\":\"E\",\"value\":\"exported\"}' > \"${{ export_file }}\"\n"
            "  - name: b\n"
            "    script: echo \"n=${{ steps.a.outputs.n }} k=${{ steps.a.outputs.s.k }} E=$E\"\n");
  Output o = RunIn(dir, {"run", "-f", "s.yml", "--step-results-file", "r.json"});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_THAT(o.out, HasSubstr("n=3 k=v E=exported"));
  json r = ReadJson(dir / "r.json");
  EXPECT_EQ(r["subStepResults"][0]["outputs"], json({{"n", 3}, {"s", {{"k", "v"}}}}));
  EXPECT_EQ(r["subStepResults"][0]["exports"], json({{"E", "exported"}}));
}

// ---- 4: one writer for stdout and stderr --------------------------------------------------------

const char* kInterleaved = "spec: {}\n---\nexec:\n  command: [sh, -c, 'echo out1; echo err1 >&2; echo out2; echo err2 >&2']\n";

TEST(Compat, OneFileKeepsTheOrderOfStdoutAndStderr) {
  TestDir dir;
  dir.Write("s.yml", kInterleaved);
  Output same = Shell(dir, Bin() + " run -f s.yml >both.txt 2>&1");
  ASSERT_EQ(same.exit_code, 0);
  EXPECT_EQ(dir.Read("both.txt"), "Running step \"\"\nout1\nerr1\nout2\nerr2\n");
  // Apart where the destinations differ.
  Output apart = RunIn(dir, {"run", "-f", "s.yml"});
  EXPECT_EQ(apart.out, "Running step \"\"\nout1\nout2\n");
  EXPECT_EQ(apart.err, "err1\nerr2\n");
}

TEST(Compat, JobLogKeepsTheOrderOfStdoutAndStderr) {
  TestDir dir;
  LiveServer server(dir);
  ASSERT_TRUE(server.Run(Request("order", kInterleaved, dir.path())).ok());
  server.WaitEnded("order");
  grpc::Status fs;
  EXPECT_EQ(server.Follow("order", 0, &fs), "Running step \"\"\nout1\nerr1\nout2\nerr2\n");
}

// ---- 5, 6: required root input, log level ------------------------------------------------------

const char* kNeedsWho = "spec:\n  inputs:\n    who: {type: string}\n---\nexec:\n  command: [echo, '${{ inputs.who }}']\n";

TEST(Compat, RequiredRootInputWithoutValueIsAnError) {
  TestDir dir;
  dir.Write("s.yml", kNeedsWho);
  Output o = RunIn(dir, {"run", "-f", "s.yml"});
  EXPECT_EQ(o.exit_code, 2);
  EXPECT_EQ(o.out, "");
  EXPECT_THAT(o.err, HasSubstr("input \"who\" required, but not defined"));

  LiveServer server(dir);
  grpc::Status s = server.Run(Request("needs", kNeedsWho, dir.path()));
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.error_message(), HasSubstr("input \"who\" required, but not defined"));
  EXPECT_FALSE(server.GetStatus("needs").ok()) << "no job is created";
}

TEST(Compat, LogLevelIsCheckedAndCaseInsensitive) {
  TestDir dir;
  dir.Write("s.yml", "spec: {}\n---\nexec:\n  command: [sh, -c, 'echo level=$CI_STEPS_LOG_LEVEL']\n");
  Options bogus;
  bogus.env["CI_STEPS_LOG_LEVEL"] = "chatty";
  Output o = RunIn(dir, {"run", "-f", "s.yml"}, bogus);
  EXPECT_EQ(o.exit_code, 2);
  EXPECT_THAT(o.err, HasSubstr("log level: chatty not supported"));
  Options upper;
  upper.env["CI_STEPS_LOG_LEVEL"] = " DEBUG ";
  o = RunIn(dir, {"run", "-f", "s.yml"}, upper);
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_THAT(o.out, HasSubstr("level=debug\n"));

  LiveServer server(dir);
  proto::RunRequest bad = Request("bad-level", "spec: {}\n---\nexec:\n  command: [true]\n", dir.path());
  auto* var = bad.mutable_job()->add_variables();
  var->set_key("CI_STEPS_LOG_LEVEL");
  var->set_value("loud");
  grpc::Status s = server.Run(bad);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.error_message(), HasSubstr("log level: loud not supported"));
  proto::RunRequest warn = Request("warn-level", "spec: {}\n---\nexec:\n  command: [sh, -c, 'echo level=$CI_STEPS_LOG_LEVEL']\n", dir.path());
  (*warn.mutable_env())["CI_STEPS_LOG_LEVEL"] = "Warn";
  ASSERT_TRUE(server.Run(warn).ok());
  server.WaitEnded("warn-level");
  grpc::Status fs;
  EXPECT_THAT(server.Follow("warn-level", 0, &fs), HasSubstr("level=warn\n"));
}

// ---- 8: --inputs typed by the declared type, Go's CSV quoting --------------------------------

TEST(Compat, InputsAreTypedByTheDeclaredTypeAndMayBeQuoted) {
  TestDir dir;
  dir.Write("s.yml",
            "spec:\n  inputs:\n    who: {type: string}\n    n: {type: number, default: 1}\n"
            "    on: {type: boolean, default: false}\n---\n"
            "exec:\n  command: [echo, 'who=${{ inputs.who }} n=${{ inputs.n }} on=${{ inputs.on }}']\n");
  Output o = RunIn(dir, {"run", "-f", "s.yml", "--inputs", "who=123,n=4,on=true"});
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_THAT(o.out, HasSubstr("who=123 n=4 on=true\n"));
  o = RunIn(dir, {"run", "-f", "s.yml", "--inputs", "\"who=a,b\",n=2"});
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_THAT(o.out, HasSubstr("who=a,b n=2 on=false\n"));
  o = RunIn(dir, {"run", "-f", "s.yml", "--inputs", "who=x,n=many"});
  EXPECT_EQ(o.exit_code, 2);
  EXPECT_THAT(o.err, HasSubstr("input \"n\": declared number, got \"many\""));
  // A referenced step: typed once it is loaded.
  dir.Write("steps/s/step.yml", dir.Read("s.yml"));
  o = RunIn(dir, {"run", "./steps/s", "--inputs", "who=007,\"n=5\""});
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_THAT(o.out, HasSubstr("who=007 n=5 on=false\n"));
}

// ---- 9: stdin, text proto, OCI flags ------------------------------------------------------------

TEST(Compat, StepFileFromStdinTextProtoRefusedOciFlagsParse) {
  TestDir dir;
  dir.Write("s.yml", "spec: {}\n---\nexec:\n  command: [echo, from-stdin]\n");
  Output o = Shell(dir, Bin() + " run -f - < s.yml");
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_THAT(o.out, HasSubstr("from-stdin\n"));
  o = RunIn(dir, {"run", "--text-proto-step-file", "x.txtpb"});
  EXPECT_EQ(o.exit_code, 2);
  EXPECT_EQ(o.err, "step-runner: --text-proto-step-file is not supported (write the step as YAML and use -f FILE)\n");
  o = RunIn(dir, {"run", "--oci-registry", "registry.example", "--oci-repository", "team/steps",
                "--oci-tag", "v1", "--oci-dir", "lint", "--oci-filename", "step.yml"});
  EXPECT_THAT(o.err, Not(HasSubstr("were not expected")));
  EXPECT_THAT(o.err, HasSubstr("registry.example/team/steps:v1"));
}

// ---- 10: progress on a terminal ----------------------------------------------------------------

const char* kFailsInTheMiddle =
    "spec: {}\n---\nrun:\n  - name: one\n    script: echo one\n  - name: two\n    script: exit 3\n"
    "  - name: three\n    script: echo three\n";

TEST(Compat, TerminalProgressShowsSkippedStepsAndATotal) {
  TestDir dir;
  dir.Write("s.yml", kFailsInTheMiddle);
  dir.Write("exec.yml", "spec: {}\n---\nexec:\n  command: [echo, hi]\n");
  Output o = Shell(dir, "script -qec \"" + Bin() + " run -f s.yml\" /dev/null");
  EXPECT_THAT(o.out, HasSubstr("✔ one (success, "));
  EXPECT_THAT(o.out, HasSubstr("✘ two (failure, "));
  EXPECT_THAT(o.out, HasSubstr("- three (skipped)"));
  EXPECT_THAT(o.out, HasSubstr("step-runner: finished: failure after "));
  o = Shell(dir, "script -qec \"" + Bin() + " run -f exec.yml\" /dev/null");
  EXPECT_THAT(o.out, HasSubstr("▶ (step)"));
  EXPECT_THAT(o.out, HasSubstr("✔ (step) (success, "));
  EXPECT_THAT(o.out, HasSubstr("finished: success after "));
  // A timeout's last line says so (it said "cancelled" while the exit code was 124).
  dir.Write("slow.yml", "spec: {}\n---\nexec:\n  command: [sleep, '30']\n");
  o = Shell(dir, "script -qec \"" + Bin() + " run -f slow.yml --timeout 1s\" /dev/null");
  EXPECT_EQ(o.exit_code, 124) << o.out;
  EXPECT_THAT(o.out, HasSubstr("finished: timed out after "));
}

TEST(Compat, ClientFollowProgressExistingIdAndStatusColumns) {
  TestDir dir;
  dir.Write("s.yml", kFailsInTheMiddle);
  LiveServer server(dir);
  std::string client = Bin() + " client --socket '" + server.socket() + "' ";
  Output o = Shell(dir, "script -qec \"" + client + "run s.yml --id j1 --follow\" /dev/null");
  EXPECT_THAT(o.out, HasSubstr("▶ one"));
  // The end line carries the step's duration and usage now that results have them (issue 18).
  EXPECT_THAT(o.out, HasSubstr("✘ two (failure, "));
  EXPECT_THAT(o.out, HasSubstr("- three (skipped)"));
  EXPECT_THAT(o.out, HasSubstr("finished: failure after "));
  EXPECT_THAT(o.out, Not(HasSubstr("already exists")));
  o = Shell(dir, client + "run s.yml --id j1 --follow");
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_THAT(o.err, HasSubstr("job \"j1\" already exists (failure); s.yml was not run"));
  EXPECT_LT(o.err.find("already exists"), o.err.find("exit status 3"));
  EXPECT_THAT(o.out, HasSubstr("Running step \"one\"\none\n"));

  ASSERT_TRUE(server.Run(Request("a-job-id-much-longer-than-the-old-column", kFailsInTheMiddle, dir.path())).ok());
  server.WaitEnded("a-job-id-much-longer-than-the-old-column");
  o = Shell(dir, client + "status");
  ASSERT_EQ(o.exit_code, 0) << o.err;
  std::istringstream lines(o.out);
  std::string line;
  std::vector<size_t> state_at, took_at;
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    size_t state = line.find(line.rfind("ID", 0) == 0 ? "STATE" : "failure");
    state_at.push_back(state);
    EXPECT_TRUE(line.rfind("ID", 0) == 0 || line.find("ms  ") != std::string::npos) << line;
    EXPECT_TRUE(line.rfind("ID", 0) == 0 || line.find(".") != std::string::npos) << line;
  }
  ASSERT_EQ(state_at.size(), 3u) << o.out;
  EXPECT_EQ(state_at[0], state_at[1]) << o.out;
  EXPECT_EQ(state_at[1], state_at[2]) << o.out;
}

// ---- 11: errors with positions ------------------------------------------------------------------

TEST(Compat, MissingLocalStepNamesTheReferencingLine) {
  TestDir dir;
  dir.Write("s.yml", "spec: {}\n---\nrun:\n  - name: a\n    script: echo a\n  - name: nope\n    step: ./steps/nope\n");
  Output o = RunIn(dir, {"run", "-f", "s.yml"});
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_THAT(o.err, HasSubstr("s.yml:6:5: step \"nope\": failed to load: loading file \"steps/nope/step.yml\""));
}

TEST(Compat, ReadingAnUndeclaredOutputIsAnErrorBeforeAnythingRuns) {
  TestDir dir;
  dir.Write("steps/build/step.yml",
            "spec:\n  outputs:\n    v: {type: string}\n---\n"
            "exec:\n  command: [sh, -c, 'touch ran; echo {\\\"name\\\":\\\"v\\\",\\\"value\\\":\\\"1\\\"} > $0', '${{ output_file }}']\n");
  dir.Write("s.yml",
            "spec: {}\n---\nrun:\n  - name: build\n    step: ./steps/build\n"
            "  - name: deploy\n    script: echo ${{ steps.build.outputs.version }}\n");
  Output o = RunIn(dir, {"run", "-f", "s.yml"});
  EXPECT_EQ(o.exit_code, 2);
  EXPECT_THAT(o.err, HasSubstr("s.yml:7:5: step \"deploy\": input \"script\": ${{ steps.build.outputs.version }}: "
                               "step \"build\" has no output \"version\" (its outputs: v)"));
  EXPECT_FALSE(dir.Exists("ran")) << "nothing may run";
  // A typo in a step name is found the same way.
  dir.Write("s.yml", "spec: {}\n---\nrun:\n  - name: build\n    step: ./steps/build\n"
                     "  - name: deploy\n    script: echo ${{ steps.biuld.outputs.v }}\n");
  o = RunIn(dir, {"run", "-f", "s.yml"});
  EXPECT_EQ(o.exit_code, 2);
  EXPECT_THAT(o.err, HasSubstr("no step \"biuld\" runs before this one"));
  // Declared: runs.
  dir.Write("s.yml", "spec: {}\n---\nrun:\n  - name: build\n    step: ./steps/build\n"
                     "  - name: deploy\n    script: echo v=${{ steps.build.outputs.v }}\n");
  o = RunIn(dir, {"run", "-f", "s.yml"});
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_THAT(o.out, HasSubstr("v=1\n"));
}

}  // namespace
}  // namespace sr::test
