"""Slot allocation: lowest free, kept for life, a freed slot rests while it drains, no reload for it."""

from __future__ import annotations

from haplane.model.records import Instance
from haplane.registry import RegistryStore
from haplane.store import open_store


def inst(iid: str) -> Instance:
    return Instance(iid, "app", "127.0.0.2", 8000)


async def test_slots_are_lowest_free_and_kept() -> None:
    now = [1000.0]
    reg = RegistryStore(open_store("memory://"), slot_cooldown=30, clock=lambda: now[0])
    slots = [(await reg.put_instance(inst(f"i{n}")))[0].slot for n in range(3)]
    assert slots == [1, 2, 3]
    again, _, created = await reg.put_instance(Instance("i1", "app", "127.0.0.9", 8000))
    assert (again.slot, created) == (2, False)


async def test_freed_slot_rests_then_is_reused() -> None:
    now = [1000.0]
    reg = RegistryStore(open_store("memory://"), slot_cooldown=30, clock=lambda: now[0])
    for n in range(3):
        await reg.put_instance(inst(f"i{n}"))
    await reg.delete_instance("app", "i1")
    assert (await reg.put_instance(inst("new")))[0].slot == 4  # slot 2 is still draining
    now[0] += 31
    assert (await reg.put_instance(inst("later")))[0].slot == 2


async def test_resting_slot_reused_rather_than_outgrowing_the_backend() -> None:
    now = [1000.0]
    reg = RegistryStore(open_store("memory://"), slot_cooldown=30, min_slots=4, clock=lambda: now[0])
    for n in range(5):
        await reg.put_instance(inst(f"i{n}"))  # slots 1..5
    for n in range(1, 5):
        await reg.delete_instance("app", f"i{n}")  # slots 2..5 rest
        now[0] += 1
    # a fresh slot would be 6, past the 4 slots one instance needs: reuse the slot resting longest
    assert (await reg.put_instance(inst("a")))[0].slot == 2


async def test_source_sets_free_slots_with_rest() -> None:
    now = [1000.0]
    reg = RegistryStore(open_store("memory://"), slot_cooldown=30, clock=lambda: now[0])
    await reg.replace_source("d", [inst("a"), inst("b")])
    await reg.replace_source("d", [inst("b")])
    await reg.replace_source("d", [inst("b"), inst("c")])
    got = {i.id: i.slot for i, _ in await reg.list_instances("app")}
    assert got == {"b": 2, "c": 3}
