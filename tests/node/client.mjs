// A foreign client: @grpc/grpc-js with the .proto files, as another team's Node service would.
// Usage: node client.mjs ENCODER_ADDRESS SEARCH_ADDRESS IMAGE_FILE   -> prints one JSON object.
// Plaintext; with LOOKALIKE_TLS_CA and LOOKALIKE_TOKEN set (the variables the lookalike CLI reads),
// TLS verified by that CA, and the token as call credentials on every call.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { getProtoPath } from "google-proto-files";
import protobuf from "protobufjs";

const here = dirname(fileURLToPath(import.meta.url));
const [encoderAddress, searchAddress, imagePath] = process.argv.slice(2);
// longs: String, as the proto-loader docs recommend: int64 fields (Collection.size) arrive as
// decimal strings, exact beyond 2^53; int32 fields stay JS numbers.
const options = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };
const api = grpc.loadPackageDefinition(
  protoLoader.loadSync(["lookalike/v1/encoder.proto", "lookalike/v1/search.proto"], {
    ...options,
    includeDirs: [join(here, "..", "..", "protos")],
  }),
).lookalike.v1;
const healthApi = grpc.loadPackageDefinition(
  protoLoader.loadSync(join(here, "node_modules/grpc-health-check/proto/health/v1/health.proto"), options),
).grpc.health.v1;

// Error details: a google.rpc.Status in the grpc-status-details-bin trailer (errors.proto).
const rpc = new protobuf.Root().loadSync(
  [getProtoPath("rpc", "status.proto"), getProtoPath("rpc", "error_details.proto")], { keepCase: true });
const Status = rpc.lookupType("google.rpc.Status");
const detailsOf = (error) => {
  const [trailer] = error.metadata?.get("grpc-status-details-bin") ?? [];
  if (!trailer) return [];
  return Status.decode(trailer).details.map((any) => {
    const type = any.type_url.slice(any.type_url.lastIndexOf("/") + 1); // "type.googleapis.com/google.rpc.ErrorInfo"
    const message = rpc.lookup(type);
    if (!(message instanceof protobuf.Type)) return { type }; // a detail type this client does not know
    return { type, ...message.toObject(message.decode(any.value), { longs: String, enums: String, defaults: true }) };
  });
};

const caFile = process.env.LOOKALIKE_TLS_CA;
const tls = caFile ? grpc.credentials.createSsl(readFileSync(caFile)) : null;
const bearer = grpc.credentials.createFromMetadataGenerator((_params, callback) => {
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${process.env.LOOKALIKE_TOKEN}`);
  callback(null, metadata);
});
// grpc-js sends call credentials over secure channels only, so the token never travels in clear.
const credentials = tls ? grpc.credentials.combineChannelCredentials(tls, bearer) : grpc.credentials.createInsecure();
const limits = { "grpc.max_send_message_length": 64 << 20, "grpc.max_receive_message_length": 64 << 20 };
const encoder = new api.Encoder(encoderAddress, credentials, limits);
const search = new api.Search(searchAddress, credentials, limits);
const health = new healthApi.Health(encoderAddress, credentials);

const call = (client, method, request) =>
  new Promise((resolve, reject) => client[method](request, { deadline: Date.now() + 20000 }, (error, response) =>
    error ? reject(error) : resolve(response)));
// What a program branches on: the code, ErrorInfo's reason and domain, BadRequest's field paths.
const failureOf = (promise) => promise.then(() => ({ code: "OK" }), (error) => {
  const details = detailsOf(error);
  const info = details.find((detail) => detail.type === "google.rpc.ErrorInfo") ?? {};
  const badRequest = details.find((detail) => detail.type === "google.rpc.BadRequest") ?? { field_violations: [] };
  return {
    code: grpc.status[error.code],
    reason: info.reason ?? null,
    domain: info.domain ?? null,
    metadata: info.metadata ?? null,
    field_violations: badRequest.field_violations.map((violation) => violation.field),
  };
});

const image = readFileSync(imagePath);
const result = {};
result.health = (await call(health, "Check", { service: "lookalike.v1.Encoder" })).status;
result.embedding_dim = (await call(encoder, "GetModel", {})).embedding_dim;
const embedded = await call(encoder, "Embed", { images: [{ encoded: image }] });
result.embedding_length = embedded.embeddings[0].values.length;
result.model_version = embedded.model.version;
result.dimension = (await call(search, "CreateCollection", { name: "from-node" })).dimension;
result.upserted = (await call(search, "Upsert", { collection: "from-node", items: [{ id: "node-1", image: { encoded: image } }] })).upserted;
result.size = (await call(search, "GetCollection", { name: "from-node" })).size;
result.first_id = (await call(search, "Search", { collection: "from-node", image: { encoded: image }, k: 1 })).neighbors[0].id;
result.empty_image = await failureOf(call(encoder, "Embed", { images: [{ encoded: Buffer.alloc(0) }] }));
result.missing_collection = await failureOf(call(search, "Search", { collection: "nope", vector: { values: [1] }, k: 1 }));
if (tls) {
  const withoutToken = new api.Search(searchAddress, tls, limits);
  result.no_token = await failureOf(call(withoutToken, "DeleteCollection", { name: "from-node" }));
}
console.log(JSON.stringify(result));
process.exit(0);
