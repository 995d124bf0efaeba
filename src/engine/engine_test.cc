// The engine in-process: real event loop, real supervisor, real child processes, step files
// written to a temp dir. (tests/ drives the same through the built binary.)
#include "engine/engine.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "util/tempdir.h"

namespace sr {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using json = nlohmann::json;

class CaptureSink : public OutputSink {
 public:
  void Write(OutputStream, std::string_view bytes) override { text.append(bytes); }
  std::string text;
};

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    loop_ = std::move(EventLoop::Create().value());
    sup_ = std::move(Supervisor::Create(*loop_).value());
    dir_ = std::move(TempDir::Create("engine-test-").value());
  }

  std::string Write(const std::string& rel, const std::string& text) {
    std::string path = dir_.path() + "/" + rel;
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    std::ofstream(path) << text;
    return path;
  }

  // Runs `text` as the root step file; `during` may act on the loop once the run started.
  RunOutcome Run(const std::string& text, RunOptions options = {},
                 std::function<void(Engine&)> during = nullptr) {
    auto file = stepfile::ParseStepFile(text, "root.yml");
    EXPECT_TRUE(file.ok()) << (file.ok() ? "" : file.error().message);
    if (!file.ok()) return {};
    options.temp_dir = dir_.path();
    options.root_step_dir = dir_.path();
    options.work_dir = dir_.path();
    if (options.base_env.empty()) options.base_env = {{"PATH", "/usr/bin:/bin"}};
    engine_ = std::make_unique<Engine>(*loop_, *sup_, sink_);
    std::optional<RunOutcome> out;
    StartTask<RunOutcome>(engine_->Run(std::move(*file), options),
                          [&](RunOutcome o) { out = std::move(o); });
    if (during) during(*engine_);
    auto safety = loop_->After(std::chrono::seconds(60), [&] { ADD_FAILURE() << "run hung"; loop_->Stop(); });
    loop_->RunUntil([&] { return out.has_value(); });
    loop_->CancelTimer(safety);
    return out ? std::move(*out) : RunOutcome{};
  }

  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<Supervisor> sup_;
  TempDir dir_;
  CaptureSink sink_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(EngineTest, ExportIsVisibleToLaterStepsInsideCompositesToo) {
  Write("exporter/step.yml", "spec: {}\n---\nexec:\n  command: [sh, -c, 'echo \"{\\\"name\\\":\\\"MODE\\\",\\\"value\\\":\\\"b\\\"}\" > \"$0\"', \"${{ export_file }}\"]\n");
  Write("composite/step.yml", "spec: {}\n---\nrun:\n  - name: set\n    step: ../exporter\n  - name: show\n    script: echo inner=$MODE\n");
  auto out = Run("spec: {}\n---\nenv:\n  MODE: a\nrun:\n  - name: c\n    step: ./composite\n  - name: after\n    script: echo outer=$MODE\n");
  ASSERT_FALSE(out.error) << out.error->message;
  EXPECT_THAT(sink_.text, HasSubstr("inner=b"));
  EXPECT_THAT(sink_.text, HasSubstr("outer=b"));
}

TEST_F(EngineTest, OwnEnvBeatsInvocationEnvBeatsRootEnv) {
  Write("e/step.yml", "spec: {}\n---\nenv:\n  C: own\nexec:\n  command: [sh, -c, 'echo A=$A B=$B C=$C']\n");
  auto out = Run("spec: {}\n---\nenv:\n  A: root\n  B: root\n  C: root\nrun:\n  - name: x\n    step: ./e\n    env: {B: inv, C: inv}\n");
  ASSERT_FALSE(out.error) << out.error->message;
  EXPECT_THAT(sink_.text, HasSubstr("A=root B=inv C=own"));
}

TEST_F(EngineTest, FinallyRunsAfterFailureAndSeesStatusAndOutputs) {
  auto out = Run(R"(spec: {}
---
run:
  - name: produce
    step: dist://outputs
    inputs: {token: abc}
  - name: fail
    script: exit 4
finally:
  - name: cleanup
    script: echo "cleanup status=${{ run.status }} token=${{ steps.produce.outputs.token }}"
)");
  ASSERT_TRUE(out.error);
  EXPECT_EQ(out.error->kind, Error::Kind::kFailed);
  EXPECT_THAT(sink_.text, HasSubstr("cleanup status=failure token=abc"));
  ASSERT_EQ(out.result.sub_step_results_size(), 3);
  EXPECT_EQ(out.result.sub_step_results(2).status(), proto::StepResult::success);
}

TEST_F(EngineTest, FailingCleanupFailsASuccessfulRun) {
  auto out = Run("spec: {}\n---\nrun:\n  - name: ok\n    script: 'true'\nfinally:\n  - name: c\n    script: exit 2\n");
  ASSERT_TRUE(out.error);
  EXPECT_THAT(out.error->message, HasSubstr("step \"c\": exec: exit status 2"));
}

TEST_F(EngineTest, SleepBuiltinEndsPromptlyOnCancel) {
  auto out = Run("spec: {}\n---\nrun:\n  - name: nap\n    step: dist://sleep\n    inputs: {duration: 1h}\n",
                 {}, [&](Engine& c) {
                   loop_->After(std::chrono::milliseconds(20), [&c] {
                     c.Cancel(CancelRequest::Graceful(CancelReason::kRequested, std::chrono::seconds(5)));
                   });
                 });
  ASSERT_TRUE(out.error);
  EXPECT_EQ(out.error->kind, Error::Kind::kCancelled);
  EXPECT_EQ(out.result.status(), proto::StepResult::cancelled);
  EXPECT_EQ(out.result.sub_step_results(0).status(), proto::StepResult::cancelled);
}

TEST_F(EngineTest, CancelStopsTheSequenceAndRunsCleanup) {
  auto out = Run(R"(spec: {}
---
run:
  - name: long
    script: sleep 30
  - name: never
    script: echo never-ran
finally:
  - name: cleanup
    script: echo "cleaned ${{ run.status }}"
)", {}, [&](Engine& c) {
    loop_->After(std::chrono::milliseconds(100), [&c] {
      c.Cancel(CancelRequest::Graceful(CancelReason::kRequested, std::chrono::seconds(5)));
    });
  });
  ASSERT_TRUE(out.error);
  EXPECT_EQ(out.error->kind, Error::Kind::kCancelled);
  EXPECT_THAT(sink_.text, Not(HasSubstr("never-ran")));
  EXPECT_THAT(sink_.text, HasSubstr("cleaned cancelled"));
  EXPECT_THAT(sink_.text, HasSubstr("step-runner: cancelling (cancel_requested)"));
  EXPECT_THAT(sink_.text, HasSubstr("step-runner: cancel finished"));
  ASSERT_TRUE(engine_->Termination().has_value());
  EXPECT_EQ(engine_->Termination()->reason(), proto::Termination::cancel_requested);
}

TEST_F(EngineTest, SecretsAreMaskedInOutputAndResults) {
  RunOptions options;
  options.job_vars = {{"TOKEN", "s3cr3t-value"}};
  options.secrets = {"s3cr3t-value"};
  auto out = Run("spec: {}\n---\nrun:\n  - name: leak\n    script: printf 's3cr3t'; printf '%s\\n' '-value and ${{ job.TOKEN }}'\n",
                 options);
  ASSERT_FALSE(out.error) << out.error->message;
  EXPECT_THAT(sink_.text, Not(HasSubstr("s3cr3t-value")));
  // The first secret arrives split across two writes.
  EXPECT_THAT(sink_.text, HasSubstr("[MASKED] and [MASKED]"));
  EXPECT_THAT(ResultToJson(out.result), Not(HasSubstr("s3cr3t-value")));
}

TEST_F(EngineTest, DelegatedOutputs) {
  auto out = Run("spec:\n  outputs: delegate\n---\nrun:\n  - name: inner\n    step: dist://outputs\n    inputs: {x: 1}\ndelegate: inner\n");
  ASSERT_FALSE(out.error) << out.error->message;
  EXPECT_EQ(out.result.outputs().at("x").number_value(), 1);
}

TEST_F(EngineTest, DynamicReference) {
  Write("dyn/step.yml", "spec: {}\n---\nexec:\n  command: [echo, dynamic-ok]\n");
  RunOptions options;
  options.base_env = {{"PATH", "/usr/bin:/bin"}, {"STEP_HOME", dir_.path()}};
  auto out = Run("spec: {}\n---\nrun:\n  - name: d\n    step: ${{ env.STEP_HOME }}/dyn\n", options);
  ASSERT_FALSE(out.error) << out.error->message;
  EXPECT_THAT(sink_.text, HasSubstr("dynamic-ok"));
}

TEST_F(EngineTest, MissingProgramIsAFailureNamingIt) {
  auto out = Run("spec: {}\n---\nexec:\n  command: [no-such-program-xyz]\n");
  ASSERT_TRUE(out.error);
  EXPECT_THAT(out.error->message, HasSubstr("no-such-program-xyz"));
  EXPECT_EQ(out.result.status(), proto::StepResult::failure);
}

// A delegating exec step whose output file is not a step result: one line naming why.
TEST_F(EngineTest, ABadDelegatedResultIsAOneLineError) {
  for (const auto& [script, why] : std::vector<std::pair<std::string, std::string>>{
           {"true", "the step wrote nothing to it"}, {"echo {outputs: > $OUT", ": "}}) {
    auto out = Run("spec:\n  outputs: delegate\n---\nenv:\n  OUT: ${{ output_file }}\n"
                   "exec:\n  command: [sh, -c, '" + script + "']\n");
    ASSERT_TRUE(out.error) << script;
    EXPECT_THAT(out.error->message, HasSubstr("delegate: reading output_file as a step result: "));
    EXPECT_EQ(out.error->message.find('\n'), std::string::npos) << out.error->message;
    EXPECT_THAT(out.error->message, HasSubstr(why));
  }
}

// Hostile input (issue 9): a step that invokes itself recursed until memory ran out.
TEST_F(EngineTest, StepsInvokingThemselvesAreBounded) {
  Write("self/step.yml", "spec: {}\n---\nrun:\n  - name: again\n    step: " + dir_.path() + "/self\n");
  auto out = Run("spec: {}\n---\nrun:\n  - name: again\n    step: ./self\n");
  ASSERT_TRUE(out.error);
  EXPECT_EQ(out.error->kind, Error::Kind::kFailed);
  EXPECT_THAT(out.error->message, HasSubstr("steps nested more than 64 levels deep"));
  // The name is counted, not repeated once per level.
  EXPECT_THAT(out.error->message, HasSubstr("step \"again\" (nested 64 times): steps nested"));
  EXPECT_LT(out.error->message.size(), 200u) << out.error->message;
}

TEST_F(EngineTest, ADifferentlyNamedStepBetweenTwoOfTheSameNameIsNotCounted) {
  Write("inner/step.yml", "spec: {}\n---\nexec:\n  command: [sh, -c, 'exit 4']\n");
  Write("mid/step.yml", "spec: {}\n---\nrun:\n  - name: a\n    step: " + dir_.path() + "/inner\n");
  Write("outer/step.yml", "spec: {}\n---\nrun:\n  - name: b\n    step: " + dir_.path() + "/mid\n");
  auto out = Run("spec: {}\n---\nrun:\n  - name: a\n    step: ./outer\n");
  ASSERT_TRUE(out.error);
  EXPECT_THAT(out.error->message, HasSubstr("step \"a\": step \"b\": step \"a\": "));
}

// Contract 7.5: a NUL byte in an argument, the work dir or the environment would be cut where
// the process receives it; the step fails naming the value, and nothing runs.
TEST_F(EngineTest, ANulByteInWhatAProcessReceivesFailsTheStepNamingIt) {
  const std::string ran = dir_.path() + "/ran";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"spec: {}\n---\nexec:\n  command: [touch, \"" + ran + "\", \"x\\0y\"]\n",
       "exec: command argument 2 \"x\\0y\" contains a NUL byte"},
      {"spec: {}\n---\nenv:\n  A: \"before\\0after\"\nexec:\n  command: [touch, \"" + ran + "\"]\n",
       "exec: environment variable \"A\" contains a NUL byte"},
      {"spec: {}\n---\nrun:\n  - name: exporter\n    script: printf '%s\\n' '{\"name\":\"V\",\"value\":\"a\\u0000b\"}' > ${{ export_file }}\n"
       "  - name: user\n    script: touch " + ran + "\n",
       // The exporter fails, not the next step (it was blamed: "step "user": exec: …").
       "step \"exporter\": export file: read env file: key \"V\": the value contains a NUL byte"}};
  for (const auto& [text, expected] : cases) {
    auto out = Run(text);
    ASSERT_TRUE(out.error) << text;
    EXPECT_EQ(out.error->kind, Error::Kind::kFailed);
    EXPECT_THAT(out.error->message, HasSubstr(expected));
    EXPECT_FALSE(std::filesystem::exists(ran)) << text;
  }
}

// The static check of a sequence's `outputs:` names the offending entry's line, not the
// definition's start.
TEST_F(EngineTest, UnknownOutputReadInOutputsNamesItsEntry) {
  Write("sub/step.yml", "spec: {}\n---\nexec:\n  command: [echo, sub]\n");
  auto out = Run(
      "spec:\n  outputs:\n    y: {type: string}\n    z: {type: string}\n---\n"
      "run:\n  - name: a\n    step: ./sub\n"
      "outputs:\n  y: fine\n  z: \"${{ steps.a.outputs.q }}\"\n");
  ASSERT_TRUE(out.error);
  EXPECT_EQ(out.error->kind, Error::Kind::kInvalid);
  EXPECT_THAT(out.error->message,
              HasSubstr("root.yml:11:3: outputs: ${{ steps.a.outputs.q }}: step \"a\" has no "
                        "output \"q\" (its outputs: none)"));
}

// The static checks of an item's `inputs:` and `env:` name the offending entry's line:column
// (its key; a script's `script:`), not the item's, as `outputs:` does above.
TEST_F(EngineTest, UnknownOutputReadInInputsOrEnvNamesItsEntry) {
  Write("sub/step.yml", "spec:\n  inputs:\n    a: {type: string}\n    b: {type: string}\n---\n"
                        "exec:\n  command: [echo, sub]\n");
  const std::string head = "spec: {}\n---\nrun:\n  - name: w\n    step: ./sub\n    inputs: {a: x, b: y}\n";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"  - name: r\n    step: ./sub\n    inputs:\n      a: fine\n      b: \"${{ steps.w.outputs.q }}\"\n",
       "root.yml:11:7: step \"r\": input \"b\": "},
      {"  - name: r\n    step: ./sub\n    inputs: {a: x, b: y}\n    env:\n      OK: fine\n"
       "      X: \"${{ steps.w.outputs.q }}\"\n",
       "root.yml:12:7: step \"r\": env \"X\": "},
      {"  - name: r\n    env: {A: b}\n    script: echo ${{ steps.w.outputs.q }}\n",
       "root.yml:9:5: step \"r\": input \"script\": "}};
  for (const auto& [item, where] : cases) {
    auto out = Run(head + item);
    ASSERT_TRUE(out.error) << item;
    EXPECT_EQ(out.error->kind, Error::Kind::kInvalid);
    EXPECT_THAT(out.error->message,
                HasSubstr(where + "${{ steps.w.outputs.q }}: step \"w\" has no output \"q\""));
  }
}

// A referenced step "file" that is a FIFO nobody writes to would block the event loop (the whole
// server) in open(); one that is endless would be read until memory ran out.
TEST_F(EngineTest, ReferencedStepFileMustBeARegularFile) {
  std::filesystem::create_directories(dir_.path() + "/fifo");
  ASSERT_EQ(::mkfifo((dir_.path() + "/fifo/step.yml").c_str(), 0600), 0);
  std::filesystem::create_directories(dir_.path() + "/zero");
  std::filesystem::create_symlink("/dev/zero", dir_.path() + "/zero/step.yml");
  for (const char* ref : {"./fifo", "./zero"}) {
    auto out = Run(std::string("spec: {}\n---\nrun:\n  - name: x\n    step: ") + ref + "\n");
    ASSERT_TRUE(out.error) << ref;
    EXPECT_THAT(out.error->message, HasSubstr("not a regular file")) << ref;
  }
}

// Every exec step gets two empty, private, regular files (reference.md 3.1). A finished step's
// files that are still exactly that serve the next step; written or replaced ones never do.
TEST_F(EngineTest, EveryStepGetsFreshEmptyOutputFiles) {
  auto step = [&](const std::string& name, const std::string& script) {
    Write(name + "/step.yml", "spec: {}\n---\nexec:\n  command: [/bin/sh, -c, '" + script +
                                  "']\nenv:\n  OUT: ${{ output_file }}\n"
                                  "  EXP: ${{ export_file }}\n");
  };
  step("check", "for f in \"$OUT\" \"$EXP\"; do [ -f \"$f\" ] && [ ! -L \"$f\" ] && "
                "[ ! -s \"$f\" ] || exit 7; done; echo \"$OUT\" >> \"$D/paths\"");
  step("write", "echo {\\\"name\\\":\\\"E1\\\",\\\"value\\\":\\\"one\\\"} >> \"$EXP\"");
  step("tamper", "rm \"$OUT\" && ln -s \"$D/target\" \"$OUT\"");
  Write("target", "");
  RunOptions options;
  options.base_env = {{"PATH", "/usr/bin:/bin"}, {"D", dir_.path()}};
  auto out = Run("spec: {}\n---\nrun:\n"
                 "  - {name: c1, step: ./check}\n  - {name: c2, step: ./check}\n"
                 "  - {name: w, step: ./write}\n  - {name: c3, step: ./check}\n"
                 "  - {name: t, step: ./tamper}\n  - {name: c4, step: ./check}\n",
                 options);
  ASSERT_FALSE(out.error) << out.error->message << "\n" << sink_.text;
  ASSERT_EQ(out.result.sub_step_results_size(), 6);
  EXPECT_EQ(out.result.sub_step_results(2).exports().count("E1"), 1u);
  std::ifstream paths(dir_.path() + "/paths");
  std::vector<std::string> seen;
  for (std::string line; std::getline(paths, line);) seen.push_back(line);
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[0], seen[1]) << "an untouched pair serves the next step";
  std::error_code ec;
  EXPECT_EQ(std::filesystem::file_size(dir_.path() + "/target", ec), 0u) << "written through";
  engine_.reset();  // the job's idle files go with it
  for (const auto& e : std::filesystem::directory_iterator(dir_.path())) {
    EXPECT_THAT(e.path().filename().string(), Not(::testing::StartsWith("step-")));
  }
}

// Steps in one environment share one record of it (EnvRecord); each record still shows exactly
// the environment its step ran in: exports and a step's own env change it, and a later step
// without them does not keep them. Masked like every other string of the results.
TEST_F(EngineTest, EachStepRecordsTheEnvironmentItRanIn) {
  Write("exporter/step.yml", "spec: {}\n---\nexec:\n  command: [sh, -c, 'echo \"{\\\"name\\\":\\\"E1\\\",\\\"value\\\":\\\"one\\\"}\" > \"$0\"', \"${{ export_file }}\"]\n");
  Write("show/step.yml", "spec: {}\n---\nexec:\n  command: [sh, -c, 'echo \"seen E1=$E1 B=$B\"']\n");
  Write("own/step.yml", "spec: {}\n---\nexec:\n  command: [sh, -c, 'echo \"seen E1=$E1 B=$B\"']\nenv:\n  B: two\n");
  RunOptions options;
  options.base_env = {{"PATH", "/usr/bin:/bin"}, {"TOKEN", "s3cr3t-value"}};
  options.secrets = {"s3cr3t-value"};
  auto out = Run("spec: {}\n---\nrun:\n  - {name: s1, step: ./show}\n  - {name: x, step: ./exporter}\n"
                 "  - {name: s2, step: ./show}\n  - {name: s3, step: ./own}\n  - {name: s4, step: ./show}\n",
                 options);
  ASSERT_FALSE(out.error) << out.error->message << "\n" << sink_.text;
  ASSERT_EQ(out.result.sub_step_results_size(), 5);
  auto env = [&](int i) { return out.result.sub_step_results(i).env(); };
  EXPECT_EQ(env(0).count("E1"), 0u);
  EXPECT_EQ(env(1).count("E1"), 0u);
  EXPECT_EQ(env(2).at("E1"), "one");
  EXPECT_EQ(env(2).count("B"), 0u);
  EXPECT_EQ(env(3).at("B"), "two");
  EXPECT_EQ(env(3).at("E1"), "one");
  EXPECT_EQ(env(4).count("B"), 0u);
  EXPECT_EQ(env(4).at("E1"), "one");
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(env(i).at("PATH"), "/usr/bin:/bin") << i;
    EXPECT_EQ(env(i).at("TOKEN"), "[MASKED]") << i;
  }
  EXPECT_THAT(sink_.text, HasSubstr("\"s1\"\nseen E1= B=\n"));
  EXPECT_THAT(sink_.text, HasSubstr("\"s2\"\nseen E1=one B=\n"));
  EXPECT_THAT(sink_.text, HasSubstr("\"s3\"\nseen E1=one B=two\n"));
  EXPECT_THAT(sink_.text, HasSubstr("\"s4\"\nseen E1=one B=\n"));
  // The snapshot a service reads after the run shows the same.
  EXPECT_EQ(engine_->Snapshot().sub_step_results(3).env().at("B"), "two");
}

// `run` without a results file asks for no final copy of the result tree; the tree is still
// there for Snapshot().
TEST_F(EngineTest, FinalResultOnlyWhenAskedFor) {
  RunOptions options;
  options.final_result = false;
  auto out = Run("spec: {}\n---\nrun:\n  - name: a\n    script: 'true'\n", options);
  ASSERT_FALSE(out.error) << out.error->message;
  EXPECT_EQ(out.result.sub_step_results_size(), 0);
  EXPECT_EQ(engine_->Snapshot().sub_step_results_size(), 1);
}

}  // namespace
}  // namespace sr
