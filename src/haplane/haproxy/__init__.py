"""ADAPTER: the real HAProxy. Modules, each with one job:

- ``runtime``  the Runtime API over the admin socket (batches over one connection); the one place the plan's
               typed operations become command text (``command_of``, through validated builders)
- ``master``   the master CLI: ``show proc``, a confirmed ``reload``
- ``check``    ``haproxy -c`` → messages, the line numbers and the proxies they name (``check_rendered``: with
               the config's maps, rendered at temporary paths)
- ``files``    atomic writes of haproxy.cfg, its last good copy and the map files
- ``reload``   the one reload with last good (save state, write, reload, confirm; restore on failure)
- ``process``  HAProxy as a supervised child in master-worker mode; ``control_globals`` for the renderer
- ``control``  the agent's control over a real HAProxy (``ManagedHAProxy``, ``AttachedHAProxy``) and its read
               half (``RuntimeReader``)
- ``parse``    PURE parsers of what HAProxy prints (into ``haplane.model.observed`` values)

Nothing here imports the agent; the agent imports this. What HAProxy 2.6 actually does (and the config
snippets that work) is written down in docs/haproxy-notes.md.
"""

from haplane.haproxy.check import check_config, require_valid
from haplane.haproxy.files import ConfigFiles, atomic_write
from haplane.haproxy.master import MasterClient
from haplane.haproxy.process import ControlLines, HAProxyProcess, control_globals
from haplane.haproxy.runtime import Answer, RuntimeClient, set_server_commands, validate_command

__all__ = [
    "Answer", "ConfigFiles", "ControlLines", "HAProxyProcess", "MasterClient", "RuntimeClient", "atomic_write",
    "check_config", "control_globals", "require_valid", "set_server_commands", "validate_command",
]
