// A foreign client: @grpc/grpc-js with the .proto files, as another team's Node service would.
// Usage: node client.mjs ENCODER_ADDRESS SEARCH_ADDRESS IMAGE_FILE   -> prints one JSON object.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const here = dirname(fileURLToPath(import.meta.url));
const [encoderAddress, searchAddress, imagePath] = process.argv.slice(2);
const options = { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true };
const api = grpc.loadPackageDefinition(
  protoLoader.loadSync(["lookalike/v1/encoder.proto", "lookalike/v1/search.proto"], {
    ...options,
    includeDirs: [join(here, "..", "..", "protos")],
  }),
).lookalike.v1;
const healthApi = grpc.loadPackageDefinition(
  protoLoader.loadSync(join(here, "node_modules/grpc-health-check/proto/health/v1/health.proto"), options),
).grpc.health.v1;

const credentials = grpc.credentials.createInsecure();
const limits = { "grpc.max_send_message_length": 64 << 20, "grpc.max_receive_message_length": 64 << 20 };
const encoder = new api.Encoder(encoderAddress, credentials, limits);
const search = new api.Search(searchAddress, credentials, limits);
const health = new healthApi.Health(encoderAddress, credentials);

const call = (client, method, request) =>
  new Promise((resolve, reject) => client[method](request, { deadline: Date.now() + 20000 }, (error, response) =>
    error ? reject(error) : resolve(response)));
const codeOf = (promise) => promise.then(() => "OK", (error) => grpc.status[error.code]);

const image = readFileSync(imagePath);
const result = {};
result.health = (await call(health, "Check", { service: "lookalike.v1.Encoder" })).status;
result.embedding_dim = (await call(encoder, "GetModel", {})).embedding_dim;
result.embedding_length = (await call(encoder, "Embed", { images: [{ encoded: image }] })).embeddings[0].values.length;
await call(search, "CreateCollection", { name: "from-node" });
result.upserted = (await call(search, "Upsert", { collection: "from-node", items: [{ id: "node-1", image: { encoded: image } }] })).upserted;
result.first_id = (await call(search, "Search", { collection: "from-node", image: { encoded: image }, k: 1 })).neighbors[0].id;
result.empty_image = await codeOf(call(encoder, "Embed", { images: [{ encoded: Buffer.alloc(0) }] }));
result.missing_collection = await codeOf(call(search, "Search", { collection: "nope", vector: { values: [1] }, k: 1 }));
console.log(JSON.stringify(result));
process.exit(0);
