"""0.3.0's private delivery-engine names (see ``agora.core.runtime``): importable only."""

from __future__ import annotations

from typing import Any, NoReturn

from agora.core.runtime import PrivateInternal, refuse_private_internal
from agora.errors import AgoraError

#: 0.3.0 raised this for a record that could not be delivered. Agora re-raises the
#: failing component's own exception at ``run()``, and raises ``AgoraError`` subclasses
#: for its own failures, so catching this name catches those.
RecordDeliveryError = AgoraError


class DeliveryEngine(PrivateInternal):
    """0.3.0's private delivery engine; refuses construction."""

    instead = ("build a Pipeline with DeliveryConfig(dlq=…, sink_failure_policy=…) and "
               "call run(); Agora's delivery rules apply there")


class RunState(PrivateInternal):
    """0.3.0's private per-run state; refuses construction."""


def make_checkpoint_state(*args: Any, **kwargs: Any) -> NoReturn:
    """0.3.0's private checkpoint-state factory; refuses to run."""
    del args, kwargs
    refuse_private_internal("agora.core.runtime.make_checkpoint_state",
                            "pass DeliveryConfig(checkpoint=store) to Pipeline.build()")
