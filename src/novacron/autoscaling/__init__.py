"""Autoscaling: scaling groups, policies, forecasting, cost and capacity planning."""
