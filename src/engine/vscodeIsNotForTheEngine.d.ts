/**
 * The engine never imports `vscode`: it runs as its own process and as the CLI, where there is no
 * editor. Its tsconfig maps the module vscode to this file, so any use of it fails to compile.
 */
declare const theEngineNeverImportsVscode: unique symbol;
export = theEngineNeverImportsVscode;
