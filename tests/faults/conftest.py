"""The uninterrupted reference run that every fault test compares against (built once per session)."""

from __future__ import annotations

import shutil

import pytest
from faultkit import EPOCHS, Snapshot, continue_in_child, fault_config, train_in_child


@pytest.fixture(scope="session")
def references(tiny_data_dir, tmp_path_factory):
    """references(precision): the uninterrupted run's state after 0, 1, ..., EPOCHS epochs, built once per
    precision (each epoch resumed from the last, which the training tests show is bitwise the same as never
    stopping); [0] has no weights."""
    built: dict[str, list[Snapshot]] = {}

    def build(precision: str) -> list[Snapshot]:
        root = tmp_path_factory.mktemp(f"reference-{precision}")
        run = root / "run"
        snapshots = [Snapshot(None, [])]
        for epochs in range(1, EPOCHS + 1):
            child = continue_in_child(fault_config(tiny_data_dir, epochs, precision), run, root / f"log{epochs}")
            assert child.wait() == 0, child.stderr
            copy = root / f"epoch{epochs}"
            shutil.copytree(run, copy)
            snapshots.append(Snapshot.of(copy))
        straight = root / "straight"
        child = train_in_child(fault_config(tiny_data_dir, precision=precision), straight, root / "log-straight")
        assert child.wait() == 0, child.stderr
        assert Snapshot.of(straight).same(snapshots[-1]), "resuming at epoch boundaries changed the result"
        return snapshots

    def reference_for(precision: str) -> list[Snapshot]:
        if precision not in built:
            built[precision] = build(precision)
        return built[precision]

    return reference_for


@pytest.fixture(scope="session")
def reference(references) -> list[Snapshot]:
    """The fp32 reference, for the tests whose subject is the folder's writes rather than the arithmetic."""
    return references("fp32")
