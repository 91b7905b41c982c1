/** `twisted-smc models pull|list|rm`: Hub models in the Hugging Face cache (src/engine/hub/). */
import { parseArgs } from "node:util";
import { hubCacheDir, listCachedModels, parseRepoId, removeCachedModel } from "../hub/cache";
import { DEFAULT_ENDPOINT, hubToken, PullEvent, pullModel, repoVariants } from "../hub/pull";
import { AUTO_ORDER, DTYPES, Dtype } from "../hub/variants";
import { InputError } from "../util/errors";
import { choiceOption, stringOption, UsageError } from "../util/options";

export const MODELS_HELP = `Usage: twisted-smc models pull <org/name> [--dtype D] [--revision R] [--progress text|json]
       twisted-smc models info <org/name> [--revision R] [--json]
       twisted-smc models list [--json]
       twisted-smc models rm <org/name>

pull downloads one ONNX variant of a Hugging Face Hub model into the Hugging Face cache (the one
Python's huggingface_hub uses: HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub), only
the files that variant needs: config.json, generation_config.json, tokenizer.json,
tokenizer_config.json, special_tokens_map.json, chat_template.jinja/.json when present, and the graph
with all its external data parts. Files already in the cache are not fetched again; a cached file of
the wrong size is; an interrupted download resumes where it stopped. Then every command that takes a
model folder takes the id too: --model org/name (or org/name@revision). Nothing is ever downloaded
implicitly.
  --dtype D            ${DTYPES.join(", ")} (onnx/model.onnx, onnx/model_D.onnx)
                       or auto (default): fp32 when its files total at most 4 GiB, else the first
                       the repository has of ${AUTO_ORDER.join(", ")}
  --revision R         branch, tag or commit (default main)
  --progress text|json a line per file with its bytes and rate (default), or JSON lines on stdout
HF_TOKEN: an access token for gated or private models (else the token file huggingface_hub's login
wrote, $HF_HOME/token); sent to the Hub only, never stored or shown.
HF_ENDPOINT: the Hub's address (default ${DEFAULT_ENDPOINT}).

info lists a Hub model's ONNX variants (--dtype values) and what pulling each downloads, without
downloading anything; auto marks the one --dtype auto takes (--json: one JSON object).

list prints each cached model: id, revision, ONNX variants present, size on disk, snapshot folder
(--json: one JSON array). rm deletes a model from the cache, without asking, and says what it freed.`;

const MB = 1024 * 1024;
function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < MB) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 * MB) return `${(n / MB).toFixed(1)} MiB`;
  return `${(n / 1024 / MB).toFixed(2)} GiB`;
}

function repoArgument(positionals: string[], sub: string): { repo: string; revision?: string } {
  const arg = positionals[1];
  if (arg === undefined) throw new UsageError(`models ${sub} needs a model id: org/name`);
  if (positionals.length > 2) throw new UsageError(`models ${sub} takes one model id, got ${positionals.slice(1).join(" ")}`);
  const ref = parseRepoId(arg);
  if (!ref) throw new UsageError(`"${arg}" is not a Hub model id (org/name)`);
  return ref;
}

export async function modelsCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      dtype: { type: "string" },
      revision: { type: "string" },
      progress: { type: "string" },
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(MODELS_HELP);
    return;
  }
  const sub = positionals[0];
  if (sub === undefined) throw new UsageError("models needs a command: pull, list or rm (see twisted-smc models --help)");
  if (sub === "pull") return pull(positionals, values);
  if (sub === "info") return info(positionals, values);
  if (values.dtype !== undefined || values.revision !== undefined || values.progress !== undefined) {
    throw new UsageError(`--dtype, --revision and --progress are options of models pull, not of models ${sub}`);
  }
  if (sub === "list") {
    if (positionals.length > 1) throw new UsageError("models list takes no arguments");
    return list(values.json === true);
  }
  if (values.json) throw new UsageError(`--json is an option of models list and info, not of models ${sub}`);
  if (sub === "rm") {
    const ref = repoArgument(positionals, "rm");
    if (ref.revision) throw new UsageError("models rm removes a whole model: give org/name without @revision");
    const removed = removeCachedModel(ref.repo);
    if (!removed) throw new InputError(`${ref.repo} is not in the cache (${hubCacheDir()})`);
    console.log(`removed ${ref.repo}: freed ${formatBytes(removed.bytes)} (${removed.path})`);
    return;
  }
  throw new UsageError(`unknown models command "${sub}"; commands: pull, info, list, rm`);
}

async function pull(positionals: string[], values: Record<string, string | boolean | undefined>): Promise<void> {
  const ref = repoArgument(positionals, "pull");
  const revisionFlag = stringOption(values, "revision");
  if (ref.revision && revisionFlag && ref.revision !== revisionFlag) {
    throw new UsageError(`two revisions: ${ref.repo}@${ref.revision} and --revision ${revisionFlag}`);
  }
  const dtype = choiceOption<Dtype | "auto">(values, "dtype", ["auto", ...DTYPES], "auto");
  const progress = choiceOption(values, "progress", ["text", "json"], "text");
  const tty = process.stderr.isTTY === true;
  const onEvent =
    progress === "json"
      ? (e: PullEvent) => process.stdout.write(JSON.stringify(e) + "\n")
      : (e: PullEvent) => {
          const rate = (bytes: number, s: number) => `${formatBytes(s > 0 ? bytes / s : 0)}/s`;
          if (e.event === "start") {
            process.stderr.write(`${e.repo} at ${e.commit.slice(0, 10)}: ${e.dtype}, ${e.files} files, ${formatBytes(e.bytes)}\n`);
          } else if (e.event === "cached") {
            process.stderr.write(`  ${e.path}  ${formatBytes(e.bytes)}  cached\n`);
          } else if (e.event === "refetch") {
            process.stderr.write(`  ${e.path}: fetching again, ${e.reason}\n`);
          } else if (e.event === "progress" && tty) {
            const pct = e.total > 0 ? Math.floor((100 * e.done) / e.total) : 100;
            process.stderr.write(`\r\x1b[K  ${e.path}  ${formatBytes(e.done)} of ${formatBytes(e.total)} (${pct}%)`);
          } else if (e.event === "downloaded") {
            const resumed = e.resumedFrom > 0 ? `, resumed at ${formatBytes(e.resumedFrom)}` : "";
            const fetched = e.bytes - e.resumedFrom;
            process.stderr.write(`${tty ? "\r\x1b[K" : ""}  ${e.path}  ${formatBytes(e.bytes)}  ${rate(fetched, e.seconds)}${resumed}\n`);
          }
        };
  const { token, source: tokenSource } = hubToken();
  const result = await pullModel({
    repo: ref.repo,
    revision: ref.revision ?? revisionFlag,
    dtype,
    endpoint: process.env.HF_ENDPOINT || undefined,
    token,
    tokenSource,
    onEvent,
  });
  const id = `${result.repo}${(ref.revision ?? revisionFlag) ? `@${ref.revision ?? revisionFlag}` : ""}`;
  if (progress === "json") {
    process.stdout.write(JSON.stringify({ event: "done", ...result }) + "\n");
  } else {
    const fetched = result.downloaded > 0 ? `downloaded ${formatBytes(result.downloaded)}` : "already in the cache";
    console.log(`${id} (${result.dtype}): ${fetched}; use --model ${id}\n${result.snapshot}`);
  }
}

async function info(positionals: string[], values: Record<string, string | boolean | undefined>): Promise<void> {
  const ref = repoArgument(positionals, "info");
  if (values.dtype !== undefined || values.progress !== undefined) {
    throw new UsageError("--dtype and --progress are options of models pull, not of models info");
  }
  const revisionFlag = stringOption(values, "revision");
  if (ref.revision && revisionFlag && ref.revision !== revisionFlag) {
    throw new UsageError(`two revisions: ${ref.repo}@${ref.revision} and --revision ${revisionFlag}`);
  }
  const { token, source: tokenSource } = hubToken();
  const result = await repoVariants({
    repo: ref.repo,
    revision: ref.revision ?? revisionFlag,
    endpoint: process.env.HF_ENDPOINT || undefined,
    token,
    tokenSource,
  });
  if (values.json) {
    console.log(JSON.stringify(result, null, 2));
    return;
  }
  console.log(`${result.repo} at ${result.commit.slice(0, 10)}${result.variants.length ? "" : ": no ONNX decoder"}`);
  for (const v of result.variants) {
    console.log(`  ${v.dtype.padEnd(9)} ${formatBytes(v.bytes).padStart(10)}  ${v.graph}${v.dtype === result.auto ? "  (auto)" : ""}`);
  }
}

function list(json: boolean): void {
  const repos = listCachedModels();
  if (json) {
    console.log(JSON.stringify(repos, null, 2));
    return;
  }
  if (repos.length === 0) {
    console.log(`no models in ${hubCacheDir()}`);
    return;
  }
  for (const r of repos) {
    for (const rev of r.revisions) {
      const name = rev.refs.length > 0 ? `${rev.refs.join(",")} (${rev.commit.slice(0, 10)})` : rev.commit.slice(0, 10);
      const variants = rev.variants.length > 0 ? rev.variants.join(",") : "no ONNX";
      console.log(`${r.repo}  ${name}  ${variants}  ${formatBytes(rev.bytes)}  ${rev.path}`);
    }
    if (r.revisions.length === 0) console.log(`${r.repo}  (no snapshot)  ${formatBytes(r.bytes)}  ${r.path}`);
  }
}
