/**
 * What the live view draws, computed from the model's data: no DOM, so it is unit-tested.
 *
 * - `fnColor`: a small stable palette for function indices (red is kept for failures);
 * - `groupRows`: the groups of a live view in the order shown, with their fractions and text;
 * - `streamCells`: the task stream's cells, one per engine row and tick, split by function;
 * - `tracebackSummary`: the lines of a traceback a failure card shows before it is expanded.
 */
import { IFailureLive, IGroupLive, ILiveView, StreamTick } from './model';

/** Colours of functions, by index (Tableau 10 without its red). */
export const PALETTE = [
  '#4e79a7',
  '#f28e2b',
  '#59a14f',
  '#b07aa1',
  '#76b7b2',
  '#edc948',
  '#9c755f',
  '#ff9da7',
  '#bab0ac'
];
export const FAILED_COLOR = '#d62728';

export function fnColor(index: number): string {
  return PALETTE[((index % PALETTE.length) + PALETTE.length) % PALETTE.length];
}

export function fmtSeconds(s: number): string {
  if (s < 60) {
    return `${Math.round(s)} s`;
  }
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - 60 * m)} s`;
}

export interface IGroupRow {
  id: string;
  group: IGroupLive;
  /** fractions of the bar: done, failed */
  done: number;
  failed: number;
  color: string;
  text: string;
}

/** Groups to show: running ones first, then finished; newest (highest id) first within each. */
export function groupRows(live: ILiveView): IGroupRow[] {
  const fns = live.fns ?? [];
  return Object.entries(live.groups ?? {})
    .sort(([a, ga], [b, gb]) => Number(!!ga.done) - Number(!!gb.done) || Number(b) - Number(a))
    .map(([id, g]) => {
      const failed = g.f ?? 0;
      const total = Math.max(g.n, 1);
      let text = `${g.d} / ${g.n} items`;
      if (failed) {
        text += ` · ${failed} failed`;
      }
      if (g.done) {
        text += ' · done';
      } else {
        text += ` · ${g.rate ?? 0} items/s`;
        if (g.eta !== undefined) {
          text += ` · ETA ${fmtSeconds(g.eta)}`;
        }
      }
      const index = fns.indexOf(g.fn);
      return {
        id,
        group: g,
        done: Math.min(1, g.d / total),
        failed: Math.min(1, failed / total),
        color: index >= 0 ? fnColor(index) : PALETTE[0],
        text
      };
    });
}

export interface IStreamCell {
  key: string;
  x: number;
  y: number;
  width: number;
  height: number;
  color: string;
  opacity: number;
  /** what the cell counts: function index, or -1 for failed items */
  fn: number;
}

export interface IStreamLayout {
  rows: number;
  rowHeight: number;
  cells: IStreamCell[];
}

/**
 * The task stream's cells: one row per engine (engines are grouped into at most `maxRows`
 * rows), time along x over the last `window` seconds up to the newest tick; each (tick, row) is
 * split from top to bottom by function (in colour order), failed items last, in red (at least
 * 3 px of the cell, so that one failure among many items shows). Opacity grows with the items
 * in the cell.
 */
export function streamCells(
  ticks: StreamTick[],
  engineIds: string[],
  window: number,
  width = 240,
  maxRows = 32
): IStreamLayout {
  const rows = Math.max(1, Math.min(engineIds.length, maxRows));
  const rowOf = new Map<string, number>();
  engineIds.forEach((id, i) => rowOf.set(id, Math.floor((i * rows) / engineIds.length)));
  const rowHeight = Math.min(12, Math.max(3, Math.floor(96 / rows)));
  const newest = ticks.length ? ticks[ticks.length - 1][1] : 0;
  // (tick, row) -> counts by function index (-1: failed)
  const cellCounts = new Map<string, { x: number; row: number; counts: Map<number, number> }>();
  let max = 1;
  for (const tick of ticks) {
    const [t, when, done] = tick;
    const failed: Record<string, number> = (tick.length > 3 ? tick[3] : undefined) ?? {};
    const x = width - ((newest - when) / window) * width;
    const add = (eid: string, fn: number, n: number) => {
      const row = rowOf.get(eid);
      if (row === undefined || n <= 0) {
        return;
      }
      const key = `${t}-${row}`;
      let cell = cellCounts.get(key);
      if (!cell) {
        cell = { x, row, counts: new Map() };
        cellCounts.set(key, cell);
      }
      cell.counts.set(fn, (cell.counts.get(fn) ?? 0) + n);
    };
    for (const [fn, byEngine] of Object.entries(done)) {
      for (const [eid, n] of Object.entries(byEngine)) {
        add(eid, Number(fn), n);
      }
    }
    for (const [eid, n] of Object.entries(failed)) {
      add(eid, -1, n);
    }
  }
  for (const cell of cellCounts.values()) {
    let total = 0;
    cell.counts.forEach(n => (total += n));
    max = Math.max(max, total);
  }
  const cells: IStreamCell[] = [];
  for (const [key, cell] of cellCounts) {
    let total = 0;
    cell.counts.forEach(n => (total += n));
    const order = [...cell.counts.keys()].sort((a, b) => (a < 0 ? 1 : b < 0 ? -1 : a - b));
    let y = cell.row * rowHeight;
    const height = rowHeight - 1;
    // a failure stays visible among many items done: its part is at least 3 px (or the cell)
    const failed = cell.counts.get(-1) ?? 0;
    const failedHeight = failed ? Math.max((height * failed) / total, Math.min(height, 3)) : 0;
    const okTotal = total - failed;
    for (const fn of order) {
      const n = cell.counts.get(fn) ?? 0;
      const h = fn < 0 ? failedHeight : okTotal > 0 ? ((height - failedHeight) * n) / okTotal : 0;
      cells.push({
        key: `${key}-${fn}`,
        x: Math.max(0, cell.x - 4),
        y,
        width: 4,
        height: h,
        color: fn < 0 ? FAILED_COLOR : fnColor(fn),
        opacity: fn < 0 ? 1 : 0.35 + (0.65 * total) / max,
        fn
      });
      y += h;
    }
  }
  return { rows, rowHeight, cells };
}

/** The first line and the last two of a traceback: where it started and what was raised. */
export function tracebackSummary(failure: IFailureLive): string[] {
  const lines = (failure.tb ?? '').split('\n').filter(l => l.trim() !== '');
  if (lines.length <= 3) {
    return lines;
  }
  return [lines[0], '…', ...lines.slice(-2)];
}
