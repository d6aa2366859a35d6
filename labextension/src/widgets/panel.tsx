/**
 * The "Clusters" sidebar: a New form, one card per cluster, and a live view of running ones.
 * Only rendering: state and actions live in ClusterModel.
 */
import { ReactWidget, UseSignal } from '@jupyterlab/ui-components';
import * as React from 'react';

import { IClusterCard, IOptions } from '../api';
import { ClusterModel } from '../model';
import { LiveView } from './live';

export interface IPanelActions {
  insertCode: (card: IClusterCard) => void;
  options: () => Promise<IOptions>;
}

function NewClusterForm(props: {
  model: ClusterModel;
  options: () => Promise<IOptions>;
  onDone: () => void;
}): JSX.Element {
  const [opts, setOpts] = React.useState<IOptions>({
    profiles: ['default'],
    launchers: ['local']
  });
  const [profile, setProfile] = React.useState('default');
  const [n, setN] = React.useState(2);
  const [launcher, setLauncher] = React.useState('local');
  const [busy, setBusy] = React.useState(false);
  React.useEffect(() => {
    props.options().then(setOpts, () => undefined);
  }, []);
  const submit = async (e: React.FormEvent) => {
    e.preventDefault();
    setBusy(true);
    await props.model.create(profile, n, launcher);
    setBusy(false);
    props.onDone();
  };
  return (
    <form className="ipc-NewForm" onSubmit={submit}>
      <label>
        Profile
        <input
          className="ipc-NewForm-profile"
          list="ipc-profiles"
          value={profile}
          onChange={e => setProfile(e.target.value)}
        />
        <datalist id="ipc-profiles">
          {opts.profiles.map(p => (
            <option key={p} value={p} />
          ))}
        </datalist>
      </label>
      <label>
        Engines
        <input
          className="ipc-NewForm-engines"
          type="number"
          min={0}
          value={n}
          onChange={e => setN(parseInt(e.target.value, 10) || 0)}
        />
      </label>
      <label>
        Launcher
        <select
          className="ipc-NewForm-launcher"
          value={launcher}
          onChange={e => setLauncher(e.target.value)}
        >
          {opts.launchers.map(l => (
            <option key={l} value={l}>
              {l}
            </option>
          ))}
        </select>
      </label>
      <button className="jp-Button jp-mod-accept ipc-NewForm-start" type="submit" disabled={busy}>
        {busy ? 'Starting…' : 'Create and start'}
      </button>
    </form>
  );
}

function ClusterCardView(props: {
  card: IClusterCard;
  model: ClusterModel;
  actions: IPanelActions;
}): JSX.Element {
  const { card, model } = props;
  const [target, setTarget] = React.useState(card.engines_requested || 1);
  const running = card.state === 'running';
  const registered = card.engines_registered ?? 0;
  return (
    <div className={`ipc-Card ipc-state-${card.state}`} data-key={card.key}>
      <div className="ipc-Card-head">
        <span className="ipc-Card-id">{card.cluster_id || '(no id)'}</span>
        <span className="ipc-Card-state">{card.state}</span>
      </div>
      <table className="ipc-Card-fields">
        <tbody>
          <tr>
            <th>profile</th>
            <td className="ipc-Card-profile">{card.profile}</td>
          </tr>
          <tr>
            <th>launcher</th>
            <td className="ipc-Card-launcher">{card.launcher}</td>
          </tr>
          <tr>
            <th>engines</th>
            <td className="ipc-Card-engines">
              {registered} / {card.engines_requested}
            </td>
          </tr>
          {card.jobs && card.jobs.length > 0 && (
            <tr>
              <th>{card.batch ?? 'batch'} jobs</th>
              <td className="ipc-Card-jobs">
                {card.jobs.map(job => (
                  <span
                    key={`${job.set}-${job.job_id}`}
                    className={`ipc-Job ipc-Job-${job.state}`}
                    title={
                      `job ${job.job_id} (${job.set}): ${job.state}` +
                      (job.reason ? ` (${job.reason})` : '') +
                      `, ${job.n} engine${job.n === 1 ? '' : 's'}`
                    }
                  >
                    {job.job_id} {job.state}
                    {job.reason ? ` (${job.reason})` : ''}
                  </span>
                ))}
              </td>
            </tr>
          )}
          <tr>
            <th>started by</th>
            <td>{card.owner}</td>
          </tr>
        </tbody>
      </table>
      {card.error && <div className="ipc-Card-error">{card.error}</div>}
      <div className="ipc-Card-buttons">
        {(card.state === 'created' || card.state === 'stopped') && (
          <button className="jp-Button ipc-Card-start" onClick={() => void model.start(card.key)}>
            Start
          </button>
        )}
        {running && (
          <>
            <input
              className="ipc-Card-target"
              type="number"
              min={0}
              value={target}
              onChange={e => setTarget(parseInt(e.target.value, 10) || 0)}
            />
            <button className="jp-Button ipc-Card-scale" onClick={() => void model.scale(card.key, target)}>
              Scale
            </button>
            <button className="jp-Button ipc-Card-stop" onClick={() => void model.stop(card.key)}>
              Stop
            </button>
            <button className="jp-Button ipc-Card-insert" onClick={() => props.actions.insertCode(card)}>
              Insert connection code
            </button>
          </>
        )}
        {!running && card.state !== 'starting' && card.state !== 'stopping' && (
          <button className="jp-Button ipc-Card-delete" onClick={() => void model.remove(card.key)}>
            Remove
          </button>
        )}
      </div>
      {running && <LiveView model={model} clusterKey={card.key} />}
    </div>
  );
}

function PanelBody(props: { model: ClusterModel; actions: IPanelActions }): JSX.Element {
  const [showNew, setShowNew] = React.useState(false);
  const { model } = props;
  return (
    <div className="ipc-Panel-body">
      <div className="ipc-Panel-header">
        <h2>Clusters</h2>
        <button className="jp-Button ipc-Panel-new" onClick={() => setShowNew(!showNew)}>
          New
        </button>
      </div>
      {showNew && (
        <NewClusterForm model={model} options={props.actions.options} onDone={() => setShowNew(false)} />
      )}
      <UseSignal signal={model.changed}>
        {() => (
          <>
            {model.error && <div className="ipc-Panel-error">{model.error}</div>}
            {model.clusters.length === 0 && (
              <p className="ipc-Panel-empty">No clusters yet: press New, or start one with Cluster() in a notebook.</p>
            )}
            {model.clusters.map(card => (
              <ClusterCardView key={card.key} card={card} model={model} actions={props.actions} />
            ))}
          </>
        )}
      </UseSignal>
    </div>
  );
}

/** The sidebar widget; tells the model when it is shown or hidden. */
export class ClusterPanel extends ReactWidget {
  constructor(
    readonly model: ClusterModel,
    private readonly _actions: IPanelActions
  ) {
    super();
    this.id = 'ipcluster-panel';
    this.addClass('ipc-Panel');
    this.title.caption = 'Clusters';
    this.title.label = 'Clusters';
    document.addEventListener('visibilitychange', this._onVisibility);
  }

  dispose(): void {
    document.removeEventListener('visibilitychange', this._onVisibility);
    super.dispose();
  }

  /** A browser tab in the background counts as hidden: the server stops sending to it. */
  private _onVisibility = (): void => {
    this.model.setVisible(this.isVisible && !document.hidden);
  };

  /** Open the New form (the palette's "New cluster"). */
  showNewForm(): void {
    this.node.querySelector<HTMLButtonElement>('.ipc-Panel-new')?.click();
  }

  protected onAfterShow(): void {
    this.model.setVisible(!document.hidden);
  }

  protected onAfterHide(): void {
    this.model.setVisible(false);
  }

  render(): JSX.Element {
    return <PanelBody model={this.model} actions={this._actions} />;
  }
}
