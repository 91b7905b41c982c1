/**
 * The engine process: a JSON-RPC server (vscode-languageserver) that solves on request, streaming
 * each SMC step as a notification. The extension host spawns it; `twisted-smc serve --stdio` runs it
 * by hand. Models stay loaded between requests. (Training runs as its own process: the CLI, whose
 * JSON progress lines are typed in protocol/training.ts.)
 */
import { Connection, ResponseError } from "vscode-languageserver/node";
import { CancellationToken, ErrorCodes as RpcErrors } from "vscode-jsonrpc";
import {
  BACKENDS,
  ErrorCodes,
  EngineStatus,
  Methods,
  MODEL_VARIANTS,
  ModelSettings,
  SolveParams,
  SmcStepRecord,
  SolveResultMessage,
} from "../../protocol/protocol";
import { loadModel, LoadedModel, withCpuFallback } from "../lm/model/loadModel";
import { DEVICES } from "../lm/decoder/device";
import { RESAMPLING_SCHEMES } from "../smc/resampling";
import { SmcCancelled } from "../smc/twistedSmc";
import { Twist } from "../smc/twist";
import { isRemote, solve, SolveModel, withSystem } from "../solve";
import { openRemoteModel, remoteTwistFolder } from "../remote/remoteModel";
import { RemoteServerError } from "../remote/retry";
import { apiKeyFromEnv } from "../environment";
import { lineSmcRefusal } from "../smc/lineSmc";
import { InputError } from "../util/errors";
import { loadRemoteTwistOption, loadTwistOption } from "../twist/resolve";
import { UsageError } from "../util/options";

declare const PACKAGE_VERSION: string | undefined;

interface Loaded {
  key: string;
  model: SolveModel;
  twists: Map<string, { twist: Twist; name: string } | undefined>;
}

/** A model handed to one request; `release` when the request ends. */
interface Lease {
  loaded: Loaded;
  release: () => void;
}

/**
 * Keeps one model loaded; a request for other settings replaces it. A replaced model is disposed only
 * once the requests still running on it have ended: changing a setting mid-solve must not pull the
 * session out from under that solve.
 */
class ModelCache {
  private current?: Promise<Loaded>;
  private key?: string;
  /** Requests running on each loaded model. */
  private readonly users = new Map<Loaded, number>();
  /** Models replaced while in use: disposed when their last request ends. */
  private readonly retired = new Set<Loaded>();

  async acquire(settings: ModelSettings): Promise<Lease> {
    const loaded = await this.get(settings);
    this.users.set(loaded, (this.users.get(loaded) ?? 0) + 1);
    let released = false;
    return {
      loaded,
      release: () => {
        if (released) return;
        released = true;
        const left = (this.users.get(loaded) ?? 1) - 1;
        if (left > 0) return void this.users.set(loaded, left);
        this.users.delete(loaded);
        if (this.retired.delete(loaded)) dispose(loaded.model);
      },
    };
  }

  private async get(settings: ModelSettings): Promise<Loaded> {
    const variant = settings.variant ?? "auto";
    const remote = settings.backend === "openai" ? settings.server : undefined;
    const key = JSON.stringify(remote ? ["openai", settings.model, remote.url, remote.model] : [settings.model, settings.device, variant]);
    if (this.current && this.key === key) {
      try {
        return await this.current;
      } catch {
        // The last load failed: try again below.
      }
    }
    const previous = this.current;
    this.key = key;
    // A server model is opened, not loaded: its tokenizer is read and no request made until a solve.
    const load: Promise<SolveModel> = remote
      ? Promise.resolve().then(() =>
          openRemoteModel({
            url: remote.url,
            serverModel: remote.model || undefined,
            tokenizer: settings.model || undefined,
            apiKey: apiKeyFromEnv(),
          }),
        )
      : loadModel(settings.model || undefined, { device: settings.device, dtype: variant });
    this.current = load.then((model) => ({
      key,
      model,
      twists: new Map(),
    }));
    previous?.then((p) => this.retire(p)).catch(() => undefined);
    return this.current;
  }

  /** A model no longer current: disposed now when idle, else when its last request ends. */
  private retire(loaded: Loaded): void {
    if (this.users.has(loaded)) this.retired.add(loaded);
    else dispose(loaded.model);
  }

  /** After a GPU failed mid-run: the same settings now mean this CPU copy of the model. */
  replaceModel(loaded: Loaded, cpu: LoadedModel): void {
    const old = loaded.model;
    loaded.model = cpu;
    dispose(old);
  }

  async twist(loaded: Loaded, option: string, level: "token" | "step") {
    const key = `${option}|${level}`;
    const given = option === "" ? undefined : option;
    const model = loaded.model;
    if (!loaded.twists.has(key))
      loaded.twists.set(
        key,
        isRemote(model) ? await loadRemoteTwistOption(given, remoteTwistFolder(model), level) : await loadTwistOption(given, model, level),
      );
    return loaded.twists.get(key);
  }

  async peek(): Promise<Loaded | undefined> {
    try {
      return await this.current;
    } catch {
      return undefined;
    }
  }
}

function dispose(model: SolveModel): void {
  if (!isRemote(model)) void model.lm.dispose().catch(() => undefined); // a server model holds nothing here
}

function check(cond: boolean, message: string): void {
  if (!cond) throw new ResponseError(RpcErrors.InvalidParams, message);
}

/** Rejects malformed requests with a message naming the field, before any work starts. */
export function validateSolveParams(p: SolveParams): void {
  check(typeof p === "object" && p !== null, "solve needs an object of parameters");
  check(typeof p.runId === "string" && p.runId.length > 0, "solve: runId must be a non-empty string");
  check(typeof p.problem === "string" && p.problem.trim().length > 0, "solve: the problem text is empty");
  const m = p.model,
    s = p.smc;
  check(
    typeof m === "object" && m !== null && typeof m.model === "string" && typeof m.twist === "string",
    "solve: model must be {model, twist, device}",
  );
  check((DEVICES as readonly string[]).includes(m.device), `solve: device must be one of ${DEVICES.join(", ")}`);
  check(
    m.variant === undefined || (MODEL_VARIANTS as readonly string[]).includes(m.variant),
    `solve: variant must be one of ${MODEL_VARIANTS.join(", ")}`,
  );
  check(m.systemPrompt === undefined || typeof m.systemPrompt === "string", "solve: systemPrompt must be a string");
  check(
    m.backend === undefined || (BACKENDS as readonly string[]).includes(m.backend),
    `solve: backend must be one of ${BACKENDS.join(", ")}`,
  );
  if (m.backend === "openai")
    check(
      typeof m.server === "object" && m.server !== null && typeof m.server.url === "string" && typeof m.server.model === "string",
      "solve: the openai backend needs server {url, model}",
    );
  check(typeof s === "object" && s !== null, "solve: smc settings are missing");
  check(Number.isInteger(s.particles) && s.particles >= 1 && s.particles <= 4096, "solve: particles must be an integer from 1 to 4096");
  check(s.level === "token" || s.level === "step", "solve: level must be token or step");
  check(
    (RESAMPLING_SCHEMES as readonly string[]).includes(s.resampling),
    `solve: resampling must be one of ${RESAMPLING_SCHEMES.join(", ")}`,
  );
  check(typeof s.essThreshold === "number" && s.essThreshold >= 0 && s.essThreshold <= 1, "solve: essThreshold must be between 0 and 1");
  check(Number.isInteger(s.maxTokens) && s.maxTokens >= 1, "solve: maxTokens must be a positive integer");
  check(typeof s.temperature === "number" && s.temperature > 0, "solve: temperature must be > 0");
  check(Number.isInteger(s.seed) && s.seed >= 0, "solve: seed must be an integer >= 0");
  if (m.backend === "openai") {
    if (!m.server!.url.trim())
      throw new ResponseError(
        ErrorCodes.inputError,
        "the openai backend needs a server: set twistedSmc.server.url (e.g. http://127.0.0.1:8080)",
      );
    // What a server cannot do is the user's to change (a setting), not a malformed request.
    const refusal = lineSmcRefusal({ level: s.level, temperature: s.temperature });
    if (refusal)
      throw new ResponseError(
        ErrorCodes.inputError,
        refusal.replace("--level step", "twistedSmc.level step").replace("--temperature 1", "twistedSmc.temperature 1"),
      );
  }
}

/** Turns engine failures into JSON-RPC errors the client can show as they are. */
function asResponseError(e: unknown): ResponseError<void> {
  if (e instanceof ResponseError) return e;
  if (e instanceof SmcCancelled) return new ResponseError(ErrorCodes.cancelled, "cancelled");
  const err = e as Error;
  if (e instanceof InputError || e instanceof UsageError || e instanceof RangeError)
    return new ResponseError(ErrorCodes.inputError, err.message);
  // The server's URL and what it answered (never the key), for the user to act on.
  if (e instanceof RemoteServerError)
    return new ResponseError(
      ErrorCodes.serverError,
      `the inference server failed: ${err.message}: check that it is running, or twistedSmc.server.url`,
    );
  return new ResponseError(RpcErrors.InternalError, `engine error: ${err.message}`);
}

function abortOn(token: CancellationToken): AbortSignal {
  const controller = new AbortController();
  if (token.isCancellationRequested) controller.abort();
  token.onCancellationRequested(() => controller.abort());
  return controller.signal;
}

export function registerHandlers(connection: Connection): void {
  const models = new ModelCache();
  let busy = 0;
  // Every request received, counted so an idle editor can be seen to send none.
  let requests = 0;
  let lastTwist: string | null = null;

  connection.onInitialize(() => ({
    capabilities: {},
    serverInfo: { name: "twisted-smc-engine", version: typeof PACKAGE_VERSION === "string" ? PACKAGE_VERSION : "dev" },
  }));

  connection.onRequest(Methods.status, async (): Promise<EngineStatus> => {
    requests++;
    const loaded = await models.peek();
    const model = loaded?.model;
    const local = model && !isRemote(model) ? model : undefined;
    return {
      version: typeof PACKAGE_VERSION === "string" ? PACKAGE_VERSION : "dev",
      model: model ? (isRemote(model) ? (model.text.folder?.dir ?? model.text.name) : model.folder.dir) : null,
      modelFile: local ? local.folder.onnxFile : null,
      device: model ? (local ? local.lm.device : "server") : null,
      deviceChoice: local?.lm.deviceChoice ?? null,
      server: model && isRemote(model) ? model.server : null,
      twist: lastTwist,
      busy: busy > 0,
      pid: process.pid,
      requests,
    };
  });

  connection.onRequest(Methods.solve, async (params: SolveParams, token: CancellationToken): Promise<SolveResultMessage> => {
    requests++;
    busy++;
    let lease: Lease | undefined;
    try {
      validateSolveParams(params);
      const signal = abortOn(token);
      lease = await models.acquire(params.model);
      const loaded = lease.loaded;
      const twist = params.model.twist === "none" ? undefined : await models.twist(loaded, params.model.twist, params.smc.level);
      lastTwist = twist?.name ?? null;
      const options = {
        ...params.smc,
        resample: "adaptive" as const,
        twist: twist?.twist,
        twistName: twist?.name ?? null,
        record: true,
        signal,
        onStep: (step: SmcStepRecord) => void connection.sendNotification(Methods.step, { runId: params.runId, step }),
      };
      const run = (model: SolveModel) => solve(withSystem(model, params.model.systemPrompt), params.problem, options);
      const model = loaded.model;
      // A local model that fails on its GPU mid-run goes on on the CPU (withCpuFallback); a server's is the server's.
      const r = isRemote(model)
        ? await run(model)
        : await withCpuFallback(model, { device: params.model.device, dtype: params.model.variant }, run, (cpu) =>
            models.replaceModel(loaded, cpu),
          );
      return { ...r, runId: params.runId, logZ: Number.isFinite(r.logZ) ? r.logZ : null, record: r.record! };
    } catch (e) {
      throw asResponseError(e);
    } finally {
      lease?.release();
      busy--;
    }
  });
}
