/**
 * A minimal writer for the ONNX protobuf messages a model needs (ModelProto and what it holds). Pure: no
 * DOM, no Node. Only writing: the lab builds graphs and hands the bytes to onnxruntime-web.
 *
 * Protobuf wire format: each field is a varint key (field_number << 3 | wire_type) followed by its value;
 * wire type 0 = varint (int32/int64/enum/bool), 2 = length-delimited (string, bytes, sub-message, packed
 * repeated scalars), 5 = 32-bit (float). Negative int64 values are 10-byte two's complement varints.
 *
 * Field numbers, from onnx/onnx.proto3 (IR version 8):
 *   ModelProto:         ir_version 1 (int64), producer_name 2, producer_version 3, graph 7, opset_import 8
 *   OperatorSetIdProto: domain 1, version 2 (int64)
 *   GraphProto:         node 1, name 2, initializer 5, input 11, output 12
 *   NodeProto:          input 1, output 2, name 3, op_type 4, attribute 5, domain 7
 *   AttributeProto:     name 1, f 2 (float), i 3 (int64), s 4 (bytes), t 5 (tensor), floats 7, ints 8,
 *                       type 20 (FLOAT 1, INT 2, STRING 3, TENSOR 4, FLOATS 6, INTS 7)
 *   TensorProto:        dims 1 (int64), data_type 2, name 8, raw_data 9 (little-endian bytes)
 *   ValueInfoProto:     name 1, type 2;   TypeProto: tensor_type 1;   TypeProto.Tensor: elem_type 1, shape 2
 *   TensorShapeProto:   dim 1;            Dimension: dim_value 1 (int64), dim_param 2 (string)
 */

/** TensorProto.DataType values used here. */
export const ONNX_TYPE = { float: 1, uint8: 2, int8: 3, int32: 6, int64: 7, bool: 9, float16: 10 } as const;
export type OnnxElemType = (typeof ONNX_TYPE)[keyof typeof ONNX_TYPE];

export interface OnnxTensor {
  name: string;
  dataType: OnnxElemType;
  dims: readonly number[];
  /** Little-endian element bytes, row-major. */
  raw: Uint8Array;
}

export type OnnxAttributeValue = number | string | readonly number[] | OnnxTensor | { float: number } | { floats: readonly number[] };

export interface OnnxNode {
  opType: string;
  inputs: readonly string[];
  outputs: readonly string[];
  name?: string;
  /** "" (the default ONNX domain) or "com.microsoft". */
  domain?: string;
  /** Integers are written as INT, strings as STRING, number arrays as INTS; {float}/{floats} for floats. */
  attributes?: Readonly<Record<string, OnnxAttributeValue>>;
}

/** A graph input or output: a tensor of `elemType` whose dims are sizes or symbolic names. */
export interface OnnxValueInfo {
  name: string;
  elemType: OnnxElemType;
  dims: readonly (number | string)[];
}

export interface OnnxGraph {
  name: string;
  nodes: readonly OnnxNode[];
  initializers: readonly OnnxTensor[];
  inputs: readonly OnnxValueInfo[];
  outputs: readonly OnnxValueInfo[];
}

export interface OnnxModel {
  graph: OnnxGraph;
  /** Operator sets, e.g. [{domain: "", version: 17}, {domain: "com.microsoft", version: 1}]. */
  opsets: readonly { domain: string; version: number }[];
  irVersion?: number;
}

/** Appends protobuf fields to a growing byte array. */
class ProtoWriter {
  private buf = new Uint8Array(256);
  private len = 0;

  private reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  private varint(value: number | bigint): void {
    // Two's complement over 64 bits for negatives, as protobuf encodes int64.
    let v = BigInt.asUintN(64, BigInt(value));
    this.reserve(10);
    while (v >= 0x80n) {
      this.buf[this.len++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    this.buf[this.len++] = Number(v);
  }

  private key(field: number, wireType: 0 | 2 | 5): void {
    this.varint((field << 3) | wireType);
  }

  int(field: number, value: number): void {
    if (!Number.isSafeInteger(value)) throw new RangeError(`protobuf field ${field}: ${value} is not an integer`);
    this.key(field, 0);
    this.varint(value);
  }

  float(field: number, value: number): void {
    this.key(field, 5);
    this.reserve(4);
    new DataView(this.buf.buffer, this.len, 4).setFloat32(0, value, true);
    this.len += 4;
  }

  bytes(field: number, value: Uint8Array): void {
    this.key(field, 2);
    this.varint(value.length);
    this.reserve(value.length);
    this.buf.set(value, this.len);
    this.len += value.length;
  }

  string(field: number, value: string): void {
    this.bytes(field, new TextEncoder().encode(value));
  }

  message(field: number, write: (w: ProtoWriter) => void): void {
    const inner = new ProtoWriter();
    write(inner);
    this.bytes(field, inner.finish());
  }

  packedInts(field: number, values: readonly number[]): void {
    const inner = new ProtoWriter();
    for (const v of values) {
      if (!Number.isSafeInteger(v)) throw new RangeError(`protobuf field ${field}: ${v} is not an integer`);
      inner.varint(v);
    }
    this.bytes(field, inner.finish());
  }

  packedFloats(field: number, values: readonly number[]): void {
    const raw = new Uint8Array(values.length * 4);
    const view = new DataView(raw.buffer);
    values.forEach((v, i) => view.setFloat32(i * 4, v, true));
    this.bytes(field, raw);
  }

  finish(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

const ATTRIBUTE_TYPE = { float: 1, int: 2, string: 3, tensor: 4, floats: 6, ints: 7 } as const;

function writeTensor(w: ProtoWriter, t: OnnxTensor): void {
  w.packedInts(1, t.dims);
  w.int(2, t.dataType);
  w.string(8, t.name);
  w.bytes(9, t.raw);
}

function writeAttribute(w: ProtoWriter, name: string, value: OnnxAttributeValue): void {
  w.string(1, name);
  if (typeof value === "number") {
    w.int(3, value);
    w.int(20, ATTRIBUTE_TYPE.int);
  } else if (typeof value === "string") {
    w.string(4, value);
    w.int(20, ATTRIBUTE_TYPE.string);
  } else if (Array.isArray(value)) {
    w.packedInts(8, value as readonly number[]);
    w.int(20, ATTRIBUTE_TYPE.ints);
  } else if ("float" in value) {
    w.float(2, value.float);
    w.int(20, ATTRIBUTE_TYPE.float);
  } else if ("floats" in value) {
    w.packedFloats(7, value.floats);
    w.int(20, ATTRIBUTE_TYPE.floats);
  } else {
    const tensor = value as OnnxTensor;
    w.message(5, (t) => writeTensor(t, tensor));
    w.int(20, ATTRIBUTE_TYPE.tensor);
  }
}

function writeNode(w: ProtoWriter, n: OnnxNode): void {
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  if (n.name) w.string(3, n.name);
  w.string(4, n.opType);
  for (const [name, value] of Object.entries(n.attributes ?? {})) w.message(5, (a) => writeAttribute(a, name, value));
  if (n.domain) w.string(7, n.domain);
}

function writeValueInfo(w: ProtoWriter, v: OnnxValueInfo): void {
  w.string(1, v.name);
  w.message(2, (type) =>
    type.message(1, (tensor) => {
      tensor.int(1, v.elemType);
      tensor.message(2, (shape) => {
        for (const d of v.dims) shape.message(1, (dim) => (typeof d === "number" ? dim.int(1, d) : dim.string(2, d)));
      });
    }),
  );
}

/** The serialized ModelProto, ready for InferenceSession.create(bytes). */
export function encodeOnnxModel(model: OnnxModel): Uint8Array {
  const w = new ProtoWriter();
  w.int(1, model.irVersion ?? 8);
  w.string(2, "quantlab");
  w.message(7, (g) => {
    for (const n of model.graph.nodes) g.message(1, (m) => writeNode(m, n));
    g.string(2, model.graph.name);
    for (const t of model.graph.initializers) g.message(5, (m) => writeTensor(m, t));
    for (const v of model.graph.inputs) g.message(11, (m) => writeValueInfo(m, v));
    for (const v of model.graph.outputs) g.message(12, (m) => writeValueInfo(m, v));
  });
  for (const o of model.opsets) {
    w.message(8, (m) => {
      if (o.domain) m.string(1, o.domain);
      m.int(2, o.version);
    });
  }
  return w.finish();
}
