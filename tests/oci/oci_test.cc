// OCI step references end to end against real registries (Debian's docker-registry): images built
// and run through `oci:`, auth (basic, bearer, docker config), HTTPS, dir/file, platforms, README.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "oci/oci_fixture.h"
#include "oci/registry_fixture.h"
#include "support/harness.h"

namespace sr::test {

Registries* const g = static_cast<Registries*>(::testing::AddGlobalTestEnvironment(new Registries));

namespace {

using ::testing::HasSubstr;

std::string AuthConfig(const std::string& registry, const std::string& user, const std::string& pw) {
  // base64 by the shell's own tool, so the test does not share our encoder.
  Output b64 = RunStepRunner({"run", "dist://script", "--inputs",
                              "script=printf %s '" + user + ":" + pw + "' | base64 -w0"});
  std::string encoded = b64.out.substr(b64.out.rfind('\n', b64.out.size() - 2) + 1);
  while (!encoded.empty() && encoded.back() == '\n') encoded.pop_back();
  return R"({"auths":{")" + registry + R"(":{"auth":")" + encoded + R"("}}})";
}

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
