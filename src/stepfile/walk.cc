// Strict readers shared by the spec, definition and invocation parsers (see walk.h).
#include "stepfile/walk.h"

namespace sr::stepfile::internal {

Mark MarkOf(const Ctx& ctx, const Node& node) { return {ctx.source, node.line, node.column}; }

Error Err(const Ctx& ctx, const Node& node, const std::string& what) {
  return InvalidError(MarkOf(ctx, node).ToString() + ": " + what);
}

Status Charge(Ctx& ctx, const Node& node) {
  if (--ctx.budget < 0) {
    return Err(ctx, node,
               "value too large: more than " + std::to_string(kMaxNodes) +
                   " nodes after expanding aliases");
  }
  return Ok();
}

namespace {

std::string Join(std::initializer_list<std::string_view> names) {
  std::string out;
  for (std::string_view n : names) {
    if (!out.empty()) out += ", ";
    out += n;
  }
  return out;
}

// Shared by ReadFields / ReadAnyFields; allowed == nullptr accepts any key.
Result<Fields> Read(Ctx& ctx, const Node& node, const std::string& where,
                    const std::initializer_list<std::string_view>* allowed) {
  SR_RETURN_IF_ERROR(Charge(ctx, node));
  Fields out;
  std::map<std::string_view, const Node*> seen;  // a set, not a scan: mappings may be huge
  if (node.kind == Node::Kind::kNull) return out;
  if (node.kind != Node::Kind::kMapping) {
    return Err(ctx, node, where + " must be a mapping, got " + NodeTypeName(node));
  }
  for (size_t i = 0; i + 1 < node.items.size(); i += 2) {
    const Node& key = *node.items[i];
    SR_RETURN_IF_ERROR(Charge(ctx, key));
    if (key.kind != Node::Kind::kScalar) {
      return Err(ctx, key, "keys in " + where + " must be strings, got " + NodeTypeName(key));
    }
    if (allowed != nullptr) {
      bool known = false;
      for (std::string_view a : *allowed) known = known || a == key.text;
      if (!known) {
        return Err(
            ctx, key,
            "unknown key \"" + key.text + "\" in " + where + " (allowed: " + Join(*allowed) + ")");
      }
    }
    auto [it, fresh] = seen.emplace(key.text, &key);
    if (!fresh) {
      return Err(ctx, key,
                 "duplicate key \"" + key.text + "\" in " + where + " (first at line " +
                     std::to_string(it->second->line) + ")");
    }
    out.push_back({key.text, &key, node.items[i + 1]});
  }
  return out;
}

}  // namespace

Result<Fields> ReadFields(Ctx& ctx, const Node& node, const std::string& where,
                          std::initializer_list<std::string_view> allowed) {
  return Read(ctx, node, where, &allowed);
}

Result<Fields> ReadAnyFields(Ctx& ctx, const Node& node, const std::string& where) {
  return Read(ctx, node, where, nullptr);
}

const Field* Find(const Fields& fields, std::string_view key) {
  for (const Field& f : fields) {
    if (f.key == key) return &f;
  }
  return nullptr;
}

Result<std::string> ReadString(Ctx& ctx, const Node& node, const std::string& what) {
  SR_RETURN_IF_ERROR(Charge(ctx, node));
  if (node.kind == Node::Kind::kNull) return std::string();
  if (node.kind != Node::Kind::kScalar) {
    return Err(ctx, node, what + " must be a string, got " + NodeTypeName(node));
  }
  return node.text;
}

Result<std::vector<const Node*>> ReadList(Ctx& ctx, const Node& node, const std::string& what) {
  SR_RETURN_IF_ERROR(Charge(ctx, node));
  if (node.kind != Node::Kind::kSequence) {
    return Err(ctx, node, what + " must be a list, got " + NodeTypeName(node));
  }
  return node.items;
}

Result<std::map<std::string, std::string>> ReadEnv(Ctx& ctx, const Node& node,
                                                   const std::string& where,
                                                   std::map<std::string, Mark>* marks) {
  SR_ASSIGN_OR_RETURN(Fields fields, ReadAnyFields(ctx, node, where));
  std::map<std::string, std::string> env;
  for (const Field& f : fields) {
    if (!IsIdentifier(f.key)) {
      return Err(ctx, *f.key_node,
                 "invalid variable name \"" + f.key + "\" in " + where + ": must match " +
                     kIdentifierPattern);
    }
    SR_ASSIGN_OR_RETURN(env[f.key], ReadString(ctx, *f.value, where + " \"" + f.key + "\""));
    if (marks != nullptr) (*marks)[f.key] = MarkOf(ctx, *f.key_node);
  }
  return env;
}

bool IsIdentifier(std::string_view s) {
  if (s.empty()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

}  // namespace sr::stepfile::internal
