"""``Checkpoint(source_identity=SourceIdentity.for_file(path))``: 0.3.0's optional note of
which input file a position refers to, kept on the checkpoint object."""

from __future__ import annotations

from pathlib import Path

import pytest

from agora.core.checkpoint import Checkpoint, SourceIdentity
from agora.sources.dlq import SourceIdentity as FromSources


def test_a_checkpoint_carries_the_identity_it_was_given(tmp_path: Path) -> None:
    path = tmp_path / "input.csv"
    path.write_text("id\n1\n", encoding="utf-8")
    identity = SourceIdentity.for_file(path)
    cp = Checkpoint("orders", "run-1", "csv", {"row_number": 1}, source_identity=identity)
    assert cp.source_identity == identity
    assert (identity.path, identity.size) == (str(path.resolve()), len("id\n1\n"))
    assert Checkpoint("orders", "run-1", "csv", 1).source_identity is None
    assert FromSources is SourceIdentity


def test_an_identity_round_trips_through_its_dict(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    path.write_bytes(b"PAR1")
    identity = SourceIdentity.for_file(path)
    assert SourceIdentity.from_dict(identity.to_dict()) == identity


def test_a_source_identity_of_another_type_is_refused_with_the_fix() -> None:
    with pytest.raises(TypeError, match=r"source_identity must be a SourceIdentity or None; "
                                        r"got dict — build it with SourceIdentity.for_file"):
        Checkpoint("p", "r", "s", 1, source_identity={"path": "x"})  # type: ignore[arg-type]


@pytest.mark.parametrize("data", [{"path": "x"}, {"path": 1, "size": 2, "modified_ns": 3},
                                  {"path": "x", "size": "2", "modified_ns": 3}, ["x", 2, 3]])
def test_a_malformed_identity_dict_names_the_shape(data: object) -> None:
    with pytest.raises(ValueError, match=r"must be \{'path': str, 'size': int, "
                                         r"'modified_ns': int\}.*SourceIdentity.to_dict"):
        SourceIdentity.from_dict(data)
