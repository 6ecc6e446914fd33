"""The task collection: `fab --list` reads as the menu of this module.

The settings' defaults (tasks/settings.py) are the collection's config, so every
`app.*` key exists before fabric.yaml, `-f FILE` or a `FABRIC_APP_*` variable
overrides it.
"""

from invoke import Collection

import sandbox.commands
from tasks import db, deploy, harden, history, logs, provision, status
from tasks.fields import DEFAULTS

namespace = Collection(
    provision.provision,
    deploy.deploy,
    deploy.rollback,
    deploy.releases,
    history.history,
    deploy.exec_,
    *provision.STEP_TASKS,
    logs.logs,
    status.status,
    harden.harden,
)
namespace.add_collection(Collection(db.backup, db.restore, db.shell), name="db")
namespace.add_collection(Collection.from_module(sandbox.commands, name="sandbox"))
namespace.configure({"app": dict(DEFAULTS)})
