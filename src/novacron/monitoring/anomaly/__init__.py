"""Streaming anomaly detection on metric series, and its NAB benchmark scorer.

`StreamingDetector` scores each new sample of one series in [0, 1] before the next one is seen;
`AnomalyMonitor` keeps one detector per series key (idle series evicted) and reports the samples
whose score crosses the alert threshold.
`novacron.monitoring.anomaly.scoring` implements the Numenta Anomaly Benchmark rules and
`python -m novacron.monitoring.anomaly.nab` runs both over NAB-format files.
"""

from novacron.monitoring.anomaly.detector import ALERT_THRESHOLD, DetectorConfig, StreamingDetector
from novacron.monitoring.anomaly.stream import AnomalyCrossing, AnomalyMonitor

__all__ = [
    "ALERT_THRESHOLD",
    "AnomalyCrossing",
    "AnomalyMonitor",
    "DetectorConfig",
    "StreamingDetector",
]
