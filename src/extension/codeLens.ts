/** A "Solve with Twisted SMC" CodeLens above each math word problem of a Markdown file. */
import * as vscode from "vscode";
import { allProblems } from "./markdown";

export class ProblemCodeLensProvider implements vscode.CodeLensProvider {
  provideCodeLenses(doc: vscode.TextDocument): vscode.CodeLens[] {
    return allProblems(doc.getText()).map((p) => {
      const range = new vscode.Range(doc.positionAt(p.start), doc.positionAt(p.start));
      return new vscode.CodeLens(range, {
        title: "$(play) Solve with Twisted SMC",
        command: "twistedSmc.solve",
        arguments: [doc.uri, p.start],
      });
    });
  }
}
