"""Files compared by checksum with the facts, uploaded only when they differ."""

from tasks.core import q, say, sha256, unified_diff


def differs(h, path, content, owner="root", group="root", mode="0644"):
    fact = h.facts.files.get(path)
    return (fact is None or fact.sha256 != sha256(content)
            or (fact.owner, fact.group, fact.mode.zfill(4)) != (owner, group, mode))


def mask(text):
    """KEY=VALUE lines with every value hidden, for showing secrets' diffs."""
    return "".join(line.split("=", 1)[0] + "=****\n" if "=" in line else line + "\n"
                   for line in text.splitlines())


def fingerprint(text):
    """A private key as shown in diffs: only its checksum."""
    return f"(secret, sha256 {sha256(text)[:16]})\n" if text else ""


def ensure_file(h, path, content, owner="root", group="root", mode="0644", shown=None):
    """Make PATH hold CONTENT with owner and mode; True if it changed (or would).

    Dry-run diffs show SHOWN(content) when given (`mask`, `fingerprint`), never a secret."""
    if not differs(h, path, content, owner, group, mode):
        return False
    if h.dry_run:
        old = h.read(f"cat {q(path)} 2>/dev/null || true") if path in h.facts.files else ""
        shown = shown or (lambda text: text)
        diff = unified_diff(shown(old), shown(content), path)
        say(h.name, f"would write {path} ({owner}:{group} {mode})")
        h.show_diff(diff)
    h.put(content, path, owner, group, mode)
    return True
