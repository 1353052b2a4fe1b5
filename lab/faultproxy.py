"""A fault-injecting HTTP proxy in front of a real server (OpenBao) for the reliability tests.

Requests are forwarded unchanged to ``upstream`` unless a scripted fault matches first:

    proxy.inject(status=503, times=2, path="/v1/transit")       # a standby / overloaded node answering 503
    proxy.inject(status=429, times=1, method="POST")            # rate limited
    proxy.inject(delay=5.0, times=1)                            # slower than the client's timeout
    proxy.inject(drop=True, times=1)                            # connection closed without an answer
    proxy.inject(action=callable, times=1, path=...)            # run something (e.g. seal the server) first

Faults are consumed in order; ``proxy.log`` lists (method, path, answer) of every request.
"""

import http.client
import http.server
import json
import re
import threading
import time
import urllib.parse

from lab import _process


class FaultProxy:
    def __init__(self, upstream):
        self.upstream = urllib.parse.urlsplit(upstream)
        self.port = _process.free_port()
        self.address = "http://127.0.0.1:%d" % self.port
        self.faults = []
        self.log = []
        self.lock = threading.Lock()
        self.server = None

    def inject(self, status=None, times=1, method=None, path=None, delay=0.0, drop=False, action=None, body=None):
        with self.lock:
            self.faults.append({"status": status, "times": times, "method": method,
                                "path": re.compile(path) if path else None, "delay": delay, "drop": drop,
                                "action": action, "body": body})

    def clear(self):
        with self.lock:
            self.faults = []

    def _take(self, method, path):
        with self.lock:
            for fault in self.faults:
                if fault["times"] <= 0:
                    continue
                if fault["method"] and fault["method"] != method:
                    continue
                if fault["path"] and not fault["path"].search(path):
                    continue
                fault["times"] -= 1
                return fault
        return None

    def start(self):
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args):
                pass

            def _forward(self, method):
                length = int(self.headers.get("Content-Length") or 0)
                payload = self.rfile.read(length) if length else None
                fault = proxy._take(method, self.path)
                if fault and fault["action"]:
                    fault["action"]()
                if fault and fault["delay"]:
                    time.sleep(fault["delay"])
                if fault and fault["drop"]:
                    proxy.log.append((method, self.path, "dropped"))
                    self.close_connection = True
                    self.connection.close()
                    return
                if fault and fault["status"]:
                    data = json.dumps(fault["body"] or {"errors": ["injected fault %d" % fault["status"]]}).encode()
                    proxy.log.append((method, self.path, fault["status"]))
                    self.send_response(fault["status"])
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                connection = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                headers = dict((k, v) for k, v in self.headers.items() if k.lower() not in ("host", "connection"))
                connection.request(method, self.path, body=payload, headers=headers)
                response = connection.getresponse()
                data = response.read()
                proxy.log.append((method, self.path, response.status))
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                connection.close()

            def do_GET(self):  # noqa: N802
                self._forward("GET")

            def do_POST(self):  # noqa: N802
                self._forward("POST")

            def do_PUT(self):  # noqa: N802
                self._forward("PUT")

            def do_DELETE(self):  # noqa: N802
                self._forward("DELETE")

            def do_LIST(self):  # noqa: N802 - Vault's LIST verb
                self._forward("LIST")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *_exc):
        self.stop()
