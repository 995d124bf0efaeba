// libcurl and libarchive, loaded by the first OCI step that needs them instead of by the dynamic
// loader at every start of the binary: with their ~35 dependencies (Kerberos, LDAP, GnuTLS, ICU,
// …) they were most of what `step-runner run` did before main (docs/performance.md, finding 6).
// The headers are the real ones; each table holds the functions this directory calls.
#pragma once

#include <archive.h>
#include <archive_entry.h>
#include <curl/curl.h>

#include "util/result.h"

namespace sr::oci {

#define SR_CURL_FUNCTIONS(X)                                                                 \
  X(global_init) X(easy_init) X(easy_cleanup) X(easy_setopt) X(easy_getinfo) X(easy_strerror) \
  X(slist_append) X(slist_free_all) X(multi_init) X(multi_setopt) X(multi_cleanup)            \
  X(multi_add_handle) X(multi_remove_handle) X(multi_socket_action) X(multi_info_read)

#define SR_ARCHIVE_FUNCTIONS(X)                                                                \
  X(error_string) X(write_new) X(write_free) X(write_set_format_pax_restricted)                \
  X(write_set_bytes_in_last_block) X(write_open) X(write_header) X(write_data) X(write_close)  \
  X(entry_new) X(entry_free) X(entry_set_pathname) X(entry_set_filetype) X(entry_set_perm)     \
  X(entry_set_size) X(entry_set_mtime) X(entry_pathname)                  \
  X(entry_filetype) X(entry_perm) X(read_new) X(read_free) X(read_support_filter_zstd)         \
  X(read_support_filter_gzip) X(read_support_filter_none) X(read_support_format_tar)           \
  X(read_open_fd) X(read_next_header) X(read_data_block)

/// curl_NAME is `NAME` here: curl.easy_setopt(...) calls libcurl's curl_easy_setopt.
struct CurlLib {
#define SR_CURL_FIELD(name) decltype(&::curl_##name) name = nullptr;
  SR_CURL_FUNCTIONS(SR_CURL_FIELD)
#undef SR_CURL_FIELD
};

/// archive_NAME is `NAME` here: ar.write_new() calls libarchive's archive_write_new().
struct ArchiveLib {
#define SR_ARCHIVE_FIELD(name) decltype(&::archive_##name) name = nullptr;
  SR_ARCHIVE_FUNCTIONS(SR_ARCHIVE_FIELD)
#undef SR_ARCHIVE_FIELD
};

/// Loads the library on the first call (thread-safe) and returns its functions for the life of
/// the process, or an error naming the library and what the dynamic loader said (the same error
/// on every later call).
Result<const CurlLib*> LoadCurl();
Result<const ArchiveLib*> LoadArchive();

}  // namespace sr::oci
