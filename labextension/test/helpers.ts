/** A ServerConnection.ISettings whose fetch is a function of the test: no server needed. */
import { ServerConnection } from '@jupyterlab/services';
import { vi } from 'vitest';

export function settingsWith(
  respond: (url: string, init: RequestInit) => Response
): { settings: ServerConnection.ISettings; calls: { url: string; init: RequestInit }[] } {
  const calls: { url: string; init: RequestInit }[] = [];
  const fetch = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
    const request = input instanceof Request ? input : new Request(String(input), init);
    const body = request.method === 'GET' || request.method === 'HEAD' ? undefined : await request.text();
    // makeRequest adds a cache-busting query to every URL; the route is what matters here
    const seen = { url: request.url.split('?')[0], init: { method: request.method, body, headers: request.headers } };
    calls.push(seen);
    return respond(seen.url, seen.init);
  });
  const settings = ServerConnection.makeSettings({
    baseUrl: 'http://localhost:8888/base/',
    wsUrl: 'ws://localhost:8888/base/',
    token: 'secret',
    appendToken: false,
    fetch: fetch as unknown as typeof globalThis.fetch,
    Request,
    Headers
  });
  return { settings, calls };
}

