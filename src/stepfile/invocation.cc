// Items of `run:` / `finally:` / `diagnose:` and of the `ci` STEPS list (reference.md 1.4),
// including the `script:` and `action:` sugar.
#include "stepfile/walk.h"

namespace sr::stepfile::internal {
namespace {

constexpr const char* kActionRunnerUrl = "https://gitlab.com/components/action-runner";

// `run[2]`, or `run[2] "build"` once the name is known, so errors point at the item by name too.
std::string Label(const Node& node, const std::string& list, size_t index) {
  std::string label = list + "[" + std::to_string(index) + "]";
  for (size_t i = 0; i + 1 < node.items.size(); i += 2) {
    const Node& key = *node.items[i];
    const Node& value = *node.items[i + 1];
    if (key.text == "name" && value.kind == Node::Kind::kScalar && !value.text.empty()) {
      return label + " \"" + value.text + "\"";
    }
  }
  return label;
}

Result<Invocation> ReadInvocation(Ctx& ctx, const Node& node, const std::string& list,
                                  size_t index) {
  if (node.kind != Node::Kind::kMapping) {
    return Err(
        ctx, node,
        list + "[" + std::to_string(index) + "] must be a mapping, got " + NodeTypeName(node));
  }
  const std::string label = Label(node, list, index);
  SR_ASSIGN_OR_RETURN(Fields f, ReadFields(ctx, node, label,
                                           {"name", "step", "script", "action", "inputs", "env",
                                            "resources", "timeout"}));
  Invocation inv;
  inv.mark = MarkOf(ctx, node);

  const Field* name = Find(f, "name");
  if (name != nullptr) {
    SR_ASSIGN_OR_RETURN(inv.name, ReadString(ctx, *name->value, label + ": name"));
  }
  if (!ctx.lenient_names) {
    if (inv.name.empty()) return Err(ctx, node, label + ": name is required");
    if (!IsIdentifier(inv.name)) {
      return Err(
          ctx, *name->value,
          label + ": invalid step name \"" + inv.name + "\": must match " + kIdentifierPattern);
    }
  }

  // The exclusions in the order Go's compiler checks them, so the first message matches.
  const Field* step = Find(f, "step");
  const Field* script = Find(f, "script");
  const Field* action = Find(f, "action");
  const Field* inputs = Find(f, "inputs");
  auto conflict = [&](const Field* at, const std::string& what) {
    return Err(ctx, *at->key_node, label + ": " + what);
  };
  if (script && step)
    return conflict(script, "the `script` keyword cannot be used with the `step` keyword");
  if (script && action)
    return conflict(script, "the `script` keyword cannot be used with the `action` keyword");
  if (script && inputs)
    return conflict(inputs, "the `script` keyword cannot be used with `inputs`");
  if (action && step)
    return conflict(action, "the `action` keyword cannot be used with the `step` keyword");
  if (!step && !script && !action) {
    return Err(ctx, node, label + ": one of step, script or action is required");
  }

  Value input_object = Value::object();  // the original inputs, for the action sugar
  if (inputs != nullptr) {
    SR_ASSIGN_OR_RETURN(Fields in, ReadAnyFields(ctx, *inputs->value, label + " inputs"));
    for (const Field& i : in) {
      if (!IsIdentifier(i.key)) {
        return Err(
            ctx, *i.key_node,
            label + ": invalid input name \"" + i.key + "\": must match " + kIdentifierPattern);
      }
      SR_ASSIGN_OR_RETURN(Value v, ToValue(ctx, *i.value));
      if (action != nullptr) input_object[i.key] = v;
      inv.inputs[i.key] = std::move(v);
      inv.input_marks[i.key] = MarkOf(ctx, *i.key_node);
    }
  }
  if (const Field* env = Find(f, "env")) {
    SR_ASSIGN_OR_RETURN(inv.env, ReadEnv(ctx, *env->value, label + " env", &inv.env_marks));
  }
  if (const Field* res = Find(f, "resources")) {
    SR_ASSIGN_OR_RETURN(inv.resources, ReadResources(ctx, *res->value, label + " resources"));
  }
  if (const Field* t = Find(f, "timeout")) {
    SR_ASSIGN_OR_RETURN(std::string text, ReadString(ctx, *t->value, label + ": timeout"));
    auto d = ParseDuration(text);
    if (!d.ok()) return Err(ctx, *t->value, label + ": timeout: " + d.error().message);
    if (d->count() <= 0) return Err(ctx, *t->value, label + ": timeout: must be positive");
    inv.timeout = *d;
  }

  if (step != nullptr) {
    SR_ASSIGN_OR_RETURN(inv.step, ReadStepReference(ctx, *step->value, label + ": step"));
    return inv;
  }
  const Field* sugar = script != nullptr ? script : action;
  SR_ASSIGN_OR_RETURN(std::string text, ReadString(ctx, *sugar->value, label + ": " + sugar->key));
  if (text.empty())
    return Err(ctx, *sugar->value, label + ": " + sugar->key + " must not be empty");
  if (script != nullptr) {
    // The built-in script step (dist://script) runs its `script` input with a shell.
    inv.step.protocol = Reference::Protocol::kDist;
    inv.step.path = {"script"};
    inv.inputs = {{"script", Value(text)}};
    inv.input_marks = {{"script", MarkOf(ctx, *script->key_node)}};
  } else {
    // Actions run through GitLab's action-runner component, which takes the action and its
    // inputs as two inputs of its own.
    inv.step.protocol = Reference::Protocol::kGit;
    inv.step.url = kActionRunnerUrl;
    inv.step.version = "main";
    inv.inputs = {{"action", Value(text)}, {"inputs", std::move(input_object)}};
    inv.input_marks = {{"action", MarkOf(ctx, *action->key_node)}};
    if (inputs != nullptr) inv.input_marks["inputs"] = MarkOf(ctx, *inputs->key_node);
  }
  return inv;
}

}  // namespace

Result<std::vector<Invocation>> ReadInvocations(Ctx& ctx, const Node& node,
                                                const std::string& list) {
  SR_ASSIGN_OR_RETURN(auto items, ReadList(ctx, node, list));
  std::vector<Invocation> out;
  std::map<std::string, int> seen;  // name → line of its first use
  for (size_t i = 0; i < items.size(); ++i) {
    SR_ASSIGN_OR_RETURN(Invocation inv, ReadInvocation(ctx, *items[i], list, i));
    // Go lets a later step silently replace an earlier one in `steps`; we refuse the ambiguity.
    if (!inv.name.empty()) {
      auto [it, fresh] = seen.emplace(inv.name, inv.mark.line);
      if (!fresh) {
        return Err(ctx, *items[i],
                   "duplicate step name \"" + inv.name + "\" in " + list + " (first at line " +
                       std::to_string(it->second) + ", again at line " +
                       std::to_string(inv.mark.line) + ")");
      }
    }
    out.push_back(std::move(inv));
  }
  return out;
}

}  // namespace sr::stepfile::internal
