"""Docker discovery (Cosmonaut's job, event-driven): the running containers of one Docker host as instances.

Three rooms: ``daemon.py`` (where the daemon is: DOCKER_HOST, TLS; the HTTP client), ``containers.py`` (PURE:
one container's inspect JSON → an instance and the service fields it states), ``watcher.py`` (``DockerSource``:
events, resyncs, back-off, pushing the whole view to a sink). ``haplane watch docker`` is in
``commands/watch.py``.
"""

from haplane.sources.docker.containers import ContainerView, container_view, signal_number
from haplane.sources.docker.daemon import docker_host, docker_socket_reachable, tls_context
from haplane.sources.docker.watcher import DockerSource

__all__ = ["ContainerView", "DockerSource", "container_view", "docker_host", "docker_socket_reachable",
           "signal_number", "tls_context"]
