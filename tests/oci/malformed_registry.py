#!/usr/bin/env python3
"""A registry that answers with documents of the wrong shape, for the OCI tests.

Usage: malformed_registry.py PORT_FILE

Listens on a free port on 127.0.0.1 (written to PORT_FILE). A real registry never sends these, so
the tests cannot get them from docker-registry: each repository answers every request with one
malformed document (JSON of the right syntax whose fields hold the wrong types).
  /v2/badlayer/...   a manifest whose layer digest is a number
  /v2/badindex/...   an index whose platform os is a number
  /v2/badmanifests/  an index whose manifest digest is a number (for promote)
  /v2/errbody/...    404 with an error whose code is a number
  /v2/token/...      401 with a bearer challenge; /token answers {"token": 1}
  /v2/onelayer/...   a well-formed manifest with one layer (whose blob it does not have)
"""
import http.server
import json
import os
import sys

PORT_FILE = sys.argv[1]
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, doc, headers=None):
        body = json.dumps(doc).encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        path = self.path
        if path.startswith("/token"):
            return self.reply(200, {"token": 1}, {"Content-Type": "application/json"})
        if path.startswith("/v2/badlayer/"):
            return self.reply(200, {"schemaVersion": 2, "mediaType": MANIFEST, "layers": [{"digest": 5}]},
                              {"Content-Type": MANIFEST})
        if path.startswith("/v2/badindex/"):
            return self.reply(200, {"schemaVersion": 2, "mediaType": INDEX, "manifests": [
                {"digest": "sha256:" + "a" * 64, "platform": {"os": 5, "architecture": "amd64"}}]},
                {"Content-Type": INDEX})
        if path.startswith("/v2/badmanifests/"):
            return self.reply(200, {"schemaVersion": 2, "mediaType": INDEX, "manifests": [{"digest": 5}]},
                              {"Content-Type": INDEX})
        if path.startswith("/v2/onelayer/manifests/"):
            return self.reply(200, {"schemaVersion": 2, "mediaType": MANIFEST,
                                    "layers": [{"digest": "sha256:" + "b" * 64}]}, {"Content-Type": MANIFEST})
        if path.startswith("/v2/token/"):
            realm = f"http://127.0.0.1:{self.server.server_port}/token"
            return self.reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "token"}]},
                              {"WWW-Authenticate": f'Bearer realm="{realm}",service="malformed"'})
        return self.reply(404, {"errors": [{"code": 404}]})

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = handle_any


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(PORT_FILE + ".tmp", "w") as f:
    f.write(str(server.server_port))
os.rename(PORT_FILE + ".tmp", PORT_FILE)
server.serve_forever()
