// Fidelity with GitLab's Go step-runner (issue 15): step files written for it run unchanged through
// `run` and a live server (fixtures, env, sensitive inputs, outputs, log level, inputs, errors).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/compat.h"
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

// ---- 3: outputs and exports of script steps (the README's: compat_readme_test.cc) -----------

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
