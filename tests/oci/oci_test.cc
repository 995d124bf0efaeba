// OCI step references end to end: the real binary against real registries (Debian's
// docker-registry), images built with dist://step/oci/build or pushed by hand, pulled through
// `oci:` references, dist://step/oci/fetch and the run --oci-* flags. One registry pair for the
// whole binary (started by the environment below); every test uses its own repositories and its
// own $TMPDIR, so its cache starts empty.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "oci/registry_fixture.h"
#include "support/harness.h"

namespace sr::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

const char kUser[] = "fred";
const char kPassword[] = "c0d3_n1nj4";

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
Registries* const g = static_cast<Registries*>(::testing::AddGlobalTestEnvironment(new Registries));

std::string AuthConfig(const std::string& registry, const std::string& user, const std::string& pw) {
  // base64 by the shell's own tool, so the test does not share our encoder.
  Output b64 = RunStepRunner({"run", "dist://script", "--inputs",
                              "script=printf %s '" + user + ":" + pw + "' | base64 -w0"});
  std::string encoded = b64.out.substr(b64.out.rfind('\n', b64.out.size() - 2) + 1);
  while (!encoded.empty() && encoded.back() == '\n') encoded.pop_back();
  return R"({"auths":{")" + registry + R"(":{"auth":")" + encoded + R"("}}})";
}

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

// GitLab's own integration test (TestCanBuildAndFetchAnImage): build with dist://step/oci/build
// against a registry requiring auth, then run the image through `oci:`.
TEST_F(OciTest, BuildThenRunTheImageWithBasicAuth) {
  dir.Write("src/step.yml", "spec:\n---\nexec:\n  command: [cat, '${{step_dir}}/app/files/templates/message']\n");
  dir.Write("src/files/templates_dir/message", "Hello, World!");
  const std::string reg = g->authed->address();
  const std::string pipeline =
      "spec:\n---\nrun:\n"
      "  - name: build_image\n    step: dist://step/oci/build\n    inputs:\n"
      "      registry: " + reg + "\n      repository: my-image\n      tag: pipeline-111234\n"
      "      common:\n        files:\n          " + dir.path() + "/src/step.yml: step.yml\n"
      "      platforms:\n        linux/amd64:\n          files:\n"
      "            " + dir.path() + "/src/files/templates_dir: /app/files/templates\n"
      "  - name: run_built_image\n    step:\n      oci:\n        registry: " + reg + "\n"
      "        repository: my-image\n        tag: pipeline-111234\n"
      "  - name: echo_ref\n    script: \"echo ref: ${{steps.build_image.outputs.ref}}\"\n"
      "  - name: echo_digest\n    script: \"echo digest: ${{steps.build_image.outputs.digest.value}} "
      "${{steps.build_image.outputs.digest.algorithm}} ${{steps.build_image.outputs.tag}}\"\n";
  Output o = RunFile(pipeline, {{"DOCKER_AUTH_CONFIG", AuthConfig(reg, kUser, kPassword)}});
  ASSERT_EQ(o.exit_code, 0) << o.out << o.err;
  EXPECT_THAT(o.out, HasSubstr("Hello, World!"));
  EXPECT_THAT(o.out, HasSubstr("ref: " + reg + "/my-image:pipeline-111234"));
  EXPECT_TRUE(std::regex_search(o.out, std::regex("digest: sha256:[0-9a-f]{64} sha256 pipeline-111234")))
      << o.out;
  EXPECT_TRUE(std::regex_search(o.out, std::regex("fetched step image=.*/my-image:pipeline-111234")));

  // The same pipeline again: Go's build refuses to overwrite a published tag.
  o = RunFile(pipeline, {{"DOCKER_AUTH_CONFIG", AuthConfig(reg, kUser, kPassword)}});
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_THAT(o.err, HasSubstr("image already published: " + reg + "/my-image:pipeline-111234"));
}

TEST_F(OciTest, AuthWithoutWrongAndFromDockerConfigFile) {
  const std::string reg = g->authed->address();
  Build(reg, "auth/echo", "1", "\"" + EchoStep("a", "authenticated") + "\": \".\"",
        "{linux/amd64: {}}", {{"DOCKER_AUTH_CONFIG", AuthConfig(reg, kUser, kPassword)}});
  const std::vector<std::string> args{"run", "--oci-registry", reg, "--oci-repository", "auth/echo",
                                      "--oci-tag", "1"};
  Output none = Run(args);
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_THAT(none.err, HasSubstr("registry " + reg + " requires authentication"));
  EXPECT_THAT(none.err, HasSubstr("no credentials for it in $DOCKER_AUTH_CONFIG"));

  Output wrong = Run(args, {{"DOCKER_AUTH_CONFIG", AuthConfig(reg, kUser, "nope")}});
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_THAT(wrong.err, HasSubstr("registry " + reg + " refused the credentials of user \"fred\""));

  dir.Write("home/.docker/config.json", AuthConfig(reg, kUser, kPassword));
  Output file = Run(args);
  EXPECT_EQ(file.exit_code, 0) << file.err;
  EXPECT_THAT(file.out, HasSubstr("authenticated"));
}

// The bearer-token dance (WWW-Authenticate: Bearer realm=…), with a token service in front of
// the anonymous registry: push (scope pull,push) and pull, with and without credentials.
TEST_F(OciTest, BearerTokenAuth) {
  const std::string anon = g->anon->address();
  Child proxy({"/usr/bin/python3", std::string(STEP_RUNNER_SOURCE_DIR) + "/tests/oci/token_proxy.py",
               dir / "proxy.port", anon.substr(anon.find(':') + 1), kUser, kPassword},
              Options{});
  ASSERT_TRUE(proxy.WaitForFile(dir / "proxy.port"));
  const std::string reg = "127.0.0.1:" + dir.Read("proxy.port");
  const std::string creds = AuthConfig(reg, kUser, kPassword);
  Build(reg, "bearer/echo", "1", "\"" + EchoStep("b", "behind a token service") + "\": \".\"",
        "{linux/amd64: {}}", {{"DOCKER_AUTH_CONFIG", creds}});
  const std::vector<std::string> args{"run", "--oci-registry", reg, "--oci-repository", "bearer/echo",
                                      "--oci-tag", "1"};
  Output none = Run(args);
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_THAT(none.err, HasSubstr("registry " + reg + " requires authentication (token service: 401)"));
  Output ok = Run(args, {{"DOCKER_AUTH_CONFIG", creds}});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_THAT(ok.out, HasSubstr("behind a token service"));
}

// HTTPS to a registry that is not localhost (127.0.0.2 counts as remote), trusting its
// self-signed certificate through SSL_CERT_FILE as Go does; without it, a certificate error.
// STEP_RUNNER_OCI_INSECURE switches such a registry to plain HTTP.
TEST_F(OciTest, HttpsAndInsecureRegistries) {
  std::filesystem::create_directories(dir / "tls");
  std::filesystem::create_directories(dir / "secure");
  std::filesystem::create_directories(dir / "plain");
  Output cert = Child({"/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                       "-nodes", "-days", "1", "-subj", "/CN=127.0.0.2", "-addext",
                       "subjectAltName=IP:127.0.0.2", "-keyout", dir / "tls/key.pem", "-out",
                       dir / "tls/cert.pem"}, Options{}).Wait();
  ASSERT_EQ(cert.exit_code, 0) << cert.err;
  Registry secure(dir / "secure", "", "127.0.0.2", dir / "tls");
  const std::string reg = secure.address();
  const std::map<std::string, std::string> trust{{"SSL_CERT_FILE", dir / "tls/cert.pem"}};
  Build(reg, "tls/echo", "1", "\"" + EchoStep("s", "over https") + "\": \".\"", "{linux/amd64: {}}", trust);
  const std::vector<std::string> args{"run", "--oci-registry", reg, "--oci-repository", "tls/echo",
                                      "--oci-tag", "1"};
  Output ok = Run(args, trust);
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_THAT(ok.out, HasSubstr("over https"));
  Output untrusted = Run(args);
  EXPECT_EQ(untrusted.exit_code, 1);
  EXPECT_THAT(untrusted.err, HasSubstr("GET https://" + reg + "/v2/tls/echo/manifests/1"));
  EXPECT_THAT(untrusted.err, HasSubstr("certificate"));

  Registry plain(dir / "plain", "", "127.0.0.2");
  const std::map<std::string, std::string> insecure{{"STEP_RUNNER_OCI_INSECURE", "example.org, " + plain.address()}};
  Build(plain.address(), "plain/echo", "1", "\"" + EchoStep("i", "over plain http") + "\": \".\"",
        "{linux/amd64: {}}", insecure);
  Output http = Run({"run", "--oci-registry", plain.address(), "--oci-repository", "plain/echo",
                     "--oci-tag", "1"}, insecure);
  EXPECT_EQ(http.exit_code, 0) << http.err;
  EXPECT_THAT(http.out, HasSubstr("over plain http"));
}

TEST_F(OciTest, DirFileAndTheCliFlags) {
  dir.Write("src/tools/steps/greet/hello.yml",
            "spec:\n  inputs:\n    who: {type: string}\n---\nexec:\n  command: [echo, \"hello ${{inputs.who}}\"]\n");
  const std::string reg = g->anon->address();
  Build(reg, "tools", "v1", "\"" + dir.path() + "/src/tools\": \"/\"", "{linux/amd64: {}}");
  Output o = RunFile("spec:\n---\nrun:\n  - name: greet\n    step:\n      oci:\n        registry: " +
                     reg + "\n        repository: tools\n        tag: v1\n        dir: steps/greet\n"
                     "        file: hello.yml\n    inputs:\n      who: oci\n");
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_THAT(o.out, HasSubstr("hello oci"));

  o = Run({"run", "--oci-registry", reg, "--oci-repository", "tools", "--oci-tag", "v1",
           "--oci-dir", "steps/greet", "--oci-filename", "hello.yml", "--inputs", "who=flags"});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_THAT(o.out, HasSubstr("hello flags"));

  // dist://step/oci/fetch on its own, with Go's inputs and outputs.
  o = RunFile("spec:\n---\nrun:\n  - name: f\n    step: dist://step/oci/fetch\n    inputs:\n"
              "      registry: " + reg + "\n      repository: tools\n      tag: v1\n"
              "      step_path: steps/greet\n"
              "  - name: show\n    script: \"ls ${{steps.f.outputs.fetched_step_path}}; echo ${{steps.f.outputs.ref}}\"\n");
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_THAT(o.out, HasSubstr("hello.yml\n" + reg + "/tools:v1"));
}

TEST_F(OciTest, MultiPlatformIndexPicksThisHostThenGeneric) {
  const std::string reg = g->anon->address();
  const std::string amd = EchoStep("amd", "built for amd64"), arm = EchoStep("arm", "built for arm64"),
                    gen = EchoStep("gen", "built for any platform");
  Build(reg, "multi", "1", "",
        "{linux/arm64: {files: {\"" + arm + "\": \".\"}}, linux/amd64: {files: {\"" + amd +
            "\": \".\"}}, \"generic/\": {files: {\"" + gen + "\": \".\"}}}");
  Build(reg, "generic", "1", "",
        "{linux/arm64: {files: {\"" + arm + "\": \".\"}}, \"generic/\": {files: {\"" + gen + "\": \".\"}}}");
  Build(reg, "armonly", "1", "", "{linux/arm64: {files: {\"" + arm + "\": \".\"}}}");
  auto run = [&](const std::string& repo) {
    return Run({"run", "--oci-registry", reg, "--oci-repository", repo, "--oci-tag", "1"});
  };
  Output o = run("multi");
  EXPECT_THAT(o.out, HasSubstr("built for amd64")) << o.err;
  o = run("generic");
  EXPECT_THAT(o.out, HasSubstr("built for any platform")) << o.err;
  o = run("armonly");
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_THAT(o.err, HasSubstr("no manifest for platform linux/amd64 or generic in " + reg +
                               "/armonly:1 (it has: linux/arm64)"));
}

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

TEST_F(OciTest, PromoteCopiesToASemverTag) {
  const std::string reg = g->anon->address();
  Build(reg, "staging/tool", "rc", "\"" + EchoStep("p", "promoted step") + "\": \".\"", "{linux/amd64: {}}");
  Output o = RunFile("spec:\n---\nrun:\n  - name: promote\n    step: dist://step/oci/promote\n"
                     "    inputs:\n      from_image: " + reg + "/staging/tool:rc\n      to_registry: " + reg +
                     "\n      to_repository: release/tool\n      to_version: 1.2.3\n");
  ASSERT_EQ(o.exit_code, 0) << o.err;
  o = Run({"run", "--oci-registry", reg, "--oci-repository", "release/tool", "--oci-tag", "1.2.3"});
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_THAT(o.out, HasSubstr("promoted step"));
}

// README's "Steps from OCI images" examples, as written: each block after an
// `<!-- oci-example: NAME -->` marker is written to NAME, or run (`run`: each `$ ` line).
TEST_F(OciTest, ReadmeExamplesRunAsWritten) {
  std::ifstream in(std::string(STEP_RUNNER_SOURCE_DIR) + "/README.md");
  std::map<std::string, std::string> blocks;
  std::string line, name, body;
  bool inside = false;
  std::smatch m;
  while (std::getline(in, line)) {
    if (std::regex_match(line, m, std::regex("<!-- oci-example: (.*) -->"))) {
      name = m[1];
    } else if (!name.empty() && !inside && line.rfind("```", 0) == 0) {
      inside = true;
      body.clear();
    } else if (inside && line == "```") {
      blocks[name] = body;
      inside = false;
      name.clear();
    } else if (inside) {
      body += line + "\n";
    }
  }
  ASSERT_EQ(blocks.size(), 4u);
  std::filesystem::create_directories(dir / "build");
  std::filesystem::create_symlink(Binary(), dir / "build/step-runner");
  dir.Write("hello/step.yml", blocks["hello/step.yml"]);
  dir.Write("publish.yml", blocks["publish.yml"]);
  dir.Write("push-by-hand.sh", blocks["push-by-hand.sh"]);
  Options o;
  o.cwd = dir.path();
  o.env = {{"TMPDIR", dir / "tmp"}, {"HOME", dir / "home"}, {"REGISTRY", g->anon->address()}};
  o.unset_env = {"DOCKER_AUTH_CONFIG", "STEP_RUNNER_OCI_INSECURE"};
  std::string out;
  std::stringstream commands(blocks["run"]);
  while (std::getline(commands, line)) {
    ASSERT_EQ(line.rfind("$ ", 0), 0u) << line;
    Output r = Child({"/bin/sh", "-c", line.substr(2)}, o).Wait();
    ASSERT_EQ(r.exit_code, 0) << line << "\n" << r.out << r.err;
    out += r.out;
  }
  EXPECT_THAT(out, HasSubstr("hello CI from an OCI image"));
  EXPECT_TRUE(std::regex_search(out, std::regex("pushed .*/steps/hello:1.0.0 as sha256:[0-9a-f]{64}")));
  EXPECT_THAT(out, HasSubstr("hello you from an OCI image"));
  Output by_hand = Child({"/bin/sh", "push-by-hand.sh"}, o).Wait();
  ASSERT_EQ(by_hand.exit_code, 0) << by_hand.out << by_hand.err;
  EXPECT_THAT(by_hand.out, HasSubstr("platform=generic"));
  EXPECT_THAT(by_hand.out, HasSubstr("pushed by hand"));
}

}  // namespace
}  // namespace sr::test
