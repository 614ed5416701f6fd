"""The Python API in use, as a plugin author would use it: ``SinkConformance`` /
``SourceConformance`` subclasses with a harness, collected by the normal test run.

These also cover what the command line cannot name by class alone: the python-batches
variant of ``CsvSource`` and the rows-only reference sink (the only rows-only sink, so
the runtime's downgrade path, SNK-PLANE-06/07, is exercised here).
"""

from __future__ import annotations



from conformance import SinkConformance, SourceConformance
from conformance.builtin_harnesses import CsvBatchSourceHarness
from conformance.mutants.reference import (
    ArrowJsonFileSource,
    JsonFileSink,
    ReferenceSinkHarness,
    ReferenceSourceHarness,
)


class TestRowsOnlyReferenceSink(SinkConformance):
    harness = ReferenceSinkHarness(JsonFileSink)
    conformance_level = "smoke"


class TestCsvSourceInBatches(SourceConformance):
    harness = CsvBatchSourceHarness
    conformance_level = "smoke"


class TestArrowReferenceSourceByClass(SourceConformance):
    source = ArrowJsonFileSource  # harness found through __conformance_harness__
    conformance_level = "smoke"


def test_a_harness_class_attribute_is_instantiated_for_its_target() -> None:
    (target,) = TestArrowReferenceSourceByClass().conformance_targets(config=None)  # type: ignore[arg-type]
    assert isinstance(target.harness, ReferenceSourceHarness)
    assert target.harness.target is ArrowJsonFileSource
