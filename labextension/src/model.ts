/**
 * The panel's state: cluster cards and live views, fed by one websocket of deltas.
 *
 * No DOM here. The server sends a snapshot, then deltas (only changed keys; `null` removes a
 * key) at a bounded rate; `applyMessage` merges them. If the websocket is down, a `Poll` with
 * backoff lists clusters over REST instead; it stands by while the socket works or the panel is
 * hidden. Hiding the panel tells the server to stop sending (and, with no other watcher, to
 * stop sampling controllers).
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import { ClusterAPI, IClusterCard } from './api';

/** One engine's live state: s(tate), q(ueue), d(one), e(lapsed s, busy), m(emory MiB). */
export interface IEngineLive {
  s: string;
  q: number;
  d: number;
  e?: number;
  m?: number;
}

/**
 * One label, map or function: items submitted (n), done (d), failed (f), items per second and
 * ETA while it runs, `done` once all finished (it stays for a minute).
 */
export interface IGroupLive {
  name: string;
  kind: 'label' | 'map' | 'fn' | string;
  fn: string;
  n: number;
  d: number;
  f?: number;
  rate?: number;
  eta?: number;
  done?: boolean;
}

/**
 * A recent failure: exception n(ame), v(alue), t(race)b(ack) (its first and last lines),
 * e(ngine), g(roup name), gid (the group's id in `groups`), k(ind), t(ime, epoch s), c(ount) of
 * failures like it in the same group.
 */
export interface IFailureLive {
  n: string;
  v?: string;
  tb?: string;
  e?: number;
  g?: string;
  gid?: string;
  k?: string;
  t?: number;
  c?: number;
}

export interface ILiveView {
  counts: Record<string, number>;
  completed: number;
  progress: {
    outstanding: number;
    rate: number;
    done?: number;
    total?: number;
    eta?: number;
  };
  engines: Record<string, IEngineLive>;
  /** function names in colour order: the stream's function indices */
  fns?: string[];
  groups?: Record<string, IGroupLive>;
  failures?: Record<string, IFailureLive>;
}

/**
 * A task-stream tick: [tick, time (s), {function index: {engine id: items done}}], and
 * {engine id: items failed} when some failed.
 */
export type StreamTick =
  | [number, number, Record<string, Record<string, number>>]
  | [number, number, Record<string, Record<string, number>>, Record<string, number>];

export interface IStreamMessage {
  t: 'snapshot' | 'delta';
  clusters?: Record<string, IClusterCard | null>;
  live?: Record<string, ILiveView | null>;
  stream?: Record<string, StreamTick[]>;
}

type Json = { [key: string]: unknown };

/** Merge a delta into a copy of `base`: objects recursively, `null` deletes, the rest replaces. */
export function mergeDelta<T extends Json>(base: T, delta: Json): T {
  const out: Json = { ...base };
  for (const [key, value] of Object.entries(delta)) {
    if (value === null) {
      delete out[key];
    } else if (
      typeof value === 'object' &&
      !Array.isArray(value) &&
      typeof out[key] === 'object' &&
      out[key] !== null &&
      !Array.isArray(out[key])
    ) {
      out[key] = mergeDelta(out[key] as Json, value as Json);
    } else {
      out[key] = value;
    }
  }
  return out as T;
}

export namespace ClusterModel {
  export interface IOptions {
    settings?: ServerConnection.ISettings;
    /** seconds of task stream kept for the chart */
    streamWindow?: number;
    /** milliseconds between REST listings while the websocket is down */
    pollInterval?: number;
  }
}

export class ClusterModel {
  constructor(options: ClusterModel.IOptions = {}) {
    this.settings = options.settings ?? ServerConnection.makeSettings();
    this._streamWindow = options.streamWindow ?? 30;
    this._poll = new Poll({
      factory: () => this.refresh(),
      frequency: {
        interval: options.pollInterval ?? 5000,
        backoff: true,
        max: 60000
      },
      name: 'ipcluster:clusters',
      standby: () => this._hidden || this._socketOpen
    });
  }

  readonly settings: ServerConnection.ISettings;

  /** Emitted after any change of clusters, live views or the stream. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get clusters(): IClusterCard[] {
    return Object.values(this._clusters).sort((a, b) =>
      a.key.localeCompare(b.key)
    );
  }

  cluster(key: string): IClusterCard | undefined {
    return this._clusters[key];
  }

  live(key: string): ILiveView | undefined {
    return this._live[key];
  }

  stream(key: string): StreamTick[] {
    return this._stream[key] ?? [];
  }

  get connected(): boolean {
    return this._socketOpen;
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  /** Last error of an action, for the panel to show. */
  get error(): string {
    return this._error;
  }

  /** Apply one websocket message (public for tests). */
  applyMessage(msg: IStreamMessage): void {
    if (msg.t === 'snapshot') {
      this._clusters = {};
      this._live = {};
    }
    if (msg.clusters) {
      this._clusters = mergeDelta(this._clusters as Json, msg.clusters as Json) as Record<
        string,
        IClusterCard
      >;
    }
    if (msg.live) {
      this._live = mergeDelta(this._live as Json, msg.live as Json) as Record<
        string,
        ILiveView
      >;
    }
    for (const [key, ticks] of Object.entries(msg.stream ?? {})) {
      const kept = (this._stream[key] ?? []).concat(ticks);
      const newest = kept.length ? kept[kept.length - 1][1] : 0;
      this._stream[key] = kept.filter(t => newest - t[1] <= this._streamWindow);
    }
    for (const key of Object.keys(this._stream)) {
      if (!(key in this._clusters)) {
        delete this._stream[key];
      }
    }
    this._changed.emit();
  }

  /** Open the websocket (idempotent); on close, the poll takes over and a reconnect is tried. */
  connect(): void {
    if (this._socket || this._disposed) {
      return;
    }
    let url = URLExt.join(this.settings.wsUrl, 'ipcluster', 'stream');
    if (this.settings.token) {
      url += `?token=${encodeURIComponent(this.settings.token)}`;
    }
    const socket = new this.settings.WebSocket(url);
    this._socket = socket;
    socket.onopen = () => {
      this._socketOpen = true;
      this._reconnectDelay = 1000;
      socket.send(JSON.stringify({ visible: !this._hidden }));
    };
    socket.onmessage = (event: MessageEvent) => {
      this.applyMessage(JSON.parse(String(event.data)) as IStreamMessage);
    };
    socket.onclose = () => {
      this._socket = null;
      this._socketOpen = false;
      if (this._disposed) {
        return;
      }
      void this._poll.refresh();
      this._reconnectTimer = setTimeout(() => this.connect(), this._reconnectDelay);
      this._reconnectDelay = Math.min(this._reconnectDelay * 2, 30000);
    };
  }

  /** The panel was shown or hidden: tell the server, and let the poll stand by when hidden. */
  setVisible(visible: boolean): void {
    this._hidden = !visible;
    if (this._socket && this._socketOpen) {
      this._socket.send(JSON.stringify({ visible }));
    }
    if (visible && !this._socketOpen) {
      void this._poll.refresh();
    }
  }

  /** List clusters over REST (the fallback, and after each action). */
  async refresh(): Promise<void> {
    const { clusters } = await ClusterAPI.list(this.settings);
    const next: Record<string, IClusterCard> = {};
    for (const card of clusters) {
      next[card.key] = card;
    }
    this._clusters = next;
    this._changed.emit();
  }

  async create(profile: string, n: number, launcher: string): Promise<IClusterCard | undefined> {
    return this._act(() => ClusterAPI.create({ profile, n, launcher, start: true }, this.settings));
  }

  async start(key: string, n?: number): Promise<IClusterCard | undefined> {
    return this._act(() => ClusterAPI.start(key, n, this.settings));
  }

  async scale(key: string, n: number): Promise<IClusterCard | undefined> {
    return this._act(() => ClusterAPI.scale(key, n, this.settings));
  }

  async stop(key: string): Promise<IClusterCard | undefined> {
    return this._act(() => ClusterAPI.stop(key, this.settings));
  }

  async remove(key: string): Promise<void> {
    await this._act(() => ClusterAPI.remove(key, this.settings));
  }

  private async _act<T>(action: () => Promise<T>): Promise<T | undefined> {
    this._error = '';
    let result: T | undefined;
    try {
      result = await action();
    } catch (error) {
      this._error = error instanceof Error ? error.message : String(error);
    }
    if (!this._socketOpen) {
      try {
        await this.refresh();
      } catch {
        // the poll retries
      }
    }
    this._changed.emit();
    return result;
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    this._poll.dispose();
    if (this._reconnectTimer !== null) {
      clearTimeout(this._reconnectTimer);
    }
    this._socket?.close();
    Signal.clearData(this);
  }

  private _changed = new Signal<this, void>(this);
  private _clusters: Record<string, IClusterCard> = {};
  private _live: Record<string, ILiveView> = {};
  private _stream: Record<string, StreamTick[]> = {};
  private _socket: WebSocket | null = null;
  private _socketOpen = false;
  private _hidden = true;
  private _error = '';
  private _disposed = false;
  private _reconnectDelay = 1000;
  private _reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private _poll: Poll;
  private _streamWindow: number;
}
