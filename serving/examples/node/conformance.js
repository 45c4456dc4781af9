#!/usr/bin/env node
// Checks this example's tokenizer against a run dir's tokenizer_conformance.json (written beside the model at
// export): every input must give the same tokens and, through the vocabulary in the .onnx metadata, the same ids.
//
//   node conformance.js RUN_DIR [CONFORMANCE.json]      # or MODEL.onnx (or metadata.json) CONFORMANCE.json
//
// Prints {"cases", "passed", "failures": [first 20]} as JSON; exits 1 if any case differs.
"use strict";

const fs = require("fs");
const path = require("path");
const { readMetadata, tokenize } = require("./predict.js");

function check(meta, conformance) {
  const spec = conformance.vocab_key === "source_vocab" ? meta.source_tokenizer : meta.tokenizer;
  const index = new Map(meta[conformance.vocab_key].map((entry, i) => [entry, i]));
  const failures = [];
  for (const c of conformance.cases) {
    const tokens = tokenize(c.input, spec);
    const ids = tokens.map((t) => (index.has(t) ? index.get(t) : conformance.unk_id));
    if (JSON.stringify(tokens) !== JSON.stringify(c.tokens) || JSON.stringify(ids) !== JSON.stringify(c.ids)) {
      failures.push({ input: c.input, expected: c.tokens, got: tokens });
    }
  }
  return { cases: conformance.cases.length, passed: conformance.cases.length - failures.length,
    failures: failures.slice(0, 20) };
}

function main(argv) {
  if (argv.length < 1) {
    console.error("usage: node conformance.js RUN_DIR_OR_MODEL.onnx [tokenizer_conformance.json]");
    return 2;
  }
  const dir = fs.statSync(argv[0]).isDirectory() ? argv[0] : path.dirname(argv[0]);
  const model = fs.statSync(argv[0]).isDirectory() ? path.join(dir, "model.onnx") : argv[0];
  const file = argv[1] || path.join(dir, "tokenizer_conformance.json");
  const meta = model.endsWith(".json") ? JSON.parse(fs.readFileSync(model, "utf8")) : readMetadata(fs.readFileSync(model));
  const summary = check(meta, JSON.parse(fs.readFileSync(file, "utf8")));
  console.log(JSON.stringify(summary));
  return summary.failures.length ? 1 : 0;
}

if (require.main === module) process.exit(main(process.argv.slice(2)));

module.exports = { check };
