// Internal to the stepfile module: what yaml-cpp does not check about step text, checked on the
// text itself (before yaml-cpp reads it) or on one scalar as yaml-cpp decoded it. yaml_tree.cc
// calls these while it builds the tree; they are apart so that each file stays one concern.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace sr::stepfile::internal {

/// "<source>:<line>:<col>" (1-based), or the source alone when the line is unknown (0).
std::string Position(const std::string& source, int line, int column);

/// The first thing in `text` that step text may not hold, as (byte offset, problem): invalid
/// UTF-8, or a control character other than tab, CR and LF. nullopt when there is none.
std::optional<std::pair<size_t, std::string>> CheckText(std::string_view text);

/// Whether the scalar whose node starts at `pos` of `text`, if it is quoted, has its closing
/// quote (yaml-cpp takes the rest of the text as the value of one that does not).
bool QuoteClosed(std::string_view text, size_t pos);

/// Writes yaml-cpp's non-UTF-8 decodings of the escapes \N and \_ as UTF-8; false if anything
/// else in `value` is not UTF-8.
bool RepairEscapes(std::string& value);

}  // namespace sr::stepfile::internal
