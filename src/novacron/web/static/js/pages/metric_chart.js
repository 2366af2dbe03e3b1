// Charts of the chart API (/v1/vms/{id}/metrics?range=, /v1/hosts/{id}/metrics?range=) and of PromQL
// range queries, drawn with uPlot: a range picker, a legend naming every line, a hover readout
// (the legend shows the values under the cursor) and values in their units (cores, MiB/GiB, B/s).
// The live range (5 min) follows the chart's event stream (.../metrics/live): the whole chart, then
// each second only the new points, which are merged in and the oldest trimmed.

import uPlot from '/vendor/uPlot.esm.js';
import { accessToken, get } from '../api.js';
import { h, clear, fmtBytes, loadCss, errorBox } from '../ui.js';
import { serverEvents } from '../sse.js';

/** The chart API's ranges: [value, button text, seconds]. */
export const RANGES = [['5m', 'Live 5 min', 300], ['1h', '1 h', 3600], ['24h', '24 h', 86400], ['7d', '7 d', 604800], ['30d', '30 d', 2592000]];
/** How often a live (5 min) chart is read again when its event stream is refused. */
const LIVE_REFRESH_MS = 2000;
/** A dropped live stream is followed again after this long, doubled on each failure up to the max. */
const RETRY_MS = 1000;
const MAX_RETRY_MS = 15000;
/** A longer range is read again this often (its step is a minute or more). */
const SLOW_REFRESH_MS = 60000;
const COLORS = ['--accent', '--warn', '--ok', '--bad', '--info', '--idle'];
const HEIGHT = 170;

function css(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }

function num(v, digits = 2) { return Number(v).toFixed(Math.abs(v) >= 100 ? 0 : digits); }

/** A value in its unit, as people read it: 0.25 cores, 96.0 MiB, 1.2 KiB/s. */
export function fmtUnit(unit, v) {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  switch (unit) {
    case 'bytes': return fmtBytes(v);
    case 'bytes/s': return `${fmtBytes(v)}/s`;
    case 'cores': return `${num(v)} cores`;
    case 'percent': return `${num(v, 1)} %`;
    case 'seconds': return `${num(v)} s`;
    case '': case 'count': case 'load': return num(v);
    default: return `${num(v)} ${unit}`;
  }
}

/** A floor for the y axis, so an idle line is not labelled in fractions of a byte. */
const FLOOR = { bytes: 1024 * 1024, 'bytes/s': 1024, cores: 0.1, percent: 1 };

/** Lines as uPlot data: one time axis (the union of every line's points), null where a line has none. */
export function toColumns(lines) {
  const times = [...new Set(lines.flatMap((l) => l.points.map((p) => p[0])))].sort((a, b) => a - b);
  const index = new Map(times.map((t, i) => [t, i]));
  return [times, ...lines.map((l) => {
    const col = new Array(times.length).fill(null);
    for (const [t, v] of l.points) col[index.get(t)] = v;
    return col;
  })];
}

/**
 * One chart: a titled figure with a uPlot plot whose legend names each line and, under the cursor,
 * shows each line's value. `lines`: [{label, points: [[t, v]...]}], all in `unit`.
 */
export class LineChart {
  constructor(container, { title, unit, area = false, testid }) {
    loadCss('/vendor/uPlot.min.css');
    this.unit = unit;
    this.area = area;
    this.labels = null;
    this.plotEl = h('div', { role: 'img', 'aria-label': `${title}, in ${unit || 'values'}` });
    this.latest = h('span', { class: 'value' });
    this.el = h('figure', { class: 'chart', 'data-chart': testid || title, style: { margin: 0 } },
      h('h3', {}, `${title} `, this.latest), this.plotEl);
    container.append(this.el);
  }

  width() { return Math.max(240, (this.el.clientWidth || 300) - 4); }

  build(labels) {
    this.plot?.destroy();
    const text = css('--text');
    const grid = css('--border');
    const axis = { stroke: text, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid } };
    const fmt = (v) => fmtUnit(this.unit, v);
    const floor = FLOOR[this.unit] ?? 1;
    this.labels = labels;
    this.plot = new uPlot({
      width: this.width(),
      height: HEIGHT,
      legend: { show: true, live: true },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: (u, min, max) => [Math.min(0, min ?? 0), Math.max((max ?? 0) * 1.15, floor)] } },
      axes: [axis, { ...axis, size: 80, values: (u, vals) => vals.map(fmt) }],
      series: [{ label: 'Time' }, ...labels.map((label, i) => {
        const color = css(COLORS[i % COLORS.length]);
        return { label, stroke: color, width: 2, points: { show: false }, value: (u, v) => fmt(v), fill: this.area ? `${color}33` : undefined, spanGaps: false };
      })],
    }, [[], ...labels.map(() => [])], this.plotEl);
  }

  /** Draw `lines`; rebuilds the plot when the set of lines changed. */
  set(lines) {
    const labels = lines.map((l) => l.label);
    if (!this.plot || labels.join('\n') !== this.labels.join('\n')) this.build(labels);
    const data = toColumns(lines);
    this.plot.setData(data);
    this.el.dataset.lastTime = String(data[0].at(-1) ?? '');
    const last = lines.map((l) => `${l.label} ${fmtUnit(this.unit, l.points.at(-1)?.[1])}`);
    this.latest.textContent = lines.length && lines.some((l) => l.points.length) ? last.join(' · ') : 'no samples yet';
  }

  resize() { this.plot?.setSize({ width: this.width(), height: HEIGHT }); }

  retheme() { if (this.labels) { const data = this.plot.data; this.build(this.labels); this.plot.setData(data); } }

  destroy() { this.plot?.destroy(); }
}

/** The range picker: a labelled group of toggle buttons; calls `onPick(range)` on a change. */
export function rangePicker(current, onPick) {
  const buttons = RANGES.map(([value, text]) => h('button', {
    type: 'button', 'data-range': value, 'aria-pressed': String(value === current),
    onclick: () => {
      for (const b of buttons) b.setAttribute('aria-pressed', String(b.dataset.range === value));
      onPick(value);
    },
  }, text));
  return h('div', { class: 'range-picker', role: 'group', 'aria-label': 'Time range' }, buttons);
}

/** The series of a chart API answer grouped into charts: `groups` = [{title, unit, names: [...]}].
 * A series belongs to the group naming it, or, split by a label (`cpu_user` of `cpu` by mode), to
 * the group naming its prefix. */
function grouped(answer, groups) {
  const named = new Set(groups.flatMap((g) => g.names));
  const baseOf = (name) => (named.has(name) ? name : [...named].find((n) => name.startsWith(`${n}_`)));
  return groups.map((g) => answer.series.filter((s) => g.names.includes(baseOf(s.name))).map((s) => {
    const split = s.name.slice(baseOf(s.name).length + 1);
    return { label: split ? `${s.title}: ${split}` : s.title, points: s.points };
  }));
}

function stepText(s) { return s >= 3600 ? `${s / 3600} h` : s >= 60 ? `${s / 60} min` : `${s} s`; }

/** The live stream answered with an error (HTTP `status`): the chart is polled instead. */
class StreamRefused extends Error {
  constructor(status) { super(`live chart: HTTP ${status}`); this.status = status; }
}

/** A `points` frame merged into a chart answer: each line's points by time (a newer one appended,
 * one of a time already there replaced: a late sample revised it), then what is before the frame's
 * start trimmed. */
export function mergePoints(answer, frame) {
  const fresh = new Map(frame.series.map((s) => [s.name, s.points]));
  for (const line of answer.series) {
    const points = line.points;
    for (const p of fresh.get(line.name) || []) {
      let i = points.length - 1;
      while (i >= 0 && points[i][0] > p[0]) i--;
      if (i >= 0 && points[i][0] === p[0]) points[i] = p;
      else points.splice(i + 1, 0, p);
    }
    const old = points.findIndex((p) => p[0] >= frame.start);
    points.splice(0, old < 0 ? points.length : old);
  }
  return { ...answer, start: frame.start, end: frame.end };
}

/** Follow `${path}/live` until it ends, calling `draw(answer)` on each frame; StreamRefused when
 * the server answers with an error. The token goes in the header (not EventSource), as in live.js. */
async function followLive(path, signal, draw) {
  const token = await accessToken();
  if (!token) throw new StreamRefused(401);
  const resp = await fetch(`${path}/live`, {
    headers: { Authorization: `Bearer ${token}`, Accept: 'text/event-stream' }, signal,
  });
  if (!resp.ok) throw new StreamRefused(resp.status);
  let answer = null;
  for await (const { event, data } of serverEvents(resp)) {
    if (event === 'chart') answer = data;
    else if (event === 'points' && answer) answer = mergePoints(answer, data);
    else continue;
    draw(answer);
  }
}

function pause(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

/**
 * A subject's charts from the chart API: `path` (e.g. `/v1/vms/<id>/metrics`), `groups` as above.
 * Live mode (5 min) follows the chart's event stream, and reads the chart every couple of seconds
 * if the stream is refused; longer ranges are read again every minute. Returns the cleanup function.
 */
export function mountChartSet(container, path, groups, signal, { range = '5m' } = {}) {
  let current = range;
  const status = h('p', { class: 'muted', 'aria-live': 'polite', 'data-testid': 'chart-step' });
  const problem = h('div');
  const grid = h('div', { class: 'charts' });
  const charts = groups.map((g) => new LineChart(grid, { title: g.title, unit: g.unit, area: g.area, testid: g.key }));
  clear(container, h('div', { class: 'chart-bar' }, rangePicker(current, (r) => { current = r; reload(); }), status), problem, grid);
  let timer = null;
  let generation = 0;
  let stream = null;
  const show = (answer, how) => {
    clear(problem);
    grouped(answer, groups).forEach((lines, i) => charts[i].set(lines));
    status.textContent = `${RANGES.find((r) => r[0] === answer.range)[1]}, one point every ${stepText(answer.step_s)}${how}`;
    container.dataset.range = answer.range;
    container.dataset.step = String(answer.step_s);
  };
  const poll = async (mine) => {
    try {
      const answer = await get(`${path}?range=${current}`, { signal });
      if (mine !== generation || signal.aborted) return;
      show(answer, current === '5m' ? `, updating every ${LIVE_REFRESH_MS / 1000} s` : '');
      container.dataset.live = current === '5m' ? 'poll' : '';
    } catch (err) {
      if (signal.aborted || mine !== generation) return;
      clear(problem, errorBox(err));
    }
    if (!signal.aborted && mine === generation) timer = setTimeout(() => poll(mine), current === '5m' ? LIVE_REFRESH_MS : SLOW_REFRESH_MS);
  };
  const follow = async (mine, stop) => {
    let wait = RETRY_MS;
    while (mine === generation && !stop.aborted) {
      let drew = false;
      try {
        await followLive(path, stop, (answer) => {
          if (mine !== generation) return;
          show(answer, ', updating live');
          container.dataset.live = 'stream';
          drew = true;
        });
      } catch (err) {
        if (mine !== generation || stop.aborted) return;
        if (err instanceof StreamRefused) { poll(mine); return; }
      }
      if (mine !== generation || stop.aborted) return;
      // the stream ended (the server's time limit) or dropped: follow it again, soon
      if (drew) wait = RETRY_MS;
      status.textContent = 'Live 5 min, reconnecting…';
      await pause(wait, stop);
      if (!drew) wait = Math.min(wait * 2, MAX_RETRY_MS);
    }
  };
  const reload = () => {
    const mine = ++generation;
    clearTimeout(timer);
    stream?.abort();
    stream = null;
    if (current !== '5m') { poll(mine); return; }
    stream = new AbortController();
    follow(mine, AbortSignal.any([signal, stream.signal]));
  };
  reload();
  const resize = new ResizeObserver(() => charts.forEach((c) => c.resize()));
  resize.observe(grid);
  const retheme = () => charts.forEach((c) => c.retheme());
  window.addEventListener('novacron:theme', retheme);
  return () => {
    generation++;
    clearTimeout(timer);
    stream?.abort();
    resize.disconnect();
    window.removeEventListener('novacron:theme', retheme);
    charts.forEach((c) => c.destroy());
  };
}
