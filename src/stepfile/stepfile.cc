// Step files (reference.md 1.1–1.4) and invocation lists, read strictly (contract.md 4.1).
//
// Limits (for docs/limits.md). Each is an error naming the source and, where there is one, the
// line; none of them can crash or hang the runner:
//   * step text (a file, RunRequest.steps, STEPS) is at most 4 MiB, checked before parsing;
//   * it must be UTF-8 without control characters other than tab, CR and LF (binary is rejected);
//   * collections nest at most 64 levels, counted from the document root — checked while parsing,
//     so 10 000 nested brackets are rejected after 64 of them;
//   * at most 1 000 000 YAML nodes per text, and at most 1 000 000 nodes visited while reading it,
//     counting an alias every time it is expanded ("billion laughs" stops there); an alias inside
//     the node it refers to is an error;
//   * a step file is exactly two documents, an invocation list exactly one (or empty text);
//     empty documents after those (a trailing `---`) are ignored, as in Go;
//   * yaml-cpp errors are caught and reported with their position; no exception leaves here.
// Strictness beyond the Go runner, on purpose: unknown keys anywhere, duplicate mapping keys and
// duplicate step names in one list are errors; custom tags and .inf/.nan are not accepted;
// `sensitive` takes only true/false. Merge keys (<<) are applied as yaml.v3 applies them
// (yaml_tree.cc), before any of these checks.
#include "stepfile/stepfile.h"

#include "stepfile/walk.h"
#include "util/fd.h"
#include "util/signals.h"

namespace sr::stepfile {
namespace {

using internal::Ctx;
using internal::Err;
using internal::Field;
using internal::Fields;
using internal::Find;
using internal::Node;

constexpr const char* kTypeNames = "string, number, boolean, struct, array";

Result<ValueType> ReadType(Ctx& ctx, const Node& node, const std::string& what) {
  SR_ASSIGN_OR_RETURN(std::string name, internal::ReadString(ctx, node, what + ": type"));
  for (ValueType t : {ValueType::kString, ValueType::kNumber, ValueType::kBoolean,
                      ValueType::kStruct, ValueType::kArray}) {
    if (name == ValueTypeName(t)) return t;
  }
  return Err(ctx, node, what + ": unknown type \"" + name + "\" (allowed: " + kTypeNames + ")");
}

// An input or output declaration: {type, default, sensitive, description}.
template <class TypedSpec>
Status ReadTypedSpec(Ctx& ctx, const Field& entry, const std::string& what, TypedSpec& out) {
  SR_ASSIGN_OR_RETURN(Fields f,
                      internal::ReadFields(ctx, *entry.value, what,
                                           {"type", "default", "sensitive", "description"}));
  out.mark = internal::MarkOf(ctx, *entry.key_node);
  const Field* type = Find(f, "type");
  if (type == nullptr) {
    return Err(ctx, *entry.key_node, what + ": type is required (one of " + kTypeNames + ")");
  }
  SR_ASSIGN_OR_RETURN(out.type, ReadType(ctx, *type->value, what));
  if (const Field* d = Find(f, "default")) {
    SR_ASSIGN_OR_RETURN(Value v, internal::ToValue(ctx, *d->value));
    // A null default is a type error too, not "no default": it would make the input optional
    // with a value that matches no declared type.
    if (!CheckType(out.type, v).ok()) {
      std::string type_name = ValueTypeName(out.type);
      return Err(ctx, *d->value,
                 what + ": default must be " + (type_name == "array" ? "an " : "a ") + type_name +
                     ", got " + JsonTypeName(v));
    }
    out.default_value = std::move(v);
  }
  if (const Field* s = Find(f, "sensitive")) {
    bool is_bool = false;
    if (s->value->kind == Node::Kind::kScalar) {
      auto v = internal::ResolveScalar(ctx, *s->value);
      is_bool = v.ok() && v->is_boolean();
      if (is_bool) out.sensitive = v->get<bool>();
    }
    if (!is_bool) {
      return Err(ctx, *s->value, what + ": sensitive must be true or false, got " +
                                     internal::NodeTypeName(*s->value));
    }
  }
  if (const Field* d = Find(f, "description")) {
    SR_ASSIGN_OR_RETURN(out.description,
                        internal::ReadString(ctx, *d->value, what + ": description"));
  }
  return Ok();
}

template <class TypedSpec>
Status ReadTypedSpecs(Ctx& ctx, const Node& node, const std::string& kind,
                      std::map<std::string, TypedSpec>& out) {
  SR_ASSIGN_OR_RETURN(Fields f, internal::ReadAnyFields(ctx, node, "spec " + kind + "s"));
  for (const Field& entry : f) {
    if (!internal::IsIdentifier(entry.key)) {
      return Err(ctx, *entry.key_node,
                 "invalid " + kind + " name \"" + entry.key + "\": must match " +
                     internal::kIdentifierPattern);
    }
    SR_RETURN_IF_ERROR(ReadTypedSpec(ctx, entry, kind + " \"" + entry.key + "\"", out[entry.key]));
  }
  return Ok();
}

Result<Spec> ReadSpecDocument(Ctx& ctx, const Node& root) {
  Spec spec;
  if (root.kind == Node::Kind::kNull) return spec;
  if (root.kind != Node::Kind::kMapping) {
    return Err(ctx, root,
               "the spec document must be a mapping with a `spec` key, got " +
                   internal::NodeTypeName(root));
  }
  // Documents in the wrong order (or a missing spec) show up as definition keys here.
  for (size_t i = 0; i < root.items.size(); i += 2) {
    const std::string& key = root.items[i]->text;
    if (key == "exec" || key == "run") {
      return Err(ctx, *root.items[i],
                 "unknown key \"" + key +
                     "\" in the spec document (allowed: "
                     "spec): a step file starts with the spec document, then "
                     "`---`, then the definition");
    }
  }
  SR_ASSIGN_OR_RETURN(Fields top, internal::ReadFields(ctx, root, "the spec document", {"spec"}));
  const Field* s = Find(top, "spec");
  if (s == nullptr) return spec;
  SR_ASSIGN_OR_RETURN(Fields f,
                      internal::ReadFields(ctx, *s->value, "spec", {"inputs", "outputs"}));
  if (const Field* in = Find(f, "inputs")) {
    SR_RETURN_IF_ERROR(ReadTypedSpecs(ctx, *in->value, "input", spec.inputs));
  }
  if (const Field* out = Find(f, "outputs")) {
    const Node& v = *out->value;
    if (v.kind == Node::Kind::kScalar) {
      if (v.text != "delegate") {
        return Err(ctx, v,
                   "unsupported value: " + v.text +
                       " (spec outputs must be `delegate` or a mapping of outputs)");
      }
      spec.delegate_outputs = true;
    } else {
      SR_RETURN_IF_ERROR(ReadTypedSpecs(ctx, v, "output", spec.outputs));
    }
  }
  return spec;
}

Result<std::optional<CancelOverride>> ReadCancel(Ctx& ctx, const Node& node) {
  if (node.kind == Node::Kind::kNull) return std::optional<CancelOverride>();
  SR_ASSIGN_OR_RETURN(Fields f, internal::ReadFields(ctx, node, "cancel", {"signal", "grace"}));
  CancelOverride c;
  if (const Field* s = Find(f, "signal")) {
    SR_ASSIGN_OR_RETURN(std::string name, internal::ReadString(ctx, *s->value, "cancel signal"));
    auto signo = ParseCancelSignal(name);
    if (!signo.ok()) return Err(ctx, *s->value, "cancel signal: " + signo.error().message);
    c.signal = *signo;
  }
  if (const Field* g = Find(f, "grace")) {
    SR_ASSIGN_OR_RETURN(std::string text, internal::ReadString(ctx, *g->value, "cancel grace"));
    auto grace = ParseDuration(text);
    if (!grace.ok()) return Err(ctx, *g->value, "cancel grace: " + grace.error().message);
    c.grace = *grace;
  }
  return std::optional<CancelOverride>(c);
}

Status ReadExec(Ctx& ctx, const Field& exec, Definition& def) {
  SR_ASSIGN_OR_RETURN(Fields f,
                      internal::ReadFields(ctx, *exec.value, "exec", {"command", "work_dir"}));
  const Field* command = Find(f, "command");
  if (command == nullptr) return Err(ctx, *exec.value, "exec: command is required");
  SR_ASSIGN_OR_RETURN(auto items, internal::ReadList(ctx, *command->value, "exec command"));
  if (items.empty())
    return Err(ctx, *command->value, "exec command must have at least one element");
  for (size_t i = 0; i < items.size(); ++i) {
    std::string what = "exec command[" + std::to_string(i) + "]";
    // `[sleep, 5]` is fine (5 is its text, as in Go), but a null argument is surely a mistake.
    if (items[i]->kind != Node::Kind::kScalar) {
      return Err(ctx, *items[i],
                 what + " must be a string, got " + internal::NodeTypeName(*items[i]));
    }
    SR_ASSIGN_OR_RETURN(std::string arg, internal::ReadString(ctx, *items[i], what));
    def.command.push_back(std::move(arg));
  }
  if (const Field* wd = Find(f, "work_dir")) {
    SR_ASSIGN_OR_RETURN(def.work_dir, internal::ReadString(ctx, *wd->value, "exec work_dir"));
  }
  return Ok();
}

Status ReadSequence(Ctx& ctx, const Fields& f, Definition& def) {
  SR_ASSIGN_OR_RETURN(def.run, internal::ReadInvocations(ctx, *Find(f, "run")->value, "run"));
  if (const Field* o = Find(f, "outputs"); o && o->value->kind != Node::Kind::kNull) {
    if (o->value->kind != Node::Kind::kMapping) {
      return Err(ctx, *o->value,
                 "outputs must be a mapping, got " + internal::NodeTypeName(*o->value));
    }
    SR_ASSIGN_OR_RETURN(def.outputs, internal::ToValue(ctx, *o->value));
    // Checks made later (the engine's static check of output reads) name the entry at fault.
    // ToValue has refused non-string and duplicate keys, so each key is one entry.
    const auto& items = o->value->items;
    for (size_t i = 0; i + 1 < items.size(); i += 2) {
      def.output_marks.emplace(items[i]->text, internal::MarkOf(ctx, *items[i]));
    }
  }
  if (const Field* d = Find(f, "delegate")) {
    SR_ASSIGN_OR_RETURN(std::string name, internal::ReadString(ctx, *d->value, "delegate"));
    if (name.empty()) return Err(ctx, *d->value, "delegate must name a step of run");
    def.delegate = name;
  }
  for (auto [key, list] :
       {std::pair{"finally", &def.finally}, std::pair{"diagnose", &def.diagnose}}) {
    const Field* l = Find(f, key);
    if (l == nullptr || l->value->kind == Node::Kind::kNull) continue;
    SR_ASSIGN_OR_RETURN(*list, internal::ReadInvocations(ctx, *l->value, key));
  }
  if (const Field* t = Find(f, "finally_timeout")) {
    SR_ASSIGN_OR_RETURN(std::string text, internal::ReadString(ctx, *t->value, "finally_timeout"));
    auto d = ParseDuration(text);
    if (!d.ok()) return Err(ctx, *t->value, "finally_timeout: " + d.error().message);
    def.finally_timeout = *d;
  }
  return Ok();
}

Result<Definition> ReadDefinition(Ctx& ctx, const Node& root) {
  Definition def;
  def.mark = internal::MarkOf(ctx, root);
  if (root.kind == Node::Kind::kNull) {
    return Err(ctx, root, "at least one of exec or run must be provided");
  }
  if (root.kind != Node::Kind::kMapping) {
    return Err(ctx, root, "the definition must be a mapping, got " + internal::NodeTypeName(root));
  }
  const Node* exec_key = nullptr;
  const Node* run_key = nullptr;
  for (size_t i = 0; i < root.items.size(); i += 2) {
    const Node* key = root.items[i];
    if (key->text == "exec" && !exec_key) exec_key = key;
    if (key->text == "run" && !run_key) run_key = key;
  }
  if (exec_key && run_key) {
    return Err(ctx, exec_key->line > run_key->line ? *exec_key : *run_key,
               "only one of exec or run may be provided");
  }
  if (!exec_key && !run_key) return Err(ctx, root, "at least one of exec or run must be provided");
  if (exec_key) {
    // Sequence-only keys get their own message: "unknown key" would be misleading.
    for (size_t i = 0; i < root.items.size(); i += 2) {
      const std::string& key = root.items[i]->text;
      for (const char* seq_only :
           {"outputs", "delegate", "finally", "finally_timeout", "diagnose"}) {
        if (key == seq_only) {
          return Err(ctx, *root.items[i],
                     "\"" + key +
                         "\" cannot be used with exec: it requires "
                         "a `run:` sequence definition");
        }
      }
    }
  }
  Fields f;
  if (exec_key) {
    def.kind = Definition::Kind::kExec;
    SR_ASSIGN_OR_RETURN(
        f, internal::ReadFields(ctx, root, "the definition", {"exec", "env", "cancel", "resources"}));
    SR_RETURN_IF_ERROR(ReadExec(ctx, *Find(f, "exec"), def));
  } else {
    def.kind = Definition::Kind::kSequence;
    SR_ASSIGN_OR_RETURN(f, internal::ReadFields(ctx, root, "the definition",
                                                {"run", "env", "outputs", "delegate", "finally",
                                                 "finally_timeout", "diagnose", "cancel",
                                                 "resources"}));
    SR_RETURN_IF_ERROR(ReadSequence(ctx, f, def));
  }
  if (const Field* env = Find(f, "env")) {
    SR_ASSIGN_OR_RETURN(def.env, internal::ReadEnv(ctx, *env->value, "env"));
  }
  if (const Field* cancel = Find(f, "cancel")) {
    SR_ASSIGN_OR_RETURN(def.cancel, ReadCancel(ctx, *cancel->value));
  }
  if (const Field* res = Find(f, "resources")) {
    SR_ASSIGN_OR_RETURN(def.resources, internal::ReadResources(ctx, *res->value, "resources"));
  }
  return def;
}

// A document root, or a null node at the document's start for the (theoretical) empty case.
const Node& RootOf(const internal::Document& doc, Node& fallback) {
  if (doc.root != nullptr) return *doc.root;
  fallback.line = doc.line;
  fallback.column = doc.column;
  return fallback;
}

}  // namespace

Result<std::string> ReadStepText(const std::string& path, bool regular_only) {
  using internal::kMaxTextBytes;
  long long size = -1;
  auto text = ReadFilePrefix(path, kMaxTextBytes, regular_only, &size);
  if (text.ok() && text->size() > kMaxTextBytes) {
    // The words of LoadYaml's check; the whole size is known only for a regular file.
    const std::string limit = std::to_string(kMaxTextBytes);
    return InvalidError(path + ": step text is " +
                        (size >= 0 ? std::to_string(size) + " bytes, more than the limit of " + limit
                                   : "more than the limit of " + limit + " bytes"));
  }
  return text;
}

Result<StepFile> ParseStepFile(std::string_view text, const std::string& source) {
  SR_ASSIGN_OR_RETURN(auto tree, internal::LoadYaml(text, source, 2,
                                                    "a step file has exactly two documents (the "
                                                    "spec, then the definition); a third one "
                                                    "starts here"));
  const auto& docs = tree->documents;
  if (docs.size() < 2) {
    std::string hint;
    if (!docs.empty() && docs[0].root && docs[0].root->kind == Node::Kind::kMapping) {
      for (size_t i = 0; i < docs[0].root->items.size(); i += 2) {
        const std::string& key = docs[0].root->items[i]->text;
        if (key == "exec" || key == "run") hint = " (this text looks like a definition alone)";
      }
    }
    return InvalidError(Mark{source, 1, 1}.ToString() +
                        ": the definition document is missing: a step file is two YAML documents, "
                        "the spec and then the definition, separated by a `---` line" +
                        hint);
  }
  Ctx ctx{source};
  Node null0, null1;
  StepFile file;
  file.source = source;
  SR_ASSIGN_OR_RETURN(file.spec, ReadSpecDocument(ctx, RootOf(docs[0], null0)));
  SR_ASSIGN_OR_RETURN(file.definition, ReadDefinition(ctx, RootOf(docs[1], null1)));
  return file;
}

Result<std::vector<Invocation>> ParseInvocationList(std::string_view text,
                                                    const std::string& source) {
  SR_ASSIGN_OR_RETURN(auto tree, internal::LoadYaml(text, source, 1,
                                                    "expected one YAML document (a list of "
                                                    "steps); another one starts here"));
  if (tree->documents.empty() || tree->documents[0].root == nullptr ||
      tree->documents[0].root->kind == Node::Kind::kNull) {
    return std::vector<Invocation>();
  }
  Ctx ctx{source};
  ctx.lenient_names = true;
  return internal::ReadInvocations(ctx, *tree->documents[0].root, "steps");
}

}  // namespace sr::stepfile
