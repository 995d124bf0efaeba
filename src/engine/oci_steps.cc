// Steps from OCI images (contract section 6): the `oci:` reference and the built-ins
// dist://step/oci/fetch, dist://step/oci/build and dist://step/oci/promote, with the inputs and
// outputs of Go's dist/steps/step/oci/*/step.yml. They run in-process on the loop (src/oci), so a
// cancel stops a pull at once; Go runs them as exec steps.
#include <unistd.h>

#include <map>

#include "engine/internal.h"
#include "engine/results.h"
#include "expr/expr.h"
#include "oci/oci.h"
#include "util/json_field.h"
#include "util/tempdir.h"

namespace sr::engine {
namespace {

// The job's cancel domain as oci/ sees it.
class Cancel final : public oci::CancelToken {
 public:
  explicit Cancel(CancelSource* source) : source_(source) {}
  bool requested() const override { return source_ != nullptr && source_->requested(); }
  std::shared_ptr<void> OnCancel(std::function<void()> fn) override {
    if (source_ == nullptr) return nullptr;
    return std::make_shared<CancelSource::Subscription>(
        source_->Subscribe([fn = std::move(fn)](const CancelRequest&) { fn(); }));
  }

 private:
  CancelSource* source_;
};

oci::ClientOptions ClientOptionsFor(const Engine::State& st, const Env& env) {
  oci::ClientOptions o;
  o.env = env;
  o.cache_dir = st.options.cache_dir;
  return o;
}

// A fresh directory name for one pull: in the job's temp dir (removed with the job), else next
// to the cache as Go's fetch does.
std::string NewFetchDir(Engine::State& st) {
  const std::string n = std::to_string(++st.file_counter);
  if (!st.options.temp_dir.empty()) return st.options.temp_dir + "/oci-" + n;
  return (st.options.cache_dir.empty() ? std::string("/tmp/step-runner-cache") : st.options.cache_dir) +
         "/oci-image-" + std::to_string(::getpid()) + "-" + n;
}

Result<std::string> JoinStepPath(const std::string& dir, const std::string& step_path) {
  std::string out = dir;
  size_t start = 0;
  while (start <= step_path.size()) {
    size_t end = step_path.find('/', start);
    if (end == std::string::npos) end = step_path.size();
    const std::string part = step_path.substr(start, end - start);
    if (part == "..") return FailedError("step path \"" + step_path + "\" leaves the image");
    if (!part.empty() && part != ".") out += "/" + part;
    start = end + 1;
  }
  return out;
}

Task<Result<std::string>> Fetch(Engine::State& st, CancelSource* cancel, const Env& env,
                                oci::ImageRef ref, std::string step_path) {
  const std::string dest = NewFetchDir(st);
  Cancel token(cancel);
  auto pulled = co_await oci::Pull(st.loop, ClientOptionsFor(st, env), ref, dest, &token);
  // oci/ says "cancelled" for any stop; the job's request says whether it was its timeout.
  if (!pulled.ok() && cancel && cancel->requested()) co_return CancelError(*cancel, "pulling " + ref.ToString());
  if (!pulled.ok()) co_return pulled.error();
  st.Log("step-runner: fetched step image=" + ref.ToString() + " digest=" + pulled->digest +
         " platform=" + pulled->platform + " layers=" + std::to_string(pulled->layers) +
         " downloaded=" + std::to_string(pulled->layers_downloaded));
  co_return JoinStepPath(dest, step_path);
}

// The string inputs the spec declares, read type-checked (a value of another type is an error
// naming the input, never an exception).
Result<std::vector<std::string>> Inputs(const json& in, std::initializer_list<const char*> names) {
  std::vector<std::string> out;
  for (const char* name : names) {
    auto v = JsonField<std::string>(in, name, "inputs");
    if (!v.ok()) return v.error();
    out.push_back(std::move(*v));
  }
  return out;
}

void SetOutput(ResultNode* node, const std::string& name, const json& value) {
  (*node->result.mutable_outputs())[name] = ToProtoValue(value);
}

Task<StepOutcome> FetchStep(Engine::State& st, Scope& caller, const json& in, const Env& env,
                            ResultNode* node) {
  auto v = Inputs(in, {"registry", "repository", "tag", "step_path"});
  if (!v.ok()) co_return StepOutcome{true, v.error()};
  oci::ImageRef ref{(*v)[0], (*v)[1], (*v)[2]};
  if (ref.tag.empty()) ref.tag = "latest";
  if (ref.registry.empty() || ref.repository.empty()) {
    co_return StepOutcome{true, FailedError("inputs \"registry\" and \"repository\" must not be empty")};
  }
  auto dir = co_await Fetch(st, caller.cancel, env, ref, (*v)[3]);
  if (!dir.ok()) co_return StepOutcome{true, dir.error()};
  SetOutput(node, "fetched_step_path", *dir);
  SetOutput(node, "ref", ref.ToString());
  co_return StepOutcome{true, std::nullopt};
}

// `{files: {src: dst, …}}` → artifacts; relative sources are taken from the job's work dir.
Result<std::vector<oci::Artifact>> Files(const Engine::State& st, const json& group, const std::string& where) {
  std::vector<oci::Artifact> out;
  if (!group.is_object()) return FailedError(where + ": want {files: {source: destination}}");
  for (auto it = group.begin(); it != group.end(); ++it) {
    if (it.key() != "files" && it.key() != "variant") {
      return FailedError(where + ": unknown key \"" + it.key() + "\"");
    }
  }
  auto files = JsonField<json>(group, "files", where, json::object());
  if (!files.ok()) return files.error();
  for (auto it = files->begin(); it != files->end(); ++it) {
    if (!it.value().is_string() || it.value().get<std::string>().empty() || it.key().empty()) {
      return FailedError(where + ".files: \"" + it.key() + "\" needs a destination path");
    }
    std::string src = it.key();
    if (src[0] != '/' && !st.options.work_dir.empty()) src = st.options.work_dir + "/" + src;
    out.push_back({src, it.value().get<std::string>()});
  }
  return out;
}

Task<StepOutcome> BuildStep(Engine::State& st, Scope& caller, const json& in, const Env& env,
                            ResultNode* node) {
  auto v = Inputs(in, {"registry", "repository", "tag"});
  if (!v.ok()) co_return StepOutcome{true, v.error()};
  oci::ImageRef ref{(*v)[0], (*v)[1], (*v)[2]};
  if (ref.registry.empty() || ref.repository.empty() || ref.tag.empty()) {
    co_return StepOutcome{true, FailedError("inputs \"registry\", \"repository\" and \"tag\" are required")};
  }
  auto common_input = JsonField<json>(in, "common", "inputs", json::object());
  if (!common_input.ok()) co_return StepOutcome{true, common_input.error()};
  auto common = Files(st, *common_input, "common");
  if (!common.ok()) co_return StepOutcome{true, common.error().Wrap("input \"common\"")};
  std::vector<oci::PlatformArtifacts> platforms;
  auto plats = JsonField<json>(in, "platforms", "inputs", json::object());
  if (!plats.ok()) co_return StepOutcome{true, plats.error()};
  for (auto it = plats->begin(); it != plats->end(); ++it) {
    const std::string& name = it.key();
    const auto slash = name.find('/');
    if (slash == std::string::npos || name.find('/', slash + 1) != std::string::npos) {
      co_return StepOutcome{true, FailedError("input \"platforms\": invalid platform os/arch: " + name)};
    }
    auto files = Files(st, it.value(), name);
    if (!files.ok()) co_return StepOutcome{true, files.error().Wrap("input \"platforms\"")};
    auto variant = JsonField<std::string>(it.value(), "variant", name);
    if (!variant.ok()) co_return StepOutcome{true, variant.error().Wrap("input \"platforms\"")};
    platforms.push_back({name.substr(0, slash), name.substr(slash + 1), *variant, std::move(*files)});
  }
  if (platforms.empty()) {
    co_return StepOutcome{true, FailedError("input \"platforms\": must have at least one platform")};
  }
  Cancel token(caller.cancel);
  auto built = co_await oci::Build(st.loop, ClientOptionsFor(st, env), ref, std::move(*common),
                                   std::move(platforms), &token);
  if (!built.ok()) co_return StepOutcome{true, built.error()};
  st.Log("step-runner: pushed image index " + built->digest + " to " + ref.ToString());
  SetOutput(node, "registry", ref.registry);
  SetOutput(node, "repository", ref.repository);
  SetOutput(node, "tag", ref.tag);
  SetOutput(node, "ref", ref.ToString());
  SetOutput(node, "digest", json{{"algorithm", "sha256"},
                                 {"hash", built->digest.substr(7)},
                                 {"value", built->digest}});
  co_return StepOutcome{true, std::nullopt};
}

// Go's promote: `to_version` must be major.minor.patch; the image is copied to that tag.
Task<StepOutcome> PromoteStep(Engine::State& st, Scope& caller, const json& in, const Env& env,
                              ResultNode*) {
  auto v = Inputs(in, {"from_image", "to_registry", "to_repository", "to_version"});
  if (!v.ok()) co_return StepOutcome{true, v.error()};
  const std::string from_text = (*v)[0];
  auto from = oci::ParseImageRef(from_text);
  if (from_text.empty() || !from.ok()) {
    co_return StepOutcome{true, FailedError("from image: " + (from_text.empty() ? std::string("from image is required") : from.error().message))};
  }
  oci::ImageRef to{(*v)[1], (*v)[2], (*v)[3]};
  bool semver = !to.tag.empty();
  int dots = 0;
  for (char c : to.tag) {
    if (c == '.') ++dots;
    else if (c < '0' || c > '9') semver = false;
  }
  if (to.registry.empty() || to.repository.empty() || !semver || dots != 2 ||
      to.tag.front() == '.' || to.tag.back() == '.' || to.tag.find("..") != std::string::npos) {
    co_return StepOutcome{true, FailedError("to image: need to_registry, to_repository and a to_version "
                                            "of the form major.minor.patch, got \"" + to.tag + "\"")};
  }
  Cancel token(caller.cancel);
  auto copied = co_await oci::Copy(st.loop, ClientOptionsFor(st, env), *from, to, &token);
  if (!copied.ok()) co_return StepOutcome{true, copied.error()};
  st.Log("step-runner: promoted " + from->ToString() + " to " + to.ToString() + " (" + *copied + ")");
  co_return StepOutcome{true, std::nullopt};
}

// The last line of defence (see oci::Guarded): an exception escaping a built-in fails its step.
template <auto Fn>
Task<StepOutcome> Guarded(Engine::State& st, Scope& caller, const json& in, const Env& env, ResultNode* node) {
  try {
    co_return co_await Fn(st, caller, in, env, node);
  } catch (const std::exception& e) {
    co_return StepOutcome{true, FailedError(std::string("unexpected error: ") + e.what())};
  }
}

LoadedStep Builtin(const std::string& text, const char* source, BuiltinFn fn) {
  auto file = stepfile::ParseStepFile(text, source);
  LoadedStep step;
  if (file.ok()) step.file = std::move(*file);  // our own texts; engine tests parse them
  step.builtin = std::move(fn);
  return step;
}

}  // namespace

std::optional<LoadedStep> FindOciBuiltin(const std::string& name) {
  // Parsed once per process, on first use (yaml-cpp costs more than a lookup); callers get copies.
  static const std::map<std::string, LoadedStep> steps = [] {
    // The image fetch and build read, and build writes: as inputs and as outputs alike.
    const std::string image =
        "    registry: {type: string}\n    repository: {type: string}\n    tag: {type: string}\n";
    std::map<std::string, LoadedStep> m;
    m.emplace("step/oci/fetch", Builtin("spec:\n  inputs:\n" + image + R"(    step_path: {type: string, default: ""}
  outputs:
    fetched_step_path: {type: string}
    ref: {type: string}
---
run: []
)", "dist://step/oci/fetch", Guarded<FetchStep>));
    m.emplace("step/oci/build", Builtin("spec:\n  inputs:\n" + image + R"(    common: {type: struct, default: {}}
    platforms: {type: struct}
  outputs:
)" + image + R"(    ref: {type: string}
    digest: {type: struct}
---
run: []
)", "dist://step/oci/build", Guarded<BuildStep>));
    m.emplace("step/oci/promote", Builtin(R"(spec:
  inputs:
    from_image: {type: string}
    to_registry: {type: string}
    to_repository: {type: string}
    to_version: {type: string}
---
run: []
)", "dist://step/oci/promote", Guarded<PromoteStep>));
    return m;
  }();
  auto it = steps.find(name);
  if (it == steps.end()) return std::nullopt;
  return it->second;
}

Task<Result<std::string>> FetchOciReference(Engine::State& st, const Scope& caller,
                                            const stepfile::Reference& ref, const json& view) {
  // As in Go, the fields become the fetch step's inputs, so they may hold expressions.
  std::string dir;
  for (const auto& part : ref.path) dir += (dir.empty() ? "" : "/") + part;
  oci::ImageRef image;
  for (auto [raw, out] : {std::pair{&ref.registry, &image.registry},
                          std::pair{&ref.repository, &image.repository}, std::pair{&ref.tag, &image.tag},
                          std::pair{static_cast<const std::string*>(&dir), &dir}}) {
    auto v = expr::ExpandString(*raw, view);
    if (!v.ok()) co_return AsFailure(v.error()).Wrap("expanding oci reference");
    *out = *v;
  }
  if (image.tag.empty()) image.tag = "latest";
  const Env env = Overlay(caller.ambient_env, st.exports);
  co_return co_await Fetch(st, caller.cancel, env, image, dir);
}

}  // namespace sr::engine
