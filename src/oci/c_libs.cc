#include "oci/c_libs.h"

#include <dlfcn.h>

#include <string>

namespace sr::oci {
namespace {

// The ABI versions of the headers we compile against (Debian 12: libcurl4, libarchive13).
constexpr const char* kCurlSoname = "libcurl.so.4";
constexpr const char* kArchiveSoname = "libarchive.so.13";

// dlopen + dlsym of every function of a table; an error names the library and the symbol.
class Loader {
 public:
  explicit Loader(const char* soname) : soname_(soname) {
    // RTLD_LOCAL: nothing else in the process binds to these symbols by accident. Never
    // dlclose'd: the functions stay valid until exit.
    handle_ = ::dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (!handle_) error_ = std::string("loading ") + soname + ": " + ::dlerror();
  }
  template <class F>
  void Bind(F& fn, const char* symbol) {
    if (!handle_) return;
    fn = reinterpret_cast<F>(::dlsym(handle_, symbol));
    if (!fn && error_.empty()) error_ = std::string(soname_) + " has no " + symbol;
  }
  template <class Table>
  Result<Table> Done(const Table& table) const {
    if (!error_.empty()) return FailedError(error_);
    return table;
  }

 private:
  const char* soname_;
  void* handle_ = nullptr;
  std::string error_;
};

// The table of one library, bound on the first call (a function-local static: thread-safe),
// then the same table or the same error for the life of the process.
template <class Table>
Result<const Table*> LoadedOnce(const char* soname, void (*bind)(Loader&, Table&)) {
  static const Result<Table> lib = [&] {
    Loader loader(soname);
    Table table;
    bind(loader, table);
    return loader.Done(table);
  }();
  if (!lib.ok()) return lib.error();
  return &*lib;
}

}  // namespace

Result<const CurlLib*> LoadCurl() {
  return LoadedOnce<CurlLib>(kCurlSoname, [](Loader& loader, CurlLib& t) {
#define SR_CURL_BIND(name) loader.Bind(t.name, "curl_" #name);
    SR_CURL_FUNCTIONS(SR_CURL_BIND)
#undef SR_CURL_BIND
  });
}

Result<const ArchiveLib*> LoadArchive() {
  return LoadedOnce<ArchiveLib>(kArchiveSoname, [](Loader& loader, ArchiveLib& t) {
#define SR_ARCHIVE_BIND(name) loader.Bind(t.name, "archive_" #name);
    SR_ARCHIVE_FUNCTIONS(SR_ARCHIVE_BIND)
#undef SR_ARCHIVE_BIND
  });
}

}  // namespace sr::oci
