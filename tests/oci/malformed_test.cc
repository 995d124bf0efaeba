// Hostile input to the OCI steps. JSON of the right syntax but the wrong shape, from a registry, a
// token service, a docker auth config and step inputs: the step fails with an error naming the
// document and the key, and the runner lives on (it used to end on nlohmann's type_error, exit
// 134). A blob cache directory in the shared $TMPDIR that another user owns or can write to is
// refused. The registry documents come from tests/oci/malformed_registry.py: a real registry
// never sends them.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <filesystem>

#include "oci/registry_fixture.h"
#include "support/harness.h"

namespace sr::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class Malformed : public IsolatedRunTest {
 protected:
  /// Starts malformed_registry.py; returns its address.
  std::string StartRegistry() {
    server_ = std::make_unique<Child>(
        std::vector<std::string>{"/usr/bin/python3",
                                 std::string(STEP_RUNNER_SOURCE_DIR) + "/tests/oci/malformed_registry.py",
                                 dir / "registry.port"},
        Options{});
    EXPECT_TRUE(server_->WaitForFile(dir / "registry.port"));
    return "127.0.0.1:" + dir.Read("registry.port");
  }
  Output Pull(const std::string& reg, const std::string& repo,
              std::map<std::string, std::string> env = {}) {
    return Run({"run", "--oci-registry", reg, "--oci-repository", repo, "--oci-tag", "1"}, env);
  }
  /// A failure of the step, not of the runner, and nothing left in TMPDIR but the cache.
  void ExpectCleanFailure(const Output& o) {
    EXPECT_EQ(o.exit_code, 1) << o.out << o.err;
    EXPECT_THAT(o.err, Not(HasSubstr("terminate")));
    for (const auto& e : std::filesystem::directory_iterator(dir / "tmp")) {
      EXPECT_EQ(e.path().filename(), "step-runner-cache") << "left behind: " << e.path();
    }
  }
  std::unique_ptr<Child> server_;
};

// The build step's platform `variant` must be a string; it is checked before any network traffic.
TEST_F(Malformed, BuildStepVariantOfTheWrongType) {
  dir.Write("src/step.yml", "spec:\n---\nexec:\n  command: [echo, hi]\n");
  Output o = Run({"run", "-f", dir.Write("build.yml",
                  "spec:\n---\nrun:\n  - name: build\n    step: dist://step/oci/build\n    inputs:\n"
                  "      registry: 127.0.0.1:1\n      repository: r\n      tag: '1'\n"
                  "      platforms:\n        linux/arm64:\n          files: {src/step.yml: step.yml}\n"
                  "          variant: 8\n")});
  ExpectCleanFailure(o);
  EXPECT_THAT(o.err, HasSubstr("input \"platforms\": linux/arm64: \"variant\" is a number, want a string"));
  EXPECT_THAT(o.err, HasSubstr("build"));
}

// Under `serve` it used to end the server and every job of it: now the job fails with the
// message, and the server serves the next job.
TEST_F(Malformed, UnderServeTheJobFailsAndTheServerLivesOn) {
  Options o;
  o.env["TMPDIR"] = dir / "tmp";
  const std::string socket = dir / "s.sock";
  Child server({Binary(), "serve", "--socket", socket}, o);
  ASSERT_TRUE(server.WaitForFile(socket));
  const std::string bad = dir.Write("bad.yml",
      "spec:\n---\nrun:\n  - name: build\n    step: dist://step/oci/build\n    inputs:\n"
      "      registry: 127.0.0.1:1\n      repository: r\n      tag: '1'\n"
      "      platforms: {linux/arm64: {variant: 8}}\n");
  Output failed = Run({"client", "--socket", socket, "run", bad, "--id", "bad", "--follow"});
  EXPECT_EQ(failed.exit_code, 1) << failed.out << failed.err;
  EXPECT_THAT(failed.out + failed.err, HasSubstr("linux/arm64: \"variant\" is a number, want a string"));
  Output status = Run({"client", "--socket", socket, "status", "bad"});
  EXPECT_THAT(status.out, HasSubstr("failure")) << status.err;

  const std::string ok = dir.Write("ok.yml", "spec:\n---\nrun:\n  - name: hi\n    script: echo still serving\n");
  Output next = Run({"client", "--socket", socket, "run", ok, "--id", "ok", "--follow"});
  EXPECT_EQ(next.exit_code, 0) << next.err;
  EXPECT_THAT(next.out, HasSubstr("still serving"));
  server.Signal(SIGTERM);
  EXPECT_EQ(server.Wait().exit_code, 0);
}

TEST_F(Malformed, RegistryDocumentsOfTheWrongShape) {
  const std::string reg = StartRegistry();
  Output layer = Pull(reg, "badlayer");
  ExpectCleanFailure(layer);
  EXPECT_THAT(layer.err, HasSubstr("fetching OCI image \"" + reg + "/badlayer:1\": the manifest of tag "
                                   "\"1\" layers[0]: \"digest\" is a number, want a string"));

  Output index = Pull(reg, "badindex");
  ExpectCleanFailure(index);
  EXPECT_THAT(index.err, HasSubstr("the index of tag \"1\" manifests[0] platform: \"os\" is a number, "
                                   "want a string"));

  Output error_body = Pull(reg, "nothing");
  ExpectCleanFailure(error_body);
  EXPECT_THAT(error_body.err, HasSubstr("404 (the registry's error body errors[0]: \"code\" is a number, "
                                        "want a string)"));

  Output token = Pull(reg, "token");
  ExpectCleanFailure(token);
  EXPECT_THAT(token.err, HasSubstr("registry " + reg + ": token service reply: \"token\" is a number, "
                                   "want a string"));

  Output auth = Pull(reg, "token", {{"DOCKER_AUTH_CONFIG", R"({"auths":{")" + reg + R"(":{"username":1}}})"}});
  ExpectCleanFailure(auth);
  EXPECT_THAT(auth.err, HasSubstr("$DOCKER_AUTH_CONFIG: auths[\"" + reg + "\"]: \"username\" is a number, "
                                  "want a string"));

  Output promote = Run({"run", "-f", dir.Write("promote.yml",
                        "spec:\n---\nrun:\n  - name: promote\n    step: dist://step/oci/promote\n"
                        "    inputs:\n      from_image: " + reg + "/badmanifests:1\n"
                        "      to_registry: " + reg + "\n      to_repository: copy\n"
                        "      to_version: 1.0.0\n")});
  ExpectCleanFailure(promote);
  EXPECT_THAT(promote.err, HasSubstr("copying OCI image \"" + reg + "/badmanifests:1\" to \"" + reg +
                                     "/copy:1.0.0\": the manifest of " + reg + "/badmanifests:1 "
                                     "manifests[0]: \"digest\" is a number, want a string"));
}

// The default cache is $TMPDIR/step-runner-cache: one pre-created by someone else (or left
// world-writable) would let them swap a blob in during the download. It is refused, named.
TEST_F(Malformed, SharedCacheDirectoryNotPrivateIsRefused) {
  const std::string reg = StartRegistry();
  const std::string cache = dir / "tmp/step-runner-cache";
  std::filesystem::create_directories(cache);
  std::filesystem::permissions(cache, std::filesystem::perms::all);  // 0777
  Output open = Pull(reg, "onelayer");
  ExpectCleanFailure(open);
  EXPECT_THAT(open.err, HasSubstr("layer sha256:" + std::string(64, 'b') + ": cache " + cache +
                                  " is not a private directory of this user (owner uid"));
  EXPECT_THAT(open.err, HasSubstr("mode 0777)"));
  EXPECT_FALSE(std::filesystem::exists(cache + "/oci"));

  std::filesystem::permissions(cache, std::filesystem::perms::owner_all);  // 0700
  if (::geteuid() == 0) {
    ASSERT_EQ(::chown(cache.c_str(), 65534, 65534), 0);  // nobody's
    Output other = Pull(reg, "onelayer");
    ExpectCleanFailure(other);
    EXPECT_THAT(other.err, HasSubstr("cache " + cache + " is not a private directory of this user "
                                     "(owner uid 65534, mode 0700)"));
    ASSERT_EQ(::chown(cache.c_str(), 0, 0), 0);
  }
  // Private again: the pull gets as far as the registry (which has no such blob).
  Output mine = Pull(reg, "onelayer");
  EXPECT_EQ(mine.exit_code, 1);
  EXPECT_THAT(mine.err, Not(HasSubstr("not a private directory")));
  EXPECT_THAT(mine.err, HasSubstr("404"));
}

}  // namespace
}  // namespace sr::test
