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

}  // namespace
}  // namespace sr::stepfile
