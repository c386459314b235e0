"""The whole contract as one abstract test class. Subclass it and provide ``store``."""

from __future__ import annotations

from .async_store import AsyncStoreTests
from .base import GuardTests, SuiteBase
from .batches import BatchTests
from .capabilities import CapabilityTests
from .concurrency import ConcurrencyTests
from .events import EventTests
from .expiry import ExpiryTests
from .foreign import ForeignBytesTests
from .functions import FunctionTests
from .listing import ListingTests
from .model import ModelTests
from .name_variants import NameVariantTests
from .names import NameTests
from .promises import PromiseTests
from .secret_options import SecretTests
from .store_objects import StoreObjectTests
from .threads import ThreadTests
from .tokens import TokenTests
from .transactions import TransactionTests
from .update_ops import UpdateOpTests
from .values import GeneratedValueTests, ValueTests
from .worker_parity import WorkerParityTests

#: Report areas, in the order ``iii-state conformance`` prints them.
AREAS = {
    FunctionTests: "functions (contract § Functions)",
    UpdateOpTests: "update ops (contract § Update ops)",
    ValueTests: "values (contract § Values)",
    GeneratedValueTests: "values (Hypothesis)",
    EventTests: "events (contract § Events)",
    ExpiryTests: "expiry (contract § Expiry)",
    BatchTests: "batches (contract § Batches)",
    TransactionTests: "transactions (contract § Transactions)",
    ForeignBytesTests: "foreign stored bytes (contract § Functions)",
    NameTests: "scopes, keys and limits",
    NameVariantTests: "name variants (Hypothesis)",
    ListingTests: "listing",
    StoreObjectTests: "two store objects, one config",
    CapabilityTests: "capabilities",
    ConcurrencyTests: "concurrency (processes)",
    ThreadTests: "threads (one store object)",
    AsyncStoreTests: "async store",
    TokenTests: "conditional-write tokens",
    PromiseTests: "durable and shared",
    SecretTests: "secrets",
    ModelTests: "model (Hypothesis)",
    WorkerParityTests: "iii state worker parity",
    GuardTests: "suite guard",
}


class StateStoreSuite(
    FunctionTests,
    UpdateOpTests,
    ValueTests,
    GeneratedValueTests,
    EventTests,
    ExpiryTests,
    BatchTests,
    TransactionTests,
    ForeignBytesTests,
    NameTests,
    NameVariantTests,
    ListingTests,
    StoreObjectTests,
    CapabilityTests,
    ConcurrencyTests,
    ThreadTests,
    AsyncStoreTests,
    TokenTests,
    PromiseTests,
    SecretTests,
    ModelTests,
    WorkerParityTests,
    GuardTests,
    SuiteBase,
):
    """Subclass with a ``store`` fixture yielding an open :class:`~iii_state_core.StateStore`.

    Every test uses its own random scope and removes what it wrote; nothing is ever flushed.
    Set ``quick = True`` for the smaller sizes of ``iii-state conformance --quick``.
    """

    __test__ = False

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.__test__ = True


__all__ = ["AREAS", "StateStoreSuite"]
