#!/usr/bin/env python3
"""A bearer-token front for a registry, for the OCI tests.

Usage: token_proxy.py PORT_FILE UPSTREAM_PORT USER PASSWORD

Listens on a free port on 127.0.0.1 (written to PORT_FILE). /token hands out a token to a client
that sends the right basic credentials; every /v2/ request must carry that token (else 401 with a
`WWW-Authenticate: Bearer realm=…` challenge) and is then forwarded to the registry on
127.0.0.1:UPSTREAM_PORT. This is the token dance of Docker Hub, GitLab's registry and others,
which docker-registry itself only offers with a JWT token service.
"""
import base64
import http.client
import http.server
import json
import sys

PORT_FILE, UPSTREAM, USER, PASSWORD = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
TOKEN = "token-for-" + USER


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", headers=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        auth = self.headers.get("Authorization", "")
        if self.path.startswith("/token"):
            want = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            if auth != want:
                return self.reply(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}')
            return self.reply(200, json.dumps({"token": TOKEN}).encode(),
                              {"Content-Type": "application/json"})
        if auth != "Bearer " + TOKEN:
            realm = f"http://127.0.0.1:{self.server.server_port}/token"
            return self.reply(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"token"}]}', {
                "WWW-Authenticate": f'Bearer realm="{realm}",service="test-registry"'})
        length = int(self.headers.get("Content-Length", "0") or 0)
        body = self.rfile.read(length) if length else None
        upstream = http.client.HTTPConnection("127.0.0.1", UPSTREAM)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("authorization", "host")}
        upstream.request(self.command, self.path, body=body, headers=headers)
        r = upstream.getresponse()
        data = r.read()
        keep = {k: v for k, v in r.getheaders() if k.lower() not in ("content-length", "connection",
                                                                     "transfer-encoding")}
        if "Location" in keep:
            keep["Location"] = keep["Location"].replace(f":{UPSTREAM}/", f":{self.server.server_port}/")
        self.reply(r.status, data, keep)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = handle_any


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(PORT_FILE + ".tmp", "w") as f:
    f.write(str(server.server_port))
import os  # noqa: E402
os.rename(PORT_FILE + ".tmp", PORT_FILE)
server.serve_forever()
