/**
 * Errors about the user's inputs (a model folder, a twist file, a checkpoint, a data set): the CLI and
 * the engine server show their message alone, without a stack trace, since it says what to fix.
 */
export class InputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}
