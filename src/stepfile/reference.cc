// `step:` references: the short string form (reference.md 1.5, in its order of rules) and the
// `git:` / `oci:` mapping forms.
#include "stepfile/walk.h"

namespace sr::stepfile {
namespace {

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::string_view TrimSpace(std::string_view s) {
  constexpr std::string_view kSpace = " \t\n\r\v\f";
  size_t b = s.find_first_not_of(kSpace);
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(kSpace) - b + 1);
}

// Go's regexp `\${{.*}}`: a `${{` followed by `}}` later on the same line.
bool HasExpression(std::string_view s) {
  for (size_t i = s.find("${{"); i != std::string_view::npos; i = s.find("${{", i + 1)) {
    size_t close = s.find("}}", i + 3);
    if (close == std::string_view::npos) return false;
    if (s.find('\n', i) > close) return true;
  }
  return false;
}

// Non-empty components of a '/'-separated path.
std::vector<std::string> SplitPath(std::string_view s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t slash = s.find('/', start);
    if (slash == std::string_view::npos) slash = s.size();
    if (slash > start) out.emplace_back(s.substr(start, slash - start));
    start = slash + 1;
  }
  return out;
}

// The `.yml` rule: a last component ending in .yml is the file name, else the file is step.yml.
void SetPathAndFile(std::string_view s, Reference& ref) {
  size_t slash = s.rfind('/');
  std::string_view last = slash == std::string_view::npos ? s : s.substr(slash + 1);
  if (EndsWith(last, ".yml")) {
    ref.filename = std::string(last);
    s = s.substr(0, s.size() - last.size());
  }
  for (auto& part : SplitPath(s)) ref.path.push_back(std::move(part));
}

// Clone URLs without a scheme are https; file:// is kept so tests and mirrors can use local repos.
std::string DefaultHttps(std::string_view url) {
  if (StartsWith(url, "http://") || StartsWith(url, "https://") || StartsWith(url, "file://")) {
    return std::string(url);
  }
  return "https://" + std::string(url);
}

}  // namespace

Result<Reference> ParseShortReference(std::string_view text) {
  Reference ref;
  if (HasExpression(text)) {
    ref.protocol = Reference::Protocol::kDynamic;
    ref.url = std::string(text);
    return ref;
  }
  std::string_view s = TrimSpace(text);
  if (StartsWith(s, ".") || StartsWith(s, "/")) {
    ref.protocol = Reference::Protocol::kLocal;
    if (s[0] == '/') ref.path.push_back("/");
    SetPathAndFile(s, ref);
    return ref;
  }
  if (StartsWith(s, "dist://")) {
    ref.protocol = Reference::Protocol::kDist;
    ref.path = SplitPath(s.substr(7));
    if (ref.path.empty())
      return InvalidError("expecting dist://<name>. got \"" + std::string(s) + "\"");
    return ref;
  }
  // Remote git: the revision is after the *last* '@' (URLs may carry user:pw@host).
  size_t at = s.rfind('@');
  if (at == std::string_view::npos || at == 0 || at + 1 == s.size()) {
    return InvalidError("expecting url@rev. got \"" + std::string(s) + "\"");
  }
  ref.protocol = Reference::Protocol::kGit;
  ref.version = std::string(s.substr(at + 1));
  std::string_view rest = s.substr(0, at);
  std::string_view in_repo;
  if (size_t sep = rest.find("/-/"); sep != std::string_view::npos) {
    in_repo = rest.substr(sep + 3);
    rest = rest.substr(0, sep);
  }
  ref.url = DefaultHttps(rest);
  ref.path.push_back("steps");
  SetPathAndFile(in_repo, ref);
  return ref;
}

namespace internal {
namespace {

Result<Reference> ReadGit(Ctx& ctx, const Node& node) {
  SR_ASSIGN_OR_RETURN(Fields f, ReadFields(ctx, node, "git", {"url", "rev", "dir", "file"}));
  Reference ref;
  ref.protocol = Reference::Protocol::kGit;
  std::string dir;
  for (const Field& field : f) {
    SR_ASSIGN_OR_RETURN(std::string v, ReadString(ctx, *field.value, "git " + field.key));
    if (field.key == "url") ref.url = DefaultHttps(v);
    if (field.key == "rev") ref.version = v;
    if (field.key == "dir") dir = v;
    if (field.key == "file" && !v.empty()) ref.filename = v;
    // `dir` is checked when the step is fetched (the short form has one too); `file` only comes
    // from here. `file: ../../x.yml` would load a step file from outside the checkout.
    if (field.key == "file") {
      for (const auto& part : SplitPath(v)) {
        if (part == "..") {
          return Err(ctx, *field.value, "git file \"" + v + "\" leaves the repository");
        }
      }
    }
  }
  if (ref.url.empty()) return Err(ctx, node, "field url in git: required");
  if (ref.version.empty()) return Err(ctx, node, "field rev in git: required");
  // Unlike the short form, the object form names the directory exactly: no "steps" prefix.
  ref.path = SplitPath(dir);
  return ref;
}

Result<Reference> ReadOci(Ctx& ctx, const Node& node) {
  SR_ASSIGN_OR_RETURN(
      Fields f, ReadFields(ctx, node, "oci", {"registry", "repository", "tag", "dir", "file"}));
  Reference ref;
  ref.protocol = Reference::Protocol::kOci;
  for (const Field& field : f) {
    SR_ASSIGN_OR_RETURN(std::string v, ReadString(ctx, *field.value, "oci " + field.key));
    if (field.key == "registry") ref.registry = v;
    if (field.key == "repository") ref.repository = v;
    if (field.key == "tag") ref.tag = v;
    if (field.key == "dir") ref.path = SplitPath(v);
    if (field.key == "file" && !v.empty()) ref.filename = v;
  }
  for (auto [name, value] :
       {std::pair{"registry", &ref.registry}, std::pair{"repository", &ref.repository},
        std::pair{"tag", &ref.tag}}) {
    if (value->empty()) return Err(ctx, node, std::string("field ") + name + " in oci: required");
  }
  return ref;
}

}  // namespace

Result<Reference> ReadStepReference(Ctx& ctx, const Node& node, const std::string& where) {
  SR_RETURN_IF_ERROR(Charge(ctx, node));
  if (node.kind == Node::Kind::kScalar) {
    auto ref = ParseShortReference(node.text);
    if (!ref.ok()) return Err(ctx, node, where + ": " + ref.error().message);
    return ref;
  }
  if (node.kind != Node::Kind::kMapping) {
    return Err(ctx, node,
               where + " must be a reference string or a mapping with git: or oci:, got " +
                   NodeTypeName(node));
  }
  SR_ASSIGN_OR_RETURN(Fields f, ReadFields(ctx, node, "step", {"git", "oci"}));
  const Field* git = Find(f, "git");
  const Field* oci = Find(f, "oci");
  if (git != nullptr && oci != nullptr) {
    const Field* second = git < oci ? oci : git;  // the later one in the text
    return Err(ctx, *second->key_node,
               "cannot use both git: and oci: fields, please specify only one step location");
  }
  if (git != nullptr) return ReadGit(ctx, *git->value);
  if (oci != nullptr) return ReadOci(ctx, *oci->value);
  return Err(ctx, node, "field git: or oci: required");
}

}  // namespace internal
}  // namespace sr::stepfile
