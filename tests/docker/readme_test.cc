// README's "Containers started through Docker" example, run exactly as written: the step file,
// the command (Ctrl-C where the transcript shows ^C), its output line for line (container ids
// and the remaining grace vary; parallel lines may come in any order), and the `docker ps` after.
#include <signal.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "docker/daemon.h"
#include "support/harness.h"

namespace sr::test {
namespace {

std::string Block(const std::string& text, size_t from, const std::string& fence) {
  size_t start = text.find("```" + fence + "\n", from);
  if (start == std::string::npos) return "";
  start += 4 + fence.size();
  return text.substr(start, text.find("```", start) - start);
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

// Words that are 12 hex digits become <id>; a duration after "SIGKILL after" or "grace" becomes
// <d>. (Not std::regex: GCC 12 warns inside it under the sanitizers.)
std::string Normalize(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  auto hex12 = [](const std::string& w) {
    return w.size() == 12 && w.find_first_not_of("0123456789abcdef") == std::string::npos;
  };
  auto duration = [](std::string w) {
    for (const char* tail : {"s);", "s)", "s,", "s"}) {
      std::string t(tail);
      if (w.size() > t.size() && w.ends_with(t)) {
        std::string n = w.substr(0, w.size() - t.size());
        if (n.ends_with("m")) n.pop_back();
        if (!n.empty() && n.find_first_not_of("0123456789.") == std::string::npos) return "<d>" + t.substr(1);
      }
    }
    return w;
  };
  std::string out;
  for (size_t i = 0; i < words.size(); ++i) {
    std::string w = words[i];
    if (hex12(w)) w = "<id>";
    if (i > 0 && (words[i - 1].ends_with("grace") || words[i - 1] == "after")) w = duration(w);
    out += (out.empty() ? "" : " ") + w;
  }
  return out;
}

TEST(ReadmeDocker, ExampleRunsAsWritten) {
  std::string why;
  DockerDaemon* daemon = DockerDaemon::Get(&why);
  if (!daemon) GTEST_SKIP() << "skipped: " << why;
  std::ostringstream readme;
  readme << std::ifstream(std::string(STEP_RUNNER_SOURCE_DIR) + "/README.md").rdbuf();
  const std::string text = readme.str();
  const size_t section = text.find("## Containers started through Docker");
  ASSERT_NE(section, std::string::npos);
  const std::string yaml = Block(text, section, "yaml");
  const std::vector<std::string> console = Lines(Block(text, section, "console"));
  ASSERT_FALSE(yaml.empty());
  ASSERT_GE(console.size(), 4u);

  TestDir dir;
  dir.Write("docker-demo.yml", yaml);
  Options o;
  o.cwd = dir.path();
  o.env["DOCKER_HOST"] = daemon->host();
  o.env["TMPDIR"] = dir.path();
  o.timeout = std::chrono::seconds(90);

  // The first command and its transcript.
  ASSERT_EQ(console[0].rfind("$ step-runner ", 0), 0u);
  std::vector<std::string> argv = {Binary()};
  std::istringstream words(console[0].substr(std::string("$ step-runner ").size()));
  for (std::string w; words >> w;) argv.push_back(w);
  std::vector<std::string> expected;
  std::string interrupt_after;
  size_t i = 1;
  for (; i < console.size() && console[i].rfind("$ ", 0) != 0; ++i) {
    if (console[i] == "^C") {
      interrupt_after = console[i - 1];
    } else {
      expected.push_back(Normalize(console[i]));
    }
  }
  Child run(argv, o);
  if (!interrupt_after.empty()) {
    bool seen = false;
    for (int n = 0; n < 3000 && !seen; ++n) {
      seen = run.StdoutSoFar().find(interrupt_after) != std::string::npos;
      if (!seen) ::usleep(20000);
    }
    ASSERT_TRUE(seen) << "never printed: " << interrupt_after;
    run.Signal(SIGINT);
  }
  Output out = run.Wait();
  std::vector<std::string> got;
  for (const auto& l : Lines(out.out + out.err)) got.push_back(Normalize(l));
  std::sort(expected.begin(), expected.end());
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, expected) << "stdout:\n" << out.out << "stderr:\n" << out.err;

  // The next command: what is left.
  ASSERT_LT(i, console.size());
  ASSERT_EQ(console[i].rfind("$ docker ", 0), 0u);
  std::string want;
  for (size_t j = i + 1; j < console.size(); ++j) want += console[j] + "\n";
  EXPECT_EQ(Shell("DOCKER_HOST=" + daemon->host() + " " + console[i].substr(2)).out, want);
  daemon->Docker("rm -f demo-cache");
}

}  // namespace
}  // namespace sr::test
