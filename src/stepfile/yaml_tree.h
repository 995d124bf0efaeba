// Internal to the stepfile module: a small, immutable YAML tree built from yaml-cpp's event
// parser, with the input limits of stepfile.cc enforced *while* parsing. We do not use
// YAML::Load: its node graph cannot be bounded until it is complete, and walking it through
// aliases ("billion laughs") is unbounded. Here every node costs budget as it is created, nesting
// is checked at each collection start, and aliases are plain shared pointers to finished nodes.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"

namespace sr::stepfile::internal {

/// Step text larger than this is rejected before yaml-cpp sees it (yaml-cpp reads about
/// 1 MB/s of pathological flow text, so this also bounds parse time to a few seconds).
inline constexpr size_t kMaxTextBytes = 4u << 20;
/// Collections nested deeper than this (counted from the document root) are rejected; converting
/// a value through aliases is held to the same depth.
inline constexpr int kMaxDepth = 64;
/// At most this many YAML nodes per text, and at most this many nodes visited while converting
/// values and walking the schema (aliases count every time they are expanded).
inline constexpr long kMaxNodes = 1'000'000;
/// At most this many bytes of values built from one text, aliases counted every time they are
/// expanded: each node costs kNodeBytes plus its scalar text. 4 MiB is far beyond any real step
/// file (a 1 MiB text without aliases stays below it) and keeps a few-hundred-byte alias bomb
/// from costing gigabytes, or the event loop long stalls while its expansions are rendered.
inline constexpr long kMaxValueBytes = 4L << 20;
inline constexpr long kNodeBytes = 4;

struct Node {
  enum class Kind : uint8_t { kNull, kScalar, kSequence, kMapping };
  Kind kind = Kind::kNull;
  bool quoted = false;    // scalar written quoted or as a block scalar: always a string
  bool complete = false;  // false while a collection is still being read (an alias to it recurses)
  int line = 0;           // 1-based
  int column = 0;         // 1-based
  std::string tag;        // explicit tag as yaml-cpp expands it ("tag:yaml.org,2002:str"), or ""
  std::string text;       // scalar text as written (after YAML unescaping)
  std::vector<const Node*> items;  // sequence: items; mapping: key0, value0, key1, value1, ...
};

struct Document {
  const Node* root = nullptr;
  int line = 0;  // where the document starts (its `---` line if it has one)
  int column = 0;
};

/// Owns the nodes; documents point into it. Not copyable so the pointers stay valid.
struct Tree {
  Tree() = default;
  Tree(const Tree&) = delete;
  Tree& operator=(const Tree&) = delete;
  std::vector<Document> documents;
  std::deque<Node> nodes;  // deque: stable addresses while growing
};

/// Parses `text` into a tree of at most `max_documents` documents. A further document that holds
/// a value is an error `<source>:<line>:<col>: <too_many>` at its start; a further empty (null)
/// one is dropped, as Go's decoder never reads it. Never throws: YAML syntax errors,
/// limits, invalid UTF-8 and control characters all come back as kInvalid errors with a position.
Result<std::unique_ptr<Tree>> LoadYaml(std::string_view text, const std::string& source,
                                       size_t max_documents, const std::string& too_many);

}  // namespace sr::stepfile::internal
