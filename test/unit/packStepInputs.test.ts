import assert from "node:assert/strict";
import * as ort from "onnxruntime-node";
import { SEQLENS_K } from "../../src/engine/lm/onnx/fuseAttention";
import { DTYPE, GRAPH, modelBytes, tensorValueInfo } from "../../src/engine/lm/onnx/graphBuild";
import { packStep, packStepInputs, STEP_INPUT } from "../../src/engine/lm/onnx/packStepInputs";
import { bytesField } from "../../src/engine/lm/onnx/protoWire";
import { SAMPLE_INVERSE_TEMPERATURE, SAMPLE_UNIFORM } from "../../src/engine/lm/onnx/samplingHead";

const ALL = ["input_ids", "position_ids", SEQLENS_K, SAMPLE_UNIFORM, SAMPLE_INVERSE_TEMPERATURE];

/** The packing nodes alone as a model whose outputs are the inputs they make. */
async function unpacker(inputs: string[]): Promise<{ session: ort.InferenceSession; layout: string[] }> {
  const packed = packStepInputs(inputs, 17)!;
  const type = (n: string) => (n === "input_ids" || n === "position_ids" ? DTYPE.int64 : n === SEQLENS_K ? DTYPE.int32 : DTYPE.float);
  const dims = (n: string) => (n === "input_ids" || n === "position_ids" ? ["b", "s"] : n === SEQLENS_K ? ["b"] : ["b", 1]);
  const body = [...packed.nodes, packed.input, ...packed.layout.map((n) => bytesField(GRAPH.output, tensorValueInfo(n, type(n), dims(n))))];
  return {
    session: await ort.InferenceSession.create(modelBytes("unpack", body, 17), { executionProviders: ["cpu"] }),
    layout: packed.layout,
  };
}

describe("one packed input per forward pass (a GPU graph's ids, positions, row lengths and draw inputs)", () => {
  it("lays out each row's tokens' ids and positions, then its values, and the graph's split gives each input back exactly", async () => {
    // A fixed capacity's inputs, one token or three; a growing cache's (its mask apart); ids and lengths alone.
    const growing = ["input_ids", "attention_mask", "position_ids", SAMPLE_UNIFORM, SAMPLE_INVERSE_TEMPERATURE];
    const cases: [string[], number][] = [
      [ALL, 1],
      [ALL, 3],
      [growing, 2],
      [["input_ids", SEQLENS_K, "past_key_values.0.key"], 2],
    ];
    for (const [inputs, sequence] of cases) {
      const { session, layout } = await unpacker(inputs);
      assert.deepEqual(
        layout,
        inputs.filter((n) => !n.startsWith("past") && n !== "attention_mask"),
      );
      const batch = 3;
      // Ids near float32's exact-integer limit (2^24), as a large vocabulary's would be.
      const ids = Int32Array.from({ length: batch * sequence }, (_, i) => 2 ** 24 - 1 - 7 * i);
      const positions = Int32Array.from({ length: batch * sequence }, (_, i) => 100 + i);
      const values: Record<string, ArrayLike<number>> = {
        [SEQLENS_K]: [9, 0, 4],
        [SAMPLE_UNIFORM]: Float32Array.of(0.013, 1 - 2 ** -24, 0.5),
        [SAMPLE_INVERSE_TEMPERATURE]: [1 / 0.7],
      };
      const data = packStep(layout, batch, sequence, ids, positions, (n) => values[n]);
      const width = (inputs.includes("position_ids") ? 2 : 1) * sequence + layout.length - (inputs.includes("position_ids") ? 2 : 1);
      assert.equal(data.length, batch * width);
      // Row 1: its ids, its positions, then its length, uniform and 1/T.
      assert.deepEqual([...data.subarray(width, width + sequence)], [...ids.subarray(sequence, 2 * sequence)]);
      const out = await session.run({ [STEP_INPUT]: new ort.Tensor("float32", data, [batch, width]) });
      assert.deepEqual([...(out.input_ids.data as BigInt64Array)], [...ids].map(BigInt));
      assert.deepEqual(out.input_ids.dims, [batch, sequence]);
      if (inputs.includes(SEQLENS_K)) {
        assert.deepEqual([...(out[SEQLENS_K].data as Int32Array)], [9, 0, 4]);
        assert.deepEqual(out[SEQLENS_K].dims, [batch]);
      }
      if (inputs.includes("position_ids")) {
        assert.deepEqual([...(out.position_ids.data as BigInt64Array)], [...positions].map(BigInt));
        assert.deepEqual([...(out[SAMPLE_UNIFORM].data as Float32Array)], [...(values[SAMPLE_UNIFORM] as Float32Array)]);
        assert.deepEqual([...(out[SAMPLE_INVERSE_TEMPERATURE].data as Float32Array)], Array(batch).fill(Math.fround(1 / 0.7)));
      }
      await session.release();
    }
  });

  it("packs nothing where the graph lacks input_ids, or its opset has no Split sizes input", () => {
    assert.equal(packStepInputs([SEQLENS_K, "position_ids"], 17), undefined);
    assert.equal(packStepInputs(ALL, 12), undefined);
  });
});
