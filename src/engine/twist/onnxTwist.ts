/**
 * Runs a token twist head in onnxruntime instead of JavaScript: the head is written out as a three-node
 * ONNX graph (MatMul, MatMul, Add, its weights as initializers) and evaluated by the same runtime as the
 * model. At K = 16 on the shipped model this brings the twist's cost per step from about a forward pass
 * of the model to a small fraction of one. Training keeps the JavaScript head (its gradients are by hand).
 */
import * as ort from "onnxruntime-node";
import { TokenTwistWeights } from "../lm/causalLm";
import { SESSION_CONFIG } from "../lm/decoder/device";
import { DTYPE, GRAPH, modelBytes, tensorValueInfo } from "../lm/onnx/graphBuild";
import { bytesField } from "../lm/onnx/protoWire";
import { twistHeadFields } from "../lm/onnx/twistHeadGraph";
import { TokenTwist, Twist, TwistInput } from "../smc/twist";
import { TokenTwistHead, ValueTwistHead } from "./heads";
import { LineVerifier } from "./lineVerifier";

/** The ONNX model computing log ψ = log σ((h·U)·W + b) for a batch of hidden states. */
export function tokenHeadModel(head: TokenTwistHead): Uint8Array {
  const { hiddenSize: H, vocabSize: V } = head.p;
  return modelBytes(
    "token_twist",
    [
      ...twistHeadFields((s) => s, head.p, "hidden", "log_psi"),
      bytesField(GRAPH.input, tensorValueInfo("hidden", DTYPE.float, ["rows", H])),
      bytesField(GRAPH.output, tensorValueInfo("log_psi", DTYPE.float, ["rows", V])),
    ],
    14,
  );
}

export class OnnxTokenTwist implements TokenTwist {
  readonly kind = "token";

  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly head: TokenTwistHead,
  ) {}

  /** The head's weights, as this session holds them (a model that draws where it runs evaluates them there). */
  get weights(): TokenTwistWeights {
    return this.head.p;
  }

  static async create(head: TokenTwistHead, threads = 1): Promise<OnnxTokenTwist> {
    const session = await ort.InferenceSession.create(tokenHeadModel(head), {
      executionProviders: ["cpu"],
      intraOpNumThreads: threads,
      graphOptimizationLevel: "all",
      extra: { session: { ...SESSION_CONFIG } },
    });
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
