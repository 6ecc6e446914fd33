"""Local work that is the same for every host of a run (the app's folder read and hashed,
git asked for its revision), done once: the first host's thread does it while the others
wait, then all share it. The executor forgets it all as a run starts."""

import threading

_done = {}
_lock = threading.Lock()


def once(key, compute):
    """COMPUTE()'s value, computed the first time KEY is asked for in this run."""
    with _lock:
        if key not in _done:
            _done[key] = compute()
        return _done[key]


def forget():
    with _lock:
        _done.clear()
