// Real registries for the OCI tests: Debian's docker-registry on 127.0.0.1 with a free port and
// a temp storage dir (one anonymous, one with htpasswd basic auth), and a throttling TCP proxy.
// Started once per test binary (see oci_test.cc), stopped at its end.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "support/harness.h"

namespace sr::test {

/// A free TCP port on 127.0.0.1 (bound and released: good enough for a test).
int FreePort();

/// A test with a directory of its own, in which Run() starts step-runner with a TMPDIR (so a
/// blob cache) and a HOME of its own and no registry credentials or insecure list from the test's
/// environment; `env` adds variables (and may set HOME).
class IsolatedRunTest : public ::testing::Test {
 protected:
  IsolatedRunTest();
  Output Run(const std::vector<std::string>& args, std::map<std::string, std::string> env = {});
  TestDir dir;
};

class Registry {
 public:
  /// `htpasswd`: "user:password" to require basic auth, "" for anonymous. With `tls_dir`, it
  /// serves HTTPS with `tls_dir`/cert.pem and key.pem.
  Registry(const std::string& dir, const std::string& htpasswd, const std::string& host = "127.0.0.1",
           const std::string& tls_dir = "");
  ~Registry();
  std::string address() const { return host_ + ":" + std::to_string(port_); }
  std::string storage() const { return dir_ + "/storage"; }
  /// The access log so far.
  std::string Log() const;
  /// How many GETs of `path` ("/v2/repo/blobs/sha256:…") the log shows.
  int CountGets(const std::string& path) const;
  /// The data file of a blob in the registry's storage.
  std::string BlobFile(const std::string& digest) const;

 private:
  std::string dir_, host_;
  int port_ = 0;
  std::unique_ptr<Child> child_;
};

/// Forwards 127.0.0.1:port() to `upstream`, the answers at about 160 KiB/s.
class SlowProxy {
 public:
  explicit SlowProxy(int upstream_port);
  ~SlowProxy();
  int port() const { return port_; }
  /// Bytes sent back to clients so far.
  long forwarded() const { return forwarded_.load(); }

 private:
  void Serve(int client);
  int upstream_ = 0, port_ = 0, listener_ = -1;
  std::atomic<bool> stop_{false};
  std::atomic<long> forwarded_{0};
  std::thread acceptor_;
  std::vector<std::thread> workers_;
};

}  // namespace sr::test
