#include "engine/results.h"

#include <algorithm>
#include <array>

#include <google/protobuf/util/json_util.h>

#include "engine/engine.h"
#include "engine/internal.h"
#include "util/signals.h"
#include "util/utf8.h"

namespace sr::engine {

using json = nlohmann::json;

google::protobuf::Value ToProtoValue(const json& v) {
  google::protobuf::Value out;
  switch (v.type()) {
    case json::value_t::null: out.set_null_value(google::protobuf::NULL_VALUE); break;
    case json::value_t::boolean: out.set_bool_value(v.get<bool>()); break;
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float: out.set_number_value(v.get<double>()); break;
    case json::value_t::string: out.set_string_value(v.get<std::string>()); break;
    case json::value_t::array:
      for (const auto& e : v) *out.mutable_list_value()->add_values() = ToProtoValue(e);
      out.mutable_list_value();
      break;
    case json::value_t::object: {
      auto* fields = out.mutable_struct_value()->mutable_fields();
      for (auto it = v.begin(); it != v.end(); ++it) (*fields)[it.key()] = ToProtoValue(it.value());
      break;
    }
    default: out.set_null_value(google::protobuf::NULL_VALUE); break;
  }
  return out;
}

json FromProtoValue(const google::protobuf::Value& v) {
  switch (v.kind_case()) {
    case google::protobuf::Value::kBoolValue: return v.bool_value();
    case google::protobuf::Value::kNumberValue: {
      double d = v.number_value();
      if (d == static_cast<double>(static_cast<int64_t>(d)) && d < 9e15 && d > -9e15) {
        return static_cast<int64_t>(d);
      }
      return d;
    }
    case google::protobuf::Value::kStringValue: return v.string_value();
    case google::protobuf::Value::kListValue: {
      json arr = json::array();
      for (const auto& e : v.list_value().values()) arr.push_back(FromProtoValue(e));
      return arr;
    }
    case google::protobuf::Value::kStructValue: {
      json obj = json::object();
      for (const auto& [k, e] : v.struct_value().fields()) obj[k] = FromProtoValue(e);
      return obj;
    }
    default: return nullptr;
  }
}

proto::Step::Reference ToProtoReference(const stepfile::Reference& ref) {
  proto::Step::Reference out;
  using P = stepfile::Reference::Protocol;
  switch (ref.protocol) {
    case P::kLocal: out.set_protocol(proto::local); break;
    case P::kGit: out.set_protocol(proto::git); break;
    case P::kDist: out.set_protocol(proto::dist); break;
    case P::kDynamic: out.set_protocol(proto::dynamic); break;
    case P::kOci: out.set_protocol(proto::oci); break;
  }
  // proto3 strings: "" is the unset value, and setting it would still allocate (every step's
  // record has this reference).
  if (!ref.url.empty()) out.set_url(ref.url);
  // `path` is deprecated in the proto but still what Go clients read; fill both carriers.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  out.mutable_path()->Reserve(static_cast<int>(ref.path.size()));
  for (const auto& p : ref.path) out.add_path(p);
#pragma GCC diagnostic pop
  if (!ref.path.empty()) {
    auto* parts = out.mutable_paths()->mutable_parts();
    parts->Reserve(static_cast<int>(ref.path.size()));
    for (const auto& p : ref.path) parts->Add()->assign(p);
  }
  if (!ref.filename.empty()) out.set_filename(ref.filename);
  if (!ref.version.empty()) out.set_version(ref.version);
  if (!ref.registry.empty()) out.set_registry(ref.registry);
  if (!ref.repository.empty()) out.set_repository(ref.repository);
  if (!ref.tag.empty()) out.set_tag(ref.tag);
  return out;
}

namespace {
proto::ValueType ToProtoType(stepfile::ValueType t) {
  switch (t) {
    case stepfile::ValueType::kString: return proto::string;
    case stepfile::ValueType::kNumber: return proto::number;
    case stepfile::ValueType::kBoolean: return proto::boolean;
    case stepfile::ValueType::kStruct: return proto::struct_;
    case stepfile::ValueType::kArray: return proto::array;
  }
  return proto::value_type_unspecified;
}

proto::Step ToProtoStep(const stepfile::Invocation& inv) {
  proto::Step s;
  s.set_name(inv.name);
  *s.mutable_step() = ToProtoReference(inv.step);
  for (const auto& [k, v] : inv.env) (*s.mutable_env())[k] = v;
  for (const auto& [k, v] : inv.inputs) (*s.mutable_inputs())[k] = ToProtoValue(v);
  return s;
}
}  // namespace

proto::SpecDefinition ToProtoSpecDefinition(const stepfile::StepFile& file) {
  proto::SpecDefinition out;
  auto* content = out.mutable_spec()->mutable_spec();
  for (const auto& [name, in] : file.spec.inputs) {
    auto& p = (*content->mutable_inputs())[name];
    p.set_type(ToProtoType(in.type));
    if (in.default_value) *p.mutable_default_() = ToProtoValue(*in.default_value);
    p.set_sensitive(in.sensitive);
  }
  for (const auto& [name, o] : file.spec.outputs) {
    auto& p = (*content->mutable_outputs())[name];
    p.set_type(ToProtoType(o.type));
    if (o.default_value) *p.mutable_default_() = ToProtoValue(*o.default_value);
    p.set_sensitive(o.sensitive);
  }
  content->set_output_method(file.spec.delegate_outputs ? proto::delegate : proto::outputs);
  const auto& d = file.definition;
  auto* def = out.mutable_definition();
  if (d.kind == stepfile::Definition::Kind::kExec) {
    def->set_type(proto::exec);
    for (const auto& c : d.command) def->mutable_exec()->add_command(c);
    if (!d.work_dir.empty()) def->mutable_exec()->set_work_dir(d.work_dir);
    def->mutable_exec();  // present even with an empty command
  } else {
    def->set_type(proto::steps);
    for (const auto& inv : d.run) *def->add_steps() = ToProtoStep(inv);
    if (d.outputs.is_object()) {
      for (auto it = d.outputs.begin(); it != d.outputs.end(); ++it) {
        (*def->mutable_outputs())[it.key()] = ToProtoValue(it.value());
      }
    }
    if (d.delegate) def->set_delegate(*d.delegate);
  }
  for (const auto& [k, v] : d.env) (*def->mutable_env())[k] = v;
  return out;
}

void AddProcessRecords(const std::vector<ProcessRecord>& records, proto::Termination* out) {
  using E = ProcessRecord::Ending;
  for (const auto& r : records) {
    auto* p = out->add_processes();
    p->set_pid(r.pid);
    // A command line is bytes (argv may be in any encoding); the record's strings are UTF-8.
    p->set_command(IsValidUtf8(r.command) ? r.command : EscapeInvalidUtf8(r.command));
    if (r.signal_sent) {
      p->set_signal(SignalName(r.signal_sent));
      *p->mutable_signal_time() = ToTimestamp(r.signal_time);
    }
    if (r.end_time != std::chrono::system_clock::time_point{}) {
      *p->mutable_end_time() = ToTimestamp(r.end_time);
    }
    switch (r.ending) {
      case E::kExited: p->set_ending(proto::Termination::ProcessRecord::exited); break;
      case E::kEndedBySignal: p->set_ending(proto::Termination::ProcessRecord::ended_by_signal); break;
      case E::kKilledAfterGrace:
        p->set_ending(proto::Termination::ProcessRecord::killed_after_grace);
        break;
      case E::kKilledForced: p->set_ending(proto::Termination::ProcessRecord::killed_forced); break;
      case E::kStillRunning: p->set_ending(proto::Termination::ProcessRecord::still_running); break;
    }
    p->set_exit_code(r.exit_code);
    if (r.end_signal) p->set_end_signal(SignalName(r.end_signal));
    if (r.warning_signal) p->set_warning_signal(SignalName(r.warning_signal));
  }
}

proto::StepResult ResultNode::Snapshot() const {
  proto::StepResult out = result;
  if (env) {
    auto* vars = out.mutable_env();
    for (const auto& [k, v] : env->vars) (*vars)[k] = v;
  }
  if (out.status() == proto::StepResult::running && cancel && cancel->requested()) {
    out.set_status(proto::StepResult::cancelling);
  }
  for (const auto& c : children) *out.add_sub_step_results() = c->Snapshot();
  return out;
}

namespace {

// Whether `layers` (later ones win) make exactly `vars`: every layer is walked in key order at
// once, without building the merge.
bool MergesTo(std::initializer_list<const Env*> layers, const Env& vars) {
  struct Head {
    Env::const_iterator at, end;
  };
  std::array<Head, 4> heads;
  if (layers.size() > heads.size()) return false;  // no sharing then, never a write past heads
  size_t n = 0;
  for (const Env* layer : layers) heads[n++] = {layer->begin(), layer->end()};
  auto want = vars.begin();
  for (;;) {
    const std::string* key = nullptr;
    for (size_t i = 0; i < n; ++i) {
      if (heads[i].at != heads[i].end && (!key || heads[i].at->first < *key)) key = &heads[i].at->first;
    }
    if (!key) return want == vars.end();
    if (want == vars.end() || want->first != *key) return false;
    const std::string* value = nullptr;
    for (size_t i = 0; i < n; ++i) {
      if (heads[i].at != heads[i].end && heads[i].at->first == want->first) {
        value = &heads[i].at->second;  // the last layer that has the key wins
        ++heads[i].at;
      }
    }
    if (*value != want->second) return false;
    ++want;
  }
}

}  // namespace

std::shared_ptr<const EnvRecord> ShareEnv(Engine::State& st,
                                          std::initializer_list<const Env*> layers) {
  auto& recent = st.recent_envs;
  for (size_t i = 0; i < recent.size(); ++i) {
    if (recent[i] && MergesTo(layers, recent[i]->vars)) {
      std::rotate(recent.begin(), recent.begin() + static_cast<long>(i), recent.begin() + static_cast<long>(i) + 1);
      return recent[0];
    }
  }
  auto record = std::make_shared<EnvRecord>();
  for (const Env* layer : layers) {
    for (const auto& [k, v] : *layer) record->vars[k] = v;
  }
  auto entries = std::make_shared<std::vector<std::string>>();
  entries->reserve(record->vars.size());
  for (const auto& [k, v] : record->vars) {
    std::string& kv = entries->emplace_back();
    kv.reserve(k.size() + 1 + v.size());
    kv.append(k).append(1, '=').append(v);
    if (record->nul_key.empty() && kv.find('\0') != std::string::npos) record->nul_key = k;
  }
  record->entries = std::move(entries);
  std::rotate(recent.begin(), recent.end() - 1, recent.end());
  recent[0] = record;
  return record;
}

}  // namespace sr::engine

namespace sr {

std::string ResultToJson(const proto::StepResult& result) {
  std::string out;
  google::protobuf::util::JsonPrintOptions opts;
  opts.add_whitespace = true;
  (void)google::protobuf::util::MessageToJsonString(result, &out, opts);
  return out;
}

google::protobuf::Timestamp ToTimestamp(std::chrono::system_clock::time_point t) {
  google::protobuf::Timestamp ts;
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  ts.set_seconds(ns / 1000000000);
  ts.set_nanos(static_cast<int32_t>(ns % 1000000000));
  return ts;
}

int ExitCodeFor(const std::optional<Error>& error) {
  if (!error) return 0;
  switch (error->kind) {
    case Error::Kind::kInvalid: return 2;
    case Error::Kind::kCancelled: return 130;
    case Error::Kind::kTimedOut: return 124;
    default: return 1;
  }
}

}  // namespace sr
