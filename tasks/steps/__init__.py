"""The stack, one step per part, in the order `provision` converges them.

Each step module holds a pure planner, `plan(settings, facts, ...) -> Plan`, and its
`STEP` (name, how it gathers what the planner needs, one-line help). tasks/plan.py
applies plans; tasks/provision.py runs the steps.
"""

from tasks.steps import app, database, firewall, nginx, packages, supervisor

PROVISION = [packages.STEP, database.STEP, app.STEP, supervisor.STEP, nginx.STEP, firewall.STEP]
