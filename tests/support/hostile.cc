#include "support/hostile.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

namespace sr::test {

Sandbox::Sandbox() {
  std::filesystem::create_directories(cwd());
  std::filesystem::create_directories(tmp());
}

Output Sandbox::Run(const std::vector<std::string>& args, std::chrono::seconds timeout,
                    std::map<std::string, std::string> env) const {
  env["TMPDIR"] = tmp();
  return RunStepRunner(args, {.cwd = cwd(), .env = env, .timeout = timeout});
}

Output Sandbox::RunLimited(const std::string& limit, const std::vector<std::string>& args) const {
#ifdef SR_SANITIZED
  (void)limit;  // sanitizers reserve terabytes of address space: no limit, just the run
  return Run(args);
#endif
  std::vector<std::string> argv{"/usr/bin/prlimit", "--as=" + limit, "--", Binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  Child child(argv, {.cwd = cwd(), .env = {{"TMPDIR", tmp()}}, .timeout = std::chrono::seconds(120)});
  return child.Wait();
}

std::vector<std::string> Sandbox::Leftovers() const {
  std::vector<std::string> out;
  for (const std::string& root : {cwd(), tmp()}) {
    for (const auto& e : std::filesystem::directory_iterator(root)) {
      if (e.path().filename() == "step-runner-cache") continue;
      out.push_back(e.path().string());
    }
  }
  return out;
}

void ExpectStepFileError(const Output& o, const std::string& what) {
  EXPECT_EQ(o.signal, 0) << "killed by signal " << o.signal << "; stderr: " << o.err.substr(0, 2000);
  EXPECT_EQ(o.exit_code, 2) << o.err.substr(0, 2000);
  EXPECT_THAT(o.err, ::testing::StartsWith("step-runner: "));
  EXPECT_EQ(std::count(o.err.begin(), o.err.end(), '\n'), 1) << o.err.substr(0, 2000);
  EXPECT_THAT(o.err, ::testing::HasSubstr(what));
}

std::vector<std::string> ListTree(const std::string& root) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(root, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) != 0) continue;
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    out.push_back(it->path().string() + " " + mode);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace sr::test
