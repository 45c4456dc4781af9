#!/usr/bin/env node
// Uses an exported rnn-toolkit model from Node.js with nothing but the .onnx file: the metadata embedded in it
// (docs/serving.md, "What every exported .onnx carries") gives the tokenizer rules, the vocabulary, the label
// tables and the input/output names. Supports the slot-filling and sentiment tasks.
//
//   npm install --ignore-scripts          # onnxruntime-node, CPU build
//   node predict.js RUN_DIR_OR_MODEL.onnx "show me flights from boston to denver" ["another text" ...]
//
// Prints one JSON object per text: slot filling {text, words, tags, slots, intent, intent_confidence};
// sentiment {text, tokens, label, confidence}.
"use strict";

const fs = require("fs");
const path = require("path");
const ort = require("onnxruntime-node");

// --- the metadata: ModelProto.metadata_props (field 14), entry "metadata.json" --------------------------------------

function readVarint(buf, pos) {
  let value = 0;
  let scale = 1;
  for (;;) {
    const byte = buf[pos++];
    value += (byte & 0x7f) * scale;
    if (byte < 0x80) return [value, pos];
    scale *= 128;
  }
}

// The top-level fields of a protobuf message: [{field, wire, start, end}] (length-delimited ones only have a body).
function* fields(buf, start = 0, end = buf.length) {
  let pos = start;
  while (pos < end) {
    let key;
    [key, pos] = readVarint(buf, pos);
    const field = Math.floor(key / 8);
    const wire = key & 7;
    if (wire === 0) {
      [, pos] = readVarint(buf, pos);
    } else if (wire === 1) {
      pos += 8;
    } else if (wire === 5) {
      pos += 4;
    } else if (wire === 2) {
      let length;
      [length, pos] = readVarint(buf, pos);
      yield { field, start: pos, end: pos + length };
      pos += length;
    } else {
      throw new Error(`unsupported protobuf wire type ${wire}`);
    }
  }
}

function readMetadata(modelBytes) {
  for (const prop of fields(modelBytes)) {
    if (prop.field !== 14) continue; // metadata_props: StringStringEntryProto {1: key, 2: value}
    let key = null;
    let value = null;
    for (const part of fields(modelBytes, prop.start, prop.end)) {
      const text = modelBytes.toString("utf8", part.start, part.end);
      if (part.field === 1) key = text;
      if (part.field === 2) value = text;
    }
    if (key === "metadata.json") return JSON.parse(value);
  }
  throw new Error("the model carries no 'metadata.json' metadata: it was not exported by rnn-toolkit");
}

// --- the tokenizers (casefold_punct_v1 and casefold_chars_v1) -------------------------------------------------------

// Unicode White_Space.
const WHITE_SPACE = new Set(
  "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" +
    "\u2028\u2029\u202f\u205f\u3000",
);
// Default_Ignorable_Code_Point, which NFKC_Casefold removes.
const IGNORABLE = [
  [0x00ad, 0x00ad], [0x034f, 0x034f], [0x061c, 0x061c], [0x115f, 0x1160], [0x17b4, 0x17b5], [0x180b, 0x180f],
  [0x200b, 0x200f], [0x202a, 0x202e], [0x2060, 0x206f], [0x3164, 0x3164], [0xfe00, 0xfe0f], [0xfeff, 0xfeff],
  [0xffa0, 0xffa0], [0xfff0, 0xfff8], [0x1bca0, 0x1bca3], [0x1d173, 0x1d17a], [0xe0000, 0xe0fff],
];
// Full case folding where it differs from toLowerCase (the common cases; see docs/serving.md).
const FOLD = { "ß": "ss", "ẞ": "ss", "ς": "σ", "ſ": "s", "ﬅ": "st", "ﬆ": "st", "ϐ": "β", "ϑ": "θ", "ϕ": "φ",
  "ϖ": "π", "ϰ": "κ", "ϱ": "ρ", "ϵ": "ε", "ᲀ": "в" };

function caseFold(text) {
  let folded = Array.from(text.normalize("NFKC"), (ch) => FOLD[ch] ?? ch.toLowerCase()).join("");
  folded = Array.from(folded, (ch) => FOLD[ch] ?? ch).join("").normalize("NFKC");
  return Array.from(folded)
    .filter((ch) => !IGNORABLE.some(([lo, hi]) => ch.codePointAt(0) >= lo && ch.codePointAt(0) <= hi))
    .join("");
}

function splitWhiteSpace(text) {
  const words = [];
  let current = "";
  for (const ch of text) {
    if (WHITE_SPACE.has(ch)) {
      if (current) words.push(current);
      current = "";
    } else {
      current += ch;
    }
  }
  if (current) words.push(current);
  return words;
}

function tokenize(text, spec) {
  if (spec.name === "casefold_punct_v1") {
    let t = caseFold(text);
    t = t.replace(/([?!,;"()[\]{}])/g, " $1 "); // these marks are words of their own
    t = t.replace(/\.([ \t\n\r\f]*)$/, " .$1"); // and so is a period that ends the text
    return splitWhiteSpace(t);
  }
  if (spec.name === "casefold_chars_v1") {
    // white space trimmed, each run of it one "▁" symbol, then one token per code point
    return Array.from(splitWhiteSpace(caseFold(text)).join(spec.space || "\u2581"));
  }
  throw new Error(`tokenizer ${JSON.stringify(spec.name)} is not implemented in this example`);
}

// --- prediction --------------------------------------------------------------------------------------------------

function argmax(values, start, width) {
  let best = 0;
  for (let i = 1; i < width; i++) if (values[start + i] > values[start + best]) best = i;
  return best;
}

function iobSpans(words, tags) {
  const slots = [];
  let start = null;
  let current = "";
  [...tags, "O"].forEach((tag, i) => {
    const [prefix, name] = tag === "O" || !tag.includes("-") ? ["O", ""] : [tag.slice(0, tag.indexOf("-")), tag.slice(tag.indexOf("-") + 1)];
    const continues = prefix === "I" && name === current && start !== null;
    if (start !== null && !continues) {
      slots.push([current, words.slice(start, i).join(" ")]);
      start = null;
      current = "";
    }
    if ((prefix === "B" || prefix === "I") && !continues) {
      start = i;
      current = name;
    }
  });
  return slots;
}

async function predict(session, meta, text) {
  let tokens = tokenize(text, meta.tokenizer);
  if (!tokens.length) throw new Error(`text ${JSON.stringify(text)} is empty`);
  if (tokens.length > meta.max_len) {
    if (meta.task === "sentiment") tokens = tokens.slice(0, meta.max_len); // long_input: truncate
    else throw new Error(`text has ${tokens.length} words; this model takes at most ${meta.max_len}`);
  }
  const index = new Map(meta.vocab.map((entry, i) => [entry, i]));
  const ids = Int32Array.from(tokens, (t) => (index.has(t) ? index.get(t) : meta.unk_id));
  const input = meta.inputs.token_ids;
  const feeds = { [input.name]: new ort.Tensor("int32", ids, [1, ids.length]) };
  const out = await session.run(feeds);
  if (meta.task === "slot_filling") {
    const slotProbs = out[meta.outputs.slot_probs.name].data;
    const intentProbs = out[meta.outputs.intent_probs.name].data;
    const nTags = meta.slot_tags.length;
    const tags = tokens.map((_, t) => meta.slot_tags[argmax(slotProbs, t * nTags, nTags)]);
    const intent = argmax(intentProbs, 0, meta.intents.length);
    return { text, words: tokens, tags, slots: iobSpans(tokens, tags), intent: meta.intents[intent],
      intent_confidence: intentProbs[intent] };
  }
  if (meta.task === "sentiment") {
    const probs = out[meta.outputs.class_probs.name].data;
    const best = argmax(probs, 0, meta.labels.length);
    return { text, tokens, label: meta.labels[best], confidence: probs[best] };
  }
  throw new Error(`task ${JSON.stringify(meta.task)} is not implemented in this example`);
}

async function main(argv) {
  if (argv.length < 2) {
    console.error("usage: node predict.js RUN_DIR_OR_MODEL.onnx TEXT [TEXT ...]");
    return 2;
  }
  let modelPath = argv[0];
  if (fs.statSync(modelPath).isDirectory()) modelPath = path.join(modelPath, "model.onnx");
  const bytes = fs.readFileSync(modelPath);
  const meta = readMetadata(bytes);
  const session = await ort.InferenceSession.create(bytes);
  for (const text of argv.slice(1)) {
    console.log(JSON.stringify(await predict(session, meta, text)));
  }
  return 0;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err) => {
      console.error(`error: ${err.message}`);
      process.exit(1);
    },
  );
}

module.exports = { readMetadata, tokenize, caseFold, predict };
