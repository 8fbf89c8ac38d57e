#!/usr/bin/env python3
"""An OAuth2 token introspection endpoint (RFC 7662) for the test Dovecot.

    scripts/introspect.py DIR

Listens on 127.0.0.1, writes its port to DIR/introspect-port, and answers
POST /introspect (token=...) from DIR/tokens, read at every request: one
"TOKEN USER" per line is a live token of USER; anything else is not. A test
mints a token by adding a line and expires it by taking the line out. Each
request is logged to DIR/introspect.log as "TOKEN active|inactive".
"""

import json
import os
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DIR = sys.argv[1]


def live_tokens():
    try:
        with open(os.path.join(DIR, "tokens"), encoding="utf-8") as file:
            pairs = (line.split() for line in file)
            return {pair[0]: pair[1] for pair in pairs if len(pair) == 2}
    except FileNotFoundError:
        return {}


class Introspection(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        form = urllib.parse.parse_qs(self.rfile.read(length).decode("utf-8"))
        token = form.get("token", [""])[0]
        user = live_tokens().get(token)
        answer = {"active": True, "username": user} if user else {"active": False}
        with open(os.path.join(DIR, "introspect.log"), "a", encoding="utf-8") as log:
            log.write(f"{token} {'active' if user else 'inactive'}\n")
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Introspection)
with open(os.path.join(DIR, "introspect-port.new"), "w", encoding="utf-8") as port:
    port.write(f"{server.server_address[1]}\n")
os.rename(os.path.join(DIR, "introspect-port.new"), os.path.join(DIR, "introspect-port"))
server.serve_forever()
