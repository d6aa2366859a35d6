/**
 * Live view of one running cluster: engines by state, a grid of engines (one small cell each,
 * so 256 engines fit without a long list), progress with throughput and ETA, and the task stream.
 */
import * as React from 'react';

import { ClusterModel, IEngineLive, StreamTick } from '../model';

function fmtSeconds(s: number): string {
  if (s < 60) {
    return `${Math.round(s)} s`;
  }
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - 60 * m)} s`;
}

function EngineGrid(props: { engines: Record<string, IEngineLive> }): JSX.Element {
  return (
    <div className="ipc-EngineGrid">
      {Object.entries(props.engines).map(([id, e]) => (
        <span
          key={id}
          className={`ipc-Engine ipc-Engine-${e.s}`}
          title={
            `engine ${id}: ${e.s}` +
            (e.e !== undefined ? ` for ${e.e} s` : '') +
            `, ${e.q} queued, ${e.d} done` +
            (e.m !== undefined ? `, ${e.m} MiB` : '')
          }
        />
      ))}
    </div>
  );
}

/** Engines by time: one row per engine (or per group of engines beyond 32), darker = more tasks. */
function TaskStream(props: { ticks: StreamTick[]; engineIds: string[]; window: number }): JSX.Element {
  const width = 240;
  const rows = Math.max(1, Math.min(props.engineIds.length, 32));
  const rowOf = new Map<string, number>();
  props.engineIds.forEach((id, i) => rowOf.set(id, Math.floor((i * rows) / props.engineIds.length)));
  const rowHeight = Math.min(12, Math.max(3, Math.floor(96 / rows)));
  const newest = props.ticks.length ? props.ticks[props.ticks.length - 1][1] : 0;
  const max = Math.max(1, ...props.ticks.flatMap(t => Object.values(t[2])));
  const rects: JSX.Element[] = [];
  for (const [tick, when, counts] of props.ticks) {
    const x = width - ((newest - when) / props.window) * width;
    for (const [eid, n] of Object.entries(counts)) {
      const row = rowOf.get(eid);
      if (row === undefined) {
        continue;
      }
      rects.push(
        <rect
          key={`${tick}-${eid}`}
          x={Math.max(0, x - 4)}
          y={row * rowHeight}
          width={4}
          height={rowHeight - 1}
          className="ipc-Stream-task"
          fillOpacity={0.3 + (0.7 * n) / max}
        />
      );
    }
  }
  return (
    <div className="ipc-Stream-box">
      <div className="ipc-Live-caption">task stream: engines by time, last {props.window} s</div>
      <svg
        className="ipc-Stream"
        viewBox={`0 0 ${width} ${rows * rowHeight}`}
        width="100%"
        height={rows * rowHeight}
        preserveAspectRatio="none"
        data-ticks={props.ticks.length}
      >
        {rects}
      </svg>
    </div>
  );
}

/** The few engines worth reading about: busy ones first, longest-running task first (at most 8 rows). */
function EngineTable(props: { engines: Record<string, IEngineLive> }): JSX.Element {
  const rows = Object.entries(props.engines)
    .sort(([, a], [, b]) => (b.s === 'busy' ? 1 : 0) - (a.s === 'busy' ? 1 : 0) || (b.e ?? -1) - (a.e ?? -1))
    .slice(0, 8);
  return (
    <table className="ipc-EngineTable">
      <thead>
        <tr>
          <th>engine</th>
          <th>state</th>
          <th>task for</th>
          <th>queued</th>
          <th>done</th>
          <th>MiB</th>
        </tr>
      </thead>
      <tbody>
        {rows.map(([id, e]) => (
          <tr key={id} className={`ipc-EngineRow-${e.s}`}>
            <td>{id}</td>
            <td>{e.s}</td>
            <td>{e.e !== undefined ? fmtSeconds(e.e) : ''}</td>
            <td>{e.q}</td>
            <td>{e.d}</td>
            <td>{e.m ?? ''}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function LiveView(props: { model: ClusterModel; clusterKey: string }): JSX.Element | null {
  const live = props.model.live(props.clusterKey);
  if (!live) {
    return <div className="ipc-Live ipc-Live-waiting">waiting for the controller…</div>;
  }
  const p = live.progress;
  const total = p.total ?? 0;
  const done = p.done ?? 0;
  const fraction = total > 0 ? done / total : 0;
  return (
    <div className="ipc-Live">
      <div className="ipc-Live-counts">
        {Object.entries(live.counts).map(([state, n]) => (
          <span key={state} className={`ipc-Count ipc-Count-${state}`}>
            {n} {state}
          </span>
        ))}
      </div>
      <EngineGrid engines={live.engines} />
      <EngineTable engines={live.engines} />
      <div className="ipc-Progress">
        <div className="ipc-Progress-bar">
          <div className="ipc-Progress-fill" style={{ width: `${Math.round(fraction * 100)}%` }} />
        </div>
        <div className="ipc-Progress-text">
          {total > 0 ? `${done} / ${total} tasks` : 'idle'} · {p.rate} tasks/s
          {p.eta !== undefined ? ` · ETA ${fmtSeconds(p.eta)}` : ''} · {live.completed} done in all
        </div>
      </div>
      <TaskStream
        ticks={props.model.stream(props.clusterKey)}
        engineIds={Object.keys(live.engines)}
        window={30}
      />
    </div>
  );
}
