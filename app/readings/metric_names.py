"""A bounded set of metric names per device: new names past the cap are refused.

Products may allow metrics their schema does not list, so without a bound one device key
could make a device send tens of thousands of names, and every latest-values document,
aggregate and export of that device grow with them. Each device keeps a registry of the names
it has sent (`app.readings.repository.register_metrics`); a reading that would take it past
`READINGS_MAX_METRICS_PER_DEVICE` is refused (reason `too-many-metrics`), the rest stored.
"""

from __future__ import annotations

from odmantic import AIOEngine

from app.readings import repository
from app.readings.context import DeviceContext, DeviceContextCache
from app.readings.validation import CheckedBatch, Rejection


async def admit(
    engine: AIOEngine,
    *,
    context: DeviceContext,
    batch: CheckedBatch,
    cap: int,
    cache: DeviceContextCache | None = None,
) -> CheckedBatch:
    """Register the batch's new metric names; readings with names past the cap are refused."""
    new = sorted({key for doc in batch.docs for key in doc["m"]} - context.known_metrics)
    if not new:
        return batch
    known = await repository.register_metrics(
        engine, context.device_id, context.product_id, new, cap=cap
    )
    if cache is not None:
        cache.note_metrics(context.device_id, known)
    admitted = CheckedBatch(rejected=list(batch.rejected), base=batch.base, batched=batch.batched)
    for index, doc in zip(batch.indexes, batch.docs, strict=True):
        if doc["m"].keys() <= known:
            admitted.docs.append(doc)
            admitted.indexes.append(index)
        else:
            admitted.rejected.append(
                Rejection(
                    index,
                    "too-many-metrics",
                    f"the device already sends {cap} distinct metrics, the most allowed",
                )
            )
    admitted.rejected.sort(key=lambda r: r.index)
    return admitted
