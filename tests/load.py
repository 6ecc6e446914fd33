"""A bounded HTTP load: N clients GET a URL in a loop until stopped, counting answers.

Bounded in count (max_requests per client) and time (max_seconds), so it always ends.
Each client keeps one HTTP/1.1 connection alive, as a browser does, and opens a new one only
after an error or when the server closes it: a new connection per request would leave tens of
thousands of sockets in TIME_WAIT and run out of local ports during a long deploy.

When a server closes an idle kept-alive connection just as a request is sent on it (nginx
does on every reload), the request is sent again once on a new connection, as browsers and
HTTP libraries do for idempotent requests (RFC 9112, 9.3.1); only that answer counts, and
`retried` says how often it happened. A request on a new connection is never retried.
"""

import http.client
import threading
import time
from collections import Counter

CLOSED_IDLE = ("RemoteDisconnected", "ConnectionResetError", "BrokenPipeError")


class Load:
    def __init__(self, host, port=80, path="/", clients=20, max_seconds=120, max_requests=20000,
                 pause_after_error=0.0):
        self.host, self.port, self.path = host, port, path
        self.pause_after_error = pause_after_error  # a client's wait after a failed request
        self.clients, self.max_seconds, self.max_requests = clients, max_seconds, max_requests
        self.results = Counter()  # (status, body) -> count; status 0 = connection error
        self.retried = 0
        self.latencies = []
        self.first_ok = None  # when the first 200 came (monotonic)
        self.errors = []  # (when the request started, ended, answer) of every answer but a 200
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = []

    def _client(self):
        deadline = time.monotonic() + self.max_seconds
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        reused = False
        for _ in range(self.max_requests):
            if self._stop.is_set() or time.monotonic() > deadline:
                break
            start = time.monotonic()
            answer = self._get(conn)
            if answer[0] == 0 and reused and answer[1].startswith(CLOSED_IDLE):
                with self._lock:
                    self.retried += 1
                answer = self._get(conn)
            reused = answer[0] != 0
            with self._lock:
                self.results[answer] += 1
                self.latencies.append(time.monotonic() - start)
                if answer[0] == 200 and self.first_ok is None:
                    self.first_ok = start
                elif answer[0] != 200:
                    self.errors.append((start, time.monotonic(), answer))
            if answer[0] != 200 and self.pause_after_error:
                time.sleep(self.pause_after_error)
        conn.close()

    def _get(self, conn):
        """(status, body excerpt) of one GET on CONN, or (0, error) after closing it."""
        try:
            conn.request("GET", self.path)
            response = conn.getresponse()
            return response.status, response.read().decode(errors="replace")[:80]
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            return 0, f"{type(e).__name__} {getattr(e, 'errno', '') or ''}".strip()

    def __enter__(self):
        for _ in range(self.clients):
            t = threading.Thread(target=self._client, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=15)

    @property
    def total(self):
        return sum(self.results.values())

    def failures(self, allowed_bodies):
        """Answers that are not a 200 with one of ALLOWED_BODIES."""
        return {k: v for k, v in self.results.items()
                if k[0] != 200 or k[1] not in allowed_bodies}
