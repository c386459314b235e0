"""Whether a function this worker hosts may have observers (iii 0.25's ``observe``).

An engine advertising ``observe.v1`` pushes every observer of a function to the connection that
hosts it (``functionregistered`` carries the whole set, ``observeradded``/``observerremoved`` the
changes), and iii-sdk keeps that set for the function's ``FunctionRef.is_observed()``, the SDK's
own "skip building an event nobody receives" check. The worker uses it to skip calling
``state::on-changed`` after a write when nobody observes it: on such an engine that call would
only make the engine dispatch to nothing.

Only a "no" the engine stated counts: without ``observe.v1`` (an engine before 0.25, or one that
did not say), or before the function's observer set arrived on the current connection, the
answer is "maybe", and the worker calls ``state::on-changed`` as before. iii-sdk 0.25 has no
public accessor for the engine's features or a function's confirmation, so this reads two of its
internals; if they are missing (another SDK version), the answer is "maybe" too.
"""

from __future__ import annotations

from typing import Any


def maybe_observed(iii: Any, ref: Any) -> bool:
    """``False`` only when the engine told this connection that ``ref`` has no observer.

    :param iii: the connected ``iii.iii.III`` client.
    :param ref: the ``FunctionRef`` ``register_function`` returned for the function.
    """
    try:
        known = iii._observe_online() and iii._observe_host.status(ref.id) == "ready"
        return not known or bool(ref.is_observed())
    except AttributeError:
        return True
