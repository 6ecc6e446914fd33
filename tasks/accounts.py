"""The accounts fab makes for an app: its own (the app runs as it) and its build account
(builds run as it), system accounts with fab's comment, so fab knows them again."""

from tasks.shell import q

SUDO_GROUPS = {"sudo", "admin", "wheel", "root"}


def account_comment(s, build=False):
    """What fab writes in the comment field of the accounts it makes: how it knows them."""
    return f"fab builds {s.name}" if build else f"fab app {s.name}"


def system_account(s, build=False):
    """The app's account (or its build account, with BUILD): a system account with no
    login shell, no home, no sudo, a group of its own and fab's comment; an account of the
    build is never cron's or at's."""
    name = s.build_user if build else s.user
    make = (f"useradd --system --user-group --shell /usr/sbin/nologin --home-dir /nonexistent "
            f"--no-create-home --comment {q(account_comment(s, build))} {q(name)}")
    if not build:
        return make
    return "\n".join([make, *(f"grep -qsxF {q(name)} {deny} || echo {q(name)} >> {deny}"
                              for deny in ("/etc/cron.deny", "/etc/at.deny"))])


def adopted(s, facts):
    """Whether the existing account app.user is one fab made: its comment says so, or (made
    by an earlier version, without a comment) it is a system account as fab makes them and
    this app's tree or program already run as it."""
    account = facts.user_account
    if account is None:
        return False
    if account.comment == account_comment(s):
        return True
    return (account.home, account.shell) == ("/nonexistent", "/usr/sbin/nologin") and (
        facts.modes.get(s.shared, ("",))[0] == s.user or facts.program_conf.get("user") == s.user)


def foreign_user(s, facts):
    """Why app.user may not be used (None: it may): an account fab did not make."""
    if facts.user_exists and not adopted(s, facts):
        return (f"app.user={s.user} is an account fab did not make (another service's, like "
                "www-data or postgres?): leave app.user unset (the app gets its own account), "
                "or name one no account has")
    return None
