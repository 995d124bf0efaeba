// FitStatus: a Status(id) answer always fits gRPC's default 4 MiB receive limit (contract
// section 7 item 4). A job's result tree holds its inputs, outputs, env and argv, which may be
// megabytes each; past the limit every default client would refuse the answer, so large values
// are cut with a marker, more and more tightly until the message fits.
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/struct.pb.h>

#include <vector>

#include "service/status.h"
#include "util/proto_map.h"

namespace sr::service {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

struct Caps {
  size_t string_bytes;  // longer strings are cut to this, plus a marker
  int items;            // longer value lists / structs are cut to this many, plus a marker
};

std::string Cut(const std::string& s, size_t cap) {
  if (s.size() <= cap) return s;
  // Never inside a UTF-8 sequence: proto3 strings must stay valid UTF-8.
  while (cap > 0 && (static_cast<unsigned char>(s[cap]) & 0xC0) == 0x80) --cap;
  return s.substr(0, cap) + "…[truncated " + std::to_string(s.size() - cap) + " bytes]";
}

// The entry that says how many entries of map `f` were cut: key "…", and as its value the
// count where the value can hold text (a string, or a Struct's Value).
void AddCutMarker(Message* m, const FieldDescriptor* f, int cut) {
  const FieldDescriptor* key = f->message_type()->map_key();
  const FieldDescriptor* value = f->message_type()->map_value();
  if (key->cpp_type() != FieldDescriptor::CPPTYPE_STRING) return;
  Message* entry = m->GetReflection()->AddMessage(m, f);
  const auto* refl = entry->GetReflection();
  refl->SetString(entry, key, "…");
  const std::string text = "[truncated " + std::to_string(cut) + " more " +
                           (m->GetDescriptor() == google::protobuf::Struct::descriptor() ? "fields" : "entries") + "]";
  if (value->cpp_type() == FieldDescriptor::CPPTYPE_STRING) {
    refl->SetString(entry, value, text);
  } else if (value->message_type() == google::protobuf::Value::descriptor()) {
    static_cast<google::protobuf::Value*>(refl->MutableMessage(entry, value))->set_string_value(text);
  }
}

void Shrink(Message* m, const Caps& caps) {
  const auto* refl = m->GetReflection();
  std::vector<const FieldDescriptor*> fields;
  refl->ListFields(*m, &fields);
  const bool map_entry = m->GetDescriptor()->options().map_entry();
  for (const FieldDescriptor* f : fields) {
    if (map_entry && f->name() == "key") continue;  // cutting keys could merge two entries
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_STRING) {
      if (f->is_repeated()) {
        for (int i = 0; i < refl->FieldSize(*m, f); ++i) {
          refl->SetRepeatedString(m, f, i, Cut(refl->GetRepeatedString(*m, f, i), caps.string_bytes));
        }
      } else {
        refl->SetString(m, f, Cut(refl->GetString(*m, f), caps.string_bytes));
      }
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE && f->is_map()) {
      // Every map, not only a Struct's: 19 000 env entries of 100 bytes kept the answer too
      // large through every round, and the whole result tree went.
      const int size = refl->FieldSize(*m, f);
      const bool cut = size > caps.items;
      RebuildMap(m, f, cut ? caps.items : size, [&caps](Message* entry) { Shrink(entry, caps); });
      if (cut) AddCutMarker(m, f, size - caps.items);
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE && f->is_repeated()) {
      if (m->GetDescriptor() == google::protobuf::ListValue::descriptor()) {
        auto& list = static_cast<google::protobuf::ListValue&>(*m);
        const int size = list.values_size();
        if (size > caps.items) {
          list.mutable_values()->DeleteSubrange(caps.items, size - caps.items);
          list.add_values()->set_string_value("…[truncated " + std::to_string(size - caps.items) +
                                              " more items]");
        }
      }
      for (int i = 0; i < refl->FieldSize(*m, f); ++i) Shrink(refl->MutableRepeatedMessage(m, f, i), caps);
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      Shrink(refl->MutableMessage(m, f), caps);
    }
  }
}

}  // namespace

void FitStatus(proto::Status* status, size_t limit) {
  static constexpr Caps kRounds[] = {{64 << 10, 10000}, {4 << 10, 1000}, {256, 100}, {64, 10}};
  for (const Caps& caps : kRounds) {
    if (status->ByteSizeLong() <= limit) return;
    // The trees only: the state, the error and the message stay whole.
    if (status->has_result()) Shrink(status->mutable_result(), caps);
    if (status->has_termination()) Shrink(status->mutable_termination(), caps);
  }
  // Still too large (a result tree of very many steps): keep the state, drop the trees.
  if (status->ByteSizeLong() > limit) {
    status->clear_result();
    status->clear_termination();
    status->set_message(Cut(status->message(), 4096));
  }
}

}  // namespace sr::service
