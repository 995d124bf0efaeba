// Internal to the stepfile module: strict readers over the YAML tree (yaml_tree.h). Every reader
// reports errors as `<source>:<line>:<col>: <what>` using the node it looked at, and charges the
// shared node budget so that aliases cannot make the walk (or the values) explode.
#pragma once

#include <initializer_list>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "stepfile/stepfile.h"
#include "stepfile/yaml_tree.h"

namespace sr::stepfile::internal {

/// State shared by one parse.
struct Ctx {
  std::string source;
  long budget = kMaxNodes;     // nodes left to visit (values and schema walk together)
  long bytes = kMaxValueBytes;  // bytes of values left to build (kMaxValueBytes)
  bool lenient_names = false;  // invocation names unchecked (`ci` STEPS, `run` command line)
};

Mark MarkOf(const Ctx& ctx, const Node& node);
/// An invalid-input error prefixed with the node's position.
Error Err(const Ctx& ctx, const Node& node, const std::string& what);
/// Spends one node of the budget; an error naming `node` when the budget is gone.
Status Charge(Ctx& ctx, const Node& node);

/// "string", "number", "boolean", "null", "struct" or "array": what the node is, as a value.
std::string NodeTypeName(const Node& node);
/// The YAML scalar (or null) as a JSON value, resolved like Go's yaml.v3 into interface{}.
Result<Value> ResolveScalar(const Ctx& ctx, const Node& node);
/// Any node as a JSON value (sequences → arrays, mappings → objects with string keys).
/// `depth` is how deep the value already is; more than kMaxDepth levels is an error.
Result<Value> ToValue(Ctx& ctx, const Node& node, int depth = 0);

/// One `key: value` of a mapping read by ReadFields.
struct Field {
  std::string key;
  const Node* key_node = nullptr;
  const Node* value = nullptr;
};
using Fields = std::vector<Field>;

/// Reads a mapping strictly: a key not in `allowed` is `unknown key "k" in <where> (allowed:
/// …)`, a repeated key is an error naming both lines. A null node reads as an empty mapping;
/// anything else is `<where> must be a mapping, got <type>`.
Result<Fields> ReadFields(Ctx& ctx, const Node& node, const std::string& where,
                          std::initializer_list<std::string_view> allowed);
/// Like ReadFields, but any key is allowed (maps of names: inputs, env, ...).
Result<Fields> ReadAnyFields(Ctx& ctx, const Node& node, const std::string& where);
const Field* Find(const Fields& fields, std::string_view key);

/// A string-typed field: any scalar gives its text as written (`3`, `true` → "3", "true"),
/// null gives "", as yaml.v3 decodes into a Go string. Collections are errors naming `what`.
Result<std::string> ReadString(Ctx& ctx, const Node& node, const std::string& what);
/// The items of a sequence; anything else is `<what> must be a list, got <type>`.
Result<std::vector<const Node*>> ReadList(Ctx& ctx, const Node& node, const std::string& what);
/// A `NAME: string` map (env); names must be identifiers, values as ReadString. With `marks`,
/// where each name was written.
Result<std::map<std::string, std::string>> ReadEnv(Ctx& ctx, const Node& node,
                                                   const std::string& where,
                                                   std::map<std::string, Mark>* marks = nullptr);

/// ^[a-zA-Z_][a-zA-Z0-9_]*$
bool IsIdentifier(std::string_view s);
inline constexpr const char* kIdentifierPattern = "^[a-zA-Z_][a-zA-Z0-9_]*$";

/// Reads a `step:` value: a short reference string or a mapping with `git:` or `oci:`.
Result<Reference> ReadStepReference(Ctx& ctx, const Node& node, const std::string& where);
/// Reads `resources: {memory, pids, cpus}`; errors name the key and its line.
Result<Limits> ReadResources(Ctx& ctx, const Node& node, const std::string& where);
/// Reads a list of invocations (`run:`, `finally:`, `diagnose:`, STEPS). `list` names it in
/// errors ("run" → "run[2]"); duplicate non-empty names are errors.
Result<std::vector<Invocation>> ReadInvocations(Ctx& ctx, const Node& node,
                                                const std::string& list);

}  // namespace sr::stepfile::internal
