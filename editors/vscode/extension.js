// Starts `nnc lsp` for .nn files: diagnostics, hover, completion, go to definition
// and formatting all come from the language server.
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const command = vscode.workspace.getConfiguration("nnc").get("path", "nnc");
  client = new LanguageClient(
    "nnc",
    "nnc",
    { command, args: ["lsp"] },
    { documentSelector: [{ scheme: "file", language: "nn" }] }
  );
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
