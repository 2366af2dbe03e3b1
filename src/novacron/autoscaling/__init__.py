"""Autoscaling: scaling groups, their policies, load forecasts, the replay, cost and capacity planning.

`policies` holds one pure decision function per policy kind, `forecast` the per-series model
choice by rolling-origin backtest, and `replay` the group simulator that runs a load trace through
the same policy code (`novacron autoscale replay`).
"""
