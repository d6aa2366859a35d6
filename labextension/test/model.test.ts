import { afterEach, describe, expect, it } from 'vitest';

import { ClusterModel, IStreamMessage, mergeDelta } from '../src/model';
import { settingsWith } from './helpers';

class FakeSocket {
  static last: FakeSocket | null = null;
  sent: unknown[] = [];
  onopen: (() => void) | null = null;
  onmessage: ((e: { data: string }) => void) | null = null;
  onclose: (() => void) | null = null;
  closed = false;
  constructor(readonly url: string) {
    FakeSocket.last = this;
  }
  send(data: string) {
    this.sent.push(JSON.parse(data));
  }
  close() {
    this.closed = true;
    this.onclose?.();
  }
  // test side
  open() {
    this.onopen?.();
  }
  push(msg: IStreamMessage) {
    this.onmessage?.({ data: JSON.stringify(msg) });
  }
}

const card = (key: string, extra: object = {}) => ({
  key,
  cluster_id: key.split(':')[1],
  profile: key.split(':')[0],
  profile_dir: '/p',
  cluster_file: '/p/security/cluster-x.json',
  launcher: 'local',
  controller_launcher: 'local',
  state: 'running',
  engines_requested: 2,
  engine_sets: {},
  owner: 'python',
  ...extra
});

function makeModel(respond: (url: string) => Response = () => new Response(JSON.stringify({ clusters: [] }))) {
  const { settings, calls } = settingsWith(respond);
  const withSocket = { ...settings, WebSocket: FakeSocket as unknown as typeof WebSocket };
  const model = new ClusterModel({ settings: withSocket, streamWindow: 10, pollInterval: 60000 });
  return { model, calls };
}

let models: ClusterModel[] = [];
afterEach(() => {
  models.forEach(m => m.dispose());
  models = [];
});

describe('mergeDelta', () => {
  it('merges objects, deletes on null and replaces the rest', () => {
    const base = { a: { x: 1, y: [1, 2] }, b: 2, gone: { z: 1 } };
    expect(mergeDelta(base, { a: { y: [3] }, gone: null, c: 'new' })).toEqual({ a: { x: 1, y: [3] }, b: 2, c: 'new' });
    expect(base.gone).toEqual({ z: 1 }); // not mutated
  });
});

describe('ClusterModel', () => {
  it('opens one same-origin websocket with the token and says whether it is visible', () => {
    const { model } = makeModel();
    models.push(model);
    model.connect();
    model.connect(); // idempotent
    const socket = FakeSocket.last!;
    expect(socket.url).toBe('ws://localhost:8888/base/ipcluster/stream?token=secret');
    socket.open();
    expect(socket.sent).toEqual([{ visible: false }]);
    model.setVisible(true);
    expect(socket.sent).toEqual([{ visible: false }, { visible: true }]);
    expect(model.connected).toBe(true);
  });

  it('applies a snapshot then deltas, and emits changed', () => {
    const { model } = makeModel();
    models.push(model);
    let changes = 0;
    model.changed.connect(() => changes++);
    model.applyMessage({ t: 'snapshot', clusters: { 'default:a': card('default:a'), 'default:b': card('default:b') }, live: {} });
    expect(model.clusters.map(c => c.key)).toEqual(['default:a', 'default:b']);
    model.applyMessage({ t: 'delta', clusters: { 'default:a': { engines_registered: 2 } as never, 'default:b': null } });
    expect(model.clusters.map(c => [c.key, c.engines_registered])).toEqual([['default:a', 2]]);
    expect(model.cluster('default:a')!.launcher).toBe('local');
    model.applyMessage({
      t: 'delta',
      live: {
        'default:a': {
          counts: { idle: 1, busy: 1, dead: 0 },
          completed: 5,
          progress: { outstanding: 3, rate: 2 },
          engines: { '0': { s: 'idle', q: 0, d: 2 }, '1': { s: 'busy', q: 3, d: 3, e: 1 } }
        }
      }
    });
    model.applyMessage({ t: 'delta', live: { 'default:a': { engines: { '1': { s: 'idle', q: 0, e: null } } } as never } });
    expect(model.live('default:a')!.engines['1']).toEqual({ s: 'idle', q: 0, d: 3 });
    expect(changes).toBe(4);
    // a new snapshot (after the panel was hidden) replaces everything
    model.applyMessage({ t: 'snapshot', clusters: {}, live: {} });
    expect(model.clusters).toEqual([]);
    expect(model.live('default:a')).toBeUndefined();
  });

  it('keeps a sliding window of the task stream', () => {
    const { model } = makeModel();
    models.push(model);
    model.applyMessage({ t: 'snapshot', clusters: { 'p:a': card('p:a') }, live: {} });
    model.applyMessage({
      t: 'delta',
      stream: { 'p:a': [[1, 100, { '0': { '0': 2 } }], [2, 105, { '0': { '1': 1 } }, { '0': 1 }]] }
    });
    model.applyMessage({ t: 'delta', stream: { 'p:a': [[3, 112, { '1': { '0': 4 } }]] } });
    expect(model.stream('p:a').map(t => t[0])).toEqual([2, 3]); // 100 is more than 10 s before 112
    expect(model.stream('p:a')[0][3]).toEqual({ '0': 1 }); // failed items travel with their tick
  });

  it('merges groups and failures by id: new ones added, finished ones changed, old ones dropped', () => {
    const { model } = makeModel();
    models.push(model);
    const live = {
      counts: { idle: 2, busy: 0, dead: 0 },
      completed: 0,
      progress: { outstanding: 0, rate: 0 },
      engines: {},
      fns: ['square'],
      groups: { '1': { name: 'squares', kind: 'label', fn: 'square', n: 200, d: 40, rate: 20, eta: 8 } },
      failures: {}
    };
    model.applyMessage({ t: 'snapshot', clusters: { 'p:a': card('p:a') }, live: { 'p:a': live } });
    model.applyMessage({
      t: 'delta',
      live: {
        'p:a': {
          groups: { '1': { d: 190, f: 10, rate: null, eta: null, done: true } },
          failures: { '3': { n: 'ValueError', v: 'no 13', tb: 'Traceback\n  in square\nValueError: no 13', e: 1 } }
        } as never
      }
    });
    const view = model.live('p:a')!;
    expect(view.groups!['1']).toEqual({ name: 'squares', kind: 'label', fn: 'square', n: 200, d: 190, f: 10, done: true });
    expect(view.failures!['3'].e).toBe(1);
    model.applyMessage({ t: 'delta', live: { 'p:a': { groups: { '1': null }, failures: { '3': null } } as never } });
    expect(model.live('p:a')!.groups).toEqual({});
    expect(model.live('p:a')!.failures).toEqual({});
  });

  it('falls back to REST when the websocket closes, and records action errors', async () => {
    const { model, calls } = makeModel(url =>
      url.endsWith('/scale')
        ? new Response(JSON.stringify({ message: 'cluster p:a is stopped, not running' }), { status: 409 })
        : new Response(JSON.stringify({ clusters: [card('p:a', { engines_registered: 1 })] }))
    );
    models.push(model);
    await model.refresh();
    expect(model.cluster('p:a')!.engines_registered).toBe(1);
    const result = await model.scale('p:a', 4);
    expect(result).toBeUndefined();
    expect(model.error).toBe('cluster p:a is stopped, not running');
    // without a websocket, an action is followed by a listing
    expect(calls.map(c => c.url.split('/ipcluster/')[1])).toEqual(['clusters', 'clusters/p%3Aa/scale', 'clusters']);
  });

  it('lists over REST when the websocket closes while the panel is visible', async () => {
    const { model, calls } = makeModel(() => new Response(JSON.stringify({ clusters: [card('p:a')] })));
    models.push(model);
    model.connect();
    const socket = FakeSocket.last!;
    socket.open();
    model.setVisible(true);
    expect(calls).toEqual([]); // the websocket feeds the model: no polling
    const changed = new Promise<void>(resolve => model.changed.connect(() => resolve()));
    socket.onclose?.(); // the server went away
    await changed;
    expect(model.connected).toBe(false);
    expect(calls.map(c => c.url.split('/ipcluster/')[1])).toEqual(['clusters']);
    expect(model.cluster('p:a')).toBeDefined();
  });

  it('dispose closes the websocket and stops reconnecting', () => {
    const { model } = makeModel();
    model.connect();
    const socket = FakeSocket.last!;
    socket.open();
    model.dispose();
    expect(socket.closed).toBe(true);
    expect(model.isDisposed).toBe(true);
  });
});
