// One follower of /v1/events/stream per tab, shared by every page. The stream is read with fetch
// (not EventSource) so the token goes in the Authorization header; the API scopes it to the
// caller's tenant. A dropped stream resumes after the last sequence number it delivered.
//
// A page loads its data, then subscribes: an event that arrives between the two would be lost to
// it. So the follower keeps the events it received since the current page began (`pageStarted`,
// called by the router before a page renders) and hands a new subscriber those that match, once,
// right after it subscribes (the latest per resource and type). A subscriber reloads on an event,
// or skips what it already shows by `seq`.

import { accessToken } from './api.js';
import { serverEvents } from './sse.js';

const listeners = new Set();
const statusListeners = new Set();
let controller = null;
let lastSeq = null;
let status = 'off';
const RECENT_MAX = 500;
let recent = [];

function setStatus(s) {
  status = s;
  for (const fn of statusListeners) fn(s);
}

export function onStatus(fn) { statusListeners.add(fn); fn(status); return () => statusListeners.delete(fn); }

/** A new page is about to load its data: from now on, keep what arrives for its subscribers. */
export function pageStarted() { recent = []; }

/** Call fn(event) for each event whose type matches one of `patterns` ('vm.*', 'task.progress'),
 *  starting with those that arrived since the page began loading. */
export function subscribe(patterns, fn) {
  const res = patterns.map((p) => new RegExp(`^${p.replace(/[.]/g, '\\.').replace(/\*/g, '.*')}$`));
  let active = true;
  const entry = (e) => { if (active && res.some((r) => r.test(e.type))) fn(e); };
  // the latest event per resource and type is enough: a burst of task.progress replays as one
  const missed = [...new Map(recent.map((e) => [`${e.type} ${e.resource_id}`, e])).values()];
  listeners.add(entry);
  queueMicrotask(() => {
    for (const e of missed) {
      try { entry(e); } catch (err) { console.error('event listener failed', err); }
    }
  });
  return () => { active = false; listeners.delete(entry); };
}

function dispatch(event) {
  recent.push(event);
  if (recent.length > RECENT_MAX) recent.shift();
  for (const fn of [...listeners]) {
    try { fn(event); } catch (err) { console.error('event listener failed', err); }
  }
}

async function follow(signal) {
  const token = await accessToken();
  if (!token) throw new Error('signed out');
  const q = lastSeq === null ? '' : `?after=${lastSeq}`;
  const resp = await fetch(`/v1/events/stream${q}`, {
    headers: { Authorization: `Bearer ${token}`, Accept: 'text/event-stream' }, signal,
  });
  if (!resp.ok) throw new Error(`event stream: HTTP ${resp.status}`);
  setStatus('live');
  for await (const { data } of serverEvents(resp)) {
    lastSeq = data.seq;
    dispatch(data);
  }
}

export function start() {
  if (controller) return;
  controller = new AbortController();
  const { signal } = controller;
  (async () => {
    while (!signal.aborted) {
      try {
        await follow(signal);
      } catch (err) {
        if (signal.aborted) break;
        if (String(err.message).includes('signed out')) break;
      }
      if (signal.aborted) break;
      setStatus('retrying');
      await new Promise((r) => setTimeout(r, 1500));
    }
    setStatus('off');
  })();
}

export function stop() {
  controller?.abort();
  controller = null;
  lastSeq = null;
  setStatus('off');
}
