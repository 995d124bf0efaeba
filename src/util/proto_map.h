// RebuildMap: edit the entries of a protobuf map field through reflection.
//
// Editing a map's entries in place through reflection desynchronises protobuf's map storage, so
// the entries are copied, edited, and added back. Header-only: util itself does not link
// protobuf; its users (engine, service) do.
#pragma once

#include <google/protobuf/message.h>

#include <algorithm>
#include <memory>
#include <vector>

namespace sr {

// Keeps the first `keep` entries of map field `f` of `m`, each passed through `edit(Message*)`.
template <class Edit>
void RebuildMap(google::protobuf::Message* m, const google::protobuf::FieldDescriptor* f, int keep,
                Edit edit) {
  const auto* refl = m->GetReflection();
  const int size = std::min(keep, refl->FieldSize(*m, f));
  std::vector<std::unique_ptr<google::protobuf::Message>> entries;
  entries.reserve(static_cast<size_t>(size));
  for (int i = 0; i < size; ++i) {
    const auto& entry = refl->GetRepeatedMessage(*m, f, i);
    entries.emplace_back(entry.New());
    entries.back()->CopyFrom(entry);
    edit(entries.back().get());
  }
  refl->ClearField(m, f);
  for (const auto& entry : entries) refl->AddMessage(m, f)->CopyFrom(*entry);
}

}  // namespace sr
