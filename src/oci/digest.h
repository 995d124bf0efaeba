// SHA-256 digests in OCI form ("sha256:<64 lower-case hex>"), streaming (internal to oci/).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "util/result.h"

namespace sr::oci {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;
  void Update(std::string_view data);
  /// "sha256:<hex>"; the hasher is spent afterwards.
  std::string Finish();

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

/// "sha256:<hex>" of `data`.
std::string DigestOf(std::string_view data);

/// Checks that `digest` is "sha256:" and 64 lower-case hex digits (the only algorithm we pull;
/// the check also keeps registry-supplied digests from naming paths outside the cache).
Status CheckDigest(const std::string& digest);

/// Standard base64, for Basic auth.
std::string Base64(std::string_view data);
/// Decodes standard base64 (padding optional); errors on other characters.
Result<std::string> DecodeBase64(std::string_view text);

}  // namespace sr::oci
