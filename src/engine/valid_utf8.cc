// MakeValidUtf8: the last step before a result or a Status leaves the runner (engine.h).
#include <google/protobuf/descriptor.h>
#include <google/protobuf/reflection.h>

#include <climits>
#include <vector>

#include "engine/engine.h"
#include "util/proto_map.h"
#include "util/utf8.h"

namespace sr {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

// Read-only: the common case (all valid) costs no copy and no write.
bool AllValid(const Message& m) {
  const auto* refl = m.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  refl->ListFields(m, &fields);
  std::string scratch;
  for (const FieldDescriptor* f : fields) {
    if (f->type() == FieldDescriptor::TYPE_STRING) {
      const int n = f->is_repeated() ? refl->FieldSize(m, f) : 1;
      for (int i = 0; i < n; ++i) {
        const std::string& s = f->is_repeated() ? refl->GetRepeatedStringReference(m, f, i, &scratch)
                                                : refl->GetStringReference(m, f, &scratch);
        if (!IsValidUtf8(s)) return false;
      }
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      const int n = f->is_repeated() ? refl->FieldSize(m, f) : 1;
      for (int i = 0; i < n; ++i) {
        if (!AllValid(f->is_repeated() ? refl->GetRepeatedMessage(m, f, i) : refl->GetMessage(m, f))) {
          return false;
        }
      }
    }
  }
  return true;
}

void Fix(Message* m) {
  if (AllValid(*m)) return;
  const auto* refl = m->GetReflection();
  std::vector<const FieldDescriptor*> fields;
  refl->ListFields(*m, &fields);
  std::string scratch;
  for (const FieldDescriptor* f : fields) {
    if (f->type() == FieldDescriptor::TYPE_STRING) {
      if (f->is_repeated()) {
        for (int i = 0; i < refl->FieldSize(*m, f); ++i) {
          const std::string& s = refl->GetRepeatedStringReference(*m, f, i, &scratch);
          if (!IsValidUtf8(s)) refl->SetRepeatedString(m, f, i, EscapeInvalidUtf8(s));
        }
      } else {
        const std::string& s = refl->GetStringReference(*m, f, &scratch);
        if (!IsValidUtf8(s)) refl->SetString(m, f, EscapeInvalidUtf8(s));
      }
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      if (f->is_map()) {
        bool valid = true;
        for (int i = 0; valid && i < refl->FieldSize(*m, f); ++i) {
          valid = AllValid(refl->GetRepeatedMessage(*m, f, i));
        }
        if (!valid) RebuildMap(m, f, INT_MAX, Fix);
      } else if (f->is_repeated()) {
        for (int i = 0; i < refl->FieldSize(*m, f); ++i) Fix(refl->MutableRepeatedMessage(m, f, i));
      } else {
        Fix(refl->MutableMessage(m, f));
      }
    }
  }
}

}  // namespace

void MakeValidUtf8(google::protobuf::Message* message) { Fix(message); }

}  // namespace sr
