"""haplane: a control plane for HAProxy."""

__version__ = "0.1.0"
