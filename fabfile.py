"""Put a Flask app into production on a Debian/Ubuntu server: `fab --list`."""

from tasks import namespace

ns = namespace
