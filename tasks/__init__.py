"""The task collection: `fab --list` reads as the menu of this module. The daily commands
sit at the top; `db.*` and `step.*` (one part of the stack at a time) in groups of their own.

The settings' defaults (tasks/fields.py) are the collection's config, so every `app.*` key
exists before deploy.yaml (`-f FILE`), fabric.yaml or a `FABRIC_APP_*` variable overrides it.
"""

from invoke import Collection

from tasks import (
    db,
    deploy,
    destroy,
    harden,
    history,
    init,
    logs,
    maintenance,
    provision,
    status,
)
from tasks.fields import DEFAULTS

namespace = Collection(
    init.init,
    provision.provision,
    deploy.deploy,
    deploy.rollback,
    deploy.releases,
    history.history,
    deploy.exec_,
    logs.logs,
    status.status,
    harden.harden,
    maintenance.maintenance,
    destroy.destroy,
)
namespace.add_collection(Collection(db.backup, db.restore, db.shell), name="db")
namespace.add_collection(Collection(*provision.STEP_TASKS), name="step")
namespace.configure({"app": dict(DEFAULTS)})
