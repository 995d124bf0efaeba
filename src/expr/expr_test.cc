#include "expr/expr.h"

#include <gtest/gtest.h>


namespace sr::expr {
namespace {

Value View() {
  return Value::parse(R"({
    "job": {"job_id": "1982", "CI_X": "ci"},
    "env": {"MOVIE": "tron", "HOME": "/root", "ODD": "${{ env.MOVIE }}"},
    "inputs": {"n": 3, "f": 2.5, "flag": true, "nothing": null, "name": "web",
               "labels": {"tier": "web", "size": 3, "color": "red"},
               "list": ["a", 1, true, null],
               "html": {"z": "<b>&</b>", "a": {"y": [1.0, "x"], "b": {}}},
               "my key": "spaced"},
    "steps": {"my-step": {"outputs": {"version": "1.2.3", "x": "str", "n": 7}}},
    "step_dir": "/steps"
  })");
}

std::string Str(std::string_view text, const Value& view = View()) {
  auto r = ExpandString(text, view);
  return r.ok() ? *r : "ERROR: " + r.error().message;
}

std::string Err(std::string_view text, const Value& view = View()) {
  auto r = ExpandString(text, view);
  if (r.ok()) return "OK: " + *r;
  EXPECT_EQ(r.error().kind, Error::Kind::kInvalid);
  return r.error().message;
}

Value Typed(const Value& v) {
  auto r = Expand(v, View());
  EXPECT_TRUE(r.ok()) << r.error().message;
  return r.ok() ? *r : Value("ERROR");
}

// --- reference.md 2.6, adapted to contract 4.2 ---------------------------------------------------

TEST(Scan, ReferenceExamples) {
  EXPECT_EQ(Str("${{ job.job_id }}:${{ env.MOVIE }}"), "1982:tron");
  EXPECT_EQ(Err("${{ job.job_id"), R"(the " job.job_id" is not closed: ${{ ... }})");
  EXPECT_EQ(Str("a }} b"), "a }} b");
  EXPECT_EQ(Str("${{ job.job_id }} }}"), "1982 }}");
}

TEST(Scan, PlainTextAndStrayBraces) {
  EXPECT_EQ(Str(""), "");
  EXPECT_EQ(Str("hello"), "hello");
  EXPECT_EQ(Str("printf '{{.Name}}'"), "printf '{{.Name}}'");
  EXPECT_EQ(Str(R"({"a":{"b":1}})"), R"({"a":{"b":1}})");
  EXPECT_EQ(Str("}}}}"), "}}}}");
  EXPECT_EQ(Str("$ $x { } }"), "$ $x { } }");
  EXPECT_EQ(Str("cost: $5"), "cost: $5");
  EXPECT_EQ(Str("${{ env.MOVIE }}}"), "tron}");
}

TEST(Scan, Escape) {
  EXPECT_EQ(Str("$${{ x }}"), "${{ x }}");
  EXPECT_EQ(Str("a $${{ env.MOVIE }} b ${{ env.MOVIE }}"), "a ${{ env.MOVIE }} b tron");
  EXPECT_EQ(Str("$$${{ x }}"), "$${{ x }}");
  EXPECT_EQ(Str("$${{"), "${{");  // an escape never opens, so nothing is unclosed
  EXPECT_EQ(Typed(Value("$${{ inputs.n }}")), Value("${{ inputs.n }}"));
}

TEST(Scan, UnclosedNamesTheOutermostRest) {
  EXPECT_EQ(Err("x ${{ a ${{ b }}"), R"(the " a ${{ b }}" is not closed: ${{ ... }})");
  EXPECT_EQ(Err("${{"), R"(the "" is not closed: ${{ ... }})");
}

TEST(Scan, NestingIsOneExpression) {
  // Inner openers are part of the outer body, which is then not found.
  EXPECT_EQ(Err("${{ env.${{ x }} }}"), R"(env.${{ x }}: the "${{ x }}" was not found)");
}

TEST(Scan, SinglePass) {
  EXPECT_EQ(Str("${{ env.ODD }}"), "${{ env.MOVIE }}");
  EXPECT_EQ(Str("<${{ env.ODD }}>"), "<${{ env.MOVIE }}>");
}

TEST(Scan, WhitespaceInsideBracesIsTrimmed) {
  EXPECT_EQ(Str("${{env.MOVIE}}"), "tron");
  EXPECT_EQ(Str("${{ \t\n env.MOVIE \n}}"), "tron");
}

TEST(ContainsExpression, Basics) {
  EXPECT_TRUE(ContainsExpression("${{ x }}"));
  EXPECT_TRUE(ContainsExpression("a ${{"));
  EXPECT_TRUE(ContainsExpression("$${{ x }} ${{ y }}"));
  EXPECT_FALSE(ContainsExpression("$${{ x }}"));
  EXPECT_FALSE(ContainsExpression("{{ x }} }} $ ${ {"));
  EXPECT_FALSE(ContainsExpression(""));
}

// --- evaluation ------------------------------------------------------------------------------

TEST(Evaluate, Paths) {
  EXPECT_EQ(*Evaluate("steps.my-step.outputs.version", View()), Value("1.2.3"));
  EXPECT_EQ(*Evaluate("  inputs.n ", View()), Value(3));
  EXPECT_EQ(*Evaluate("inputs.my key", View()), Value("spaced"));
  EXPECT_EQ(*Evaluate("step_dir", View()), Value("/steps"));
  EXPECT_EQ(*Evaluate("inputs.labels", View())->find("tier"), Value("web"));
}

TEST(Evaluate, Errors) {
  auto msg = [](std::string_view body) {
    auto r = Evaluate(body, View());
    return r.ok() ? std::string("OK") : r.error().message;
  };
  EXPECT_EQ(msg("env.NAME"), R"(env.NAME: the "NAME" was not found)");
  EXPECT_EQ(msg(" steps.build.outputs.v "), R"(steps.build.outputs.v: the "build" was not found)");
  EXPECT_EQ(msg("nope"), R"(nope: the "nope" was not found)");
  EXPECT_EQ(msg("env."), R"(env.: the "" was not found)");
  EXPECT_EQ(msg("job[\"job_id\"]"), R"(job["job_id"]: the "job["job_id"]" was not found)");
  EXPECT_EQ(msg("steps.my-step.outputs.x.y"), R"(steps.my-step.outputs.x.y: "x" is not map to get y key)");
  EXPECT_EQ(msg("step_dir.x"), R"(step_dir.x: "step_dir" is not map to get x key)");
  EXPECT_EQ(msg("inputs.list.0"), R"(inputs.list.0: "list" is not map to get 0 key)");
  EXPECT_EQ(msg(""), "${{ }}: the expression is empty");
  EXPECT_EQ(msg(" \t "), "${{ }}: the expression is empty");
  EXPECT_EQ(Err("${{}}"), "${{ }}: the expression is empty");
  EXPECT_EQ(msg("env"), "env: cannot use a whole context as a value");
  EXPECT_EQ(Err("x ${{ job }}"), "job: cannot use a whole context as a value");
  EXPECT_EQ(Err("${{ env }}"), "env: cannot use a whole context as a value");
}

TEST(Evaluate, NonObjectView) {
  auto r = Evaluate("env.X", Value());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, R"(env.X: the "env" was not found)");
}

TEST(Evaluate, WholeObjectsOtherThanEnvAndJobAreAllowed) {
  EXPECT_EQ(Str("${{ inputs.labels }}"), R"({"color":"red","size":3,"tier":"web"})");
  EXPECT_TRUE(Evaluate("steps.my-step.outputs", View()).ok());
  EXPECT_TRUE(Evaluate("inputs", View()).ok());
}

// --- typing ----------------------------------------------------------------------------------

TEST(Typing, SinglePieceKeepsType) {
  EXPECT_EQ(Typed(Value("${{ inputs.n }}")), Value(3));
  EXPECT_EQ(Typed(Value("${{ inputs.f }}")), Value(2.5));
  EXPECT_EQ(Typed(Value("${{ inputs.flag }}")), Value(true));
  EXPECT_EQ(Typed(Value("${{ inputs.nothing }}")), Value());
  EXPECT_EQ(Typed(Value("${{ inputs.labels }}")), View()["inputs"]["labels"]);
  EXPECT_EQ(Typed(Value("${{ inputs.list }}")), View()["inputs"]["list"]);
  EXPECT_EQ(Typed(Value("${{inputs.n}}")), Value(3));
}

TEST(Typing, AnythingAroundMakesAString) {
  EXPECT_EQ(Typed(Value(" ${{ inputs.n }}")), Value(" 3"));
  EXPECT_EQ(Typed(Value("${{ inputs.n }} ")), Value("3 "));
  EXPECT_EQ(Typed(Value("${{ inputs.n }}${{ inputs.n }}")), Value("33"));
  EXPECT_EQ(Typed(Value("${{ inputs.flag }}${{ inputs.nothing }}")), Value("truenull"));
  EXPECT_EQ(Typed(Value("${{ inputs.labels }}!")),
            Value(R"({"color":"red","size":3,"tier":"web"}!)"));
  EXPECT_EQ(Typed(Value("${{ inputs.list }}.")), Value(R"(["a",1,true,null].)"));
}

TEST(Typing, ExpandStringAlwaysRenders) {
  EXPECT_EQ(Str("${{ inputs.n }}"), "3");
  EXPECT_EQ(Str("${{ inputs.flag }}"), "true");
  EXPECT_EQ(Str("${{ inputs.nothing }}"), "null");
  EXPECT_EQ(Str("${{ inputs.list }}"), R"(["a",1,true,null])");
  EXPECT_EQ(Str("${{ inputs.name }}"), "web");
}

TEST(Typing, ExpandWalksContainersButNotKeys) {
  Value in = Value::parse(R"({"${{ inputs.name }}": ["${{ inputs.n }}", "n=${{ inputs.n }}",
                             {"deep": "${{ steps.my-step.outputs.n }}"}], "k": 4, "b": false,
                             "z": null, "s": "${{ inputs.labels }}"})");
  Value want = Value::parse(R"({"${{ inputs.name }}": [3, "n=3", {"deep": 7}], "k": 4,
                               "b": false, "z": null,
                               "s": {"tier": "web", "size": 3, "color": "red"}})");
  EXPECT_EQ(Typed(in), want);
  EXPECT_EQ(Typed(Value(5)), Value(5));
  EXPECT_EQ(Typed(Value()), Value());
  auto bad = Expand(Value::parse(R"({"a": [1, "${{ env.NOPE }}"]})"), View());
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().message, R"(env.NOPE: the "NOPE" was not found)");
}

// --- rendering -------------------------------------------------------------------------------

TEST(Render, Scalars) {
  EXPECT_EQ(Render(Value("a<b>&\"")), "a<b>&\"");  // top-level strings are never encoded
  EXPECT_EQ(Render(Value(3)), "3");
  EXPECT_EQ(Render(Value(-3)), "-3");
  EXPECT_EQ(Render(Value(18446744073709551615ULL)), "18446744073709551615");
  EXPECT_EQ(Render(Value(3.0)), "3");
  EXPECT_EQ(Render(Value(-0.0)), "-0");
  EXPECT_EQ(Render(Value(2.5)), "2.5");
  EXPECT_EQ(Render(Value(0.1)), "0.1");
  EXPECT_EQ(Render(Value(1e20)), "100000000000000000000");
  EXPECT_EQ(Render(Value(1.2345678901234568e20)), "123456789012345680000");
  EXPECT_EQ(Render(Value(1e21)), "1e+21");
  EXPECT_EQ(Render(Value(9.999999999999999e20)), "999999999999999900000");
  EXPECT_EQ(Render(Value(1e6)), "1000000");
  EXPECT_EQ(Render(Value(123.456)), "123.456");
  EXPECT_EQ(Render(Value(-0.5)), "-0.5");
  EXPECT_EQ(Render(Value(0.0)), "0");
  EXPECT_EQ(Render(Value(-1.5e300)), "-1.5e+300");
  EXPECT_EQ(Render(Value(0.000001)), "0.000001");
  EXPECT_EQ(Render(Value(1e-7)), "1e-7");
  EXPECT_EQ(Render(Value(1.5e-10)), "1.5e-10");
  EXPECT_EQ(Render(Value(1e-100)), "1e-100");
  EXPECT_EQ(Render(Value(true)), "true");
  EXPECT_EQ(Render(Value(false)), "false");
  EXPECT_EQ(Render(Value()), "null");
  EXPECT_EQ(Render(Value(std::numeric_limits<double>::quiet_NaN())), "null");
}

TEST(Render, ContainersSortedCompactHtmlSafe) {
  EXPECT_EQ(Render(View()["inputs"]["html"]),
            R"({"a":{"b":{},"y":[1,"x"]},"z":"\u003cb\u003e\u0026\u003c/b\u003e"})");
  EXPECT_EQ(Render(Value::array()), "[]");
  EXPECT_EQ(Render(Value::object()), "{}");
  EXPECT_EQ(Render(Value::parse(R"([[],[[]],{"a":[{}]}])")), R"([[],[[]],{"a":[{}]}])");
  Value esc = Value::array({std::string("q\"\\\n\r\t\b\f\x01\x1f/é\u2028\u2029"), 2.0});
  EXPECT_EQ(Render(esc), R"(["q\"\\\n\r\t\b\f\u0001\u001f/é\u2028\u2029",2])");
  EXPECT_EQ(Render(Value::array({std::string("a\xff" "b\xc3")})), R"(["a\ufffdb\ufffd"])");
  EXPECT_EQ(Render(Value::object({{"k<", 1}})), R"({"k\u003c":1})");
}

// --- bounded resources -----------------------------------------------------------------------

TEST(Bounds, TenThousandNestedExpressions) {
  std::string text;
  for (int i = 0; i < 10000; ++i) text += "${{";
  text += " x ";
  for (int i = 0; i < 10000; ++i) text += "}}";
  const std::string err = Err(text);
  EXPECT_NE(err.find("was not found"), std::string::npos);
  EXPECT_FALSE(Expand(Value(text), View()).ok());
  EXPECT_TRUE(ContainsExpression(text));
  text.resize(text.size() - 2);  // one short: unclosed
  EXPECT_NE(Err(text).find("is not closed"), std::string::npos);
}

TEST(Bounds, DeeplyNestedValuesDoNotRecurse) {
  Value deep = "${{ inputs.n }}";
  for (int i = 0; i < 100000; ++i) {
    Value outer = (i % 2 == 0) ? Value::array() : Value::object();
    if (i % 2 == 0) {
      outer.push_back(std::move(deep));
    } else {
      outer["k"] = std::move(deep);
    }
    deep = std::move(outer);
  }
  auto expanded = Expand(deep, View());
  ASSERT_TRUE(expanded.ok());
  const std::string out = Render(*expanded);
  EXPECT_EQ(out.size(), 100000 / 2 * (2 + 6) + 1);
  EXPECT_EQ(out.substr(0, 8), R"({"k":[{")");
  EXPECT_NE(out.find("[3]"), std::string::npos);
  Value view = View();
  view["inputs"]["deep"] = std::move(deep);
  EXPECT_EQ(Str("${{ inputs.deep }}", view).size(), out.size() + 16);  // the leaf unexpanded, quoted
  EXPECT_TRUE(Evaluate("inputs.deep", view).ok());
}

TEST(Bounds, FiveMegabyteStringIsLinear) {
  std::string text;
  std::string want;
  while (text.size() < 5u << 20) {
    text += "a }} b ${{ env.MOVIE }} $${{ c }} {{.X}} $ ";
    want += "a }} b tron ${{ c }} {{.X}} $ ";
  }
  EXPECT_EQ(Str(text), want);
  const std::string plain(5u << 20, 'x');
  EXPECT_EQ(Str(plain), plain);
  EXPECT_FALSE(ContainsExpression(std::string(5u << 20, '$')));
  const std::string opens = [] {
    std::string s;
    for (int i = 0; i < (5 << 20) / 3; ++i) s += "${{";
    return s;
  }();
  EXPECT_NE(Err(opens).find("is not closed"), std::string::npos);
}

}  // namespace
TEST(Budget, AnExpansionStopsAtItsLimit) {
  Value view = {{"inputs", {{"x", std::string(1000, 'a')}, {"list", Value::array({"ab", "cd"})}}}};
  EXPECT_TRUE(ExpandString("${{ inputs.x }}${{ inputs.x }}", view, 2000).ok());
  auto over = ExpandString("${{ inputs.x }}${{ inputs.x }}${{ inputs.x }}", view, 2000);
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.error().message, "expanded value larger than 2000 bytes");
  EXPECT_FALSE(ExpandString("${{ inputs.x }}", view, 999).ok());  // a single value too
  EXPECT_FALSE(Expand(Value::array({"${{ inputs.x }}-${{ inputs.x }}"}), view, 1500).ok());
}

TEST(Budget, EstimateLooksAtTheValuesNamedWithoutMakingThem) {
  Value view = {{"inputs", {{"x", std::string(1000, 'a')}, {"list", Value::array({"ab", "cd"})}}}};
  EXPECT_EQ(ValueSize(Value("abc")), 19u);                   // 16 + 3
  EXPECT_EQ(ValueSize(Value::array({"ab", "cd"})), 52u);     // 3 nodes + 4 bytes
  EXPECT_EQ(EstimateExpansion(std::string_view("hi ${{ inputs.x }}"), view, 1u << 20),
            18u + 1016u);                                    // the text, then the value
  EXPECT_EQ(EstimateExpansion(std::string_view("${{ inputs.nope }}"), view, 1u << 20), 18u);
  // Counting stops once past `stop_at`.
  EXPECT_LT(EstimateExpansion(std::string_view("${{ inputs.x }}${{ inputs.x }}${{ inputs.x }}"), view, 100),
            3000u);
  EXPECT_EQ(EstimateValueExpansion(Value::array({"${{ inputs.list }}", 1}), view, 1u << 20), 18u + 52u + 16u);
}

}  // namespace sr::expr
