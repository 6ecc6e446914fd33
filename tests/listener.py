"""A one-request JSON listener on loopback, for app.notify's POST (tests only)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer


def listen():
    """Listen on a free loopback port for one POST (60 s at most): (url, the list its JSON
    body lands in, the server: close it after)."""
    got = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    server.timeout = 60
    threading.Thread(target=server.handle_request, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}/hook", got, server
