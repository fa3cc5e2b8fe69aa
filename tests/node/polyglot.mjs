// Calls both clipsearch services from Node.js, using only the .proto files in protos/:
// embeds texts with Embedder.EmbedTexts, stores them with Search.Upsert, finds the first one again with
// Search.Query, checks that a malformed query gets INVALID_ARGUMENT and that a query naming another
// embedding model gets FAILED_PRECONDITION with the reason MODEL_MISMATCH in a google.rpc.ErrorInfo of its
// status details, deletes what it wrote, and prints one JSON object on stdout.
//
// Usage: node tests/node/polyglot.mjs EMBEDDER_ADDRESS SEARCH_ADDRESS
// Exit status 0 when every check held, 1 when one failed, 2 on a usage error.
import { fileURLToPath } from "node:url";
import { randomUUID } from "node:crypto";
import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";
import protobuf from "protobufjs";

const PROTO_ROOT = fileURLToPath(new URL("../../protos", import.meta.url));
const TEXTS = ["a photo of a cat", "a red rocket on the launch pad", "a cup of coffee"];
const CALL_SECONDS = 60;
const SCORE_TOLERANCE = 1e-3;
const ERROR_DOMAIN = "clipsearch.v1";
// google.rpc.Status and google.rpc.ErrorInfo (github.com/googleapis/googleapis, google/rpc/*.proto): the
// status details gRPC sends in the grpc-status-details-bin trailer.
const RPC = protobuf.parse(
  `
  syntax = "proto3";
  package google.rpc;
  message Any { string type_url = 1; bytes value = 2; }
  message Status { int32 code = 1; string message = 2; repeated Any details = 3; }
  message ErrorInfo { string reason = 1; string domain = 2; map<string, string> metadata = 3; }
`,
  { keepCase: true },
).root;

function loadPackage() {
  const definition = protoLoader.loadSync(["clipsearch/v1/embedder.proto", "clipsearch/v1/search.proto"], {
    includeDirs: [PROTO_ROOT],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(definition).clipsearch.v1;
}

function call(client, method, request) {
  const deadline = new Date(Date.now() + CALL_SECONDS * 1000);
  return new Promise((resolve, reject) => {
    client[method](request, { deadline }, (error, response) => (error ? reject(error) : resolve(response)));
  });
}

// The clipsearch ErrorInfo in a failed call's status details ({ reason, metadata }), or null.
function errorInfo(error) {
  const [bytes] = error.metadata?.get("grpc-status-details-bin") ?? [];
  if (!bytes) return null;
  const status = RPC.lookupType("google.rpc.Status").decode(bytes);
  for (const detail of status.details) {
    if (detail.type_url === "type.googleapis.com/google.rpc.ErrorInfo") {
      const info = RPC.lookupType("google.rpc.ErrorInfo").decode(detail.value);
      if (info.domain === ERROR_DOMAIN) return { reason: info.reason, metadata: { ...info.metadata } };
    }
  }
  return null;
}

function errorReason(error) {
  return errorInfo(error)?.reason ?? null;
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

function norm(values) {
  return Math.sqrt(values.reduce((sum, v) => sum + v * v, 0));
}

async function run(embedderAddress, searchAddress) {
  const v1 = loadPackage();
  const credentials = grpc.credentials.createInsecure();
  const embedder = new v1.Embedder(embedderAddress, credentials);
  const search = new v1.Search(searchAddress, credentials);
  try {
    const info = await call(embedder, "GetModelInfo", {});
    const embedded = await call(embedder, "EmbedTexts", { texts: TEXTS });
    const vectors = embedded.embeddings.map((e) => e.values);
    check(vectors.length === TEXTS.length, `EmbedTexts returned ${vectors.length} vectors for ${TEXTS.length} texts`);
    for (const [i, v] of vectors.entries()) {
      check(
        v.length === info.dimension,
        `embeddings[${i}] has ${v.length} values, ModelInfo.dimension is ${info.dimension}`,
      );
      check(Math.abs(norm(v) - 1) < SCORE_TOLERANCE, `embeddings[${i}] has norm ${norm(v)}, expected 1`);
    }

    // A collection of its own, so the check neither sees nor disturbs anyone else's items.
    const collection = `polyglot-node-${randomUUID()}`;
    const ids = TEXTS.map((_, i) => `${collection}-${i}`);
    const items = vectors.map((vector, i) => ({
      id: ids[i],
      vector,
      metadata: {
        sources: [`file:///polyglot/text-${i}.txt`],
        media_type: "MEDIA_TYPE_IMAGE",
        collection,
        content_hash: `${i}`.padStart(64, "0"),
        tags: ["polyglot", "node"],
      },
    }));
    const upserted = await call(search, "Upsert", { items });
    check(upserted.upserted === TEXTS.length, `Upsert wrote ${upserted.upserted} items, expected ${TEXTS.length}`);

    const queried = await call(search, "Query", {
      vector: vectors[0],
      k: TEXTS.length,
      filter: { collections: [collection] },
    });
    const matches = queried.matches.map((m) => ({ id: m.item.id, score: m.score, sources: m.item.metadata.sources }));
    check(matches.length === TEXTS.length, `Query returned ${matches.length} matches, expected ${TEXTS.length}`);
    check(matches[0].id === ids[0], `Query's best match is ${matches[0].id}, expected ${ids[0]}`);
    check(Math.abs(matches[0].score - 1) < SCORE_TOLERANCE, `best score is ${matches[0].score}, expected about 1`);

    // Errors travel as standard gRPC status codes, whatever the caller's language.
    let badQueryCode = null;
    try {
      await call(search, "Query", { vector: [...vectors[0], 0.5], k: 1 });
    } catch (error) {
      badQueryCode = grpc.status[error.code];
    }
    check(
      badQueryCode === "INVALID_ARGUMENT",
      `a query of the wrong dimension gave ${badQueryCode}, expected INVALID_ARGUMENT`,
    );

    // A query naming another model than the index's (one of another dimension, so whatever model the index
    // records): the reason says so, whatever the message's words.
    let mismatch = { code: null, reason: null };
    try {
      const other = { model_id: `${info.model_id}-other`, dimension: info.dimension + 1 };
      await call(search, "Query", { vector: vectors[0], k: 1, model: other });
    } catch (error) {
      mismatch = { code: grpc.status[error.code], reason: errorReason(error) };
    }
    check(mismatch.code === "FAILED_PRECONDITION", `a query of another model gave ${mismatch.code}`);
    check(mismatch.reason === "MODEL_MISMATCH", `a query of another model gave the reason ${mismatch.reason}`);

    // A library that does not exist: the reason, and the name it was asked by in the metadata.
    let missing = { code: null, reason: null, name: null };
    try {
      await call(search, "RemoveLibrary", { name: collection });
    } catch (error) {
      const found = errorInfo(error);
      missing = { code: grpc.status[error.code], reason: found?.reason ?? null, name: found?.metadata.name ?? null };
    }
    check(missing.reason === "LIBRARY_NOT_FOUND", `removing no library gave the reason ${missing.reason}`);

    const deleted = await call(search, "Delete", { collection });
    return {
      ok: true,
      model_id: info.model_id,
      dimension: info.dimension,
      texts: TEXTS,
      vectors,
      collection,
      ids,
      upserted: upserted.upserted,
      created: upserted.created,
      matches,
      bad_query_code: badQueryCode,
      mismatch_code: mismatch.code,
      mismatch_reason: mismatch.reason,
      missing_library: missing,
      deleted: Number(deleted.deleted),
    };
  } finally {
    embedder.close();
    search.close();
  }
}

const [embedderAddress, searchAddress] = process.argv.slice(2);
if (!embedderAddress || !searchAddress) {
  console.error("usage: node polyglot.mjs EMBEDDER_ADDRESS SEARCH_ADDRESS");
  process.exit(2);
}
try {
  console.log(JSON.stringify(await run(embedderAddress, searchAddress)));
} catch (error) {
  console.log(JSON.stringify({ ok: false, error: error.message, code: grpc.status[error.code] ?? null }));
  process.exitCode = 1;
}
