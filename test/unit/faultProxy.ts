/**
 * A local HTTP proxy in front of an inference server for the remote-backend tests: it injects faults
 * (429 with Retry-After, 503, 400, malformed JSON, a hang, a closed connection) for the first requests
 * or all of them, delays requests to make them overlap, counts requests in flight and records the
 * bodies and Authorization headers it was sent.
 */
import { createServer, IncomingMessage, Server, ServerResponse } from "node:http";
import { AddressInfo } from "node:net";

export type Fault = "429" | "503" | "400" | "malformed" | "hang" | "close";

/** A proxy in front of the server: faults for the first requests (or all), counts, records bodies. */
export class FaultProxy {
  server!: Server;
  url = "";
  faults: Fault[] = [];
  persistent: Fault | undefined;
  /** Extra wait before forwarding, to make requests overlap. */
  delayMs = 0;
  retryAfterS = "0";
  requests = 0;
  /** Requests whose client closed the connection before the answer was written (an abort). */
  aborted = 0;
  inFlight = 0;
  maxInFlight = 0;
  bodies: Record<string, unknown>[] = [];
  /** The path of each request, in order. */
  paths: string[] = [];
  /** Paths answered 404, as a server without those endpoints would (TGI, a hosted API). */
  missing = new Set<string>();
  /** Drops `logprobs` from completions answers, as a server that returns none would. */
  stripLogprobs = false;
  authorizations: (string | undefined)[] = [];

  /** Where requests go: a restarted server on another port is pointed to by setting it. */
  constructor(public upstream: string) {}

  async start(): Promise<void> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  reset(): void {
    Object.assign(this, {
      faults: [],
      persistent: undefined,
      delayMs: 0,
      retryAfterS: "0",
      requests: 0,
      aborted: 0,
      inFlight: 0,
      maxInFlight: 0,
      bodies: [],
      paths: [],
      missing: new Set<string>(),
      stripLogprobs: false,
      authorizations: [],
    });
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString();
    this.requests++;
    res.on("close", () => void (res.writableFinished ? undefined : this.aborted++));
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    this.bodies.push(body ? (JSON.parse(body) as Record<string, unknown>) : {}); // a GET (/props) has none
    this.authorizations.push(req.headers.authorization);
    this.paths.push(req.url!);
    const done = () => void this.inFlight--;
    if (this.missing.has(req.url!)) {
      done();
      res.writeHead(404).end(JSON.stringify({ error: { message: "Not Found" } }));
      return;
    }
    const fault = this.faults.shift() ?? this.persistent;
    if (fault === "hang") {
      res.on("close", done);
      return; // never answers; the client's timeout or abort ends it
    }
    if (fault === "close") {
      done();
      req.socket.destroy();
      return;
    }
    if (fault === "429" || fault === "503" || fault === "400") {
      done();
      const status = Number(fault);
      const headers = fault === "429" ? { "retry-after": this.retryAfterS } : undefined;
      res.writeHead(status, headers).end(JSON.stringify({ error: { message: `injected ${status}` } }));
      return;
    }
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    let upstream: Response, text: string;
    try {
      upstream = await fetch(
        this.upstream + req.url!,
        req.method === "GET" ? { method: "GET" } : { method: "POST", headers: { "content-type": "application/json" }, body },
      );
      text = await upstream.text();
    } catch {
      // The server is gone: the client sees what it would see of a dead server, a dropped connection.
      done();
      req.socket.destroy();
      return;
    }
    done();
    if (this.stripLogprobs && upstream.ok && req.url!.endsWith("/completions")) {
      const json = JSON.parse(text) as { choices: { logprobs?: unknown }[] };
      json.choices.forEach((c) => delete c.logprobs);
      text = JSON.stringify(json);
    }
    res
      .writeHead(upstream.status, { "content-type": "application/json" })
      .end(fault === "malformed" ? text.slice(0, text.length >> 1) : text);
  }
}
