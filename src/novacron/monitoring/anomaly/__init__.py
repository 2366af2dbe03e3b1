"""Streaming anomaly detection on metric series, and its NAB benchmark scorer.

`StreamingDetector` scores each new sample of one series in [0, 1] before the next one is seen;
`DetectorBank` keeps one detector per series key with a bound on the number of series.
`novacron.monitoring.anomaly.scoring` implements the Numenta Anomaly Benchmark rules and
`python -m novacron.monitoring.anomaly.nab` runs both over NAB-format files.
"""

from novacron.monitoring.anomaly.detector import DetectorBank, DetectorConfig, StreamingDetector

__all__ = ["DetectorBank", "DetectorConfig", "StreamingDetector"]
