/*
 * The scatter-saga console page: lists sagas by state, shows one saga (its statechart drawn
 * as SVG from the graph the coordinator gives, each step colored by status, the step
 * timeline, errors and dead letter), and commands retry and resolve behind a confirmation.
 * Live: the saga events arrive as Server-Sent Events from /api/events. No library.
 */
'use strict';

const STATUS_COLORS = {
  pending: '#e5e7eb',
  dispatched: '#bfdbfe',
  committed: '#bbf7d0',
  failed: '#fecaca',
  inDoubt: '#fde68a',
  rejected: '#fca5a5',
  compensating: '#fed7aa',
  compensated: '#ddd6fe',
  compensationFailed: '#f87171',
};
const STATE_COLORS = { dispatching: '#bfdbfe', gathering: '#bfdbfe', compensating: '#fed7aa', compensationFailed: '#f87171', committed: '#86efac', compensated: '#c4b5fd' };
const SVG = 'http://www.w3.org/2000/svg';

const ui = { tab: 'all', selected: undefined, view: undefined, refreshTimer: undefined, listTimer: undefined };

/** An element: h('td', { class: 'x' }, 'text', child). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== undefined && c !== null && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}
/** An SVG element. */
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs ?? {})) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  for (const c of children.flat()) if (c !== undefined && c !== null) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}
function badge(status) {
  return h('span', { class: `badge st-${status}`, 'data-status': status }, status);
}
function ms(n) {
  if (n < 1000) return `${Math.round(n)} ms`;
  if (n < 60_000) return `${(n / 1000).toFixed(n < 10_000 ? 2 : 1)} s`;
  return `${Math.floor(n / 60_000)} min ${Math.round((n % 60_000) / 1000)} s`;
}
function errText(e) {
  return e ? `${e.code}: ${e.message}` : '';
}

async function api(path, body) {
  const init = body === undefined ? {} : { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
  const res = await fetch(path, init);
  const data = await res.json().catch(() => ({ error: { code: 'CONSOLE_ERROR', message: `HTTP ${res.status}` } }));
  return { status: res.status, data };
}

// ---- the list ---------------------------------------------------------------------------

async function loadList() {
  const list = document.getElementById('list');
  const note = document.getElementById('list-note');
  const q = document.getElementById('q').value.trim();
  if (ui.tab === 'dead-letters' && q === '') return loadDeadLetters();
  const path = q !== '' ? `/api/sagas?q=${encodeURIComponent(q)}` : `/api/sagas${ui.tab === 'all' ? '' : `?status=${ui.tab}`}`;
  const { status, data } = await api(path);
  if (status !== 200) {
    note.textContent = errText(data.error);
    note.className = 'note error';
    return;
  }
  note.className = 'note';
  note.textContent = q !== '' ? (data.sagas.length === 0 ? `no saga '${q}'` : `saga '${q}'`) : `${data.sagas.length}${data.truncated ? '+' : ''} ${ui.tab === 'all' ? 'running, parked or lately ended' : ui.tab} saga(s)`;
  const rows = data.sagas.map((x) =>
    h(
      'tr',
      { class: `saga-row${x.sagaId === ui.selected ? ' sel' : ''}`, 'data-saga-id': x.sagaId, onclick: () => select(x.sagaId) },
      h('td', { class: 'mono' }, x.sagaId),
      h('td', {}, `${x.saga}@${x.version}`),
      h('td', {}, badge(x.status)),
    ),
  );
  list.replaceChildren(h('table', { id: 'saga-list' }, h('tr', {}, h('th', {}, 'saga id'), h('th', {}, 'saga'), h('th', {}, 'status')), rows));
}

async function loadDeadLetters() {
  const list = document.getElementById('list');
  const note = document.getElementById('list-note');
  const { status, data } = await api('/api/dead-letters');
  if (status !== 200) {
    note.textContent = errText(data.error);
    note.className = 'note error';
    return;
  }
  note.className = 'note';
  note.textContent = `${data.deadLetters.length} parked saga(s)`;
  list.replaceChildren(
    ...data.deadLetters.map((d) =>
      h(
        'div',
        { class: 'dead-letter', 'data-saga-id': d.sagaId },
        h('table', {}, h('tr', { class: `saga-row${d.sagaId === ui.selected ? ' sel' : ''}`, 'data-saga-id': d.sagaId, onclick: () => select(d.sagaId) }, h('td', { class: 'mono' }, d.sagaId), h('td', {}, `${d.saga}@${d.version}`), h('td', {}, `parked ${d.timesParked}x`))),
        h(
          'ul',
          { class: 'effects' },
          d.remaining.map((r) =>
            h(
              'li',
              { 'data-step': r.stepId },
              h('b', {}, r.stepId),
              ` on ${r.worker} · ${r.why}${r.inDoubt ? ' · in doubt' : ''} · ${r.attempts} undo attempt(s)`,
              h('div', { class: 'mono' }, `key ${r.idempotencyKey}`),
              r.lastError ? h('div', { class: 'error' }, errText(r.lastError)) : null,
            ),
          ),
        ),
      ),
    ),
  );
}

function scheduleList() {
  clearTimeout(ui.listTimer);
  ui.listTimer = setTimeout(() => void loadList(), 300);
}

// ---- one saga ---------------------------------------------------------------------------

function select(sagaId) {
  ui.selected = sagaId;
  history.replaceState(null, '', `#saga=${encodeURIComponent(sagaId)}`);
  for (const r of document.querySelectorAll('tr.saga-row')) r.classList.toggle('sel', r.dataset.sagaId === sagaId);
  void loadSaga(sagaId);
}

async function loadSaga(sagaId, message) {
  const { status, data } = await api(`/api/sagas/${encodeURIComponent(sagaId)}`);
  if (sagaId !== ui.selected) return;
  const section = document.getElementById('saga');
  if (status !== 200) {
    section.replaceChildren(h('p', { class: 'msg bad' }, errText(data.error)));
    return;
  }
  // A message (the answer to a command) stays with its saga until the next command.
  const kept = ui.view?.status.sagaId === sagaId ? ui.view.message : undefined;
  ui.view = { ...data, fetchedAt: Date.now(), message: message === undefined ? kept : message };
  render();
}

function scheduleSaga() {
  clearTimeout(ui.refreshTimer);
  ui.refreshTimer = setTimeout(() => ui.selected !== undefined && void loadSaga(ui.selected), 200);
}

/** Each step's status: the journal's, or a later step event's. */
function stepStatuses(view) {
  const out = { ...view.status.steps };
  const last = {};
  for (const e of view.events) last[e.stepId] = e;
  for (const [id, e] of Object.entries(last)) if (e.at > view.now) out[id] = e.status;
  return out;
}

function render() {
  const v = ui.view;
  const st = v.status;
  const parked = st.state === 'compensationFailed';
  const section = document.getElementById('saga');
  const statuses = stepStatuses(v);
  const outcome = st.outcome;
  const parts = [
    h(
      'div',
      { class: 'saga-head' },
      h('h2', { class: 'mono', id: 'saga-id' }, st.sagaId),
      h('span', {}, `${st.saga}@${st.version}`),
      h('span', { id: 'saga-state' }, badge(st.state)),
      outcome ? h('span', { id: 'saga-outcome' }, 'outcome ', badge(outcome.status)) : null,
      h(
        'div',
        { class: 'actions' },
        h('button', { class: 'act', id: 'retry', disabled: !parked, onclick: () => confirmRetry(st.sagaId) }, 'Retry'),
        h('button', { class: 'act danger', id: 'resolve', disabled: !parked, onclick: () => confirmResolve(st.sagaId) }, 'Resolve…'),
        h('button', { class: 'act danger', id: 'abort', disabled: st.state !== 'gathering' && st.state !== 'dispatching', onclick: () => confirmAbort(st.sagaId) }, 'Abort…'),
      ),
    ),
    v.message ? h('div', { class: `msg${v.message.bad ? ' bad' : ''}`, id: 'saga-message' }, v.message.text, v.message.extra) : null,
    h('h3', {}, 'Statechart'),
    v.graph ? h('div', { class: 'chart', id: 'statechart' }, drawMachine(v.graph, st.state), drawSteps(v.graph, statuses, v.events), legend()) : h('p', { class: 'note', id: 'graph-error' }, `The statechart cannot be drawn: ${v.graphError ?? 'no coordinator gave its graph'}`),
    h('h3', {}, 'Steps'),
    timeline(v, statuses),
    failuresOf(v).length > 0 ? [h('h3', {}, 'Errors'), failuresTable(failuresOf(v))] : null,
    v.deadLetter ? [h('h3', {}, `Dead letter: parked ${v.deadLetter.timesParked}x since ${new Date(v.deadLetter.parkedAt).toLocaleString()}`), h('div', { id: 'remaining' }, remainingTable(v.deadLetter.remaining))] : null,
  ];
  section.replaceChildren(...parts.flat().filter((x) => x !== null && x !== undefined && x !== false));
}

function legend() {
  return h('div', { class: 'legend' }, Object.keys(STATUS_COLORS).map((k) => badge(k)));
}

/** The machine's states in columns by their distance from the initial state; the current one stands out. */
function drawMachine(graph, current) {
  const depth = {};
  const initial = graph.states.find((x) => x.initial)?.id ?? graph.states[0]?.id;
  const queue = [initial];
  depth[initial] = 0;
  while (queue.length > 0) {
    const at = queue.shift();
    for (const t of graph.transitions) if (t.from === at && depth[t.to] === undefined) (depth[t.to] = depth[at] + 1), queue.push(t.to);
  }
  let extra = Math.max(0, ...Object.values(depth)) + 1;
  for (const x of graph.states) if (depth[x.id] === undefined) depth[x.id] = extra++;
  const W = 150, H = 40, GX = 70, GY = 28, PAD = 20, TOP = 44;
  const rows = {};
  const pos = {};
  for (const x of graph.states) {
    const col = depth[x.id];
    const row = (rows[col] = (rows[col] ?? -1) + 1);
    pos[x.id] = { x: PAD + col * (W + GX), y: TOP + row * (H + GY) };
  }
  const width = PAD * 2 + (Math.max(...Object.values(depth)) + 1) * (W + GX) - GX;
  const height = TOP + PAD + (Math.max(...Object.values(rows)) + 1) * (H + GY) - GY;
  const svg = s('svg', { width, height, viewBox: `0 0 ${width} ${height}`, id: 'machine', role: 'img', 'aria-label': `machine state ${current}` });
  svg.append(s('defs', {}, s('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' }, s('path', { d: 'M0,0 L10,5 L0,10 z', fill: '#6b7280' }))));
  const pairs = new Map();
  for (const t of graph.transitions) {
    if (t.from === t.to) continue;
    const k = `${t.from}>${t.to}`;
    pairs.set(k, [...(pairs.get(k) ?? []), t.label || '(always)']);
  }
  for (const [k, labels] of pairs) {
    const [from, to] = k.split('>');
    const a = pos[from], b = pos[to];
    let d;
    if (b.x > a.x) {
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
      d = `M${x1},${y1} C${x1 + GX / 2},${y1} ${x2 - GX / 2},${y2} ${x2},${y2}`;
    } else if (b.x < a.x) {
      const x1 = a.x + W / 2, y1 = a.y, x2 = b.x + W / 2, y2 = b.y;
      d = `M${x1},${y1} C${x1},${y1 - 26} ${x2},${y2 - 26} ${x2},${y2}`;
      // A way back names its events (an operator's retry and resolve among them).
      const events = [...new Set(labels.map((l) => l.split(' ')[0]).filter((e) => /^[A-Z][A-Z0-9_.]*$/.test(e)).map((e) => e.split('.').pop().toLowerCase()))];
      if (events.length > 0) svg.append(s('text', { x: (x1 + x2) / 2, y: Math.min(y1, y2) - 24, 'text-anchor': 'middle', fill: '#4b5563', class: 'edge-label' }, events.join(' · ')));
    } else {
      const down = b.y > a.y;
      const x1 = a.x + W * 0.7, y1 = down ? a.y + H : a.y, x2 = b.x + W * 0.7, y2 = down ? b.y : b.y + H;
      d = `M${x1},${y1} L${x2},${y2}`;
    }
    svg.append(s('path', { d, fill: 'none', stroke: '#9ca3af', 'stroke-width': 1.4, 'marker-end': 'url(#arrow)' }, s('title', {}, `${from} → ${to}: ${labels.join('; ')}`)));
  }
  for (const x of graph.states) {
    const p = pos[x.id];
    const on = x.id === current;
    svg.append(
      s(
        'g',
        { class: `state${on ? ' current' : ''}`, 'data-state': x.id },
        s('rect', { x: p.x, y: p.y, width: W, height: H, rx: x.type === 'final' ? 20 : 6, fill: on ? STATE_COLORS[x.id] ?? '#bfdbfe' : '#fff', stroke: on ? '#111827' : '#9ca3af', 'stroke-width': on ? 3 : 1 }),
        s('text', { x: p.x + W / 2, y: p.y + H / 2 + 4, 'text-anchor': 'middle', 'font-weight': on ? 700 : 400 }, x.id),
        s('title', {}, `${x.id}${x.type === 'final' ? ' (final)' : ''}${on ? ': the current state' : ''}`),
      ),
    );
  }
  return svg;
}

/** The steps in columns by stage, colored by status, with their `after` dependencies. */
function drawSteps(graph, statuses, events) {
  const W = 230, H = 58, GX = 60, GY = 14, PAD = 20;
  const byStage = {};
  for (const st of graph.steps) (byStage[st.stage] ??= []).push(st);
  const pos = {};
  for (const [stage, list] of Object.entries(byStage)) list.forEach((st, i) => (pos[st.id] = { x: PAD + (Number(stage) - 1) * (W + GX), y: PAD + 16 + i * (H + GY) }));
  const stages = Object.keys(byStage).length;
  const most = Math.max(1, ...Object.values(byStage).map((l) => l.length));
  const width = PAD * 2 + stages * (W + GX) - GX;
  const height = PAD * 2 + 16 + most * (H + GY) - GY;
  const svg = s('svg', { width, height, viewBox: `0 0 ${width} ${height}`, id: 'steps-chart' });
  svg.append(s('defs', {}, s('marker', { id: 'arrow2', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto' }, s('path', { d: 'M0,0 L10,5 L0,10 z', fill: '#6b7280' }))));
  for (let i = 1; i <= stages; i++) svg.append(s('text', { x: PAD + (i - 1) * (W + GX), y: PAD + 4, fill: '#6b7280' }, `stage ${i}`));
  const attempts = {};
  for (const e of events) attempts[e.stepId] = e;
  for (const st of graph.steps) {
    for (const dep of st.after) {
      const a = pos[dep], b = pos[st.id];
      if (a === undefined || b === undefined) continue;
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
      svg.append(s('path', { d: `M${x1},${y1} C${x1 + GX / 2},${y1} ${x2 - GX / 2},${y2} ${x2},${y2}`, fill: 'none', stroke: '#9ca3af', 'stroke-width': 1.4, 'marker-end': 'url(#arrow2)' }));
    }
    const p = pos[st.id];
    const status = statuses[st.id] ?? 'pending';
    const last = attempts[st.id];
    const tries = last ? `do ${last.attempt}${last.compensationAttempt > 0 ? `, undo ${last.compensationAttempt}` : ''}` : '';
    svg.append(
      s(
        'g',
        { class: 'step', 'data-step': st.id, 'data-status': status },
        s('rect', { x: p.x, y: p.y, width: W, height: H, rx: 6, fill: STATUS_COLORS[status] ?? '#fff', stroke: '#374151', 'stroke-width': status === 'compensationFailed' ? 2.5 : 1 }),
        s('text', { x: p.x + 8, y: p.y + 17, 'font-weight': 700 }, st.id),
        s('text', { x: p.x + 8, y: p.y + 33, fill: '#374151' }, `on ${st.worker}`),
        s('text', { x: p.x + 8, y: p.y + 49 }, `${status}${tries ? ` · ${tries}` : ''}`),
        s('title', {}, `${st.id} on ${st.worker}: ${status}; timeout ${st.timeoutMs} ms, retries ${st.retries}, undo retries ${st.compensationRetries}`),
      ),
    );
  }
  return svg;
}

/** Each step's events as they arrived at the console: status, attempt, when, and how long the step stayed in the status before. */
function timeline(view, statuses) {
  const steps = view.graph ? view.graph.steps.map((x) => x.id) : Object.keys(view.status.steps);
  const start = view.events.length > 0 ? view.events[0].at : undefined;
  const rows = [];
  for (const id of steps) {
    const evs = view.events.filter((e) => e.stepId === id);
    const cells = evs.map((e, i) => {
      const next = evs[i + 1];
      const open = !next && (e.status === 'dispatched' || e.status === 'compensating');
      const took = next ? ` for ${ms(next.at - e.at)}` : open ? ` (${ms(Date.now() - e.at)} so far)` : '';
      return h('div', { class: 'tl-event' }, badge(e.status), ` attempt ${e.attempt}${e.compensationAttempt > 0 ? `, undo ${e.compensationAttempt}` : ''} at +${ms(e.at - start)}${took}`);
    });
    const total = evs.length > 1 ? ms(evs[evs.length - 1].at - evs[0].at) : '';
    const worker = view.graph?.steps.find((x) => x.id === id)?.worker ?? evs[0]?.worker ?? '';
    rows.push(h('tr', { 'data-step': id }, h('td', { class: 'mono' }, id), h('td', {}, worker), h('td', {}, badge(statuses[id] ?? 'pending')), h('td', {}, cells.length > 0 ? cells : h('span', { class: 'note' }, 'no event seen by this console')), h('td', {}, total)));
  }
  return h('table', { id: 'timeline' }, h('tr', {}, h('th', {}, 'step'), h('th', {}, 'worker'), h('th', {}, 'status'), h('th', {}, 'events (as they arrived)'), h('th', {}, 'total')), rows);
}

function failuresOf(view) {
  const o = view.status.outcome;
  const list = [...(o?.failures ?? []), ...(view.deadLetter?.failures ?? [])];
  const seen = new Set();
  return list.filter((f) => {
    const k = `${f.stepId}/${f.attempt}/${f.reason}`;
    return seen.has(k) ? false : seen.add(k);
  });
}

function failuresTable(failures) {
  return h(
    'table',
    { id: 'failures' },
    h('tr', {}, h('th', {}, 'step'), h('th', {}, 'worker'), h('th', {}, 'reason'), h('th', {}, 'attempt'), h('th', {}, 'in doubt'), h('th', {}, 'error')),
    failures.map((f) => h('tr', {}, h('td', { class: 'mono' }, f.stepId), h('td', {}, f.worker), h('td', {}, f.reason), h('td', {}, f.attempt), h('td', {}, f.inDoubt ? 'yes' : 'no'), h('td', { class: 'error' }, errText(f.error)))),
  );
}

function remainingTable(remaining) {
  return h(
    'table',
    { class: 'remaining' },
    h('tr', {}, h('th', {}, 'step'), h('th', {}, 'worker'), h('th', {}, 'key'), h('th', {}, 'in doubt'), h('th', {}, 'undo attempts'), h('th', {}, 'why'), h('th', {}, 'last error')),
    remaining.map((r) =>
      h('tr', { 'data-step': r.stepId }, h('td', { class: 'mono' }, r.stepId), h('td', {}, r.worker), h('td', { class: 'mono' }, r.idempotencyKey), h('td', {}, r.inDoubt ? 'yes' : 'no'), h('td', {}, r.attempts), h('td', {}, r.why), h('td', { class: 'error' }, errText(r.lastError))),
    ),
  );
}

// ---- commands ---------------------------------------------------------------------------

/** Opens the confirmation dialog; resolves with the note when confirmed, undefined when cancelled. */
function ask(title, body, { note = false, ok = 'Confirm' } = {}) {
  const dialog = document.getElementById('confirm');
  document.getElementById('confirm-title').textContent = title;
  document.getElementById('confirm-body').replaceChildren(...[body].flat());
  document.getElementById('confirm-note-label').hidden = !note;
  document.getElementById('confirm-ok').textContent = ok;
  document.getElementById('confirm-note').value = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok' ? document.getElementById('confirm-note').value : undefined), { once: true });
    dialog.returnValue = '';
    dialog.showModal();
  });
}

function say(text, bad = false) {
  if (ui.view) ui.view.message = { text, bad };
  render();
}

async function confirmRetry(sagaId) {
  const remaining = ui.view?.deadLetter?.remaining ?? [];
  const yes = await ask(`Retry saga ${sagaId}?`, [h('p', {}, 'Its compensation resumes with fresh retry budgets: the undo of these effects runs again.'), remainingTable(remaining)], { ok: 'Retry' });
  if (yes === undefined) return;
  say('retrying…');
  const { status, data } = await api(`/api/sagas/${encodeURIComponent(sagaId)}/retry`, {});
  const text = status === 200 ? (data.outcome ? `retry: the saga is ${data.outcome.status}` : 'retry: no outcome yet (the saga goes on)') : `retry failed: ${errText(data.error)}`;
  await loadSaga(sagaId, { text, bad: status !== 200 || data.outcome?.status === 'compensation-failed' });
  scheduleList();
}

async function confirmAbort(sagaId) {
  const note = await ask(`Abort saga ${sagaId}?`, [h('p', {}, 'It dispatches nothing more, and every step that committed or may have is undone, as after a failure.')], { note: true, ok: 'Abort' });
  if (note === undefined) return;
  say('aborting…');
  const { status, data } = await api(`/api/sagas/${encodeURIComponent(sagaId)}/abort`, note === '' ? {} : { note });
  const text = status === 200 ? (data.outcome ? `abort: the saga is ${data.outcome.status}` : 'abort: no outcome yet (the saga is being undone)') : `abort failed: ${errText(data.error)}`;
  await loadSaga(sagaId, { text, bad: status !== 200 || data.outcome?.status === 'compensation-failed' });
  scheduleList();
}

async function confirmResolve(sagaId, reviewed) {
  const remaining = ui.view?.deadLetter?.remaining ?? [];
  const note = await ask(
    `Resolve saga ${sagaId} by hand?`,
    [h('p', {}, 'Only once you have undone these effects in their systems of record yourself: the saga ends naming them as handled by an operator.'), remainingTable(remaining)],
    { note: true, ok: 'Resolve' },
  );
  if (note === undefined) return;
  await resolve(sagaId, note, reviewed);
}

async function resolve(sagaId, note, reviewed) {
  say('resolving: fencing the keys…');
  const { status, data } = await api(`/api/sagas/${encodeURIComponent(sagaId)}/resolve`, { note, ...(reviewed ? { reviewed } : {}) });
  if (status === 409 && data.review) return review(sagaId, note, data.review);
  const text = status === 200 ? (data.outcome ? `resolved: the saga is ${data.outcome.status}` : 'resolve: no outcome yet') : `resolve failed: ${errText(data.error)}`;
  await loadSaga(sagaId, { text, bad: status !== 200 });
  scheduleList();
}

/** A resolve that asks for a review (or could not fence): show the fences; confirm again with the token after a second look. */
async function review(sagaId, note, r) {
  const fences = h(
    'table',
    { id: 'fences' },
    h('tr', {}, h('th', {}, 'step'), h('th', {}, 'worker'), h('th', {}, 'key'), h('th', {}, 'verdict'), h('th', {}, 'a do left'), h('th', {}, 'error')),
    r.fences.map((f) => h('tr', { 'data-step': f.stepId }, h('td', { class: 'mono' }, f.stepId), h('td', {}, f.worker), h('td', { class: 'mono' }, f.idempotencyKey), h('td', {}, badge(f.verdict)), h('td', {}, f.fence?.was ?? '?'), h('td', { class: 'error' }, errText(f.error)))),
  );
  if (r.code !== 'RESOLVE_NEEDS_REVIEW' || !r.review) {
    // Could not fence (or no token to confirm with): show the fences; resolve again later.
    await loadSaga(sagaId, { text: `${r.code}: ${r.message}`, bad: true, extra: r.fences.length > 0 ? fences : undefined });
    return;
  }
  await loadSaga(sagaId, { text: `${r.code}: ${r.message}`, bad: true });
  const again = await ask(
    'Look again before you resolve',
    [h('p', {}, 'The keys are fenced now: no do of them can apply any more. But the effects marked review may have landed after you looked. Look at their systems of record again, undo by hand what is there, then confirm.'), fences, h('p', { class: 'note' }, 'review token ', h('code', { id: 'review-token' }, r.review))],
    { note: true, ok: 'I looked again: resolve' },
  );
  if (again === undefined) return;
  await resolve(sagaId, again || note, r.review);
}

// ---- live updates -----------------------------------------------------------------------

function listen() {
  const live = document.getElementById('live');
  const source = new EventSource('/api/events');
  source.onopen = () => ((live.textContent = 'live'), (live.className = 'live on'));
  source.onerror = () => ((live.textContent = 'offline'), (live.className = 'live off'));
  source.onmessage = (m) => {
    let e;
    try {
      e = JSON.parse(m.data);
    } catch {
      return;
    }
    if (ui.view && e.sagaId === ui.view.status.sagaId) {
      if (e.type === 'step') {
        ui.view.events.push({ at: e.at, stepId: e.stepId, worker: e.worker, status: e.status, attempt: e.attempt, compensationAttempt: e.compensationAttempt });
        render();
      }
      scheduleSaga();
    }
    if (e.type !== 'step') scheduleList();
    else if (!document.querySelector(`tr.saga-row[data-saga-id="${CSS.escape(e.sagaId)}"]`)) scheduleList();
  };
}

function init() {
  for (const b of document.querySelectorAll('#tabs button')) {
    b.addEventListener('click', () => {
      ui.tab = b.dataset.tab;
      document.getElementById('q').value = '';
      for (const o of document.querySelectorAll('#tabs button')) o.classList.toggle('on', o === b);
      void loadList();
    });
  }
  document.getElementById('search').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const q = document.getElementById('q').value.trim();
    void loadList();
    if (q !== '') select(q);
  });
  const m = /^#saga=(.+)$/.exec(location.hash);
  if (m) select(decodeURIComponent(m[1]));
  listen();
  void loadList();
  setInterval(() => void loadList(), 5_000);
}

init();
