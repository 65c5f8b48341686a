"""Slot allocation: lowest free, kept for life, a freed slot rests while it drains, no reload for it."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from haplane.errors import ValidationError
from haplane.model.records import Instance
from haplane.registry import RegistryStore
from haplane.store import Put, open_store


def inst(iid: str) -> Instance:
    return Instance(iid, "app", "127.0.0.2", 8000)


async def test_slots_are_lowest_free_and_kept() -> None:
    now = [1000.0]
    reg = RegistryStore(open_store("memory://"), slot_cooldown=30, clock=lambda: now[0])
    slots = [(await reg.put_instance(inst(f"i{n}")))[0].slot for n in range(3)]
    assert slots == [1, 2, 3]
    again, _, created = await reg.put_instance(Instance("i1", "app", "127.0.0.2", 8000, weight=3))
    assert (again.slot, created) == (2, False)


async def test_a_moved_instance_takes_a_new_slot_and_the_old_one_rests() -> None:
    """HAProxy keeps keep-alive clients on a slot's old address after `set server addr`; a move therefore
    takes a new slot (the agents drain the old one), in put_instance and in a source's set alike."""
    now = [1000.0]
    reg = RegistryStore(open_store("memory://"), slot_cooldown=30, clock=lambda: now[0])
    for n in range(3):
        await reg.put_instance(inst(f"i{n}"))
    moved, _, _ = await reg.put_instance(Instance("i1", "app", "127.0.0.9", 8000))
    assert moved.slot == 4
    assert (await reg.put_instance(inst("x")))[0].slot == 5, "slot 2 rests while it drains"
    await reg.replace_source("s", [Instance("m", "app", "127.0.0.5", 8000)])
    await reg.replace_source("s", [Instance("m", "app", "127.0.0.6", 8000)])
    # slot 7 would grow the backend to 16 slots (a reload): the slot resting longest is taken instead
    assert (await reg.get_instance("app", "m"))[0].slot == 2
    now[0] += 31
    assert (await reg.put_instance(inst("y")))[0].slot == 6, "m's old slot, once rested"


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


async def test_operator_state_and_pinned_weight_survive_the_sources_next_push() -> None:
    """A drain or a weight set from the UI on a watcher's instance is the operator's: the watcher re-sending
    its view (it does at every event and resync) must not undo it; its own fields still follow the source."""
    reg = RegistryStore(open_store("memory://"))
    await reg.replace_source("d", [inst("a"), inst("b")])
    a, rev = await reg.get_instance("app", "a")
    await reg.put_instance(replace(a, state="drain"), if_match=rev)
    b, rev = await reg.get_instance("app", "b")
    await reg.put_instance(replace(b, weight=3, weight_override=3), if_match=rev)

    await reg.replace_source("d", [Instance("a", "app", "127.0.0.5", 8000, weight=20, version="v2"),
                                   Instance("b", "app", "127.0.0.2", 8000, weight=50)])
    a, _ = await reg.get_instance("app", "a")
    b, _ = await reg.get_instance("app", "b")
    assert (a.state, a.weight, a.address, a.version) == ("drain", 20, "127.0.0.5", "v2")
    assert (b.state, b.weight, b.weight_override) == ("ready", 3, 3)

    # null hands the weight back: the next push sets it again
    await reg.put_instance(replace(b, weight_override=None))
    await reg.replace_source("d", [inst("a"), Instance("b", "app", "127.0.0.2", 8000, weight=50)])
    assert (await reg.get_instance("app", "b"))[0].weight == 50
    # the state kept is not forever: an instance the source drops and reports again starts ready
    await reg.replace_source("d", [inst("b")])
    await reg.replace_source("d", [inst("a"), inst("b")])
    assert (await reg.get_instance("app", "a"))[0].state == "ready"


def test_weight_override_is_validated_and_round_trips() -> None:
    i = Instance.from_dict({"id": "x", "service": "app", "address": "127.0.0.2:80", "weight": 9,
                            "weight_override": 4})
    assert (i.weight, i.weight_override) == (4, 4)
    assert Instance.from_dict(i.to_dict()) == i
    with pytest.raises(ValidationError, match="weight_override"):
        Instance.from_dict({"id": "x", "service": "app", "address": "127.0.0.2:80", "weight_override": 300})


async def test_a_slot_freed_by_a_lease_expiry_rests_too() -> None:
    """An instance whose TTL lapsed is deleted by the store, not through the registry; its slot must not go at
    once to the next newcomer (the agents are draining it), and must not leak: it is reused before the backend
    grows. Registrations pick slots from the allocation record alone, so they stay O(1) in the siblings."""
    now = [1000.0]
    store = open_store("memory://")
    reg = RegistryStore(store, slot_cooldown=30, clock=lambda: now[0])
    reads: list[str] = []
    real_range = store.range

    async def counting_range(prefix: str) -> Any:
        reads.append(prefix)
        return await real_range(prefix)

    store.range = counting_range  # type: ignore[method-assign]
    await reg.put_instance(inst("a"))
    leased, _, _ = await reg.put_instance(Instance("b", "app", "127.0.0.3", 8000, ttl=5))
    assert leased.slot == 2
    await store.revoke_lease(leased.lease)  # what an expiry does
    reads.clear()
    assert (await reg.put_instance(inst("c")))[0].slot == 3, "slot 2 is not handed out right after the expiry"
    now[0] += 31
    assert [(await reg.put_instance(inst(f"f{n}")))[0].slot for n in range(3)] == [4, 5, 6]
    assert reads == [], "no sibling read while the record says where the free slots are"
    assert (await reg.put_instance(inst("g")))[0].slot == 2, "slot 7 would need 16 slots (25 % headroom): 2 is reused"
    assert reads == ["/haplane/instances/app/"]


async def test_allocation_records_without_held_slots_are_read_from_the_instances() -> None:
    """A record written before ``held`` existed: the registry reads the instances once, then keeps ``held``."""
    store = open_store("memory://")
    reg = RegistryStore(store)
    for n in range(3):
        await reg.put_instance(inst(f"i{n}"))
    await store.txn([], [Put("/haplane/alloc/app", json.dumps({"freed": {}}))])
    assert (await reg.put_instance(inst("new")))[0].slot == 4
    assert json.loads((await store.get("/haplane/alloc/app")).value)["held"] == [1, 2, 3, 4]  # type: ignore[union-attr]
