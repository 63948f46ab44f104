/**
 * The benchmark suite's output: the run as JSON (`<date>.json`, or `<date>-2.json` and so
 * on for later runs of the day), a Markdown summary (`<date>.md`), and a chart of
 * throughput and latency against width and sagas in flight (`<date>.svg`, Vega-Lite
 * rendered headless by Vega, no canvas). With `docs`,
 * the chart is copied to docs/performance.svg and the results section of
 * docs/performance.md (between its `results:start` and `results:end` markers) is
 * regenerated from the run.
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import * as vega from 'vega';
import { compile } from 'vega-lite';
import type { TopLevelSpec } from 'vega-lite';
import type { Mode, SuiteOptions } from './args.ts';
import type { Counts } from './counting.ts';
import type { PointResult } from './point.ts';

export interface SuiteReport {
  readonly suite: 'scatter-saga benchmark suite';
  readonly date: string;
  readonly startedAt: string;
  readonly durationSeconds: number;
  readonly machine: { node: string; cpus: number; loadavgStart: number[]; loadavgEnd: number[]; natsServer: string | undefined; commit: string };
  readonly options: Omit<SuiteOptions, 'out' | 'docs'>;
  readonly workload: string;
  readonly results: readonly PointResult[];
}

const MODE_TITLE: Record<Mode, string> = {
  embedded: 'Embedded (in-memory transport and stores, one process)',
  nats: 'NATS (in-memory stores, worker host in another process)',
  durable: 'Durable (NATS, jetstreamSagaStore + jetstreamDedupStore, worker host in another process)',
};

const fmt = (n: number | undefined, digits = 3): string => {
  if (n === undefined || !Number.isFinite(n)) return '–';
  if (Math.abs(n) >= 1000) return Math.round(n).toLocaleString('en-US');
  return String(Number(n.toPrecision(digits)));
};
const pct = (f: number) => `${Math.round(f * 100)}%`;
const pair = (a: number | undefined, b: number | undefined) => `${fmt(a)} / ${fmt(b)}`;
const calls = (c: Counts | undefined) =>
  c === undefined || Object.keys(c).length === 0 ? '–' : Object.entries(c).map(([k, v]) => `${k} ${fmt(v)}`).join(', ');

function ratioCell(r: PointResult): string {
  const x = (k: string) => fmt(r.ratios[k], 2);
  switch (r.mode) {
    case 'embedded':
      return `${x('sagasPerSecVsBare')} bare · ${x('sagasPerSecVsSagaMachine')} machine (machine ${x('sagaMachineVsBare')} bare) · ${x('sagasPerSecVsAllSettled')} allSettled · CPU ${x('cpuVsBare')}× bare`;
    case 'nats':
      return `steps/s ${x('stepsPerSecVsRequestReply')} r/r · p50 ${x('p50VsRequestReply')}× r/r`;
    case 'durable':
      return `${x('sagasPerSecVsKvPut')} KV put · ${x('sagasPerSecVsJsPublish')} JS pub · p50 ${x('p50VsKvPut')}× KV put`;
  }
}

function inFlightCell(r: PointResult): string {
  return r.inFlightUsed === r.inFlight ? String(r.inFlight) : `${r.inFlight} → ${r.inFlightUsed}`;
}

/** The main table of one mode (every failure rate). */
function modeTable(rows: readonly PointResult[]): string[] {
  const out = [
    '| width | in flight | fail | sagas/s | steps/s | p50 / p99 / max ms | CPU ms/saga coord / host | CPU µs/step | heap / RSS B per saga in flight | msgs/saga coord / host | durable writes/saga coord / host | vs baseline | notes |',
    '|---:|---:|---:|---:|---:|---|---|---:|---|---|---|---|---|',
  ];
  for (const r of rows) {
    if (r.sagasPerSec === undefined) {
      out.push(`| ${r.width} | ${inFlightCell(r)} | ${pct(r.fail)} | – | – | – | – | – | – | – | – | – | ${[r.error, ...r.notes].filter(Boolean).join('; ')} |`);
      continue;
    }
    const m = r.memoryPerSaga;
    out.push(
      [
        '',
        r.width,
        inFlightCell(r),
        pct(r.fail),
        fmt(r.sagasPerSec),
        fmt(r.stepsPerSec),
        `${fmt(r.p50Ms)} / ${fmt(r.p99Ms)} / ${fmt(r.maxMs)}`,
        pair(r.cpuMsPerSaga?.coordinator, r.cpuMsPerSaga?.host),
        fmt((r.cpuMsPerStep ?? NaN) * 1000),
        m === undefined ? '–' : `${fmt(m.heapBytes)} / ${fmt(m.rssBytes)}${m.hostHeapBytes !== undefined ? ` (host ${fmt(m.hostHeapBytes)} / ${fmt(m.hostRssBytes)})` : ''}`,
        r.messagesPerSaga === undefined ? '–' : pair(r.messagesPerSaga.coordinator, r.messagesPerSaga.host),
        pair(r.durableWritesPerSaga?.coordinator, r.durableWritesPerSaga?.host),
        ratioCell(r),
        r.notes.join('; ') || '',
        '',
      ].join(' | ').trim(),
    );
  }
  return out;
}

/** The baselines measured, one row each (deduplicated). */
function baselineTable(results: readonly PointResult[]): string[] {
  const seen = new Set<string>();
  const out = ['| mode | baseline | width | fail | in flight | ops/s | p50 / p99 ms | CPU ms/op |', '|---|---|---:|---:|---:|---:|---|---:|'];
  for (const r of results) {
    for (const [name, b] of Object.entries(r.baselines)) {
      const perWidth = name === 'bareMachine' || name === 'sagaMachine' || name === 'allSettled';
      const key = perWidth ? `${r.mode}/${name}/${r.width}/${r.fail}/${b.inFlight}` : `${r.mode}/${name}/${b.inFlight}`;
      if (seen.has(key)) continue;
      seen.add(key);
      out.push(`| ${r.mode} | ${name} | ${perWidth ? r.width : '–'} | ${perWidth ? pct(r.fail) : '–'} | ${b.inFlight} | ${fmt(b.perSec)} | ${fmt(b.p50Ms)} / ${fmt(b.p99Ms)} | ${fmt(b.cpuMsPerOp)} |`);
    }
  }
  return out;
}

function storeTable(results: readonly PointResult[]): string[] {
  const out = ['| mode | width | in flight | fail | coordinator store calls/saga | host store calls/saga | coordinator JetStream requests/saga | host JetStream requests/saga |', '|---|---:|---:|---:|---|---|---|---|'];
  for (const r of results) {
    if (r.storeCallsPerSaga === undefined || r.mode === 'embedded') continue;
    out.push(
      `| ${r.mode} | ${r.width} | ${inFlightCell(r)} | ${pct(r.fail)} | ${calls(r.storeCallsPerSaga.coordinator)} | ${calls(r.storeCallsPerSaga.host)} | ${calls(r.jetStreamOpsPerSaga?.coordinator)} | ${calls(r.jetStreamOpsPerSaga?.host)} |`,
    );
  }
  return out;
}

function header(report: SuiteReport): string[] {
  const m = report.machine;
  return [
    `Run ${report.startedAt} on ${m.cpus} CPUs (load average ${m.loadavgStart.map((x) => x.toFixed(2)).join(' ')} at the start, ${m.loadavgEnd.map((x) => x.toFixed(2)).join(' ')} at the end), node ${m.node}, nats-server ${m.natsServer ?? '–'}, commit ${m.commit}; ${report.durationSeconds} s in all.`,
    `Options: modes ${report.options.modes.join(', ')}; widths ${report.options.widths.join(', ')}; sagas in flight ${report.options.inFlight.join(', ')}; failure rates ${report.options.fail.map(pct).join(', ')}; ${report.options.seconds} s measured and ${report.options.warmup} s warm-up a point; at most ${report.options.maxSteps.toLocaleString('en-US')} steps in flight; memory with as many sagas held as in flight, at least ${report.options.hold}, at most 4,096 steps${report.options.smoke ? ' (smoke profile)' : ''}.`,
    '',
    `Workload: ${report.workload}`,
  ];
}

export function markdown(report: SuiteReport): string {
  const lines = [`# Benchmark results ${report.date}`, '', ...header(report), ''];
  lines.push(
    'In flight "64 → 16": fewer sagas ran at once than asked, to stay within the cap of steps in flight. CPU of the embedded mode is the one process (coordinator and workers). Memory: growth of heap and RSS after a full gc with sagas held in flight (their workers held), divided by their number; as many sagas as the point runs and at least --hold, but no more than 4,096 steps, so points share a measurement (the `held` figure in the JSON); RSS moves in pages and is noisy. Writes: SagaStore begin + write + archive on the coordinator (heartbeats apart), DedupStore writes on the host; in-memory stores in the embedded and NATS modes.',
    '',
  );
  for (const mode of report.options.modes) {
    const rows = report.results.filter((r) => r.mode === mode);
    if (rows.length === 0) continue;
    lines.push(`## ${MODE_TITLE[mode]}`, '', ...modeTable(rows), '');
  }
  lines.push('## Baselines (same process, same run)', '', ...baselineTable(report.results), '');
  const store = storeTable(report.results);
  if (store.length > 2) lines.push('## Store calls and JetStream requests per saga', '', ...store, '');
  return lines.join('\n');
}

/** The chart: sagas/s, steps/s and p50 latency against width, a line per sagas in flight, a column per mode (0% failures). */
export async function chart(report: SuiteReport): Promise<string> {
  const values = report.results
    .filter((r) => r.sagasPerSec !== undefined && r.fail === 0)
    .map((r) => ({ mode: r.mode, width: r.width, inFlight: r.inFlight, sagasPerSec: r.sagasPerSec, stepsPerSec: r.stepsPerSec, p50Ms: r.p50Ms }));
  const row = (field: string, title: string) => ({
    facet: { column: { field: 'mode', type: 'nominal' as const, title: null, sort: report.options.modes as string[] } },
    spec: {
      width: 220,
      height: 160,
      mark: { type: 'line' as const, point: true },
      encoding: {
        x: { field: 'width', type: 'quantitative' as const, scale: { type: 'log' as const }, axis: { values: [...report.options.widths] }, title: 'fan-out width (steps per saga)' },
        y: { field, type: 'quantitative' as const, scale: { type: 'log' as const }, title },
        color: { field: 'inFlight', type: 'ordinal' as const, title: 'sagas in flight' },
      },
    },
  });
  const spec: TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: `scatter-saga benchmark ${report.date} (0% failures)`, subtitle: `${report.machine.cpus} CPUs, node ${report.machine.node}, commit ${report.machine.commit}` },
    data: { values },
    vconcat: [row('sagasPerSec', 'sagas/s'), row('stepsPerSec', 'steps/s'), row('p50Ms', 'p50 latency (ms)')],
    config: { font: 'sans-serif' },
  };
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  return svg;
}

const START = '<!-- results:start -->';
const END = '<!-- results:end -->';

/** The generated section of docs/performance.md. */
function docsSection(report: SuiteReport, mdPath: string): string {
  const lines = [START, '', `Generated by \`npm run bench\` from [${mdPath}](${mdPath}) (all failure rates, baselines, store calls there).`, '', ...header(report), ''];
  for (const mode of report.options.modes) {
    const rows = report.results.filter((r) => r.mode === mode && r.fail === 0);
    if (rows.length > 0) lines.push(`### ${MODE_TITLE[mode]}, 0% failures`, '', ...modeTable(rows), '');
  }
  lines.push(END);
  return lines.join('\n');
}

/** Writes `<date>.json`, `<date>.md` and `<date>.svg` to `dir`; with `docs`, refreshes docs/performance.*. Returns the paths written. */
export async function writeReport(report: SuiteReport, dir: string, docs: boolean, root: string): Promise<string[]> {
  mkdirSync(dir, { recursive: true });
  // A second run on the same day does not replace the first: <date>-2, <date>-3, ...
  let base = join(dir, report.date);
  for (let i = 2; existsSync(`${base}.json`); i++) base = join(dir, `${report.date}-${i}`);
  const written = [`${base}.json`, `${base}.md`, `${base}.svg`];
  writeFileSync(`${base}.json`, `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(`${base}.md`, markdown(report));
  writeFileSync(`${base}.svg`, await chart(report));
  if (docs) {
    const docsDir = join(root, 'docs');
    copyFileSync(`${base}.svg`, join(docsDir, 'performance.svg'));
    written.push(join(docsDir, 'performance.svg'));
    const page = join(docsDir, 'performance.md');
    if (existsSync(page)) {
      const text = readFileSync(page, 'utf8');
      const a = text.indexOf(START);
      const b = text.indexOf(END);
      if (a >= 0 && b > a) {
        writeFileSync(page, text.slice(0, a) + docsSection(report, relative(docsDir, `${base}.md`)) + text.slice(b + END.length));
        written.push(page);
      }
    }
  }
  return written;
}
