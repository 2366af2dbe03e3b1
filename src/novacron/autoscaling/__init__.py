"""Autoscaling: scaling groups, their policies, load forecasts, the replay, cost and capacity planning.

`groups` (the service), `tasks` and `reconcile` converge scaling groups to their desired count;
`policies` holds one pure decision function per policy kind, `forecast` the per-series model
choice by rolling-origin backtest, and `replay` the group simulator that runs a load trace through
the same policy code (`novacron autoscale replay`); `cost`, `rightsizing`, `roi` and `capacity`
price and plan from the platform's own data.
"""
