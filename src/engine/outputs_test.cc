#include "engine/outputs.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace sr::engine {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

TEST(JsonLines, ParsesNamesAndValuesLastWins) {
  auto r = ParseJsonLines("{\"name\":\"a\",\"value\":1}\n\n  {\"name\":\"b\",\"value\":{\"x\":[1]}}  \n"
                          "{\"name\":\"a\",\"value\":\"two\",\"extra\":true}\n");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ((*r)["a"], "two");
  EXPECT_EQ((*r)["b"], json::parse("{\"x\":[1]}"));
}

TEST(JsonLines, ErrorsNameTheLine) {
  struct Case {
    const char* text;
    const char* error;
  } cases[] = {
      {"{\"name\":\"a\",\"value\":1}\nnot json\n", "at line 2: invalid JSON"},
      {"{\"value\":1}\n", "at line 1: \"name\" field is missing"},
      {"{\"name\":null,\"value\":1}\n", "\"name\" value is null"},
      {"{\"name\":\"\",\"value\":1}\n", "\"name\" value is empty"},
      {"{\"name\":\"a\"}\n", "\"value\" field is missing"},
      {"{\"name\":\"a\",\"value\":null}\n", "\"value\" value is null"},
      {"a=b\n", "at line 1"},
      {"   \n", "at line 1"},
  };
  for (const auto& c : cases) {
    auto r = ParseJsonLines(c.text);
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_THAT(r.error().message, HasSubstr(c.error)) << c.text;
  }
}

// Regression (hostile input, issue 9): a value nested a million levels deep parsed, then
// crashed the runner with a stack overflow when it was copied and converted to a proto Value.
TEST(JsonLines, NestingIsBounded) {
  auto line = [](int depth, const std::string& inside) {
    return "{\"name\":\"x\",\"value\":" + std::string(depth, '[') + inside +
           std::string(depth, ']') + "}";
  };
  auto ok = ParseJsonLines(line(kMaxOutputDepth - 1, "1"));  // the line's object is one level
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  auto deep = ParseJsonLines("\n" + line(kMaxOutputDepth, "1"));
  ASSERT_FALSE(deep.ok());
  EXPECT_EQ(deep.error().message, "failed to unmarshal JSON at line 2: nested deeper than 64 levels");
  EXPECT_FALSE(ParseJsonLines(line(1000000, "1")).ok());
  // Brackets inside strings (escaped quotes too) are text, not nesting.
  auto text = ParseJsonLines(line(1, "\"\\\"" + std::string(1000, '[') + "\""));
  ASSERT_TRUE(text.ok()) << text.error().message;
  EXPECT_EQ((*text)["x"][0], "\"" + std::string(1000, '['));
}

// Go's encoding/json reads a string's lone surrogate escape and each byte that is not UTF-8 as
// U+FFFD (it does not refuse the line, as nlohmann does); names too. Outside a string such a byte
// is still an error.
TEST(JsonLines, LoneSurrogatesAndInvalidUtf8BecomeReplacementCharactersAsInGo) {
  const std::string fffd = "\xEF\xBF\xBD";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"("x\ud800y")", "x" + fffd + "y"},
      {R"("\udc00")", fffd},
      {R"("\ud800\u0041")", fffd + "A"},
      {R"("\uD800\uD800\uDC00")", fffd + "\xF0\x90\x80\x80"},  // a lone one, then a pair
      {R"("\ud83d\ude00")", "\xF0\x9F\x98\x80"},               // a pair, as before
      {R"("\\ud800")", "\\ud800"},                              // an escaped backslash: text
      {"\"x\xFFy\"", "x" + fffd + "y"},
      {"\"\xE2\x82\"", fffd + fffd},             // cut short: one for each byte, as in Go
      {"\"\xED\xA0\x80\"", fffd + fffd + fffd},  // a surrogate written as UTF-8
      {"[\"\xC0\x80\", \"\xEF\xBF\xBD\"]", "[\"" + fffd + fffd + "\",\"" + fffd + "\"]"},
  };
  for (const auto& [value, want] : cases) {
    auto r = ParseJsonLines("{\"name\":\"a\",\"value\":" + value + "}\n");
    ASSERT_TRUE(r.ok()) << value << ": " << r.error().message;
    EXPECT_EQ((*r)["a"].is_string() ? (*r)["a"].get<std::string>() : (*r)["a"].dump(), want) << value;
  }
  auto name = ParseJsonLines("{\"name\":\"n\xFF\",\"value\":1}\n");
  ASSERT_TRUE(name.ok()) << name.error().message;
  EXPECT_EQ(name->count("n" + fffd), 1u);
  for (const char* bad : {"{\"name\":\"a\",\"value\":1}\xFF\n", "{\"name\":\"a\",\"value\":\"\\u12\"}\n",
                          "{\"name\":\"a\",\"value\":\"\\ud80\"}\n"}) {
    auto r = ParseJsonLines(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_THAT(r.error().message, HasSubstr("at line 1: invalid JSON")) << bad;
  }
}

stepfile::Spec SpecWith(std::map<std::string, stepfile::OutputSpec> outputs) {
  stepfile::Spec spec;
  spec.outputs = std::move(outputs);
  return spec;
}

TEST(ValidateOutputs, ChecksNamesTypesAndDefaults) {
  stepfile::OutputSpec num{stepfile::ValueType::kNumber, std::nullopt, false, "", {}};
  stepfile::OutputSpec str_default{stepfile::ValueType::kString, json("d"), false, "", {}};
  auto spec = SpecWith({{"n", num}, {"s", str_default}});
  auto ok = ValidateOutputs(spec, {{"n", 3}});
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ((*ok)["s"], "d");

  auto unexpected = ValidateOutputs(spec, {{"n", 3}, {"zzz", 1}});
  EXPECT_THAT(unexpected.error().message, HasSubstr("key \"zzz\": unexpected output"));
  auto mismatched = ValidateOutputs(spec, {{"n", "3"}});
  EXPECT_THAT(mismatched.error().message,
              HasSubstr("declared as \"number\" in step specification and received from step as "
                        "type \"string\""));
  auto missing = ValidateOutputs(spec, {});
  EXPECT_THAT(missing.error().message, HasSubstr("key \"n\": missing output"));
}

// CI_STEPS_DEBUG=true (reference.md 3.6): the offending line follows the error.
TEST(JsonLines, TheBadLineIsQuotedOnlyWhenAsked) {
  const std::string text = "{\"name\":\"a\",\"value\":1}\n{\"value\":2}\n";
  EXPECT_EQ(ParseJsonLines(text).error().message, "failed to unmarshal JSON at line 2: \"name\" field is missing");
  EXPECT_EQ(ParseJsonLines(text, true).error().message,
            "failed to unmarshal JSON at line 2: \"name\" field is missing, line: {\"value\":2}");
  const std::string long_line = "x" + std::string(5000, 'y');
  const std::string quoted = ParseJsonLines(long_line, true).error().message;
  EXPECT_LT(quoted.size(), 1200u);
  EXPECT_TRUE(quoted.ends_with("...")) << quoted;
}

TEST(Exports, ConvertToStrings) {
  auto env = ExportsToEnv({{"S", "x"}, {"I", 42}, {"F", 56.99}, {"B", true}, {"L", 1e21}});
  ASSERT_TRUE(env.ok());
  EXPECT_EQ((*env)["S"], "x");
  EXPECT_EQ((*env)["I"], "42");
  EXPECT_EQ((*env)["F"], "56.99");
  EXPECT_EQ((*env)["B"], "true");
  EXPECT_EQ((*env)["L"], "1000000000000000000000");
  // Small and large fractions and big non-integral values: plain, shortest digits (they came
  // out as 1e-07, and %.0f printed 1.2345678901234568e20 exactly: ...683968).
  auto more = ExportsToEnv({{"T", 1e-7}, {"M", 0.000001}, {"N", -2.5e-9}, {"G", 1.2345678901234568e20},
                            {"H", 1.5e300}});
  ASSERT_TRUE(more.ok());
  EXPECT_EQ((*more)["T"], "0.0000001");
  EXPECT_EQ((*more)["M"], "0.000001");
  EXPECT_EQ((*more)["N"], "-0.0000000025");
  EXPECT_EQ((*more)["G"], "123456789012345680000");
  EXPECT_EQ((*more)["H"], "15" + std::string(299, '0'));
  auto bad = ExportsToEnv({{"O", json::object()}});
  EXPECT_THAT(bad.error().message, HasSubstr("cannot convert value type \"struct\" to string"));
}

// Refused where they are written: the step that exports them fails, naming the key, instead of
// every later exec step failing to start with it in its environment.
TEST(Exports, NulBytesAndEqualsSignsThatAnEnvironmentCannotHoldAreErrors) {
  using namespace std::string_literals;
  auto value = ExportsToEnv({{"NV", "a\0b"s}});
  ASSERT_FALSE(value.ok());
  EXPECT_EQ(value.error().message,
            "read env file: key \"NV\": the value contains a NUL byte, which a process cannot receive");
  auto name = ExportsToEnv({{"N\0V"s, "ab"}});
  ASSERT_FALSE(name.ok());
  EXPECT_EQ(name.error().message,
            "read env file: key \"N\\0V\": the name contains a NUL byte, which a process cannot receive");
  auto equals = ExportsToEnv({{"A=B", "c"}});
  ASSERT_FALSE(equals.ok());
  EXPECT_EQ(equals.error().message,
            "read env file: key \"A=B\": the name contains \"=\", which cannot be in an environment "
            "variable's name");
  EXPECT_TRUE(ExportsToEnv({{"OK", "a=b"}}).ok());  // in a value, '=' is fine
}

}  // namespace
}  // namespace sr::engine
