"""The streaming anomaly detector: one O(1) update per sample, a score in [0, 1] before the next.

The method is an ensemble of three online detectors, a burst boost and an alert refractory period:
a robust seasonal envelope (is the value outside what was ever seen at this time of day?), a
seasonal drift (has the smoothed value left the baseline of this time of day?) and a stopped
signal (has one value repeated for longer than ever before?), combined by max;
the odds of the score are then raised by the number of recent excursions, so that a persistent
change outranks a lone blip. It was chosen by measurement on the NAB corpus (standard profile,
34 series; the other profiles and leave-one-category-out are in docs/benchmarks.md):

- envelope alone, refractory 150 samples: 65.1; with a refractory of 24 samples: 67.9;
- + drift: 71.2 (71.6 with a hard refractory, which hid a level shift coming right after a small
  excursion, so a worse score now passes through it). The drift finds the daily peak that fails
  to come or comes lower, which the envelope cannot see (a value inside it); on the real series
  of this corpus it neither adds a detection nor a false positive at drift_z = 6;
- + burst boost: 73.0; 70.2-73.4 over burst_gain 0.5-4 and burst_memory 0.8-0.95. Of the
  first excursions after a quiet spell, 20 of 61 in a labelled window were
  followed by another within 12 samples, and 11 of 101 outside one. Capping the boosted score
  at 1 instead of multiplying its odds scored 73.3 but made strong scores tie at 1;
- + a refractory that lets through only a score with twice the alert's odds:
  74.1; 73.9-74.6 for a margin from 1.5 to infinity (with a margin of 1 the boosted scores of
  a burst passed one after the other); 73.5 / 74.1 / 72.8 for refractory 12 / 24 / 48;
- + the stopped signal (this detector): 75.55 (LOCO 65.02, 72.10 with the default burst gain;
  before it 63.56 and 70.64); it finds the disk writes that stop and adds 4 false detections.
  The same for min_run 12-24 and run_record 1.1 (75.39 at 1.2, 73.7 at 1.5: the record must
  be a record, not twice one); a min_run of 2 or 6 added short runs on integer-valued series
  (74.1 and 75.2); the score it gives (0.1 to 0.9) does not change the result. Scoring the run
  on every sample past the record (1 - record / run) instead of once: 71.3;
- tried and not kept: a prediction-error z-score through Numenta's anomaly likelihood 31; a
  contextual novelty of quantised transitions (as CAD OSE) 41, with it 42; the drift without
  the envelope 36; the envelope excess calibrated as a tail probability of the series' past
  excesses 71.3-71.8 before the burst boost (no clear gain for its state); scores damped while
  the envelope is young 67-70; a second envelope on the smoothed series 68-72 depending on its
  smoothing (no plateau, so a fit to these files); a non-seasonal envelope beside the seasonal
  one 53-59; after the refractory margin, a spike-density change (binomial z of the short-term
  rate of large residuals against the long-term rate) 57-73: it found the denser spikes and
  raised false positives on every spiky real series; after the stopped signal, a rate
  normalisation (the odds also divided by 1 + gain * a long-term decayed count of the samples
  that scored above 0, so that a series with many excursions alerts less) 72.3-75.7 over
  memory 0.98-0.999 and gain 0.01-0.3: low_FP up to 66.4 only where standard fell to 74.3,
  and no setting changed standard by more than 0.1 up.

1. Envelope. The day is cut into `slot_seconds` slots. Each slot keeps the highest and lowest
   value seen at that time of day, both pulled slowly back towards the slot's moving mean, so
   that an envelope learnt weeks ago fades. A sample is compared with the envelope of its slot
   and its `neighbours` slots either side (daily jobs drift by a few minutes). Series without
   timestamps, and slots not yet seen, use one global envelope of the same kind instead. The
   distance by which the sample leaves the envelope, relative to the envelope's width,
   saturates to a score: excess / (excess + width) is 0.5 when the sample leaves the envelope
   by its own width. A value that recurs every day at the same time is inside the envelope and
   scores 0; a new level, a spike at an unusual hour is not.
2. Drift. Each slot also keeps a baseline (a moving mean at that time of day). The residual of
   a sample from its slot's baseline is smoothed and measured in mean absolute residuals (a
   robust z); from `drift_z` up it scores z / (z + drift_z), so at least 0.5.
3. Stopped signal. The detector counts how many times the last value repeated; a run longer by
   `run_record` than every earlier run (and at least `min_run` samples) scores STOPPED_SCORE
   once. The max of 1, 2 and 3 is the sample's score before 4 and 5.
4. Burst boost. The odds score / (1 - score) are multiplied by 1 + burst_gain * n, n the count
   of the previous samples that scored above 0, decayed by `burst_memory` per sample.
5. Refractory period. A sample scoring at least `alert` starts a period of `refractory` samples
   in which a score whose odds are not above `refractory_margin` times the alert's is reported
   as 0, so that one incident yields one alert (NAB counts the first detection in a window and
   charges every false one) while a clearly worse one still shows.

The sample updates the detector only after it is scored, and nothing after it is read: there is
no look-ahead. A detector holds 4 floats per slot (96 for hourly slots) and a few more. In its
first day the envelope has not seen every time of day and excursions come in bursts, so scores
are high: `stream.AnomalyMonitor` reports 0 for a series' first day.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

DAY_SECONDS = 86_400
# An alert: about the threshold that NAB's standard profile chose for this detector on the NAB
# corpus (0.066); also where the refractory period starts.
ALERT_THRESHOLD = 0.06
# The score of a series that stopped changing: as sure as a sample that leaves the envelope by
# its own width (a fixed score, so that the alert threshold does not decide whether it shows).
STOPPED_SCORE = 0.5


@dataclass(frozen=True)
class DetectorConfig:
    """The method's parameters, the same for every series (none is fitted to a file).

    Attributes:
        slot_seconds: the width of a time-of-day slot of the seasonal envelope.
        neighbours: the slots either side whose envelope also covers a sample.
        decay: how fast a slot's envelope shrinks back towards its mean, per sample in the slot.
        level_rate: the same for the global envelope and moving mean, per sample; also the rate
            of the mean absolute residual that scales the drift.
        baseline_rate: how fast a slot's baseline (the expected value at that time of day)
            follows the samples, per sample in the slot.
        drift_smoothing: the weight of a new residual in the smoothed residual (the drift).
        drift_z: the drift, in mean absolute residuals, from which it scores (then >= 0.5).
        burst_gain: how much each recent scoring sample raises a score: it is multiplied by
            1 + burst_gain * (the decayed count of the previous samples that scored above 0).
        burst_memory: the factor by which that count decays per sample.
        alert: the score from which a sample is an alert and starts the refractory period.
        refractory: the number of samples after an alert during which a score whose odds
            (score / (1 - score)) are not above `refractory_margin` times the alert's is
            reported as 0 (one incident, one alert; a clearly worse one still shows).
        refractory_margin: see `refractory`.
        warmup: the number of first samples scored 0 while the envelope forms.
        run_record: how much longer than the longest earlier run of one repeated value a run
            must last to score as a stopped signal.
        min_run: the fewest samples of one repeated value that score as a stopped signal.
    """

    slot_seconds: int = 3600
    neighbours: int = 2
    decay: float = 0.001
    level_rate: float = 0.002
    baseline_rate: float = 0.01
    drift_smoothing: float = 0.05
    drift_z: float = 6.0
    burst_gain: float = 1.0
    burst_memory: float = 0.9
    alert: float = ALERT_THRESHOLD
    refractory: int = 24
    refractory_margin: float = 2.0
    warmup: int = 150
    run_record: float = 1.1
    min_run: int = 12


class StreamingDetector:
    """The anomaly detector of one series: `update(value, timestamp)` scores one sample in [0, 1]."""

    __slots__ = (
        "_cfg",
        "_slots",
        "_hi",
        "_lo",
        "_mean",
        "_base",
        "_n",
        "_level",
        "_ghi",
        "_glo",
        "_drift",
        "_spread",
        "_quiet",
        "_pass_above",
        "_burst",
        "_near_slot",
        "_near_hi",
        "_near_lo",
        "_run_value",
        "_run",
        "_longest_run",
    )

    def __init__(self, config: DetectorConfig | None = None) -> None:
        cfg = config or DetectorConfig()
        if cfg.slot_seconds <= 0 or DAY_SECONDS % cfg.slot_seconds:
            raise ValueError("slot_seconds must divide a day")
        self._cfg = cfg
        self._slots = DAY_SECONDS // cfg.slot_seconds
        self._hi: list[float | None] = [None] * self._slots
        self._lo: list[float] = [0.0] * self._slots
        self._mean: list[float] = [0.0] * self._slots
        self._base: list[float] = [0.0] * self._slots
        self._n = 0
        self._level = 0.0
        self._ghi = 0.0
        self._glo = 0.0
        self._drift = 0.0
        self._spread = 0.0
        self._quiet = 0
        self._pass_above = 0.0
        self._burst = 0.0
        self._near_slot = -1
        self._near_hi = -math.inf
        self._near_lo = math.inf
        self._run_value = math.nan
        self._run = 0
        self._longest_run = 0

    def update(self, value: float, timestamp: float | None = None) -> float:
        """Take the next sample (value, Unix time in seconds) and return its anomaly score.

        Without a timestamp the series is treated as having no daily season.
        """
        cfg = self._cfg
        x = float(value)
        if not math.isfinite(x):
            return 0.0
        slot = -1 if timestamp is None else int(timestamp // cfg.slot_seconds) % self._slots
        if self._n == 0:
            self._level = self._ghi = self._glo = x
        raw = max(self._excess(x, slot), self._drift_score(x, slot), self._stopped(x))
        self._learn(x, slot)
        self._n += 1
        if self._n <= cfg.warmup:
            return 0.0
        if 0.0 < raw < 1.0:  # the odds raw / (1 - raw) times 1 + gain * recent excursions
            boost = 1.0 + cfg.burst_gain * self._burst
            raw = raw * boost / (1.0 + raw * (boost - 1.0))
        self._burst = self._burst * cfg.burst_memory + (1.0 if raw > 0.0 else 0.0)
        if self._quiet > 0:
            self._quiet -= 1
            if raw <= self._pass_above:
                return 0.0
        if raw >= cfg.alert:
            self._quiet = cfg.refractory
            margin = cfg.refractory_margin  # the score whose odds are `margin` times the alert's
            self._pass_above = margin * raw / (1.0 - raw + margin * raw)
        return raw

    def _stopped(self, x: float) -> float:
        """STOPPED_SCORE once when the current run of one repeated value becomes a record.

        A series that stops changing (writes that stop, a stuck sensor) repeats one value. The
        run scores once, when it outlasts the longest earlier run by `run_record` (and is at
        least `min_run` long); a series constant from its start has no earlier run and never does.
        """
        if x == self._run_value:
            self._run += 1
        else:
            self._longest_run = max(self._longest_run, self._run)
            self._run_value = x
            self._run = 1
        record = max(self._cfg.min_run, math.ceil(self._longest_run * self._cfg.run_record))
        if self._longest_run == 0 or self._run != record:
            return 0.0
        return STOPPED_SCORE

    def _envelope(self, slot: int) -> tuple[float, float]:
        """The (high, low) envelope around `slot`: its own and its neighbours', else the global one.

        Only a sample in a slot changes that slot's envelope, so the neighbours' part is kept
        while the samples stay in `slot` and computed again when they move to another slot.
        """
        if slot < 0:
            return self._ghi, self._glo
        if slot != self._near_slot:
            self._near_slot = slot
            self._near_hi, self._near_lo = self._neighbours_envelope(slot)
        hi, lo = self._near_hi, self._near_lo
        own = self._hi[slot]
        if own is not None:
            hi = max(hi, own)
            lo = min(lo, self._lo[slot])
        if hi == -math.inf:
            return self._ghi, self._glo
        return hi, lo

    def _neighbours_envelope(self, slot: int) -> tuple[float, float]:
        """The (high, low) envelope of the slots either side of `slot`; (-inf, inf) if none seen."""
        hi = -math.inf
        lo = math.inf
        for k in range(1, self._cfg.neighbours + 1):
            for j in ((slot - k) % self._slots, (slot + k) % self._slots):
                h = self._hi[j]
                if h is not None and j != slot:
                    hi = max(hi, h)
                    lo = min(lo, self._lo[j])
        return hi, lo

    def _excess(self, x: float, slot: int) -> float:
        """How far `x` leaves the envelope, relative to its width, saturated to [0, 1)."""
        hi, lo = self._envelope(slot)
        excess = max(x - hi, lo - x)
        if excess <= 0.0:
            return 0.0
        width = hi - lo
        if width <= 0.0:
            width = 1e-9 * max(1.0, abs(hi))
        return excess / (excess + width)

    def _drift_score(self, x: float, slot: int) -> float:
        """The drift of `x` from the baseline of its time of day, once it passes `drift_z`.

        The residual (sample minus the slot's baseline, or the moving mean without a season) is
        smoothed, so that one noisy sample does not count but a daily pattern that fails to
        appear, or a shift inside the envelope, does; it is measured in mean absolute residuals
        and scores z / (z + drift_z), at least 0.5, from drift_z up.
        """
        cfg = self._cfg
        known = slot >= 0 and self._hi[slot] is not None
        residual = x - (self._base[slot] if known else self._level)
        self._drift += cfg.drift_smoothing * (residual - self._drift)
        if self._n > 0:
            self._spread += cfg.level_rate * (abs(residual) - self._spread)
        if self._spread <= 0.0 or self._n <= cfg.warmup:
            return 0.0
        z = abs(self._drift) / self._spread
        return z / (z + cfg.drift_z) if z > cfg.drift_z else 0.0

    def _learn(self, x: float, slot: int) -> None:
        """Move the global and the slot's envelope to include `x`, and shrink them a little."""
        rate = self._cfg.level_rate
        self._level += rate * (x - self._level)
        self._ghi = max(x, self._ghi - rate * (self._ghi - self._level))
        self._glo = min(x, self._glo + rate * (self._level - self._glo))
        if slot < 0:
            return
        hi = self._hi[slot]
        if hi is None:
            self._hi[slot] = self._lo[slot] = self._mean[slot] = self._base[slot] = x
            return
        d = self._cfg.decay
        self._base[slot] += self._cfg.baseline_rate * (x - self._base[slot])
        mean = self._mean[slot] = self._mean[slot] + d * (x - self._mean[slot])
        self._hi[slot] = max(x, hi - d * (hi - mean))
        self._lo[slot] = min(x, self._lo[slot] + d * (mean - self._lo[slot]))


def score_series(
    values: Iterable[float],
    timestamps: Iterable[float] | None = None,
    config: DetectorConfig | None = None,
) -> list[float]:
    """The scores of a whole series fed one sample at a time to a fresh detector."""
    det = StreamingDetector(config)
    if timestamps is None:
        return [det.update(v) for v in values]
    return [det.update(v, t) for v, t in zip(values, timestamps, strict=True)]
