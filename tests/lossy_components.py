"""Two components, catalog and orders, whose upgrade 1 -> 2 and downgrade 2 -> 1 are
both declared lossy: what allow_lossy per component is tested with (the service's
restores and snapshots, and the command line through ``--registry
lossy_components:lossy_both_ways``)."""

from __future__ import annotations

from typing import Any, Protocol

from statemigrate import Registry, Service, migratable

COMPONENTS = ("catalog", "orders")


def _dedupe(data: dict[str, list[int]]) -> dict[str, list[int]]:
    """list -> set at the edge: duplicates are dropped (declared lossy)."""
    return {"items": sorted(set(data["items"]))}


def _first_two(data: dict[str, list[int]]) -> dict[str, list[int]]:
    """What version 1 keeps of version 2 (declared lossy)."""
    return {"items": data["items"][:2]}


def lossy_both_ways() -> Registry:
    """catalog and orders at versions 1 and 2, every step between them lossy."""
    registry = Registry()
    for component in COMPONENTS:
        registry.add_schema(component, 1, dict[str, list[int]])
        registry.add_schema(component, 2, dict[str, list[int]])
        registry.add_migration(component, 1, 2, _dedupe, lossy=True, name="dedupe")
        registry.add_migration(component, 2, 1, _first_two, lossy=True, name="first_two")
    return registry


class Held(Protocol):
    items: list[int]


def holder(component: str, version: int, items: list[int]) -> Any:
    @migratable(component, version=version)
    class Holder:
        def __init__(self) -> None:
            self.items = list(items)

        def export_state(self) -> dict[str, list[int]]:
            return {"items": list(self.items)}

        def import_state(self, state: dict[str, list[int]]) -> None:
            self.items = list(state["items"])

    return Holder()


def service_at(version: int, items: list[int], registry: Registry, **options: Any) -> Service:
    """A service ``shop`` running catalog then orders at ``version``, each holding
    ``items``."""
    service = Service("shop", registry=registry, **options)
    for component in COMPONENTS:
        service.register(holder(component, version, items))
    return service


def with_declared_loss() -> Registry:
    """assignments at versions 1 and 2: the downgrade 2 -> 1 drops each user's bucket,
    and declares it (``users.*.bucket``)."""
    registry = Registry()
    registry.add_schema("assignments", 1, dict[str, dict[str, dict[str, str]]])
    registry.add_schema("assignments", 2, dict[str, dict[str, dict[str, str]]])
    registry.add_migration("assignments", 1, 2, lambda data: data, name="add_bucket")

    def drop_bucket(data: Any) -> Any:
        for user in data["users"].values():
            user.pop("bucket", None)
        return data

    registry.add_migration(
        "assignments", 2, 1, drop_bucket, lossy=("users.*.bucket",), name="drop_bucket"
    )
    return registry


def assignments_at(version: int) -> Service:
    """A service ``flags`` running assignments at ``version`` (one user, with a bucket
    at version 2)."""
    registry = with_declared_loss()

    @registry.migratable("assignments", version=version)
    class Assignments:
        def __init__(self) -> None:
            user = {"flag": "on", "bucket": "b"} if version == 2 else {"flag": "on"}
            self.state: Any = {"users": {"u1": user}}

        def export_state(self) -> Any:
            return self.state

        def import_state(self, state: Any) -> None:
            self.state = state

    service = Service("flags", registry=registry)
    service.register(Assignments())
    return service
