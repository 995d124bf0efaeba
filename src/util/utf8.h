// UTF-8 as proto3 string fields (and JSON) need it. Process names, the runner's environment and
// error texts quoting user data are bytes; before they go into a Status or a results file, any
// byte that is not part of valid UTF-8 is written as `\xNN`, so a client can always parse the
// message and a reader still sees which byte it was.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sr {

/// Decodes one UTF-8 sequence at s[i] into `code`. Returns its length, or 0 if the bytes there
/// are not valid UTF-8 (overlong forms, surrogates and values above U+10FFFF are invalid, as in Go).
size_t DecodeUtf8(std::string_view s, size_t i, uint32_t& code);

/// The offset of the first byte of `s` that is not part of valid UTF-8; s.size() when none.
size_t FirstInvalidUtf8(std::string_view s);
/// Whether every byte of `s` belongs to a valid UTF-8 sequence.
inline bool IsValidUtf8(std::string_view s) { return FirstInvalidUtf8(s) == s.size(); }

/// "0xE9": how error messages name a byte (one that is not UTF-8, say).
std::string ByteName(unsigned char byte);

/// `s` with each byte that is not part of valid UTF-8 written as `\xNN` (lower-case hex).
std::string EscapeInvalidUtf8(std::string_view s);

/// The first `max` bytes of `s` with each NUL written as \0, and "..." if `s` was longer: a
/// value that holds one, shown in a one-line message.
std::string ShowNul(std::string_view s, size_t max);

}  // namespace sr
