// Checks made before a job (or a sequence) runs anything: the log level, the root's required
// inputs, and expressions that read an output a sibling step cannot have (reference.md 3.9, 3.2).
#include <filesystem>

#include "engine/internal.h"

namespace sr {

Result<std::string> NormalizeLogLevel(const std::map<std::string, std::string>& job_vars,
                                      const std::map<std::string, std::string>& env) {
  std::string raw;
  if (auto it = job_vars.find("CI_STEPS_LOG_LEVEL"); it != job_vars.end()) {
    raw = it->second;
  } else if (auto e = env.find("CI_STEPS_LOG_LEVEL"); e != env.end()) {
    raw = e->second;
  }
  std::string level;
  size_t b = raw.find_first_not_of(" \t\r\n"), e = raw.find_last_not_of(" \t\r\n");
  if (b != std::string::npos) level = raw.substr(b, e - b + 1);
  for (char& c : level) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (level.empty()) level = "info";
  if (level != "info" && level != "debug" && level != "warn" && level != "error") {
    return InvalidError("init global environment: log level: " + raw +
                        " not supported (CI_STEPS_LOG_LEVEL: debug, info, warn or error)");
  }
  return level;
}

Status CheckRequiredInputs(const stepfile::Spec& spec, const nlohmann::json& provided) {
  for (const auto& [name, decl] : spec.inputs) {
    if (!decl.default_value && !provided.contains(name)) {
      return InvalidError("failed to parse spec definition: input \"" + name +
                          "\" required, but not defined");
    }
  }
  return Ok();
}

}  // namespace sr

namespace sr::engine {
namespace {

// `steps.<name>.outputs.<key>` read by the expressions in `text`, as (name, key, expression).
struct OutputRead {
  std::string step, key, expression;
};

void FindOutputReads(const std::string& text, std::vector<OutputRead>& out) {
  size_t pos = 0;
  while ((pos = text.find("${{", pos)) != std::string::npos) {
    if (pos > 0 && text[pos - 1] == '$') {  // `$${{` is a literal
      pos += 3;
      continue;
    }
    size_t end = text.find("}}", pos + 3);
    if (end == std::string::npos) return;
    std::string body = text.substr(pos + 3, end - pos - 3);
    size_t b = body.find_first_not_of(" \t"), e = body.find_last_not_of(" \t");
    body = b == std::string::npos ? "" : body.substr(b, e - b + 1);
    std::vector<std::string> parts;
    for (size_t s = 0;;) {
      size_t dot = body.find('.', s);
      parts.push_back(body.substr(s, dot == std::string::npos ? std::string::npos : dot - s));
      if (dot == std::string::npos) break;
      s = dot + 1;
    }
    if (parts.size() >= 4 && parts[0] == "steps" && parts[2] == "outputs") {
      out.push_back({parts[1], parts[3], text.substr(pos, end + 2 - pos)});
    }
    pos = end + 2;
  }
}

void FindOutputReads(const json& value, std::vector<OutputRead>& out) {
  if (value.is_string()) {
    FindOutputReads(value.get<std::string>(), out);
  } else if (value.is_structured()) {
    for (const auto& item : value) FindOutputReads(item, out);
  }
}

bool Dynamic(const std::string& s) { return s.find("${{") != std::string::npos; }

// The outputs a step will have, when its file can be read now: the declared outputs of an exec
// step, the `outputs:` keys of a sequence. nullopt when unknown until it runs (delegated
// outputs, script and git steps, dynamic paths, a file a step is yet to write).
std::optional<std::set<std::string>> KnownOutputs(Engine::State& st, const std::string& step_dir,
                                                  const stepfile::Invocation& inv) {
  const stepfile::Reference& ref = inv.step;
  if (ref.protocol != stepfile::Reference::Protocol::kLocal) return std::nullopt;
  for (const auto& p : ref.path) {
    if (Dynamic(p)) return std::nullopt;
  }
  if (Dynamic(ref.filename)) return std::nullopt;
  auto loaded = LoadLocalStep(st, ref, step_dir);
  if (!loaded.ok()) return std::nullopt;  // reported when it runs, with its own position
  const stepfile::StepFile& f = loaded->file;
  if (f.spec.delegate_outputs) return std::nullopt;
  std::set<std::string> names;
  if (f.definition.kind == stepfile::Definition::Kind::kExec) {
    for (const auto& [k, _] : f.spec.outputs) names.insert(k);
  } else if (f.definition.outputs.is_object()) {
    for (auto it = f.definition.outputs.begin(); it != f.definition.outputs.end(); ++it) {
      names.insert(it.key());
    }
  }
  return names;
}

std::string Join(const std::set<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out.empty() ? "none" : out;
}

}  // namespace

Status CheckOutputReads(Engine::State& st, const std::string& step_dir,
                        const stepfile::Definition& def) {
  // Siblings seen so far. Their outputs are looked up (which loads their files) only when
  // something reads one: most sequences read none.
  std::map<std::string, const stepfile::Invocation*> earlier;
  std::map<const stepfile::Invocation*, std::optional<std::set<std::string>>> known;
  auto check = [&](const std::vector<OutputRead>& reads, const stepfile::Mark& mark,
                   const std::string& where) -> Status {
    for (const auto& r : reads) {
      auto sib = earlier.find(r.step);
      if (sib == earlier.end()) {
        return InvalidError(mark.ToString() + ": " + where + ": " + r.expression + ": no step \"" +
                            r.step + "\" runs before this one");
      }
      auto outputs = known.find(sib->second);
      if (outputs == known.end()) {
        outputs = known.emplace(sib->second, KnownOutputs(st, step_dir, *sib->second)).first;
      }
      if (outputs->second && !outputs->second->count(r.key)) {
        return InvalidError(mark.ToString() + ": " + where + ": " + r.expression + ": step \"" +
                            r.step + "\" has no output \"" + r.key + "\" (its outputs: " +
                            Join(*outputs->second) + ")");
      }
    }
    return Ok();
  };
  // An error names the line of the entry (input or env key) that reads the unknown output, as
  // for `outputs:` below; the item's line only for an entry without a mark of its own.
  auto check_list = [&](const std::vector<stepfile::Invocation>& list) -> Status {
    for (const auto& inv : list) {
      const std::string where = "step \"" + inv.name + "\"";
      for (const auto& [name, value] : inv.inputs) {
        std::vector<OutputRead> reads;
        FindOutputReads(value, reads);
        SR_RETURN_IF_ERROR(check(reads, inv.InputMark(name),
                                 where + ": input \"" + name + "\""));
      }
      for (const auto& [name, value] : inv.env) {
        std::vector<OutputRead> reads;
        FindOutputReads(value, reads);
        SR_RETURN_IF_ERROR(check(reads, inv.EnvMark(name),
                                 where + ": env \"" + name + "\""));
      }
      earlier[inv.name] = &inv;
    }
    return Ok();
  };
  SR_RETURN_IF_ERROR(check_list(def.run));
  // Entry by entry, so an error names the line of the entry that reads the unknown output.
  for (const auto& [name, value] : def.outputs.items()) {
    std::vector<OutputRead> reads;
    FindOutputReads(value, reads);
    auto mark = def.output_marks.find(name);
    SR_RETURN_IF_ERROR(
        check(reads, mark != def.output_marks.end() ? mark->second : def.mark, "outputs"));
  }
  // finally/diagnose see the `run:` steps (some may not have run; that is known only later).
  auto run_steps = earlier;
  SR_RETURN_IF_ERROR(check_list(def.finally));
  earlier = run_steps;
  return check_list(def.diagnose);
}

}  // namespace sr::engine
