// Fidelity with GitLab's Go step-runner (issue 15): the README's examples (first step, pipeline,
// cleanup that survives Ctrl-C) run as written and print what the README shows.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "support/compat.h"
#include "support/harness.h"

namespace sr::test {
namespace {

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

}  // namespace
}  // namespace sr::test
