/**
 * Runs a token twist head in onnxruntime instead of JavaScript: the head is written out as a three-node
 * ONNX graph (MatMul, MatMul, Add, its weights as initializers) and evaluated by the same runtime as the
 * model. At K = 16 on the shipped model this brings the twist's cost per step from about a forward pass
 * of the model to a small fraction of one. Training keeps the JavaScript head (its gradients are by hand).
 */
import * as ort from "onnxruntime-node";
import { TokenTwistWeights } from "../lm/causalLm";
import { bytesField, concat, message } from "../lm/onnx/protoWire";
import { TokenTwist, Twist, TwistInput } from "../smc/twist";
import { TokenTwistHead, ValueTwistHead } from "./heads";
import { LineVerifier } from "./lineVerifier";

const FLOAT = 1;

function tensor(name: string, dims: number[], data: Float32Array): Uint8Array {
  return message([...dims.map((d) => [1, d] as [number, number]), [2, FLOAT], [8, name], [9, new Uint8Array(data.buffer, data.byteOffset, data.byteLength)]]);
}

function valueInfo(name: string, dims: (string | number)[]): Uint8Array {
  const shape = concat(dims.map((d) => bytesField(1, message([[typeof d === "number" ? 1 : 2, d]]))));
  return message([[1, name], [2, message([[1, message([[1, FLOAT], [2, shape]])]])]]);
}

function node(op: string, inputs: string[], output: string): Uint8Array {
  return message([...inputs.map((i) => [1, i] as [number, string]), [2, output], [3, output], [4, op]]);
}

/** The ONNX model computing log ψ = log σ((h·U)·W + b) for a batch of hidden states. */
export function tokenHeadModel(head: TokenTwistHead): Uint8Array {
  const { hiddenSize: H, vocabSize: V, rank: R, U, W, b } = head.p;
  const graph = message([
    [1, node("MatMul", ["hidden", "U"], "z")],
    [1, node("MatMul", ["z", "W"], "zw")],
    [1, node("Add", ["zw", "b"], "x")],
    // log σ(x) = −softplus(−x)
    [1, node("Neg", ["x"], "neg_x")],
    [1, node("Softplus", ["neg_x"], "softplus")],
    [1, node("Neg", ["softplus"], "log_psi")],
    [2, "token_twist"],
    [5, tensor("U", [H, R], U)],
    [5, tensor("W", [R, V], W)],
    [5, tensor("b", [V], b)],
    [11, valueInfo("hidden", ["rows", H])],
    [12, valueInfo("log_psi", ["rows", V])],
  ]);
  return message([[1, 8], [2, "twisted-smc"], [7, graph], [8, message([[1, ""], [2, 14]])]]);
}

export class OnnxTokenTwist implements TokenTwist {
  readonly kind = "token";

  private constructor(private readonly session: ort.InferenceSession, private readonly head: TokenTwistHead) {}

  /** The head's weights, as this session holds them (a model that draws where it runs evaluates them there). */
  get weights(): TokenTwistWeights {
    return this.head.p;
  }

  static async create(head: TokenTwistHead, threads = 1): Promise<OnnxTokenTwist> {
    const session = await ort.InferenceSession.create(tokenHeadModel(head), { executionProviders: ["cpu"], intraOpNumThreads: threads, graphOptimizationLevel: "all" });
    return new OnnxTokenTwist(session, head);
  }

  async logPsiNext(input: TwistInput): Promise<Float32Array> {
    const rows = input.prefixes.length;
    if (!input.hidden) return this.head.logPsiNext(input); // lets the head report the missing hidden state
    const out = await this.session.run({ hidden: new ort.Tensor("float32", input.hidden, [rows, this.head.p.hiddenSize]) });
    return out.log_psi.data as Float32Array;
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}

/** The fastest way to evaluate a head: token heads in onnxruntime, the (tiny) step twists as they are. */
export async function runnableTwist(head: TokenTwistHead | ValueTwistHead | LineVerifier): Promise<Twist> {
  return head instanceof TokenTwistHead ? OnnxTokenTwist.create(head) : head;
}
