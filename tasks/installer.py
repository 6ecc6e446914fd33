"""What builds a release's virtualenv: uv (pinned, from PyPI, checked by its hashes), or pip
where uv cannot run or `app.installer: pip` asks for it.

uv is installed once per server, by root, into UV_HOME (pip's `--target`, from Debian's pip
wheel: no venv of its own), read-only to everyone else. A build runs it as the build account
with a cache per app that is that account's own (UV_CACHE), so a requirements change
downloads and unpacks only what changed. `--link-mode=copy`: sealing the venv root's never
touches the cache's files. Where uv cannot be installed (no wheel for the server's platform,
PyPI out of reach) the build goes on with pip, as before.
"""

from tasks.shell import q

UV_VERSION = "0.13.9"
# PyPI's sha256 of each Linux wheel of that version (pip picks the server's platform's).
UV_HASHES = (
    "d7f459fe4fd247d830351c75686d3996ace3c6f3f728eb0e85a30b7ada0cef19",  # x86_64
    "5435c5ce14a56431208ca0996416d310f1598e8c2c8ba707688985a16bb82dbe",  # aarch64 2.17
    "ecb6028d79dc96fbeafffe5c8af62a7099487ebc05a701e76714eebcffd06375",  # aarch64 2.28
    "7ec1e1dd9b6cb335c301afdf877989df384227313981850755a59561f75e4ab8",  # armv7l, musl too
    "16963d19594e18d746a70c7fce82237bde4f2cac4cfcf0ca2b84796fe9d0c6e9",  # armv7l
    "db5c8df7145c21ffea9c0f74e38823bac3af60cbadf0e26b8633f08627b17bab",  # i686
    "c5dbdb7c8737cd183a9dce95b39cfd1f3d54ec2a27a1bb58f160293f9ba2c805",  # ppc64le
    "a6e845f387e4ed55bb59342957a9179e24a631fcc7668bda3426ae1cef8ed4b9",  # s390x
    "6d5114bba238adddacb32fb11904f2b3ff4e988f8e9ff0d8d3b5e9822cf836b8",  # riscv64, musl too
    "6b0c7b9f47a5d011939d61e324d3fe18a8bc155d8dd53add738709a92f290a7c",  # riscv64
)
TOOLS = "/usr/local/lib/fab"  # root's: the uv versions fab installs
CACHES = "/var/cache/fab-uv"  # root's: one cache per app, each its build account's
UV_HOME = f"{TOOLS}/uv-{UV_VERSION}"
UV = f"{UV_HOME}/bin/uv"
FALLBACK = "fab: uv could not be installed here, so pip built the virtualenv"  # a build says


def uv_cache(s):
    """The app's uv cache: the build account's, kept across builds (destroy removes it)."""
    return f"{CACHES}/{s.name}"


def build_env(s):
    """What a build needs to find uv's cache (--setenv words), and never a Python of uv's
    own download: the venv is the server's Python's."""
    return (f"UV_CACHE_DIR={q(uv_cache(s))}", "UV_PYTHON_DOWNLOADS=never", "UV_NO_PROGRESS=1")


def install_uv():
    """The lines that set "$uv" to the pinned uv, installed first if missing (by root, from
    the wheel whose hash is pinned, next to the old one then moved into place); "$uv" stays
    empty where it cannot be installed or run, and pip builds. Needs "$whl", Debian's pip."""
    pin = f"uv=={UV_VERSION} " + " ".join(f"--hash=sha256:{h}" for h in UV_HASHES)
    new = q(f"{UV_HOME}.new")
    return [
        "uv=",
        f"if ! {UV} --version >/dev/null 2>&1; then",
        f"  {{ [ -n \"$whl\" ] && rm -rf {new} && install -d -m 0755 {TOOLS} && "
        f"printf '%s\\n' {q(pin)} | python3 \"$whl/pip\" install -q "
        "--disable-pip-version-check --no-cache-dir --no-deps --only-binary :all: "
        f"--require-hashes --target {new} -r /dev/stdin >&2 "
        f"&& chmod -R go-w {new} && rm -rf {q(UV_HOME)} && mv {new} {q(UV_HOME)}; }} "
        f"|| {{ rm -rf {new} 2>/dev/null; echo {q(FALLBACK)}; }}",
        "fi",
        f"if {UV} --version >/dev/null 2>&1; then uv={UV}; fi",
    ]


def uv_build(s, venv, args):
    """The lines that build VENV with "$uv" (ARGS: what to install), as the build account
    with its cache; the server's Python, and its bytecode compiled now, as pip does (the
    sealed venv is read-only: a program could never write it later)."""
    cache = q(uv_cache(s))
    return [f"install -d -m 0755 {CACHES} && install -d -o {q(s.build_user)} "
            f"-g {q(s.build_user)} -m 0700 {cache}",
            f'build "$uv" venv -q --allow-existing --python /usr/bin/python3 {venv} '
            "|| pip_failed",  # --allow-existing: a pyproject app's requirements are in it
            f'build "$uv" pip install -q --python {venv}/bin/python --link-mode=copy '
            f"--compile-bytecode {args} || pip_failed"]
