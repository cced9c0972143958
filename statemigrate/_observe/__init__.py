"""What an operator sees of snapshots, restores and handoffs: metrics and restore status.

The instruments are defined once (:mod:`._instruments`), with no metrics library
behind them; the runtime and the handoff report through them. A backend
(:mod:`._backends`: prometheus_client, the OpenTelemetry metrics API) is plugged in
with one call; until then reporting costs one ``None`` check. The restore status
(:mod:`._status`) is what a readiness probe reads.
"""
