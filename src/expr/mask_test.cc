#include "expr/mask.h"

#include <gtest/gtest.h>

namespace sr::expr {
namespace {

TEST(Mask, OneChunk) {
  EXPECT_EQ(MaskAll("token=hunter22; again hunter22.", {"hunter22"}),
            "token=[MASKED]; again [MASKED].");
  EXPECT_EQ(MaskAll("hunter22", {"hunter22"}), "[MASKED]");
  EXPECT_EQ(MaskAll("", {"hunter22"}), "");
  EXPECT_EQ(MaskAll("nothing here", {"hunter22"}), "nothing here");
  EXPECT_EQ(MaskAll("hunter2hunter22", {"hunter22"}), "hunter2[MASKED]");
  EXPECT_EQ(MaskAll("abab abababab", {"abab"}), "[MASKED] [MASKED][MASKED]");
}

TEST(Mask, InsideJson) {
  EXPECT_EQ(MaskAll(R"({"password":"s3cr3t!","user":"me"})", {"s3cr3t!"}),
            R"({"password":"[MASKED]","user":"me"})");
}

// A secret held in an object or array is rendered JSON-escaped: its raw bytes never appear, so
// each escaped form is masked too (the raw form alone leaked `abc\u0026def`).
TEST(Mask, EscapedFormsInsideJson) {
  EXPECT_EQ(MaskAll(R"({"token":"abc\u0026def"})", {"abc&def"}), R"({"token":"[MASKED]"})");
  EXPECT_EQ(MaskAll(R"({"k":"line-one\nline-two"})", {"line-one\nline-two"}), R"({"k":"[MASKED]"})");
  EXPECT_EQ(MaskAll(R"(["q\"uo\\te<"] ["q\"uo\\te\u003c"])", {R"(q"uo\te<)"}), R"(["[MASKED]"] ["[MASKED]"])");
  // The raw form is still masked, and a secret escaping does not change has one form.
  EXPECT_EQ(MaskAll("abc&def", {"abc&def"}), "[MASKED]");
  EXPECT_EQ(MaskAll(R"({"k":"plain-secret"})", {"plain-secret"}), R"({"k":"[MASKED]"})");
  // A secret too short to mask stays unmasked in its escaped form too ("\0" is 6 bytes there).
  EXPECT_EQ(MaskAll(R"({"k":"\u0000"})", {std::string(1, '\0')}), R"({"k":"\u0000"})");
  // An escaped backslash before "u0026" is text, not an escape.
  EXPECT_EQ(MaskAll(R"(a\\u0026b)", {R"(a\u0026b)"}), "[MASKED]");
}

TEST(Mask, TwoSecretsAndOverlaps) {
  EXPECT_EQ(MaskAll("x alpha1 y beta22 z", {"alpha1", "beta22"}), "x [MASKED] y [MASKED] z");
  // Longest match at one position wins, whatever the order of the list.
  EXPECT_EQ(MaskAll("pass-word-long!", {"pass", "pass-word-long"}), "[MASKED]!");
  EXPECT_EQ(MaskAll("pass-word-long!", {"pass-word-long", "pass"}), "[MASKED]!");
  EXPECT_EQ(MaskAll("pass-word", {"pass-word-long", "pass"}), "[MASKED]-word");
  // Leftmost match wins over a longer one starting inside it.
  EXPECT_EQ(MaskAll("abcdefghij", {"abcde", "cdefghij"}), "[MASKED]fghij");
  // Duplicates are harmless.
  EXPECT_EQ(MaskAll("a secret!", {"secret", "secret"}), "a [MASKED]!");
}

TEST(Mask, ShortSecretsIgnored) {
  EXPECT_EQ(MaskAll("a abc 1 yes abcd", {"a", "abc", "1", "yes", ""}), "a abc 1 yes abcd");
  EXPECT_EQ(MaskAll("abc abcd", {"abc", "abcd"}), "abc [MASKED]");
  Masker m({"abc"});
  EXPECT_EQ(m.Feed("ab"), "ab");  // nothing held back when nothing is maskable
}

TEST(Mask, SplitAtEveryPosition) {
  const std::string secret = "topsecret-value";
  const std::string text = "before " + secret + " middle " + secret + secret + " after";
  const std::string want = "before [MASKED] middle [MASKED][MASKED] after";
  for (size_t cut = 0; cut <= text.size(); ++cut) {
    Masker m({secret, "other-secret"});
    std::string out = m.Feed(text.substr(0, cut));
    out += m.Feed(text.substr(cut));
    out += m.Flush();
    EXPECT_EQ(out, want) << "cut at " << cut;
  }
}

TEST(Mask, ByteAtATimeWithOverlaps) {
  const std::string text = "xx pass-word-long pass-word pass-word-lon pass";
  const std::string want = "xx [MASKED] [MASKED]-word [MASKED]-word-lon [MASKED]";
  Masker m({"pass", "pass-word-long"});
  std::string out;
  for (char c : text) out += m.Feed(std::string_view(&c, 1));
  out += m.Flush();
  EXPECT_EQ(out, want);
}

TEST(Mask, HoldsBackOnlyPossibleSecretStartsAndFlushReleasesThem) {
  Masker m({"secret-token", "abcd"});  // longest 12: at most 11 bytes held
  EXPECT_EQ(m.Feed("hello world"), "hello world");  // no suffix starts a secret
  EXPECT_EQ(m.Feed(" secret-toke"), " ");           // 11 bytes held
  EXPECT_EQ(m.Feed("X and ab"), "secret-tokeX and ");
  EXPECT_EQ(m.Flush(), "ab");                        // released exactly, nothing lost or added
  EXPECT_EQ(m.Flush(), "");
  // Reusable after Flush: the state of the previous stream is gone.
  EXPECT_EQ(m.Feed("secret-"), "");
  EXPECT_EQ(m.Feed("token"), "[MASKED]");
}

TEST(Mask, HoldBackIsBounded) {
  const std::string secret = "aaaaaaab";
  Masker m({secret});
  std::string in;
  std::string out;
  for (int i = 0; i < 1000; ++i) {
    in += "a";
    out += m.Feed("a");
    EXPECT_LE(in.size() - out.size(), secret.size() - 1);
  }
  out += m.Flush();
  EXPECT_EQ(out, in);
}

TEST(Mask, OutputEqualsInputWithReplacements) {
  std::string text;
  std::string want;
  for (int i = 0; i < 2000; ++i) {
    const std::string noise = "line " + std::to_string(i) + std::string(" \xff\0 sec", 7);  // binary-safe
    text += noise;
    want += noise;
    if (i % 7 == 0) {
      text += "s3cr3t-value";
      want += "[MASKED]";
    }
  }
  for (size_t chunk : {1u, 3u, 11u, 12u, 13u, 4096u}) {
    Masker m({"s3cr3t-value"});
    std::string out;
    for (size_t i = 0; i < text.size(); i += chunk) out += m.Feed(text.substr(i, chunk));
    out += m.Flush();
    EXPECT_EQ(out, want) << "chunk " << chunk;
  }
}

// Regression, found by fuzz_masker: a secret whose start repeats its end ("aaba", "abab",
// "aaaa") printed twice in a row, the second copy split across writes, came out in clear,
// because the partial match left over from the first copy began inside the emitted [MASKED].
TEST(Mask, SecretWithABorderSplitAcrossWrites) {
  for (const std::vector<std::string>& chunks :
       {std::vector<std::string>{"aaba", "a", "aba"}, std::vector<std::string>{"aaaa", "a", "aaa"},
        std::vector<std::string>{"abab", "a", "bab"}, std::vector<std::string>{"xyzx", "yz", "x"},
        std::vector<std::string>{"aaba", "a", "a", "b", "a", "aaba"}}) {
    Masker m({chunks[0]});
    std::string whole, streamed;
    for (const auto& c : chunks) {
      whole += c;
      streamed += m.Feed(c);
    }
    streamed += m.Flush();
    EXPECT_EQ(streamed, MaskAll(whole, {chunks[0]})) << chunks[0];
    EXPECT_EQ(streamed.find(chunks[0]), std::string::npos) << streamed;
  }
}

TEST(Mask, NoSecretsPassesThrough) {
  Masker m({});
  EXPECT_EQ(m.Feed("abc"), "abc");
  EXPECT_EQ(m.Flush(), "");
}

TEST(Mask, LargeStreamIsFast) {
  const std::string big(8u << 20, 'a');
  const std::string secret(1000, 'a');
  const std::string out = MaskAll(big + "b", {secret + "b", "aaaaX"});
  EXPECT_EQ(out, std::string(big.size() - 1000, 'a') + "[MASKED]");
}

}  // namespace
}  // namespace sr::expr
