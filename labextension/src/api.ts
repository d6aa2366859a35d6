/**
 * The one way the panel talks REST to the server extension: `requestAPI<T>()`.
 *
 * It goes through `ServerConnection.makeRequest`, so the server's token, XSRF cookie and base
 * URL apply as for every JupyterLab request, and it throws `ServerConnection.ResponseError`
 * carrying the server's `{"message": ...}` so the panel can show why an action failed.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** A cluster as the server lists it (see ipcluster/server/discovery.py). */
export interface IClusterCard {
  key: string;
  cluster_id: string;
  profile: string;
  profile_dir: string;
  cluster_file: string;
  launcher: string;
  controller_launcher: string;
  state: string;
  engines_requested: number;
  engines_registered?: number;
  engine_sets: Record<string, number>;
  owner: string;
  start_time?: number;
  error?: string;
  /** the batch system its engines are jobs of (slurm, sge, ...) */
  batch?: string;
  /** its batch jobs, as the batch system said last */
  jobs?: IBatchJob[];
}

/** A batch job of a cluster: engine set, job id, state (pending, running, done...), engines, reason. */
export interface IBatchJob {
  set: string;
  job_id: string;
  state: string;
  n: number;
  reason?: string;
}

export interface IOptions {
  profiles: string[];
  launchers: string[];
}

/**
 * Call the ipcluster server extension at `ipcluster/<endPoint>` and return its JSON.
 *
 * @throws ServerConnection.ResponseError with the server's message on an HTTP error
 * @throws ServerConnection.NetworkError when the server cannot be reached
 */
export async function requestAPI<T>(
  endPoint = '',
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, 'ipcluster', endPoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }
  const text = await response.text();
  let data: unknown = text;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch {
      // not JSON (a proxy's error page): keep the text for the message
    }
  }
  if (!response.ok) {
    const message =
      typeof data === 'object' && data !== null && 'message' in data
        ? String((data as { message: unknown }).message)
        : text || response.statusText;
    throw new ServerConnection.ResponseError(response, message);
  }
  return data as T;
}

function post(body: unknown): RequestInit {
  return { method: 'POST', body: JSON.stringify(body) };
}

const enc = encodeURIComponent;

/** Typed wrappers of the REST routes; all take optional settings (tests pass a mocked fetch). */
export const ClusterAPI = {
  list: (s?: ServerConnection.ISettings) =>
    requestAPI<{ clusters: IClusterCard[] }>('clusters', {}, s),
  options: (s?: ServerConnection.ISettings) =>
    requestAPI<IOptions>('options', {}, s),
  create: (
    spec: { profile: string; n: number; launcher: string; start?: boolean },
    s?: ServerConnection.ISettings
  ) => requestAPI<IClusterCard>('clusters', post(spec), s),
  start: (key: string, n?: number, s?: ServerConnection.ISettings) =>
    requestAPI<IClusterCard>(
      `clusters/${enc(key)}/start`,
      post(n === undefined ? {} : { n }),
      s
    ),
  scale: (key: string, n: number, s?: ServerConnection.ISettings) =>
    requestAPI<IClusterCard>(`clusters/${enc(key)}/scale`, post({ n }), s),
  stop: (key: string, s?: ServerConnection.ISettings) =>
    requestAPI<IClusterCard>(`clusters/${enc(key)}/stop`, post({}), s),
  remove: (key: string, s?: ServerConnection.ISettings) =>
    requestAPI<string>(`clusters/${enc(key)}`, { method: 'DELETE' }, s)
};

/** The code that connects a notebook to a cluster, by its cluster file. */
export function connectionCode(card: IClusterCard): string {
  return [
    'import ipcluster as ipp',
    '',
    `cluster = ipp.Cluster.from_file(${JSON.stringify(card.cluster_file)})`,
    'rc = cluster.connect_client_sync()',
    'rc'
  ].join('\n');
}
