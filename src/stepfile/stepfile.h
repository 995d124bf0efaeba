// Step text → parsed step. Reads the two-document step file format (reference.md section 1) and
// the invocation lists of `ci` / `run`, strictly: an unknown key anywhere is an error naming the
// key, the source and the line. Nothing here runs or expands anything; values that may contain
// expressions are kept as written.
//
// Error messages look like `<source>:<line>:<col>: <what>`, e.g.
//   `step.yml:7:5: unknown key "comand" in exec`
//   `step.yml:3:13: input "n": default must be a number, got string`
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "util/result.h"
#include "util/time.h"

namespace sr::stepfile {

using Value = nlohmann::json;

/// The source name of the step text of a RunRequest, which has no file name: errors say
/// `<request>:5:5: …`, and `client run` puts its file's path in its place.
inline constexpr std::string_view kRequestSource = "<request>";

/// Where a node was written. line/column are 1-based; 0 when unknown (e.g. synthesised items).
struct Mark {
  std::string source;  // file path, "<request>", "STEPS", ...
  int line = 0;
  int column = 0;
  std::string ToString() const;  // "step.yml:7:5" (or just the source when line is 0)
};

enum class ValueType { kString, kNumber, kBoolean, kStruct, kArray };
const char* ValueTypeName(ValueType t);  // "string", "number", "boolean", "struct", "array"
/// The ValueType name of a JSON value ("string", "number", "boolean", "struct", "array", "null").
std::string JsonTypeName(const Value& v);

struct InputSpec {
  ValueType type = ValueType::kString;
  std::optional<Value> default_value;  // type-checked against `type` at parse time
  bool sensitive = false;
  std::string description;
  Mark mark;
};

struct OutputSpec {
  ValueType type = ValueType::kString;
  std::optional<Value> default_value;
  bool sensitive = false;
  std::string description;
  Mark mark;
};

struct Spec {
  std::map<std::string, InputSpec> inputs;
  std::map<std::string, OutputSpec> outputs;
  bool delegate_outputs = false;  // `outputs: delegate`
};

/// A compiled `step:` reference (reference.md 1.5 / 1.6).
struct Reference {
  enum class Protocol { kLocal, kGit, kDist, kDynamic, kOci };
  Protocol protocol = Protocol::kLocal;
  std::string url;                // git: the clone URL; dynamic: the raw `${{ }}` text
  std::vector<std::string> path;  // directory parts, e.g. {".", "tools", "lint"}, {"/", "opt"}
  std::string filename = "step.yml";
  std::string version;            // git revision
  // oci: the image; `path` is its `dir`, `filename` its `file`.
  std::string registry, repository, tag;
};

/// Parses the short string form of a reference (reference.md 1.5, table of examples).
Result<Reference> ParseShortReference(std::string_view text);

/// Per-step cancel override (contract 4.7): `cancel: {signal: SIGINT, grace: 5s}`.
struct CancelOverride {
  std::optional<int> signal;     // parsed signal number
  std::optional<Duration> grace; // may only shorten the job's remaining grace
};

/// Resource limits (contract 8.1): `resources: {memory: 512Mi, pids: 2000, cpus: 1.5}`.
/// 0 = no limit at this level.
struct Limits {
  int64_t memory_bytes = 0;
  int64_t pids = 0;
  double cpus = 0;
  bool any() const { return memory_bytes > 0 || pids > 0 || cpus > 0; }
};

/// The smallest limits a step can get: below them the kernel cannot run a process in the group.
inline constexpr int64_t kMinMemoryBytes = 1 << 20;
inline constexpr double kMinCpus = 0.01;

/// "512Mi", "2G", "1048576": bytes, with K M G (powers of 1000) or Ki Mi Gi (powers of 1024).
/// Error text like `"lots" is not a size (bytes, or a number with K M G Ki Mi Gi)`.
Result<int64_t> ParseMemory(std::string_view text);
/// "1.5": a positive decimal number of CPUs.
Result<double> ParseCpus(std::string_view text);
/// "20": a positive whole number of processes.
Result<int64_t> ParsePids(std::string_view text);

/// One item of a `run:` (or `finally:` / `diagnose:`) list.
struct Invocation {
  std::string name;
  Reference step;
  std::map<std::string, Value> inputs;  // unexpanded; `script:` becomes inputs {script: ...}
  std::map<std::string, std::string> env;
  std::optional<Limits> resources;  // contract 8.1, for this item's whole subtree
  std::optional<Duration> timeout;  // contract 8.4
  Mark mark;
  /// Where each entry of `inputs` and `env` was written (its key; a `script:` or `action:`
  /// item's inputs at that keyword), so that an error about one entry names its line. An entry
  /// without one (items made from the command line) is named by `mark`.
  std::map<std::string, Mark> input_marks;
  std::map<std::string, Mark> env_marks;
  /// The line of input `name` (or env entry `name`), else the item's.
  const Mark& InputMark(const std::string& name) const { return EntryMark(input_marks, name); }
  const Mark& EnvMark(const std::string& name) const { return EntryMark(env_marks, name); }
  /// Inputs given as text on the command line (`run REF --inputs k=v`): typed by the callee's
  /// declared type once it is loaded (ValueFromText), not guessed.
  std::map<std::string, std::string> text_inputs;

 private:
  const Mark& EntryMark(const std::map<std::string, Mark>& marks, const std::string& name) const {
    auto it = marks.find(name);
    return it != marks.end() ? it->second : mark;
  }
};

struct Definition {
  enum class Kind { kExec, kSequence };
  Kind kind = Kind::kExec;
  // exec
  std::vector<std::string> command;
  std::string work_dir;
  // sequence
  std::vector<Invocation> run;
  std::vector<Invocation> finally;   // contract 4.7: run after `run:` whatever happened
  std::vector<Invocation> diagnose;  // contract 4.10: started at the pre-deadline warning
  std::optional<Duration> finally_timeout;
  Value outputs = Value::object();   // sequence outputs, unexpanded
  std::map<std::string, Mark> output_marks;  // where each of `outputs` was written (its key)
  std::optional<std::string> delegate;
  // both
  std::map<std::string, std::string> env;
  std::optional<CancelOverride> cancel;
  std::optional<Limits> resources;  // contract 8.1
  Mark mark;
};

struct StepFile {
  Spec spec;
  Definition definition;
  std::string source;  // the path it was read from, or a label such as "<request>"
};

/// Reads a step file from disk for ParseStepFile: at most the step-text limit (4 MiB) is read, so
/// an endless or huge file is the size error, not an exhausted memory. `regular_only` refuses
/// FIFOs, devices and terminals (for step files that other steps reference: reading one could
/// block the runner forever). Errors name the path.
Result<std::string> ReadStepText(const std::string& path, bool regular_only);

/// "<source>:<line>:<column>" (1-based) of the byte at `offset` of `text`, as step-file errors
/// name places.
std::string TextPosition(std::string_view text, size_t offset, const std::string& source);

/// Parses a full two-document step file. `source` names it in errors.
Result<StepFile> ParseStepFile(std::string_view text, const std::string& source);

/// Parses a YAML list of invocations (the `ci` command's STEPS, `run`'s synthesised item).
/// Same strictness, but item names may be empty or contain '-' (reference 1.4 for `ci`).
Result<std::vector<Invocation>> ParseInvocationList(std::string_view text,
                                                    const std::string& source);

/// Splits one CSV record as Go's flag package reads `--inputs a=1,"b=x,y"`: fields by commas,
/// a field in double quotes may hold commas ("" is a quote).
Result<std::vector<std::string>> SplitCsvRecord(std::string_view text);

/// Command-line text as a value of a declared type: a string input takes the text as is
/// (`who=123` is "123"), number/boolean parse it, struct/array read it as JSON. A number is
/// read as a plain YAML scalar is (YamlNumber): text that is no finite number is an error.
Result<Value> ValueFromText(ValueType type, const std::string& text);

/// The number a plain YAML scalar is, as Go's yaml.v3 resolves it (value.cc): int64, then
/// uint64 (base 0: 0x1F, 0o17, 017, 0b101; '_' removed), then a decimal float; nullopt when it
/// is none of these (`inf`, `1.2.3`). A float out of range (`1e999`) is nullopt too, with
/// `*out_of_range` set: yaml.v3 keeps that text as a string.
std::optional<Value> YamlNumber(std::string_view text, bool* out_of_range = nullptr);

/// Command-line text typed as the Go runner's YAML pasting does: 3 a number, true a bool.
/// For inputs whose declared type is not known.
Value GuessScalar(const std::string& text);

/// Checks `value` against a declared type; error text like `declared number, got string`.
Status CheckType(ValueType type, const Value& value);

}  // namespace sr::stepfile
