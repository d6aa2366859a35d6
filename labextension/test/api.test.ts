import { ServerConnection } from '@jupyterlab/services';
import { describe, expect, it } from 'vitest';

import { ClusterAPI, connectionCode, requestAPI } from '../src/api';
import { settingsWith } from './helpers';

const json = (data: unknown, status = 200) =>
  new Response(JSON.stringify(data), { status, headers: { 'Content-Type': 'application/json' } });

describe('requestAPI', () => {
  it('calls ipcluster/<endpoint> under the base URL with the token and returns JSON', async () => {
    const { settings, calls } = settingsWith(() => json({ clusters: [] }));
    const data = await requestAPI<{ clusters: unknown[] }>('clusters', {}, settings);
    expect(data).toEqual({ clusters: [] });
    expect(calls[0].url).toBe('http://localhost:8888/base/ipcluster/clusters');
    expect((calls[0].init.headers as Headers).get('Authorization')).toBe('token secret');
  });

  it("throws ResponseError with the server's message", async () => {
    const { settings } = settingsWith(() => json({ message: 'no cluster x' }, 404));
    await expect(requestAPI('clusters/x', {}, settings)).rejects.toSatisfy(
      (e: unknown) => e instanceof ServerConnection.ResponseError && e.message === 'no cluster x' && e.response.status === 404
    );
  });

  it('keeps a non-JSON error body as the message', async () => {
    const { settings } = settingsWith(() => new Response('Bad Gateway', { status: 502 }));
    await expect(requestAPI('clusters', {}, settings)).rejects.toThrow('Bad Gateway');
  });

  it('wraps a failed fetch in NetworkError', async () => {
    const settings = ServerConnection.makeSettings({
      baseUrl: 'http://localhost:8888/',
      fetch: (async () => {
        throw new TypeError('connection refused');
      }) as unknown as typeof globalThis.fetch,
      Request,
      Headers
    });
    await expect(requestAPI('clusters', {}, settings)).rejects.toBeInstanceOf(ServerConnection.NetworkError);
  });

  it('returns an empty body (204) as an empty string', async () => {
    const { settings, calls } = settingsWith(() => new Response(null, { status: 204 }));
    await expect(ClusterAPI.remove('default:1-abcd', settings)).resolves.toBe('');
    expect(calls[0].init.method).toBe('DELETE');
    expect(calls[0].url).toBe('http://localhost:8888/base/ipcluster/clusters/default%3A1-abcd');
  });
});

describe('ClusterAPI', () => {
  it('posts actions with JSON bodies to the routes the server has', async () => {
    const { settings, calls } = settingsWith(() => json({ key: 'k' }));
    await ClusterAPI.create({ profile: 'default', n: 2, launcher: 'local', start: true }, settings);
    await ClusterAPI.start('p:id', 3, settings);
    await ClusterAPI.scale('p:id', 5, settings);
    await ClusterAPI.stop('p:id', settings);
    expect(calls.map(c => [c.init.method, c.url.replace('http://localhost:8888/base/ipcluster/', ''), c.init.body])).toEqual([
      ['POST', 'clusters', '{"profile":"default","n":2,"launcher":"local","start":true}'],
      ['POST', 'clusters/p%3Aid/start', '{"n":3}'],
      ['POST', 'clusters/p%3Aid/scale', '{"n":5}'],
      ['POST', 'clusters/p%3Aid/stop', '{}']
    ]);
  });

  it('connection code loads the cluster from its file and connects', () => {
    const code = connectionCode({ cluster_file: '/home/u/.ipython/profile_default/security/cluster-1.json' } as never);
    expect(code).toContain('ipp.Cluster.from_file("/home/u/.ipython/profile_default/security/cluster-1.json")');
    expect(code).toContain('rc = cluster.connect_client_sync()');
  });
});
