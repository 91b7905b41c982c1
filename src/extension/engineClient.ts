/**
 * Owns the engine process: starts it lazily on first use (vscode-languageclient over node IPC), restarts
 * it on request, and after a crash fails in-flight requests with a clear message and starts a fresh
 * engine on the next use. Nothing already computed lives in the engine, so nothing is lost.
 *
 * The inference server's API key (secret storage) reaches the engine only as OPENAI_API_KEY in its
 * environment at start; a changed key restarts an idle engine, or a busy one once its work is done.
 */
import * as vscode from "vscode";
import {
  CloseAction,
  ErrorAction,
  LanguageClient,
  LanguageClientOptions,
  ServerOptions,
  State,
  TransportKind,
} from "vscode-languageclient/node";
import { EngineStatus, Methods, SolveParams, SolveResultMessage, StepParams } from "../protocol/protocol";
import { engineEnv } from "./remoteServer";

export type EngineState = "stopped" | "starting" | "ready" | "busy" | "crashed";

export class EngineClient implements vscode.Disposable {
  private client?: LanguageClient;
  private starting?: Promise<LanguageClient>;
  private busy = 0;
  private readonly stateEmitter = new vscode.EventEmitter<EngineState>();
  private readonly stepEmitter = new vscode.EventEmitter<StepParams>();
  private readonly crashEmitter = new vscode.EventEmitter<string>();
  readonly onDidChangeState = this.stateEmitter.event;
  readonly onStep = this.stepEmitter.event;
  /** The engine process stopped without being asked to: the payload says what the user sees. */
  readonly onDidCrash = this.crashEmitter.event;
  state: EngineState = "stopped";
  lastStatus?: EngineStatus;
  /** The running (or starting) engine has an API key that is no longer the stored one. */
  private staleKey = false;

  constructor(
    private readonly context: vscode.ExtensionContext,
    private readonly log: vscode.LogOutputChannel,
    /** The stored API key of the inference server, read at each start (undefined: none stored). */
    private readonly apiKey: () => Thenable<string | undefined> = async () => undefined,
  ) {}

  private setState(s: EngineState): void {
    this.state = s;
    this.stateEmitter.fire(s);
  }

  /**
   * The stored API key changed. An engine that is not running reads it when it starts ("next start");
   * an idle one is stopped now, the next use starts one with the new key ("restarted"); a busy one
   * finishes its work with the old key and is restarted by the next solve ("after the current work").
   */
  apiKeyChanged(): "next start" | "restarted" | "after the current work" {
    if (!this.client && !this.starting) return "next start";
    this.staleKey = true;
    if (this.busy > 0 || this.starting) return "after the current work";
    void this.stop();
    return "restarted";
  }

  private async ensureStarted(): Promise<LanguageClient> {
    if (this.client && this.client.state === State.Running) return this.client;
    this.starting ??= this.start().finally(() => (this.starting = undefined));
    return this.starting;
  }

  private async start(): Promise<LanguageClient> {
    this.setState("starting");
    this.staleKey = false;
    const module = this.context.asAbsolutePath("dist/engine.js");
    // Read at each start, so a restart picks up a changed key; with none stored the parent's environment stays as it is.
    const env = engineEnv(process.env, await Promise.resolve(this.apiKey()).catch(() => undefined));
    const serverOptions: ServerOptions = {
      run: { module, transport: TransportKind.ipc, options: env ? { env } : {} },
      debug: { module, transport: TransportKind.ipc, options: { execArgv: ["--nolazy", "--inspect=6019"], ...(env ? { env } : {}) } },
    };
    const clientOptions: LanguageClientOptions = {
      documentSelector: [],
      outputChannel: this.log,
      errorHandler: {
        error: (error) => {
          this.log.error(`engine connection error: ${error.message}`);
          return { action: ErrorAction.Continue };
        },
        // No automatic restart loop: the next use starts a fresh engine.
        closed: () => {
          if (this.state !== "stopped" && this.state !== "crashed") {
            const message =
              "The Twisted SMC engine stopped unexpectedly. It restarts on the next solve, or now with Restart Engine; the log may say why.";
            this.log.error("the engine process stopped unexpectedly; it will restart on the next use");
            this.setState("crashed");
            this.crashEmitter.fire(message);
          }
          return { action: CloseAction.DoNotRestart, handled: true };
        },
      },
    };
    const client = new LanguageClient("twistedSmc", "Twisted SMC engine", serverOptions, clientOptions);
    client.onNotification(Methods.step, (p) => this.stepEmitter.fire(p));
    await client.start();
    this.client = client;
    this.setState("ready");
    this.log.info("engine started");
    return client;
  }

  async solve(params: SolveParams, token: vscode.CancellationToken): Promise<SolveResultMessage> {
    return this.request((c) => c.sendRequest(Methods.solve, params, token));
  }

  /**
   * Asks the engine what it has loaded (starting it if needed). A question, not work: it leaves the
   * state alone, so whoever listens to the state may ask it without making the state change again.
   */
  async status(): Promise<EngineStatus> {
    const s = await this.request((c) => c.sendRequest(Methods.status), false);
    this.lastStatus = s;
    return s;
  }

  /** The status when the engine already runs; nothing when it is stopped or crashed (it is not started for this). */
  async statusIfRunning(): Promise<EngineStatus | undefined> {
    if (!this.client || this.client.state !== State.Running || this.state === "crashed") return undefined;
    return this.status().catch(() => undefined);
  }

  private async request<T>(send: (c: LanguageClient) => Promise<T>, work = true): Promise<T> {
    let client = await this.ensureStarted();
    // Work after a key change goes to an engine started with the new key (once no other work is running).
    if (work && this.staleKey && this.busy === 0) {
      await this.stop();
      client = await this.ensureStarted();
    }
    if (!work) return this.send(client, send);
    this.busy++;
    this.setState("busy");
    try {
      return await this.send(client, send);
    } finally {
      this.busy--;
      if (this.state === "busy" && this.busy === 0) this.setState("ready");
    }
  }

  private async send<T>(client: LanguageClient, send: (c: LanguageClient) => Promise<T>): Promise<T> {
    try {
      return await send(client);
    } catch (e) {
      // The close may be reported after the request fails, so a disposed connection counts as a crash too.
      const died =
        this.state === "crashed" ||
        client.state !== State.Running ||
        /connection (got )?(disposed|closed)|pending response rejected/i.test((e as Error).message);
      if (died) {
        throw new Error("The Twisted SMC engine stopped while working (see the Twisted SMC output). It restarts on the next use.");
      }
      throw e;
    }
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.ensureStarted();
  }

  async stop(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    this.staleKey = false;
    this.setState("stopped");
    if (c && c.state === State.Running) await c.stop().catch((e) => this.log.warn(`stopping the engine: ${(e as Error).message}`));
  }

  dispose(): void {
    void this.stop();
    this.stateEmitter.dispose();
    this.stepEmitter.dispose();
    this.crashEmitter.dispose();
  }
}
