"""What fab prints: whole lines prefixed with their host, escaped, never interleaved; and
on a terminal, a status line of what each host is doing."""

import difflib
import re
import shutil
import sys
import threading
import time
from contextlib import contextmanager

_print_lock = threading.Lock()


def unified_diff(old, new, path):
    lines = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                 fromfile=f"{path} (server)", tofile=f"{path} (wanted)")
    return "".join(lines)


# Control characters other than tab, shown escaped: what a server sends (an app's log, a
# page it serves) never moves the operator's cursor, rewrites a line or sets a title.
CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(line):
    return CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", line)


def say(host, text, stream=None):
    """Print whole lines, each prefixed with the host, without interleaving threads."""
    stream = stream or sys.stdout
    with _print_lock:
        if _progress and stream.isatty():
            stream.write("\r\033[K")  # the status line goes; the next tick draws it again
        for line in text.rstrip("\n").split("\n"):
            stream.write(f"[{host}] {printable(line)}\n")
        stream.flush()


_progress = {}  # host -> (what it is doing, since when): the terminal's status line


@contextmanager
def progress(host, doing):
    """On a terminal, a status line says what each host is doing and for how many seconds
    (`[web1] app: released ... 12s`), drawn once a second, gone when the work ends. Piped
    output never gets it."""
    if not sys.stdout.isatty():
        yield
        return
    with _print_lock:
        _progress[host] = (doing, time.monotonic())
        first = len(_progress) == 1
    done = threading.Event()
    ticker = threading.Thread(target=_tick, args=(done,), daemon=True) if first else None
    if ticker:
        ticker.start()
    try:
        yield
    finally:
        with _print_lock:
            _progress.pop(host, None)
            if not _progress:
                sys.stdout.write("\r\033[K")
                sys.stdout.flush()
        if ticker:
            done.set()
            ticker.join()


def _tick(done):
    while not done.wait(1):
        with _print_lock:
            now = time.monotonic()
            line = "  ".join(f"[{host}] {doing} {now - since:.0f}s"
                             for host, (doing, since) in sorted(_progress.items()))
            width = shutil.get_terminal_size().columns - 1
            sys.stdout.write("\r\033[K" + line[:width])
            sys.stdout.flush()


class LinePrefixer:
    """A file-like sink that prints each complete line prefixed with the host."""

    def __init__(self, host):
        self.host, self.buffer = host, ""

    def write(self, data):
        self.buffer += data
        *lines, self.buffer = self.buffer.split("\n")
        for line in lines:
            say(self.host, line.rstrip("\r"))

    def flush(self):
        pass
