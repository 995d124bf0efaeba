#include <gtest/gtest.h>

#include "stepfile/stepfile.h"

namespace sr::stepfile {
namespace {

std::vector<std::string> Split(std::string_view s) {
  auto r = SplitCsvRecord(s);
  EXPECT_TRUE(r.ok()) << s;
  return r.ok() ? *r : std::vector<std::string>{};
}

TEST(CsvRecord, SplitsAsGosFlagPackage) {
  EXPECT_EQ(Split("a=1,b=2"), (std::vector<std::string>{"a=1", "b=2"}));
  EXPECT_EQ(Split("\"who=a,b\""), (std::vector<std::string>{"who=a,b"}));
  EXPECT_EQ(Split("\"q=say \"\"hi\"\"\",n=1"), (std::vector<std::string>{"q=say \"hi\"", "n=1"}));
  EXPECT_EQ(Split(""), (std::vector<std::string>{""}));
  EXPECT_EQ(Split("a=,"), (std::vector<std::string>{"a=", ""}));
  EXPECT_FALSE(SplitCsvRecord("who=\"a,b\"").ok());  // a quote inside an unquoted field
  EXPECT_FALSE(SplitCsvRecord("\"who=a").ok());       // never closed
  EXPECT_FALSE(SplitCsvRecord("\"a\"b").ok());        // text after the closing quote
}

TEST(ValueFromText, TypedByTheDeclaredType) {
  EXPECT_EQ(*ValueFromText(ValueType::kString, "123"), Value("123"));
  EXPECT_EQ(*ValueFromText(ValueType::kString, "true"), Value("true"));
  EXPECT_EQ(*ValueFromText(ValueType::kNumber, "123"), Value(123));
  EXPECT_EQ(*ValueFromText(ValueType::kNumber, "2.5"), Value(2.5));
  EXPECT_EQ(*ValueFromText(ValueType::kBoolean, "True"), Value(true));
  EXPECT_EQ(*ValueFromText(ValueType::kStruct, "{\"a\":1}"), Value({{"a", 1}}));
  EXPECT_EQ(*ValueFromText(ValueType::kArray, "[1,\"x\"]"), Value::array({1, "x"}));
  EXPECT_EQ(ValueFromText(ValueType::kNumber, "many").error().message,
            "declared number, got \"many\" (not a number)");
  EXPECT_FALSE(ValueFromText(ValueType::kBoolean, "yes").ok());
  EXPECT_FALSE(ValueFromText(ValueType::kStruct, "[1]").ok());
  EXPECT_EQ(GuessScalar("3"), Value(3));
  EXPECT_EQ(GuessScalar("x"), Value("x"));
}

// `--inputs n=TEXT` for a number input means what Go meant: it pasted TEXT into YAML, so the
// number is the one a plain YAML scalar is (value.cc), never clamped, never a non-finite double
// (which renders as null).
TEST(ValueFromText, NumbersAreReadAsYamlReadsThem) {
  auto number = [](const std::string& text) {
    auto v = ValueFromText(ValueType::kNumber, text);
    return v.ok() ? v->dump() : "error: " + v.error().message;
  };
  EXPECT_EQ(number("9223372036854775807"), "9223372036854775807");
  EXPECT_EQ(number("9223372036854775808"), "9223372036854775808");  // a uint64, as in YAML
  EXPECT_EQ(number("-9223372036854775808"), "-9223372036854775808");
  EXPECT_EQ(number("-9223372036854775809"), "-9.223372036854776e+18");  // a float
  EXPECT_EQ(number("99999999999999999999"), "1e+20");
  EXPECT_EQ(number("1_000"), "1000");
  EXPECT_EQ(number("0x10"), "16");  // yaml.v3: strconv.ParseInt(s, 0, 64)
  EXPECT_EQ(number("-2.5e3"), "-2500.0");
  EXPECT_EQ(number("inf"), "error: declared number, got \"inf\" (not a number)");
  EXPECT_EQ(number("nan"), "error: declared number, got \"nan\" (not a number)");
  EXPECT_EQ(number(".inf"), "error: declared number, got \".inf\" (not a number)");
  EXPECT_EQ(number("infinity"), "error: declared number, got \"infinity\" (not a number)");
  EXPECT_EQ(number("0x1p3"), "error: declared number, got \"0x1p3\" (not a number)");
  EXPECT_EQ(number(" 3"), "error: declared number, got \" 3\" (not a number)");
  EXPECT_EQ(number("1e999"),
            "error: declared number, got \"1e999\" (out of the range of a 64-bit float)");
  // Undeclared inputs (builtins) are guessed the same way; what is no number stays text.
  EXPECT_EQ(GuessScalar("9223372036854775808").dump(), "9223372036854775808");
  EXPECT_EQ(GuessScalar("inf"), Value("inf"));
  EXPECT_EQ(GuessScalar("1e999"), Value("1e999"));
}

}  // namespace
}  // namespace sr::stepfile
