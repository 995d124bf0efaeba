// The oci/ pieces that need no registry: references, transport choice, credentials, digests, JSON
// fields and the coroutine guard (layers and the cache: layers_test.cc; registries: tests/oci).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "oci/digest.h"
#include "oci/internal.h"
#include "oci/registry.h"
#include "oci/test_loop.h"
#include "util/json_field.h"
#include "util/tempdir.h"

namespace sr::oci {
namespace {

using ::testing::HasSubstr;

TEST(ImageRef, ParsesRegistryRepositoryAndTag) {
  auto r = ParseImageRef("127.0.0.1:5000/steps/echo:1.2.3");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->registry, "127.0.0.1:5000");
  EXPECT_EQ(r->repository, "steps/echo");
  EXPECT_EQ(r->tag, "1.2.3");
  EXPECT_EQ(r->ToString(), "127.0.0.1:5000/steps/echo:1.2.3");
  r = ParseImageRef("registry.gitlab.com/a/b");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->tag, "latest");
  r = ParseImageRef("alpine:3");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->registry, "index.docker.io");
  EXPECT_EQ(r->repository, "library/alpine");
  r = ParseImageRef("localhost:5000/x@sha256:" + std::string(64, 'a'));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->ToString(), "localhost:5000/x@sha256:" + std::string(64, 'a'));
}

TEST(Scheme, PlainHttpOnlyForLoopbackAndListedRegistries) {
  const std::map<std::string, std::string> none;
  EXPECT_EQ(SchemeFor(none, "localhost:5000"), "http");
  EXPECT_EQ(SchemeFor(none, "127.0.0.1:5000"), "http");
  EXPECT_EQ(SchemeFor(none, "[::1]:5000"), "http");
  EXPECT_EQ(SchemeFor(none, "registry.gitlab.com"), "https");
  EXPECT_EQ(SchemeFor(none, "127.0.0.2:5000"), "https");
  const std::map<std::string, std::string> listed{{"STEP_RUNNER_OCI_INSECURE", "a.test:1, b.test"}};
  EXPECT_EQ(SchemeFor(listed, "a.test:1"), "http");
  EXPECT_EQ(SchemeFor(listed, "a.test:2"), "https");
  EXPECT_EQ(SchemeFor(listed, "b.test:7"), "http");  // a host without a port covers every port
}

TEST(Credentials, FromDockerAuthConfigThenConfigFile) {
  TempDir home = std::move(TempDir::Create("oci-home-").value());
  std::map<std::string, std::string> env{{"HOME", home.path()}};
  auto c = FindCredentials(env, "reg.test:5000");
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->has_value());  // no config anywhere: anonymous

  std::filesystem::create_directories(home.path() + "/.docker");
  std::ofstream(home.path() + "/.docker/config.json")
      << R"({"auths":{"https://reg.test:5000/v1/":{"auth":")" << Base64("ann:s3cret:x") << R"("}}})";
  c = FindCredentials(env, "reg.test:5000");
  ASSERT_TRUE(c.ok() && c->has_value());
  EXPECT_EQ((*c)->username, "ann");
  EXPECT_EQ((*c)->password, "s3cret:x");

  env["DOCKER_AUTH_CONFIG"] = R"({"auths":{"reg.test:5000":{"username":"bob","password":"pw"}}})";
  c = FindCredentials(env, "reg.test:5000");
  ASSERT_TRUE(c.ok() && c->has_value());
  EXPECT_EQ((*c)->username, "bob");
  c = FindCredentials(env, "other.test");
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->has_value());

  env["DOCKER_AUTH_CONFIG"] = "{not json";
  c = FindCredentials(env, "reg.test:5000");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.error().message, HasSubstr("$DOCKER_AUTH_CONFIG: not a JSON object"));
}

TEST(Digest, Sha256AndChecks) {
  EXPECT_EQ(DigestOf("abc"), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_TRUE(CheckDigest(DigestOf("")).ok());
  EXPECT_FALSE(CheckDigest("sha256:../../etc/passwd").ok());
  EXPECT_FALSE(CheckDigest("sha512:" + std::string(128, 'a')).ok());
  EXPECT_EQ(Base64("fred:c0d3_n1nj4"), "ZnJlZDpjMGQzX24xbmo0");
  EXPECT_EQ(*DecodeBase64("ZnJlZDpjMGQzX24xbmo0"), "fred:c0d3_n1nj4");
  EXPECT_EQ(*DecodeBase64(Base64("ab")), "ab");
}

TEST(JsonField, ReadsOnlyTheExpectedTypeAndNamesDocumentAndKey) {
  const auto doc = nlohmann::json::parse(R"({"s":"x","n":5,"o":{},"a":[],"z":null})");
  EXPECT_EQ(JsonField<std::string>(doc, "s", "doc").value(), "x");
  EXPECT_EQ(JsonField<std::string>(doc, "missing", "doc", "dflt").value(), "dflt");
  EXPECT_EQ(JsonField<std::string>(doc, "z", "doc", "dflt").value(), "dflt");
  auto n = JsonField<std::string>(doc, "n", "manifest sha256:x");
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.error().message, "manifest sha256:x: \"n\" is a number, want a string");
  EXPECT_FALSE(JsonField<nlohmann::json>(doc, "o", "doc", nlohmann::json::array()).ok());
  EXPECT_TRUE(JsonField<nlohmann::json>(doc, "a", "doc", nlohmann::json::array()).ok());
  auto not_object = JsonField<std::string>(nlohmann::json::array(), "k", "token reply");
  ASSERT_FALSE(not_object.ok());
  EXPECT_EQ(not_object.error().message, "token reply: is an array, want a JSON object");
}

TEST(Credentials, FieldsOfTheWrongTypeAreAnErrorNamingTheEntry) {
  std::map<std::string, std::string> env{{"DOCKER_AUTH_CONFIG", R"({"auths":{"reg":{"username":1}}})"}};
  auto c = FindCredentials(env, "reg");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().message, "$DOCKER_AUTH_CONFIG: auths[\"reg\"]: \"username\" is a number, want a string");
}

TEST(Describe, AnErrorBodyOfTheWrongShapeIsSaidAsSuch) {
  HttpResponse r;
  r.status = 404;
  r.body = R"({"errors":[{"code":404}]})";
  EXPECT_EQ(DescribeFailure(r), "404 (the registry's error body errors[0]: \"code\" is a number, want a string)");
  r.body = R"({"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]})";
  EXPECT_EQ(DescribeFailure(r), "404: MANIFEST_UNKNOWN: manifest unknown");
}

// An exception thrown deep in the coroutines (a json read missed by the checks) reaches the
// entry point's guard through every awaiter and becomes a failure naming what was done.
Task<Result<int>> ThrowsInside() {
  const nlohmann::json number = 5;
  co_return static_cast<int>(number.get<std::string>().size());  // type_error.302
}
Task<Result<int>> AwaitsAThrower() { co_return co_await ThrowsInside(); }

TEST(Guarded, AnEscapedExceptionBecomesAFailureNamingTheWork) {
  auto loop = std::move(EventLoop::Create().value());
  auto got = RunOnLoop<Result<int>>(*loop, Guarded(AwaitsAThrower(), "fetching OCI image \"x\""));
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.error().kind, Error::Kind::kFailed);
  EXPECT_THAT(got.error().message, HasSubstr("fetching OCI image \"x\": unexpected error: "));
  EXPECT_THAT(got.error().message, HasSubstr("type must be string"));
}

}  // namespace
}  // namespace sr::oci
