// A VM's metrics as uPlot charts, polled every second (GET /v1/vms/{id}/metrics?since=...).

import uPlot from '/vendor/uPlot.esm.js';
import { get } from '../api.js';
import { h, fmtBytes, loadCss } from '../ui.js';

const WINDOW = 300; // samples kept on screen (5 minutes at one per second)

function css(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }

const CHARTS = [
  { key: 'cpu', title: 'CPU', unit: '%', series: [['CPU', '--accent']], fmt: (v) => `${v.toFixed(1)} %` },
  { key: 'mem', title: 'Memory (RSS)', series: [['RSS', '--ok']], fmt: fmtBytes },
  { key: 'disk', title: 'Disk I/O', series: [['read', '--accent'], ['write', '--warn']], fmt: (v) => `${fmtBytes(v)}/s` },
  { key: 'net', title: 'Network', series: [['rx', '--accent'], ['tx', '--ok']], fmt: (v) => `${fmtBytes(v)}/s` },
];

/** Rates between consecutive samples: [[t], [cpu%], [rss], [rd/s], [wr/s], [rx/s], [tx/s]]. */
function derive(samples) {
  const out = { t: [], cpu: [], mem: [], rd: [], wr: [], rx: [], tx: [] };
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1];
    const b = samples[i];
    const dt = b.time - a.time;
    if (dt <= 0) continue;
    const rate = (k) => Math.max(0, (b[k] - a[k]) / dt);
    out.t.push(b.time);
    out.cpu.push(100 * rate('cpu_time_s'));
    out.mem.push(b.rss_bytes);
    out.rd.push(rate('disk_read_bytes'));
    out.wr.push(rate('disk_write_bytes'));
    out.rx.push(rate('net_rx_bytes'));
    out.tx.push(rate('net_tx_bytes'));
  }
  return out;
}

function makePlot(spec, el, width) {
  const text = css('--text');
  const grid = css('--border');
  const axis = { stroke: text, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid } };
  return new uPlot({
    width, height: 150,
    legend: { show: false },
    cursor: { show: false },
    // a floor on the range keeps an idle series from labelling its axis with fractions of a byte
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(max * 1.15, spec.key === 'cpu' ? 10 : 4096)] } },
    axes: [axis, { ...axis, size: 70, values: (u, vals) => vals.map((v) => spec.fmt(v)) }],
    series: [{}, ...spec.series.map(([label, color]) => ({ label, stroke: css(color), width: 2, points: { show: false } }))],
  }, [[], ...spec.series.map(() => [])], el);
}

export function mountCharts(container, vmId, signal) {
  loadCss('/vendor/uPlot.min.css');
  let samples = [];
  let since = null;
  const boxes = CHARTS.map((spec) => {
    const value = h('span', { class: 'value' });
    const plotEl = h('div', { role: 'img', 'aria-label': `${spec.title} over the last minutes` });
    const box = h('figure', { class: 'chart', style: { margin: 0 } }, h('h3', {}, `${spec.title} `, value), plotEl);
    container.append(box);
    return { spec, value, plotEl, plot: null };
  });
  const width = (b) => Math.max(240, b.plotEl.parentElement.clientWidth - 4);
  const build = () => {
    for (const b of boxes) {
      b.plot?.destroy();
      b.plot = makePlot(b.spec, b.plotEl, width(b));
    }
  };
  const draw = () => {
    const d = derive(samples);
    const data = { cpu: [d.cpu], mem: [d.mem], disk: [d.rd, d.wr], net: [d.rx, d.tx] };
    for (const b of boxes) {
      const series = data[b.spec.key];
      b.plot.setData([d.t, ...series]);
      const last = series.map((s) => s.at(-1)).filter((v) => v !== undefined);
      b.value.textContent = last.length ? last.map((v, i) => `${b.spec.series[i][0]} ${b.spec.fmt(v)}`).join(' · ') : 'no samples yet';
    }
  };
  build();
  let timer = null;
  const poll = async () => {
    try {
      const q = since === null ? '' : `?since=${since}`;
      const page = await get(`/v1/vms/${vmId}/metrics${q}`, { signal });
      if (page.samples.length) {
        samples = samples.concat(page.samples).slice(-WINDOW - 1);
        since = samples.at(-1).time;
      }
      draw();
    } catch { /* a missed second is drawn with the next */ }
    if (!signal.aborted) timer = setTimeout(poll, 1000);
  };
  poll();
  const resize = new ResizeObserver(() => { for (const b of boxes) b.plot?.setSize({ width: width(b), height: 150 }); });
  resize.observe(container);
  const retheme = () => { build(); draw(); };
  window.addEventListener('novacron:theme', retheme);
  return () => {
    clearTimeout(timer);
    resize.disconnect();
    window.removeEventListener('novacron:theme', retheme);
    for (const b of boxes) b.plot?.destroy();
  };
}
