// What the OCI registry tests (tests/oci/oci*_test.cc) share: one registry pair for the whole
// binary, and the OciTest fixture (its own repositories and $TMPDIR, so an empty cache, per test).
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "oci/registry_fixture.h"
#include "support/harness.h"

namespace sr::test {

inline constexpr char kUser[] = "fred";
inline constexpr char kPassword[] = "c0d3_n1nj4";

struct Registries : ::testing::Environment {
  void SetUp() override {
    root = std::make_unique<TestDir>();
    std::filesystem::create_directories(*root / "anon");
    std::filesystem::create_directories(*root / "auth");
    anon = std::make_unique<Registry>(*root / "anon", "");
    authed = std::make_unique<Registry>(*root / "auth", std::string(kUser) + ":" + kPassword);
  }
  void TearDown() override {
    anon.reset();
    authed.reset();
    root.reset();
  }
  std::unique_ptr<TestDir> root;
  std::unique_ptr<Registry> anon, authed;
};

// Registered once, in oci_test.cc: started before the first test, stopped after the last.
extern Registries* const g;

class OciTest : public IsolatedRunTest {
 protected:
  Output RunFile(const std::string& text, std::map<std::string, std::string> env = {}) {
    return Run({"run", "-f", dir.Write("pipeline-" + std::to_string(++files_) + ".yml", text)}, env);
  }
  /// Builds an image with dist://step/oci/build; `platforms` is the YAML of that input.
  void Build(const std::string& registry, const std::string& repo, const std::string& tag,
             const std::string& common_files, const std::string& platforms,
             std::map<std::string, std::string> env = {}) {
    Output o = RunFile("spec:\n---\nrun:\n  - name: build\n    step: dist://step/oci/build\n"
                       "    inputs:\n      registry: " + registry + "\n      repository: " + repo +
                       "\n      tag: '" + tag + "'\n      common:\n        files: {" + common_files +
                       "}\n      platforms: " + platforms + "\n", env);
    ASSERT_EQ(o.exit_code, 0) << o.out << o.err;
  }
  /// An echo step at src/<name>/step.yml printing `text`.
  std::string EchoStep(const std::string& name, const std::string& text) {
    dir.Write("src/" + name + "/step.yml", "spec:\n---\nexec:\n  command: [echo, \"" + text + "\"]\n");
    return dir / ("src/" + name);
  }
  int files_ = 0;
};

}  // namespace sr::test
