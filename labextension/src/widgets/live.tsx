/**
 * Live view of one running cluster: engines by state, a grid of engines (one small cell each,
 * so 256 engines fit without a long list), the queue's progress with throughput and ETA, the
 * progress of each map and label in items, the task stream coloured by function (failed items
 * red) with its legend, and the recent failures with their tracebacks.
 */
import * as React from 'react';

import { FAILED_COLOR, fmtSeconds, fnColor, groupRows, streamCells, tracebackSummary } from '../liveview';
import { ClusterModel, IEngineLive, IFailureLive, ILiveView, StreamTick } from '../model';

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

/** Progress of each map and label (or plain calls of one function), in items. */
function Groups(props: { live: ILiveView }): JSX.Element | null {
  const rows = groupRows(props.live);
  if (!rows.length) {
    return null;
  }
  return (
    <div className="ipc-Groups">
      {rows.map(row => (
        <div
          key={row.id}
          className={`ipc-Group ${row.group.done ? 'ipc-Group-done' : 'ipc-Group-running'}`}
          data-group={row.group.name}
        >
          <div className="ipc-Group-head">
            <span className="ipc-Group-kind">{row.group.kind === 'fn' ? 'calls' : row.group.kind}</span>
            <span className="ipc-Group-name" title={`${row.group.name} (function ${row.group.fn})`}>
              {row.group.name}
            </span>
          </div>
          <div className="ipc-Progress-bar">
            <div
              className="ipc-Progress-fill"
              style={{ width: `${row.done * 100}%`, background: row.color }}
            />
            <div
              className="ipc-Progress-failed"
              style={{ width: `${row.failed * 100}%`, background: FAILED_COLOR }}
            />
          </div>
          <div className="ipc-Group-text">{row.text}</div>
        </div>
      ))}
    </div>
  );
}

/** Engines by time: one row per engine (or per group of engines beyond 32), split by function. */
function TaskStream(props: {
  ticks: StreamTick[];
  engineIds: string[];
  fns: string[];
  window: number;
}): JSX.Element {
  const width = 240;
  const layout = streamCells(props.ticks, props.engineIds, props.window, width);
  const failed = props.ticks.some(t => t.length > 3);
  return (
    <div className="ipc-Stream-box">
      <div className="ipc-Live-caption">task stream: engines by time, last {props.window} s</div>
      <svg
        className="ipc-Stream"
        viewBox={`0 0 ${width} ${layout.rows * layout.rowHeight}`}
        width="100%"
        height={layout.rows * layout.rowHeight}
        preserveAspectRatio="none"
        data-ticks={props.ticks.length}
      >
        {layout.cells.map(c => (
          <rect
            key={c.key}
            x={c.x}
            y={c.y}
            width={c.width}
            height={c.height}
            fill={c.color}
            fillOpacity={c.opacity}
            className={c.fn < 0 ? 'ipc-Stream-failed' : 'ipc-Stream-task'}
            data-fn={c.fn}
          />
        ))}
      </svg>
      <div className="ipc-Legend">
        {props.fns.map((fn, i) => (
          <span key={fn} className="ipc-Legend-item" data-fn={i}>
            <span className="ipc-Legend-swatch" style={{ background: fnColor(i) }} />
            {fn}
          </span>
        ))}
        {failed && (
          <span className="ipc-Legend-item ipc-Legend-failed">
            <span className="ipc-Legend-swatch" style={{ background: FAILED_COLOR }} />
            failed
          </span>
        )}
      </div>
    </div>
  );
}

function clock(t: number | undefined): string {
  return t === undefined ? '' : new Date(t * 1000).toLocaleTimeString();
}

/** The last distinct failures, newest first: exception, engine, group; the traceback on expand. */
function Failures(props: { failures: Record<string, IFailureLive> }): JSX.Element | null {
  const entries = Object.entries(props.failures).sort(([a], [b]) => Number(b) - Number(a));
  if (!entries.length) {
    return null;
  }
  return (
    <div className="ipc-Failures">
      <div className="ipc-Live-caption">recent failures</div>
      {entries.map(([id, f]) => (
        <details key={id} className="ipc-Failure" title={f.tb}>
          <summary>
            <span className="ipc-Failure-name">{f.n}</span>
            {f.v ? `: ${f.v}` : ''}
            <span className="ipc-Failure-where">
              {f.e !== undefined ? ` · engine ${f.e}` : ''}
              {f.g ? ` · ${f.g}` : ''}
              {f.c && f.c > 1 ? ` · ×${f.c}` : ''}
              {f.t !== undefined ? ` · ${clock(f.t)}` : ''}
            </span>
            <span className="ipc-Failure-summary">{tracebackSummary(f).join('\n')}</span>
          </summary>
          <pre className="ipc-Failure-traceback">{f.tb}</pre>
        </details>
      ))}
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
          {total > 0 ? `queue: ${done} / ${total} tasks` : 'idle'} · {p.rate} tasks/s
          {p.eta !== undefined ? ` · ETA ${fmtSeconds(p.eta)}` : ''} · {live.completed} done in all
        </div>
      </div>
      <Groups live={live} />
      <TaskStream
        ticks={props.model.stream(props.clusterKey)}
        engineIds={Object.keys(live.engines)}
        fns={live.fns ?? []}
        window={30}
      />
      <Failures failures={live.failures ?? {}} />
    </div>
  );
}
