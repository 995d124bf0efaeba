// Step files: the spec (reference.md 1.2), definitions (1.3), invocations (1.4),
// cancel / finally / diagnose (contract.md 4.7, 4.10); the documents in documents_test.cc.
#include "stepfile/stepfile.h"
#include "stepfile/parse_test_util.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <csignal>

namespace sr::stepfile {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using namespace std::chrono_literals;

using test::Def;
using test::ErrorOf;
using test::Parse;

// --- the spec (1.2) ------------------------------------------------------------------------------

TEST(Spec, ReferenceExample) {
  auto f = Parse(R"(spec:
  inputs:
    region:   {type: string, default: eu-west}
    replicas: {type: number, default: 2}
    dry_run:  {type: boolean, default: true}
    labels:   {type: struct, default: {tier: web}}
    ports:    {type: array, default: [80, 443]}
    token:    {type: string, sensitive: true, description: "API token"}
  outputs:
    endpoint: {type: string}
    count:    {type: number, default: 0, description: how many}
---
exec: {command: [a]}
)");
  ASSERT_TRUE(f.ok()) << f.error().message;
  const auto& in = f->spec.inputs;
  ASSERT_EQ(in.size(), 6u);
  EXPECT_EQ(in.at("region").type, ValueType::kString);
  EXPECT_EQ(in.at("region").default_value->dump(), "\"eu-west\"");
  EXPECT_EQ(in.at("replicas").default_value->dump(), "2");  // an integer, not 2.0
  EXPECT_EQ(in.at("dry_run").default_value->dump(), "true");
  EXPECT_EQ(in.at("labels").default_value->dump(), R"({"tier":"web"})");
  EXPECT_EQ(in.at("ports").default_value->dump(), "[80,443]");
  EXPECT_TRUE(in.at("token").sensitive);
  EXPECT_FALSE(in.at("token").default_value.has_value());
  EXPECT_EQ(in.at("token").description, "API token");
  EXPECT_EQ(in.at("replicas").mark.ToString(), "s.yml:4:5");
  const auto& out = f->spec.outputs;
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out.at("endpoint").type, ValueType::kString);
  EXPECT_EQ(out.at("count").default_value->dump(), "0");
  EXPECT_EQ(out.at("count").description, "how many");
  EXPECT_FALSE(f->spec.delegate_outputs);
}

TEST(Spec, DelegateOutputs) {
  auto f = Parse("spec:\n  outputs: delegate\n---\nrun: []\n");
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_TRUE(f->spec.delegate_outputs);
  EXPECT_EQ(ErrorOf(Parse("spec:\n  outputs: all\n---\nrun: []\n")),
            "s.yml:2:12: unsupported value: all (spec outputs must be `delegate` or a mapping of "
            "outputs)");
  EXPECT_EQ(ErrorOf(Parse("spec:\n  outputs: [a]\n---\nrun: []\n")),
            "s.yml:2:12: spec outputs must be a mapping, got array");
}

struct SpecError {
  std::string spec;  // the text under `spec:`; line 1 is `spec:`
  std::string message;
};
void PrintTo(const SpecError& r, std::ostream* os) { *os << '"' << r.spec << '"'; }

class SpecErrors : public ::testing::TestWithParam<SpecError> {};

TEST_P(SpecErrors, Fail) {
  EXPECT_EQ(ErrorOf(Parse("spec:\n" + GetParam().spec + "---\nrun: []\n")), GetParam().message);
}

INSTANTIATE_TEST_SUITE_P(
    All, SpecErrors,
    ::testing::Values(
        SpecError{"  inputs:\n    n: {type: number, default: x}\n",
                  "s.yml:3:32: input \"n\": default must be a number, got string"},
        SpecError{"  inputs:\n    n: {type: string, default: 3}\n",
                  "s.yml:3:32: input \"n\": default must be a string, got number"},
        SpecError{"  inputs:\n    n: {type: boolean, default: 'true'}\n",
                  "s.yml:3:33: input \"n\": default must be a boolean, got string"},
        SpecError{"  inputs:\n    n: {type: struct, default: [1]}\n",
                  "s.yml:3:32: input \"n\": default must be a struct, got array"},
        SpecError{"  inputs:\n    n: {type: array, default: {a: 1}}\n",
                  "s.yml:3:31: input \"n\": default must be an array, got struct"},
        SpecError{"  inputs:\n    n: {type: number, default: ~}\n",
                  "s.yml:3:32: input \"n\": default must be a number, got null"},
        SpecError{"  outputs:\n    o: {type: number, default: '1'}\n",
                  "s.yml:3:32: output \"o\": default must be a number, got string"},
        SpecError{"  inputs:\n    n: {default: 1}\n",
                  "s.yml:3:5: input \"n\": type is required (one of string, number, boolean, "
                  "struct, array)"},
        SpecError{
            "  inputs:\n    n: {type: int}\n",
            "s.yml:3:15: input \"n\": unknown type \"int\" (allowed: string, number, boolean, "
            "struct, array)"},
        SpecError{"  outputs:\n    o: {}\n",
                  "s.yml:3:5: output \"o\": type is required (one of string, number, boolean, "
                  "struct, array)"},
        SpecError{"  inputs:\n    a-b: {type: string}\n",
                  "s.yml:3:5: invalid input name \"a-b\": must match ^[a-zA-Z_][a-zA-Z0-9_]*$"},
        SpecError{"  outputs:\n    9x: {type: string}\n",
                  "s.yml:3:5: invalid output name \"9x\": must match ^[a-zA-Z_][a-zA-Z0-9_]*$"},
        SpecError{"  inputs:\n    n: {type: string, sensitive: yes}\n",
                  "s.yml:3:34: input \"n\": sensitive must be true or false, got string"},
        SpecError{"  inputs:\n    n: {type: string, sensitive: [true]}\n",
                  "s.yml:3:34: input \"n\": sensitive must be true or false, got array"},
        SpecError{"  inputs:\n    n: {type: string, description: [a]}\n",
                  "s.yml:3:36: input \"n\": description must be a string, got array"},
        SpecError{"  inputs: [a]\n", "s.yml:2:11: spec inputs must be a mapping, got array"},
        SpecError{"  inputs:\n    n: string\n",
                  "s.yml:3:8: input \"n\" must be a mapping, got string"},
        SpecError{"  inputs:\n    n: {type: string}\n    n: {type: number}\n",
                  "s.yml:4:5: duplicate key \"n\" in spec inputs (first at line 3)"}));

TEST(Spec, SpecMustBeAMapping) {
  EXPECT_EQ(ErrorOf(Parse("spec: [a]\n---\nrun: []\n")),
            "s.yml:1:7: spec must be a mapping, got array");
  EXPECT_EQ(ErrorOf(Parse("- a\n---\nrun: []\n")),
            "s.yml:1:1: the spec document must be a mapping with a `spec` key, got array");
}

// --- definitions (1.3) ---------------------------------------------------------------------------

TEST(Definition, Exec) {
  auto f =
      Def("exec:\n  command: [sleep, 5, true]\n  work_dir: /tmp\nenv: {A: x, N: 3, B: false, "
          "E: ~}\ncancel: {signal: SIGINT, grace: 5s}\n");
  ASSERT_TRUE(f.ok()) << f.error().message;
  const Definition& d = f->definition;
  EXPECT_EQ(d.kind, Definition::Kind::kExec);
  // Scalars in string places keep their text, as yaml.v3 decodes them into Go strings.
  EXPECT_EQ(d.command, (std::vector<std::string>{"sleep", "5", "true"}));
  EXPECT_EQ(d.work_dir, "/tmp");
  EXPECT_EQ(d.env, (std::map<std::string, std::string>{
                       {"A", "x"}, {"N", "3"}, {"B", "false"}, {"E", ""}}));
  ASSERT_TRUE(d.cancel.has_value());
  EXPECT_EQ(d.cancel->signal, SIGINT);
  EXPECT_EQ(d.cancel->grace, Duration(5s));
  EXPECT_EQ(d.mark.ToString(), "s.yml:3:1");
}

TEST(Definition, Sequence) {
  auto f = Def(R"(run:
  - name: build
    step: ./build
    inputs: {n: 3, s: "3", list: [1, {a: true}], expr: "${{ inputs.x }}"}
    env: {K: v}
  - name: test
    script: make test
outputs:
  out: ${{ steps.build.outputs.x }}
  nested: {a: [1, 2.5]}
delegate: build
finally:
  - name: cleanup
    script: rm -rf tmp
finally_timeout: 1m30s
diagnose:
  - name: dump
    script: kill -QUIT ${{ run.pids }}
cancel: {signal: TERM}
)");
  ASSERT_TRUE(f.ok()) << f.error().message;
  const Definition& d = f->definition;
  EXPECT_EQ(d.kind, Definition::Kind::kSequence);
  ASSERT_EQ(d.run.size(), 2u);
  EXPECT_EQ(d.run[0].name, "build");
  EXPECT_EQ(d.run[0].mark.ToString(), "s.yml:4:5");
  EXPECT_EQ(d.run[0].step.protocol, Reference::Protocol::kLocal);
  EXPECT_EQ(d.run[0].inputs.at("n").dump(), "3");
  EXPECT_EQ(d.run[0].inputs.at("s").dump(), "\"3\"");
  EXPECT_EQ(d.run[0].inputs.at("list").dump(), R"([1,{"a":true}])");
  EXPECT_EQ(d.run[0].inputs.at("expr"), "${{ inputs.x }}");
  EXPECT_EQ(d.run[0].env.at("K"), "v");
  EXPECT_EQ(d.run[1].inputs.at("script"), "make test");
  EXPECT_EQ(d.outputs.dump(), R"({"nested":{"a":[1,2.5]},"out":"${{ steps.build.outputs.x }}"})");
  EXPECT_EQ(d.delegate, "build");
  ASSERT_EQ(d.finally.size(), 1u);
  EXPECT_EQ(d.finally[0].name, "cleanup");
  EXPECT_EQ(d.finally_timeout, Duration(90s));
  ASSERT_EQ(d.diagnose.size(), 1u);
  EXPECT_EQ(d.diagnose[0].name, "dump");
  EXPECT_EQ(d.cancel->signal, SIGTERM);
  EXPECT_FALSE(d.cancel->grace.has_value());
}

TEST(Definition, EmptyAndNullLists) {
  auto f = Def("run: []\nfinally:\ndiagnose: []\ncancel:\n");
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_TRUE(f->definition.run.empty());
  EXPECT_TRUE(f->definition.finally.empty());
  EXPECT_FALSE(f->definition.cancel.has_value());
  EXPECT_TRUE(f->definition.outputs.is_object());
  EXPECT_FALSE(f->definition.finally_timeout.has_value());
}

struct DefError {
  std::string definition;  // starts on line 3
  std::string message;
};
void PrintTo(const DefError& r, std::ostream* os) { *os << '"' << r.definition << '"'; }

class DefinitionErrors : public ::testing::TestWithParam<DefError> {};

TEST_P(DefinitionErrors, Fail) {
  EXPECT_EQ(ErrorOf(Def(GetParam().definition)), GetParam().message);
}

INSTANTIATE_TEST_SUITE_P(
    All, DefinitionErrors,
    ::testing::Values(
        DefError{"env: {}\n", "s.yml:3:1: at least one of exec or run must be provided"},
        DefError{"", "s.yml:3:1: at least one of exec or run must be provided"},
        DefError{"exec: {command: [a]}\nrun: []\n",
                 "s.yml:4:1: only one of exec or run may be provided"},
        DefError{"[a]\n", "s.yml:3:1: the definition must be a mapping, got array"},
        DefError{"exec: {command: [a]}\noutputs: {a: 1}\n",
                 "s.yml:4:1: \"outputs\" cannot be used with exec: it requires a `run:` sequence "
                 "definition"},
        DefError{"exec: {command: [a]}\ndelegate: x\n",
                 "s.yml:4:1: \"delegate\" cannot be used with exec: it requires a `run:` sequence "
                 "definition"},
        DefError{"exec: {command: [a]}\nfinally: []\n",
                 "s.yml:4:1: \"finally\" cannot be used with exec: it requires a `run:` sequence "
                 "definition"},
        DefError{"exec: {command: [a]}\ndiagnose: []\n",
                 "s.yml:4:1: \"diagnose\" cannot be used with exec: it requires a `run:` sequence "
                 "definition"},
        DefError{"exec: {command: [a]}\nfinally_timeout: 1s\n",
                 "s.yml:4:1: \"finally_timeout\" cannot be used with exec: it requires a `run:` "
                 "sequence definition"},
        DefError{"exec: {command: []}\n",
                 "s.yml:3:17: exec command must have at least one element"},
        DefError{"exec: {work_dir: x}\n", "s.yml:3:7: exec: command is required"},
        DefError{"exec:\n", "s.yml:3:1: exec: command is required"},
        DefError{"exec: {command: echo hi}\n",
                 "s.yml:3:17: exec command must be a list, got string"},
        DefError{"exec: {command: [a, ~]}\n",
                 "s.yml:3:21: exec command[1] must be a string, got null"},
        DefError{"exec: {command: [a, [b]]}\n",
                 "s.yml:3:21: exec command[1] must be a string, got array"},
        DefError{"run:\n", "s.yml:3:1: run must be a list, got null"},
        DefError{"run: {a: 1}\n", "s.yml:3:6: run must be a list, got struct"},
        DefError{"run: []\noutputs: [a]\n", "s.yml:4:10: outputs must be a mapping, got array"},
        DefError{"run: []\ndelegate: ''\n", "s.yml:4:11: delegate must name a step of run"},
        DefError{"run: []\nfinally_timeout: soon\n",
                 "s.yml:4:18: finally_timeout: invalid duration \"soon\": expected a number at "
                 "\"soon\""},
        DefError{"run: []\nfinally: {a: 1}\n", "s.yml:4:10: finally must be a list, got struct"},
        DefError{
            "run: []\nenv: {1A: x}\n",
            "s.yml:4:7: invalid variable name \"1A\" in env: must match ^[a-zA-Z_][a-zA-Z0-9_]*$"},
        DefError{"run: []\nenv: {A: {b: 1}}\n",
                 "s.yml:4:10: env \"A\" must be a string, got struct"},
        DefError{"run: []\nenv: [A]\n", "s.yml:4:6: env must be a mapping, got array"},
        DefError{"run: []\ncancel: {signal: SIGFOO}\n",
                 "s.yml:4:18: cancel signal: unknown signal \"SIGFOO\""},
        // SIGSTOP froze the step for its whole grace, then SIGKILL; SIGKILL itself is allowed.
        DefError{"run: []\ncancel: {signal: SIGSTOP}\n",
                 "s.yml:4:18: cancel signal: SIGSTOP cannot be a cancel signal: it freezes the "
                 "processes, which then clean up nothing and are killed when the grace ends"},
        DefError{
            "run: []\ncancel: {grace: 5 seconds}\n",
            "s.yml:4:17: cancel grace: invalid duration \"5 seconds\": missing or unknown unit "
            "(use ns, us, ms, s, m, h)"},
        DefError{"run: []\ncancel: SIGINT\n", "s.yml:4:9: cancel must be a mapping, got string"}));

// --- invocations (1.4) ---------------------------------------------------------------------------

INSTANTIATE_TEST_SUITE_P(
    Invocations, DefinitionErrors,
    ::testing::Values(
        DefError{"run:\n  - step: ./a\n", "s.yml:4:5: run[0]: name is required"},
        DefError{"run:\n  - name: a-b\n    step: ./a\n",
                 "s.yml:4:11: run[0] \"a-b\": invalid step name \"a-b\": must match "
                 "^[a-zA-Z_][a-zA-Z0-9_]*$"},
        DefError{"run:\n  - name: a\n    step: ./a\n  - name: b\n    step: ./b\n  - name: a\n    "
                 "step: ./c\n",
                 "s.yml:8:5: duplicate step name \"a\" in run (first at line 4, again at line 8)"},
        DefError{
            "run: []\nfinally:\n  - {name: x, script: a}\n  - {name: x, script: b}\n",
            "s.yml:6:5: duplicate step name \"x\" in finally (first at line 5, again at line 6)"},
        DefError{"run:\n  - name\n", "s.yml:4:5: run[0] must be a mapping, got string"},
        DefError{"run:\n  - name: a\n    step: ./a\n    inputs: {a-b: 1}\n",
                 "s.yml:6:14: run[0] \"a\": invalid input name \"a-b\": must match "
                 "^[a-zA-Z_][a-zA-Z0-9_]*$"},
        DefError{"run:\n  - name: a\n    step: ./a\n    inputs: [1]\n",
                 "s.yml:6:13: run[0] \"a\" inputs must be a mapping, got array"},
        DefError{"run:\n  - name: a\n    step: ./a\n    inputs: {x: .inf}\n",
                 "s.yml:6:17: \".inf\" is not a finite number (quote it to use it as a string)"},
        DefError{"run:\n  - name: a\n    step: ./a\n    inputs: {x: {<<: a}}\n",
                 "s.yml:6:18: the value of a merge key (<<) must be a mapping or a list of "
                 "mappings, got a scalar"},
        DefError{"run:\n  - name: a\n    step: ./a\n    inputs: {x: {k: 1, k: 2}}\n",
                 "s.yml:6:24: duplicate key \"k\" (first at line 6)"},
        DefError{"run:\n  - name: a\n    step: ./a\n    inputs: {x: !custom 1}\n",
                 "s.yml:6:17: unsupported tag \"!custom\""},
        DefError{"diagnose:\n  - {name: a, script: x}\nrun:\n  - {name: b, scrip: x}\n",
                 "s.yml:6:15: unknown key \"scrip\" in run[0] \"b\" (allowed: name, step, script, "
                 "action, inputs, env, resources, timeout)"}));

TEST(StepFile, SequenceOutputsKeepWhereEachWasWritten) {
  auto f = ParseStepFile(
      "spec: {}\n---\nrun: []\noutputs:\n  a: 1\n  b: {c: \"${{ x }}\"}\n", "s.yml");
  ASSERT_TRUE(f.ok()) << f.error().message;
  const auto& marks = f->definition.output_marks;
  ASSERT_EQ(marks.size(), 2u);
  EXPECT_EQ(marks.at("a").ToString(), "s.yml:5:3");
  EXPECT_EQ(marks.at("b").ToString(), "s.yml:6:3");
}

// An item's inputs and env keep where each was written (its key), so that checks made later name
// the entry; the sugar's inputs are named by its keyword.
TEST(StepFile, ItemInputsAndEnvKeepWhereEachWasWritten) {
  auto f = ParseStepFile(
      "spec: {}\n---\nrun:\n  - name: a\n    step: ./a\n    inputs:\n      x: 1\n      y: 2\n"
      "    env: {E: v}\n  - name: s\n    script: echo\n  - name: c\n    action: act\n"
      "    inputs: {z: 3}\n",
      "s.yml");
  ASSERT_TRUE(f.ok()) << f.error().message;
  const auto& run = f->definition.run;
  ASSERT_EQ(run.size(), 3u);
  EXPECT_EQ(run[0].input_marks.at("x").ToString(), "s.yml:7:7");
  EXPECT_EQ(run[0].input_marks.at("y").ToString(), "s.yml:8:7");
  EXPECT_EQ(run[0].env_marks.at("E").ToString(), "s.yml:9:11");
  EXPECT_EQ(run[1].input_marks.at("script").ToString(), "s.yml:11:5");
  EXPECT_EQ(run[2].input_marks.at("action").ToString(), "s.yml:13:5");
  EXPECT_EQ(run[2].input_marks.at("inputs").ToString(), "s.yml:14:5");
}

}  // namespace
}  // namespace sr::stepfile
