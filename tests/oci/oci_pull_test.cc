// OCI pulls from a real registry: an unknown tag and a stopped registry, a tampered layer, the blob
// cache (shared, verified, reused), and a cancel, a timeout or a SIGKILL mid-pull.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <regex>
#include <thread>

#include "oci/oci_fixture.h"
#include "oci/registry_fixture.h"
#include "support/harness.h"

namespace sr::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST_F(OciTest, UnknownTagAndStoppedRegistry) {
  const std::string reg = g->anon->address();
  Output o = Run({"run", "--oci-registry", reg, "--oci-repository", "nothing", "--oci-tag", "9"});
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_THAT(o.err, HasSubstr("fetching OCI image \"" + reg + "/nothing:9\": tag \"9\" not found"));

  std::filesystem::create_directories(dir / "stopped");
  auto stopped = std::make_unique<Registry>(dir / "stopped", "");
  const std::string gone = stopped->address();
  Build(gone, "soon/gone", "1", "\"" + EchoStep("g", "x") + "\": \".\"", "{linux/amd64: {}}");
  stopped.reset();
  o = Run({"run", "--oci-registry", gone, "--oci-repository", "soon/gone", "--oci-tag", "1"});
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_THAT(o.err, HasSubstr("registry " + gone + ": GET http://" + gone));
  EXPECT_THAT(o.err, HasSubstr("unreachable"));
}

TEST_F(OciTest, TamperedLayerIsADigestMismatch) {
  const std::string reg = g->anon->address();
  // Content of its own, so no other test shares the blob we spoil.
  const std::string unique = dir.path();
  Build(reg, "tampered", "1", "\"" + EchoStep("t", unique) + "\": \".\"", "{linux/amd64: {}}");
  Output ok = Run({"run", "--oci-registry", reg, "--oci-repository", "tampered", "--oci-tag", "1"});
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(ok.out, m, std::regex("digest=(sha256:[0-9a-f]{64})")));
  // The layer is the manifest's only layer: find it in the registry log of this repository.
  std::smatch layer;
  const std::string log = g->anon->Log();
  ASSERT_TRUE(std::regex_search(log, layer, std::regex("GET /v2/tampered/blobs/(sha256:[0-9a-f]{64})")));
  const std::string blob = g->anon->BlobFile(layer[1]);
  std::string data = dir.Read("../" + std::filesystem::relative(blob, dir.path()).string());
  data[data.size() / 2] ^= 0x5a;
  std::ofstream(blob, std::ios::binary | std::ios::trunc) << data;
  std::filesystem::remove_all(dir / "tmp/step-runner-cache");  // make it download again

  Output bad = Run({"run", "--oci-registry", reg, "--oci-repository", "tampered", "--oci-tag", "1"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_THAT(bad.err, HasSubstr("layer " + layer[1].str() + ": digest mismatch: blob " + layer[1].str() +
                                 " arrived as sha256:"));
  // Nothing half-written stays in the cache.
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir / "tmp/step-runner-cache")) {
    EXPECT_THAT(e.path().filename().string(), Not(HasSubstr(".tmp-")));
  }
}

TEST_F(OciTest, CacheReusesVerifiesAndSharesDownloads) {
  const std::string reg = g->anon->address();
  Build(reg, "cached", "1", "\"" + EchoStep("c", "from the cache") + "\": \".\"", "{linux/amd64: {}}");
  const std::vector<std::string> args{"run", "--oci-registry", reg, "--oci-repository", "cached",
                                      "--oci-tag", "1"};
  // Two processes at once with an empty cache: one download per blob.
  Options o;
  o.cwd = dir.path();
  o.env = {{"TMPDIR", dir / "tmp"}, {"HOME", dir / "home"}};
  std::vector<std::string> argv{Binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  Child first(argv, o), second(argv, o);
  Output a = first.Wait(), b = second.Wait();
  ASSERT_EQ(a.exit_code, 0) << a.err;
  ASSERT_EQ(b.exit_code, 0) << b.err;
  std::smatch layer;
  const std::string log = g->anon->Log();
  ASSERT_TRUE(std::regex_search(log, layer, std::regex("GET (/v2/cached/blobs/sha256:[0-9a-f]{64})")));
  EXPECT_EQ(g->anon->CountGets(layer[1]), 1);

  // A third use: no download at all.
  Output c = Run(args);
  EXPECT_THAT(c.out, HasSubstr("from the cache"));
  EXPECT_THAT(c.out, HasSubstr("downloaded=0"));
  EXPECT_EQ(g->anon->CountGets(layer[1]), 1);

  // A corrupt cache entry is noticed and fetched again.
  const std::string hex = layer[1].str().substr(layer[1].str().size() - 64);
  const std::string entry = dir / ("tmp/step-runner-cache/oci/blobs/sha256/" + hex);
  ASSERT_TRUE(std::filesystem::exists(entry));
  std::ofstream(entry, std::ios::binary | std::ios::trunc) << "garbage";
  Output d = Run(args);
  EXPECT_EQ(d.exit_code, 0) << d.err;
  EXPECT_THAT(d.out, HasSubstr("from the cache"));
  EXPECT_THAT(d.out, HasSubstr("downloaded=1"));
  EXPECT_EQ(g->anon->CountGets(layer[1]), 2);
}

TEST_F(OciTest, CancelDuringASlowPull) {
  const std::string reg = g->anon->address();
  // 2 MiB that do not compress: ~13 s through the proxy.
  std::string noise(2 << 20, '\0');
  uint32_t x = 2463534242u;
  for (auto& ch : noise) {
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;
    ch = static_cast<char>(x);
  }
  dir.Write("big/blob", noise);
  Build(reg, "big", "1", "\"" + EchoStep("b", "never") + "\": \".\", \"" + dir.path() + "/big\": \"data\"",
        "{linux/amd64: {}}");
  ASSERT_FALSE(HasFatalFailure());
  SlowProxy proxy(std::stoi(reg.substr(reg.find(':') + 1)));
  Options o;
  o.cwd = dir.path();
  o.env = {{"TMPDIR", dir / "tmp"}, {"HOME", dir / "home"}};
  const std::vector<std::string> pull{Binary(), "run", "--oci-registry", "127.0.0.1:" + std::to_string(proxy.port()),
                                      "--oci-repository", "big", "--oci-tag", "1"};
  auto mid_layer = [&](Child& run, long from) {  // 256 KiB more than `from` forwarded
    for (int i = 0; i < 6000 && proxy.forwarded() - from < (256 << 10); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_GE(proxy.forwarded() - from, 256 << 10) << run.StdoutSoFar();
  };
  Child run(pull, o);
  mid_layer(run, 0);
  ASSERT_FALSE(HasFatalFailure());
  const auto sent = std::chrono::steady_clock::now();
  run.Signal(SIGTERM);
  Output out = run.Wait();
  const auto took = std::chrono::steady_clock::now() - sent;
  std::printf("cancel to exit during a pull: %.1f ms\n",
              std::chrono::duration<double, std::milli>(took).count());  // a figure, not a check
  EXPECT_EQ(out.exit_code, 130) << out.err;
  EXPECT_LT(proxy.forwarded(), 1 << 20);  // it stopped mid-layer
  // Neither the half-pulled blob nor the half-unpacked directory stays.
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir / "tmp")) {
    EXPECT_THAT(e.path().filename().string(), Not(HasSubstr(".tmp-"))) << e.path();
    EXPECT_THAT(e.path().string(), Not(HasSubstr("/oci-"))) << e.path();
  }
  // The job's timeout during a pull is a timeout (exit 124), not a cancel (it exited 130).
  Output timed = RunStepRunner({"run", "--oci-registry", "127.0.0.1:" + std::to_string(proxy.port()),
                                "--oci-repository", "big", "--oci-tag", "1", "--timeout", "1s"},
                               o);
  EXPECT_EQ(timed.exit_code, 124) << timed.err;
  EXPECT_THAT(timed.err, HasSubstr("(timed out)"));

  // A runner SIGKILLed mid-layer leaves its partial blob; the next start, whatever it runs,
  // removes it (its download's lock died with it) and says so.
  {
    const long from = proxy.forwarded();
    Child killed(pull, o);
    mid_layer(killed, from);
    ASSERT_FALSE(HasFatalFailure());
    killed.Signal(SIGKILL);
    killed.Wait();
  }
  auto partial_blobs = [&] {
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir / "tmp/step-runner-cache/oci/blobs/sha256")) {
      n += e.path().filename().string().find(".tmp-") != std::string::npos;
    }
    return n;
  };
  ASSERT_EQ(partial_blobs(), 1);
  Output next = RunStepRunner({"run", "dist://script", "--inputs", "script=true"}, o);
  EXPECT_EQ(next.exit_code, 0) << next.err;
  EXPECT_THAT(next.err, HasSubstr("1 partial download"));
  EXPECT_EQ(partial_blobs(), 0);
}

}  // namespace
}  // namespace sr::test
