/**
 * Registers the ipcluster panel and its commands; the panel, model and API live elsewhere.
 */
import {
  ILabShell,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, showErrorMessage } from '@jupyterlab/apputils';
import { IConsoleTracker } from '@jupyterlab/console';
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';

import { ClusterAPI, IClusterCard, connectionCode } from './api';
import { ClusterModel } from './model';
import { ClusterPanel } from './widgets/panel';

namespace CommandIDs {
  export const open = 'ipcluster:open-panel';
  export const create = 'ipcluster:new-cluster';
  export const refresh = 'ipcluster:refresh';
  export const insert = 'ipcluster:insert-connection-code';
  export const stop = 'ipcluster:stop-cluster';
  export const scale = 'ipcluster:scale-cluster';
}

const CATEGORY = 'IPython Clusters';

/**
 * Put the connection code where the user is working: the focused console's prompt, else the
 * active notebook's active cell if it is empty, else a new cell below it.
 */
function insertCode(
  shell: ILabShell,
  notebooks: INotebookTracker,
  consoles: IConsoleTracker | null,
  card: IClusterCard
): boolean {
  const code = connectionCode(card);
  const console = consoles?.currentWidget;
  if (console && shell.currentWidget === console) {
    console.console.promptCell?.model.sharedModel.setSource(code);
    return true;
  }
  const panel = notebooks.currentWidget;
  if (!panel) {
    void showErrorMessage('No notebook', 'Open a notebook or a console to insert the connection code into.');
    return false;
  }
  const notebook = panel.content;
  const active = notebook.activeCell;
  if (!active || active.model.sharedModel.getSource().trim() !== '') {
    NotebookActions.insertBelow(notebook);
  }
  notebook.activeCell?.model.sharedModel.setSource(code);
  return true;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'ipcluster-panel:plugin',
  description: 'Start, watch, scale and stop ipcluster clusters from the sidebar',
  autoStart: true,
  requires: [ILabShell, INotebookTracker],
  optional: [ICommandPalette, IConsoleTracker],
  activate: (
    app: JupyterFrontEnd,
    shell: ILabShell,
    tracker: INotebookTracker,
    palette: ICommandPalette | null,
    consoles: IConsoleTracker | null
  ) => {
    const model = new ClusterModel();
    const panel = new ClusterPanel(model, {
      insertCode: card => void app.commands.execute(CommandIDs.insert, { key: card.key }),
      options: () => ClusterAPI.options(model.settings)
    });
    shell.add(panel, 'left', { rank: 300 });
    model.connect();

    const cardOf = (args: { key?: unknown }) =>
      typeof args.key === 'string' ? model.cluster(args.key) : model.clusters.find(c => c.state === 'running');

    app.commands.addCommand(CommandIDs.open, {
      label: 'Show the Clusters panel',
      execute: () => shell.activateById(panel.id)
    });
    app.commands.addCommand(CommandIDs.create, {
      label: 'New cluster…',
      execute: () => {
        shell.activateById(panel.id);
        panel.showNewForm();
      }
    });
    app.commands.addCommand(CommandIDs.refresh, {
      label: 'Refresh the cluster list',
      execute: () => model.refresh()
    });
    app.commands.addCommand(CommandIDs.insert, {
      label: 'Insert cluster connection code into the notebook or console',
      isEnabled: () =>
        (tracker.currentWidget !== null || (consoles?.currentWidget ?? null) !== null) && cardOf({}) !== undefined,
      execute: args => {
        const card = cardOf(args as { key?: unknown });
        return card ? insertCode(shell, tracker, consoles, card) : false;
      }
    });
    app.commands.addCommand(CommandIDs.stop, {
      label: 'Stop a running cluster',
      isEnabled: () => cardOf({}) !== undefined,
      execute: args => {
        const card = cardOf(args as { key?: unknown });
        return card ? model.stop(card.key) : undefined;
      }
    });
    app.commands.addCommand(CommandIDs.scale, {
      label: 'Scale a running cluster',
      isEnabled: () => cardOf({}) !== undefined,
      execute: args => {
        const card = cardOf(args as { key?: unknown });
        const n = Number((args as { n?: unknown }).n);
        return card && Number.isInteger(n) ? model.scale(card.key, n) : undefined;
      }
    });
    if (palette) {
      for (const command of [CommandIDs.open, CommandIDs.create, CommandIDs.refresh, CommandIDs.insert, CommandIDs.stop]) {
        palette.addItem({ command, category: CATEGORY });
      }
    }
  }
};

export default plugin;
