"""Test support shared by every tier: real processes and servers on loopback (``procs``) and the skip-or-fail
rule for missing prerequisites (``require``). ``tests/conftest.py`` turns them into fixtures.

Import as ``from support.procs import ...`` (pytest puts ``tests/`` on ``sys.path`` for the root conftest)."""
