"""The kopf side of qmo: handlers feed a work queue; workers gather -> plan -> apply.

Importing this package registers the handlers with kopf.
"""

from qmo.controller import handlers as handlers
