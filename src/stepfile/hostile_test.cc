// Hostile input: alias bombs, deep nesting, binary garbage, huge texts, random mutations.
// Each must come back as an error (never a crash, a hang or an exception). What refuses them is a
// count (nodes, depth, bytes), met before the work is done; no test here times it (a loaded or
// sanitized machine fails a time bound that says nothing about the code).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>

#include "stepfile/stepfile.h"
#include "support/alias_bomb.h"

namespace sr::stepfile {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// Runs both parsers; returns the step-file error text ("<ok>" if it parsed).
std::string Both(const std::string& text) {
  auto list = ParseInvocationList(text, "h.yml");
  (void)list;
  auto file = ParseStepFile(text, "h.yml");
  if (file.ok()) return "<ok>";
  EXPECT_EQ(file.error().kind, Error::Kind::kInvalid);
  return file.error().message;
}

TEST(Hostile, BillionLaughsInInputs) {
  std::string text =
      "spec:\n---\nrun:\n  - name: x\n    step: ./x\n    inputs:\n      lolz: " + sr::test::AliasBomb() + "\n";
  EXPECT_EQ(Both(text),
            "h.yml:7:13: value too large: more than 1000000 nodes after expanding aliases");
}

TEST(Hostile, BillionLaughsInOutputsAndDefaults) {
  EXPECT_THAT(Both("spec:\n---\nrun: []\noutputs:\n  lolz: " + sr::test::AliasBomb() + "\n"),
              HasSubstr("value too large"));
  EXPECT_THAT(Both("spec:\n  inputs:\n    n:\n      type: array\n      default: " + sr::test::AliasBomb() +
                   "\n---\nrun: []\n"),
              HasSubstr("value too large"));
}

TEST(Hostile, MergeKeysCountEveryPairTheyCopy) {
  // Merging a 1000-key mapping 2000 times looks at 2 000 000 pairs: over the node limit, and
  // refused at once rather than after gigabytes of copies. Both a list of merged mappings and a
  // merge of a long list of aliases.
  std::string big = "&m {";
  for (int i = 0; i < 1000; ++i) big += (i ? ", k" : "k") + std::to_string(i) + ": 1";
  big += "}";
  std::string many = "[" + big;
  std::string aliases = "[*m";
  for (int i = 0; i < 2000; ++i) {
    many += ", {<<: *m}";
    aliases += ", *m";
  }
  many += "]";
  aliases += "]";
  for (const std::string& v : {many, "[" + big + ", {<<: " + aliases + "}]"}) {
    std::string text = "spec:\n---\nrun:\n  - {name: x, step: ./x, inputs: {v: " + v + "}}\n";
    EXPECT_THAT(Both(text), HasSubstr("too many YAML nodes (more than 1000000)"));
  }
}

TEST(Hostile, AliasedItemsShareOneBudget) {
  // Each item is small, but 101 items with a 10 000-element input are over 1 000 000 nodes.
  std::string big = "[";
  for (int i = 0; i < 10000; ++i) big += (i ? ",1" : "1");
  big += "]";
  std::string text = "spec:\n---\nrun:\n  - {name: x, step: ./x, inputs: {v: &big " + big + "}}\n";
  for (int i = 0; i < 100; ++i)
    text += "  - {name: x" + std::to_string(i) + ", step: ./x, inputs: {v: *big}}\n";
  EXPECT_THAT(Both(text), HasSubstr("value too large"));
}

TEST(Hostile, RecursiveAlias) {
  EXPECT_EQ(Both("spec:\n---\nrun: &r [*r]\n"),
            "h.yml:3:10: recursive alias (an alias inside the node it refers to)");
  EXPECT_THAT(Both("spec:\n---\nrun:\n  - &m {name: a, step: ./a, inputs: {x: *m}}\n"),
              HasSubstr("recursive alias"));
}

TEST(Hostile, DeepNesting) {
  // 10 000 levels in three spellings; rejected at level 65 with a position, long before
  // yaml-cpp's own recursion matters.
  std::string flow_seq =
      "spec:\n---\nrun: " + std::string(10000, '[') + std::string(10000, ']') + "\n";
  std::string flow_map = "spec:\n---\nrun: ";
  for (int i = 0; i < 10000; ++i) flow_map += "{a: ";
  std::string block = "spec:\n---\nrun:\n";
  for (int i = 0; i < 10000; ++i) block += "- ";
  block += "x\n";
  flow_map += "\n";
  // The 65th collection: flow ones start on line 3 (`run:` itself is level 1), block on line 4.
  for (auto [text, where] :
       {std::pair{&flow_seq, "h.yml:3:69: "}, std::pair{&flow_map, "h.yml:3:258: "},
        std::pair{&block, "h.yml:4:127: "}}) {
    EXPECT_EQ(Both(*text), std::string(where) + "nesting deeper than 64 levels");
  }
}

TEST(Hostile, DeepNestingThroughAliases) {
  // Each anchor is 40 levels deep, within the limit; stacking two through aliases is 80.
  std::string deep = std::string(40, '[') + "1" + std::string(40, ']');
  std::string text = "- step: ./x\n  inputs:\n    a: &a " + deep +
                     "\n    b: " + std::string(40, '[') + "*a" + std::string(40, ']') + "\n";
  auto list = ParseInvocationList(text, "h.yml");
  ASSERT_FALSE(list.ok());
  EXPECT_THAT(list.error().message, HasSubstr("nesting deeper than 64 levels"));
}

TEST(Hostile, BinaryGarbage) {
  std::mt19937 rng(42);
  for (int round = 0; round < 20; ++round) {
    std::string text(4096 + round * 1000, '\0');
    for (char& c : text) c = static_cast<char>(rng());
    EXPECT_THAT(Both(text), StartsWith("h.yml:")) << round;
  }
}

TEST(Hostile, InvalidUtf8AndControlCharacters) {
  EXPECT_EQ(Both("spec:\n---\nexec: {command: [\"a\xFF\"]}\n"),
            "h.yml:3:20: invalid UTF-8 (byte 0xFF): step text must be UTF-8");
  EXPECT_EQ(Both("spec:\n---\nexec: {command: [a\xC0\xAF]}\n"),  // overlong '/'
            "h.yml:3:19: invalid UTF-8 (byte 0xC0): step text must be UTF-8");
  EXPECT_EQ(Both("spec:\n---\nexec: {command: [\xED\xA0\x80]}\n"),  // a surrogate
            "h.yml:3:18: invalid UTF-8 (byte 0xED): step text must be UTF-8");
  constexpr char kNul[] = "spec:\n---\nexec: {command: [a\0b]}\n";
  EXPECT_EQ(Both(std::string(kNul, sizeof kNul - 1)),
            "h.yml:3:19: control character U+0000 is not allowed");
  EXPECT_EQ(Both("spec:\n\x1b[31m---\n"), "h.yml:2:1: control character U+001B is not allowed");
  EXPECT_EQ(Both("spec:\n---\nexec: {command: [\xC2\x80]}\n"),
            "h.yml:3:18: control character U+0080 is not allowed");
  // UTF-16 with a BOM is not UTF-8.
  EXPECT_THAT(Both(std::string("\xFF\xFEs\0p\0", 6)), HasSubstr("invalid UTF-8"));
}

TEST(Hostile, HugeTextIsRejectedBeforeParsing) {
  std::string text = "spec:\n---\nexec:\n  command: [\"" + std::string(50 << 20, 'x') + "\"]\n";
  EXPECT_EQ(Both(text), "h.yml: step text is " + std::to_string(text.size()) +
                            " bytes, more than the limit of 4194304");
}

TEST(Hostile, LargeButAllowedTextParses) {
  std::string script(3 << 20, 'x');
  auto f = ParseStepFile("spec:\n---\nrun:\n  - name: big\n    script: " + script + "\n", "h.yml");
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(f->definition.run[0].inputs.at("script").get<std::string>().size(), script.size());
}

TEST(Hostile, TooManyNodes) {
  std::string text = "spec:\n---\nrun: []\noutputs: {x: [";
  for (int i = 0; i < 1'100'000; ++i) text += "1,";
  text += "]}\n";
  EXPECT_THAT(Both(text), HasSubstr("too many YAML nodes (more than 1000000)"));
}

TEST(Hostile, ManyKeysAreNotQuadratic) {
  std::string text = "spec:\n---\nrun: []\nenv:\n";
  for (int i = 0; i < 50000; ++i) text += "  K" + std::to_string(i) + ": v\n";
  auto f = ParseStepFile(text, "h.yml");
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(f->definition.env.size(), 50000u);
}

TEST(Hostile, RandomMutationsNeverThrow) {
  // A small mutation fuzzer over a file that uses every feature: whatever the bytes, the parsers
  // return a value or an error.
  const std::string seed = R"(spec:
  inputs:
    n: {type: number, default: 3, sensitive: false, description: "d"}
  outputs: delegate
---
run:
  - name: a
    step: {git: {url: gitlab.com/a/b, rev: v1, dir: x, file: y.yml}}
    inputs: {x: &v [1, {b: "${{ inputs.n }}"}], y: *v}
    env: {A: b}
  - {name: b, script: "echo hi"}
  - {name: c, action: a@b, inputs: {q: 1}}
  - {name: d, step: {oci: {registry: r, repository: s, tag: t}}}
delegate: a
finally: [{name: f, step: "dist://x"}]
finally_timeout: 5s
diagnose: [{name: g, step: "./y"}]
cancel: {signal: INT, grace: 1s}
)";
  ASSERT_TRUE(ParseStepFile(seed, "f.yml").ok());
  std::mt19937 rng(7);
  const std::string alphabet = "-:{}[],&*!|>'\"#\n \t?%@`~0123456789abcxyz.\\\x80\xC3\xA9";
  for (int round = 0; round < 3000; ++round) {
    std::string text = seed;
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      size_t at = rng() % text.size();
      switch (rng() % 3) {
        case 0:
          text[at] = alphabet[rng() % alphabet.size()];
          break;
        case 1:
          text.erase(at, 1 + rng() % 8);
          break;
        default:
          text.insert(at, 1, alphabet[rng() % alphabet.size()]);
          break;
      }
      if (text.empty()) text = "x";
    }
    auto f = ParseStepFile(text, "f.yml");
    if (!f.ok()) {
      EXPECT_THAT(f.error().message, StartsWith("f.yml")) << text;
    }
    auto l = ParseInvocationList(text, "f.yml");
    if (!l.ok()) {
      EXPECT_THAT(l.error().message, StartsWith("f.yml")) << text;
    }
  }
}

}  // namespace
}  // namespace sr::stepfile
