"""Deliberately broken sinks and sources that prove the suite catches what it claims to.

Each mutant subclasses a correct reference component (``conformance.mutants.reference``)
and breaks exactly one rule. ``MUTANTS`` records, per mutant, the rule and the check that
is designed to catch it; the suite's own tests assert that every MUST mutant makes that
check (and so the verdict) fail, and that the references pass every MUST check. Run any
of them by hand, e.g.::

    pytest conformance --sink conformance.mutants.sinks.DropsBufferOnClose
"""

from __future__ import annotations

from dataclasses import dataclass

from conformance.catalogue import Level

__all__ = ["AT_RESOLUTION", "MUTANTS", "Mutant", "REFERENCE_SINKS", "REFERENCE_SOURCES"]


@dataclass(frozen=True)
class Mutant:
    """A broken component: its dotted path, the rule it breaks, and the check designed to
    catch it."""

    path: str
    kind: str
    rule: str
    caught_by: str
    level: Level = Level.MUST

    @property
    def name(self) -> str:
        return self.path.rsplit(".", 1)[-1]


def _sink(name: str, rule: str, caught_by: str, level: Level = Level.MUST) -> Mutant:
    return Mutant(f"conformance.mutants.sinks.{name}", "sink", rule, caught_by, level)


def _dlq(name: str, rule: str, caught_by: str) -> Mutant:
    return Mutant(f"conformance.mutants.dlq.{name}", "sink", rule, caught_by)


def _source(name: str, rule: str, caught_by: str) -> Mutant:
    return Mutant(f"conformance.mutants.sources.{name}", "source", rule, caught_by)


#: ``caught_by`` of a mutant the suite refuses before any check runs (a usage error).
AT_RESOLUTION = "resolution"

REFERENCE_SINKS = (
    "conformance.mutants.reference.JsonFileSink",
    "conformance.mutants.reference.ArrowJsonFileSink",
    "conformance.mutants.reference.DeepCopyMemorySink",
    "conformance.mutants.reference_dlq.JsonFileDLQSink",
)
REFERENCE_SOURCES = (
    "conformance.mutants.reference.JsonFileSource",
    "conformance.mutants.reference.BatchJsonFileSource",
    "conformance.mutants.reference.ArrowJsonFileSource",
    "conformance.mutants.reference.NoCheckpointJsonFileSource",
)

MUTANTS: tuple[Mutant, ...] = (
    _sink("DropsBufferOnClose", "close() implies flush()", "SNK-LIFE-05"),
    _sink("DuplicatesRecord", "each written record persists once", "SNK-WRITE-07"),
    _sink("DropsRecordSilently", "None means every record was written", "SNK-WRITE-07"),
    _sink("ReordersBatch", "records persist in write order", "SNK-WRITE-08"),
    _sink("OneResultShort", "one WriteResult per input", "SNK-WRITE-02"),
    _sink("MutatesInput", "inputs are never mutated", "SNK-WRITE-05"),
    _sink("SliceBlindArrow", "a sliced RecordBatch persists the slice", "SNK-PLANE-02"),
    _sink("NaNBecomesNull", "Arrow values round-trip", "SNK-PLANE-04"),
    _sink("CloseNotIdempotent", "close() is idempotent", "SNK-LIFE-04"),
    _sink("PhantomOnOpen", "open+close leaves no phantom output", "SNK-LIFE-06"),
    _sink("EmptyBatchWritesPlaceholder", "an empty batch persists nothing", "SNK-WRITE-03"),
    _sink("RowsOnlyAcceptsArrow", "a rows-only sink refuses RecordBatches", "SNK-PLANE-06"),
    _sink(
        "ClaimsArrowWithoutImplementing",
        "an Arrow-native sink accepts RecordBatches",
        "SNK-PLANE-01",
    ),
    _sink(
        "InvalidPlaneDeclaration", "native planes are a subset of accepted planes", "SNK-DECL-02"
    ),
    _sink("FlushIsNoop", "flush() makes writes durable", "SNK-LIFE-08"),
    _sink("WrongFailureIndex", "failures are reported at their input index", "SNK-WRITE-04"),
    _sink("RaisesAfterPartialWrite", "a raised call persisted nothing", "SNK-WRITE-04"),
    _sink("ReturnsValueFromWrite", "write() returns None or raises", "SNK-WRITE-01"),
    _sink("LeaksFileOnFailure", "a failed write leaks no resource", "SNK-LIFE-09"),
    _sink("TruncatesOnReopen", "a resumed or reopened sink continues its output", "SNK-LIFE-12"),
    _sink(
        "WriteAfterCloseAccepted",
        "a write that returns without error is persisted (after close())",
        "SNK-LIFE-13",
    ),
    _sink(
        "AcceptsWritesBeforeOpen",
        "a write that returns without error is persisted (before open())",
        "SNK-LIFE-13",
    ),
    _sink("MisuseErrorNamesNoSink", "misuse errors name the sink", "SNK-LIFE-03", Level.SHOULD),
    _sink(
        "KeepsCallerList",
        "what the caller changes after a write returns does not change what is persisted",
        "SNK-WRITE-09",
    ),
    _sink(
        "DropsEverySecondWrite",
        "the harness builds the named target (not the parent it inherited from)",
        AT_RESOLUTION,
    ),
    _sink(
        "DropsEverySecondWriteOwnHarness",
        "None means every record was written (under an inherited harness)",
        "SNK-WRITE-07",
    ),
    _dlq("DLQFlushKeepsBuffer", "captured records are durable after flush()", "SNK-DLQ-01"),
    _dlq("DLQRefusesUnserialisable", "capture never fails on content", "SNK-DLQ-02"),
    _dlq("DLQWorldReadable", "DLQ files are owner-only", "SNK-DLQ-03"),
    _dlq("DLQAcceptsBeforeOpen", "an acknowledged capture persists", "SNK-DLQ-04"),
    _source("ResumeRereadsBatch", "resume is exact (no repeat)", "SRC-CKPT-02"),
    _source("IgnoresCheckpoint", "resume is exact (no restart from scratch)", "SRC-CKPT-02"),
    _source(
        "CheckpointSkipsRecord",
        "the checkpoint names the position after the last unit",
        "SRC-CKPT-02",
    ),
    _source("CheckpointNotJson", "checkpoints are JSON values", "SRC-CKPT-01"),
    _source("FinalCheckpointRereads", "the final checkpoint resumes to nothing", "SRC-CKPT-03"),
    _source(
        "RelativeCheckpointAfterResume", "checkpoints after a resume resume exactly", "SRC-CKPT-09"
    ),
    _source("ProcessLocalCheckpoint", "a checkpoint resumes in a fresh process", "SRC-CKPT-05"),
    _source("ObserverEffect", "taking a checkpoint does not move the source", "SRC-CKPT-06"),
    _source("DeclaresArrowEmitsLists", "the declared plane is what is emitted", "SRC-OUT-01"),
    _source("EmitsTuples", "rows are mappings", "SRC-OUT-01"),
    _source("SchemaDrift", "one Arrow schema per stream", "SRC-OUT-03"),
    _source("ReusesBatchList", "emitted units never change", "SRC-OUT-05"),
    _source(
        "IgnoresTrim", "a trimmed batch's checkpoint never passes its last row", "SRC-LIMIT-02"
    ),
    _source("CloseNotIdempotent", "close() is idempotent", "SRC-LIFE-02"),
    _source("CloseUnopenedFails", "a source need not be opened to be closed", "SRC-LIFE-03"),
    _source("EmptyInputCrashes", "empty input is valid", "SRC-LIFE-05"),
    _source(
        "AcceptsCheckpointWithoutSupport", "a source without checkpoints refuses one", "SRC-CKPT-08"
    ),
    _source(
        "RestartsOnForeignCheckpoint", "a foreign checkpoint is refused", "SRC-CKPT-07"
    ),
    _source(
        "RestartsOnOtherInput", "a checkpoint over another input is refused", "SRC-CKPT-10"
    ),
)
