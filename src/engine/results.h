// Conversions between the engine's values/step model and the proto messages of results.
#pragma once

#include <nlohmann/json.hpp>

#include "proto/step.pb.h"
#include "stepfile/stepfile.h"
#include "supervisor/supervisor.h"

namespace sr::engine {

google::protobuf::Value ToProtoValue(const nlohmann::json& v);
nlohmann::json FromProtoValue(const google::protobuf::Value& v);
proto::Step::Reference ToProtoReference(const stepfile::Reference& ref);
proto::SpecDefinition ToProtoSpecDefinition(const stepfile::StepFile& file);
/// Fills a termination record's process list from the supervisor's records.
void AddProcessRecords(const std::vector<ProcessRecord>& records, proto::Termination* out);

}  // namespace sr::engine
