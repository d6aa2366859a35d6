import { describe, expect, it } from 'vitest';

import { FAILED_COLOR, PALETTE, fnColor, groupRows, streamCells, tracebackSummary } from '../src/liveview';
import { ILiveView, StreamTick } from '../src/model';

const base: ILiveView = {
  counts: { idle: 0, busy: 2, dead: 0 },
  completed: 0,
  progress: { outstanding: 0, rate: 0 },
  engines: { '0': { s: 'busy', q: 1, d: 0 }, '1': { s: 'busy', q: 1, d: 0 } }
};

describe('fnColor', () => {
  it('gives each function index a stable colour, never the failures red', () => {
    expect(fnColor(0)).toBe(PALETTE[0]);
    expect(fnColor(PALETTE.length + 1)).toBe(PALETTE[1]);
    expect(PALETTE).not.toContain(FAILED_COLOR);
    expect(new Set(PALETTE).size).toBe(PALETTE.length);
  });
});

describe('groupRows', () => {
  it('shows running groups first, newest first, with items, rate, ETA and failures', () => {
    const live: ILiveView = {
      ...base,
      fns: ['load', 'square'],
      groups: {
        '1': { name: 'load', kind: 'fn', fn: 'load', n: 4, d: 4, done: true },
        '2': { name: 'squares', kind: 'label', fn: 'square', n: 200, d: 50, f: 10, rate: 25, eta: 5.6 },
        '3': { name: 'square', kind: 'map', fn: 'square', n: 10, d: 0, rate: 0 }
      }
    };
    const rows = groupRows(live);
    expect(rows.map(r => r.id)).toEqual(['3', '2', '1']);
    const squares = rows[1];
    expect(squares.text).toBe('50 / 200 items · 10 failed · 25 items/s · ETA 6 s');
    expect(squares.done).toBeCloseTo(0.25);
    expect(squares.failed).toBeCloseTo(0.05);
    expect(squares.color).toBe(fnColor(1)); // the bar has its function's colour in the stream
    expect(rows[2].text).toBe('4 / 4 items · done');
    expect(rows[0].text).toBe('0 / 10 items · 0 items/s');
  });

  it('is empty without groups (an older server)', () => {
    expect(groupRows(base)).toEqual([]);
  });
});

describe('streamCells', () => {
  it('splits a cell by function and puts failed items last, in red', () => {
    const ticks: StreamTick[] = [
      [1, 100, { '0': { '0': 3 } }],
      [2, 101, { '0': { '1': 1 }, '1': { '1': 2 } }, { '1': 1 }]
    ];
    const layout = streamCells(ticks, ['0', '1'], 30, 240);
    expect(layout.rows).toBe(2);
    const row1 = layout.cells.filter(c => c.y >= layout.rowHeight);
    expect(row1.map(c => c.fn)).toEqual([0, 1, -1]);
    expect(row1.map(c => c.color)).toEqual([fnColor(0), fnColor(1), FAILED_COLOR]);
    const heights = row1.map(c => c.height);
    expect(heights[1]).toBeCloseTo(2 * heights[0]); // 2 of 'fn 1' items for 1 of 'fn 0'
    expect(heights.reduce((a, b) => a + b)).toBeCloseTo(layout.rowHeight - 1);
    expect(heights[2]).toBe(3); // a quarter of 11 px would be less than the 3 px a failure gets
    // the newest tick is at the right edge, one second earlier is 8 px to the left
    expect(row1[0].x).toBe(236);
    expect(layout.cells.find(c => c.y < layout.rowHeight)!.x).toBe(228);
  });

  it('keeps one failure among many items visible', () => {
    const layout = streamCells([[1, 10, { '0': { '0': 99 } }, { '0': 1 }]], ['0'], 30);
    const [ok, failed] = layout.cells;
    expect(failed.fn).toBe(-1);
    expect(failed.height).toBe(3);
    expect(ok.height + failed.height).toBeCloseTo(layout.rowHeight - 1);
  });

  it('groups 256 engines into 32 rows and skips unknown engines', () => {
    const ids = Array.from({ length: 256 }, (_, i) => String(i));
    const ticks: StreamTick[] = [[1, 10, { '0': { '0': 1, '255': 1, '999': 1 } }]];
    const layout = streamCells(ticks, ids, 30);
    expect(layout.rows).toBe(32);
    expect(layout.cells.map(c => c.y / layout.rowHeight)).toEqual([0, 31]);
  });
});

describe('tracebackSummary', () => {
  it('keeps the first line and the last two', () => {
    const tb = 'Traceback (most recent call last):\n  File "a", line 1\n  File "b", line 2\n    raise\nValueError: no';
    expect(tracebackSummary({ n: 'ValueError', tb })).toEqual([
      'Traceback (most recent call last):',
      '…',
      '    raise',
      'ValueError: no'
    ]);
    expect(tracebackSummary({ n: 'EngineError' })).toEqual([]);
  });
});
