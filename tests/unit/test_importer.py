"""Every name -> implementation table resolves through one resolver that fails loudly: a module nobody wrote is a
MissingImplementation naming it, a missing third-party package a MissingDependency naming the package; nothing
is skipped in silence, and `haplane --help` lists exactly the commands that load."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

from haplane import api, cli, sources, store
from haplane.commands import watch
from haplane.errors import MissingDependency, MissingImplementation
from haplane.importer import import_from_string, import_module
from haplane.settings import Settings


def test_resolves_a_module_and_an_attribute() -> None:
    assert import_from_string("haplane.store.keys:decode", "x") is sys.modules["haplane.store.keys"].decode
    assert import_module("haplane.store.keys", "x").__name__ == "haplane.store.keys"


def test_a_module_nobody_wrote_is_named() -> None:
    with pytest.raises(MissingImplementation) as err:
        import_module("haplane.commands.rollback", "the command 'rollback'")
    assert err.value.missing == "the module haplane.commands.rollback"
    assert str(err.value) == ("the command 'rollback' cannot be loaded from haplane.commands.rollback: the module "
                              "haplane.commands.rollback does not exist")
    with pytest.raises(MissingImplementation, match=r"NoSuchSource in haplane\.sources\.consul"):
        import_from_string("haplane.sources.consul:NoSuchSource", "the consul source")


def test_a_missing_third_party_package_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "hp_needs_pkg.py").write_text("import hp_not_installed_pkg.sub\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MissingDependency) as err:
        import_from_string("hp_needs_pkg:Thing", "the thing engine")
    assert err.value.package == "hp_not_installed_pkg"
    assert "the thing engine needs the Python package 'hp_not_installed_pkg'" in str(err.value)


def test_every_table_resolves_to_what_its_callers_use() -> None:
    for name, module_name in cli.COMMANDS.items():
        module = import_module(module_name, name)
        assert callable(module.configure) and callable(module.run) and module.HELP, name
    for name in api.ROUTERS:
        assert callable(import_module(name, name).router), name
    for scheme, target in store.ENGINES.items():
        assert callable(import_from_string(target, scheme)), scheme
    for name in sources.SOURCES:
        assert callable(sources.load_source(name).run), name
    assert list(watch.WATCHES) == list(sources.SOURCES), "every source has its haplane watch command"


def test_help_lists_exactly_the_commands_that_load(capsys: pytest.CaptureFixture[str]) -> None:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == list(cli.COMMANDS)


def test_a_command_table_entry_without_its_module_stops_the_cli_in_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(cli.COMMANDS, "rollback", "haplane.commands.rollback")
    assert cli.main(["--help"]) == 1
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "haplane.commands.rollback" in err and "Traceback" not in err


def test_an_api_router_that_cannot_load_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from haplane.registry import RegistryStore

    monkeypatch.setattr(api, "ROUTERS", (*api.ROUTERS, "haplane.api.routes.nothing"))
    deps = api.ApiDeps(registry=RegistryStore(store.open_store("memory://")), settings=Settings(state_dir=tmp_path))
    with pytest.raises(MissingImplementation, match=r"haplane\.api\.routes\.nothing"):
        api.create_app(deps)
