// A Node.js client of ftd written from the .proto files alone (protos/), as a
// user of another language would: it uploads a model folder and two
// datasets, submits a job naming them by id (twice, with one request_id),
// watches it to its end, downloads the fine-tuned model and checks every
// file's SHA-256, reads a structured error, and asks the health and
// reflection (v1 and v1alpha) services. It prints one JSON summary line;
// tests/integration/node_client_test.cc runs it against the real daemon.
//
//   node client.mjs --address=HOST:PORT --protos=DIR --model=DIR --train=CSV
//                   --validation=CSV --out=DIR
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import protobuf from "protobufjs";

const args = Object.fromEntries(
  process.argv.slice(2).map((a) => {
    const [key, ...value] = a.replace(/^--/, "").split("=");
    return [key, value.join("=")];
  }),
);
for (const required of ["address", "protos", "model", "train", "validation", "out"]) {
  if (!args[required]) throw new Error(`--${required} is required`);
}

const loaderOptions = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: false,
  oneofs: true,
  includeDirs: [args.protos],
};
const load = (file) => grpc.loadPackageDefinition(protoLoader.loadSync(file, loaderOptions));
const ftd = load("ftd/v1/ftd.proto").ftd.v1;
const health = load("grpc/health/v1/health.proto").grpc.health.v1;
const reflectionPackage = protoLoader.loadSync("grpc/reflection/v1/reflection.proto", loaderOptions);
// google.rpc.Status and its details, decoded with protobufjs.
const rpc = new protobuf.Root();
rpc.resolvePath = (_origin, target) =>
  target.startsWith("google/protobuf/") ? target : join(args.protos, target);
rpc.loadSync(["google/rpc/status.proto", "google/rpc/error_details.proto"]);

const client = new ftd.FineTuning(args.address, grpc.credentials.createInsecure());
const unary = (method, request) =>
  new Promise((resolve, reject) =>
    client[method](request, { deadline: Date.now() + 30000 }, (error, reply) =>
      error ? reject(error) : resolve(reply),
    ),
  );
const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");
const CHUNK = 1 << 20;

// UploadFile: the header, then every file's bytes in its order, in 1 MiB chunks.
function upload(kind, paths, displayName) {
  const files = paths.map((path) => ({ path, bytes: readFileSync(path) }));
  return new Promise((resolve, reject) => {
    const call = client.UploadFile((error, file) => (error ? reject(error) : resolve(file)));
    call.write({
      header: {
        kind,
        display_name: displayName,
        entries: files.map((f) => ({
          name: f.path.split("/").pop(),
          size: String(f.bytes.length),
          sha256: sha256(f.bytes),
        })),
      },
    });
    for (const f of files) {
      for (let at = 0; at < f.bytes.length; at += CHUNK) {
        call.write({ chunk: f.bytes.subarray(at, at + CHUNK) });
      }
    }
    call.end();
  });
}

// WatchJob to the end: every event, and the last state.
function watch(jobId) {
  return new Promise((resolve, reject) => {
    const events = [];
    const call = client.WatchJob({ job_id: jobId });
    call.on("data", (event) => events.push(event));
    call.on("error", reject);
    call.on("end", () => resolve(events));
  });
}

// DownloadJobOutput: a header naming the files, then their bytes in order.
function download(jobId, dir) {
  return new Promise((resolve, reject) => {
    let entries = null;
    let index = 0;
    let parts = [];
    let have = 0;
    const written = [];
    const flush = () => {
      while (entries && index < entries.length && have >= Number(entries[index].size)) {
        const all = Buffer.concat(parts);
        const size = Number(entries[index].size);
        const bytes = all.subarray(0, size);
        if (sha256(bytes) !== entries[index].sha256) {
          reject(new Error(`${entries[index].name}: the SHA-256 does not match the header's`));
          return;
        }
        writeFileSync(join(dir, entries[index].name), bytes);
        written.push({ name: entries[index].name, size, sha256: entries[index].sha256 });
        parts = [all.subarray(size)];
        have -= size;
        ++index;
      }
    };
    mkdirSync(dir, { recursive: true });
    const call = client.DownloadJobOutput({ job_id: jobId, artifact: "model" });
    call.on("data", (message) => {
      if (message.part === "header") {
        entries = message.header.entries;
      } else {
        parts.push(message.chunk);
        have += message.chunk.length;
      }
      flush();
    });
    call.on("error", reject);
    call.on("end", () => {
      flush();
      if (!entries || index !== entries.length) reject(new Error("the download ended early"));
      else resolve(written);
    });
  });
}

// One bidirectional reflection call, at the v1 or the v1alpha path.
function listServices(version) {
  const definition = reflectionPackage["grpc.reflection.v1.ServerReflection"];
  const service = {};
  for (const [name, method] of Object.entries(definition)) {
    service[name] = { ...method, path: method.path.replace(".v1.", `.${version}.`) };
  }
  const Client = grpc.makeGenericClientConstructor(service, "ServerReflection");
  const reflection = new Client(args.address, grpc.credentials.createInsecure());
  return new Promise((resolve, reject) => {
    const call = reflection.ServerReflectionInfo();
    call.on("data", (response) => {
      resolve(response.list_services_response.service.map((s) => s.name));
      call.end();
    });
    call.on("error", reject);
    call.write({ list_services: "" });
  });
}

const summary = {};

const modelFiles = readdirSync(args.model)
  .filter((name) => statSync(join(args.model, name)).isFile())
  .sort()
  .map((name) => join(args.model, name));
const model = await upload("FILE_KIND_MODEL", modelFiles, "tiny-bert");
const train = await upload("FILE_KIND_DATASET", [args.train]);
const validation = await upload("FILE_KIND_DATASET", [args.validation]);
summary.files = [model, train, validation].map((f) => f.id);
summary.model_layers = model.model.layers;
summary.train_rows = Number(train.dataset.rows);

const request = {
  spec: {
    display_name: "from node",
    base_model_file_id: model.id,
    train_dataset: { file_id: train.id },
    validation_dataset: { file_id: validation.id },
    hyperparameters: {
      epochs: 6,
      batch_size: 16,
      learning_rate: 0.003,
      max_seq_length: 16,
      seed: 3,
    },
    freeze_policy: { static: { frozen_layers: 1 } },
    activation_cache: { enabled: true, dtype: "DTYPE_BF16" },
    labels: { client: "node" },
  },
  request_id: "node-client-1",
};
const job = await unary("SubmitJob", request);
const again = await unary("SubmitJob", request);
summary.job_id = job.id;
summary.submitted_state = job.state;
summary.idempotent = again.id === job.id;

const events = await watch(job.id);
const states = events.filter((e) => e.kind === "state_change").map((e) => e.state_change.to_state);
summary.states = states;
summary.evaluations = events.filter((e) => e.kind === "evaluation").length;
const done = await unary("GetJob", { job_id: job.id });
summary.state = done.state;
summary.request_id = done.request_id;
summary.validation_accuracy = done.result.metrics.validation_accuracy;

summary.downloaded = await download(job.id, args.out);

// A bad field: INVALID_ARGUMENT with a BadRequest naming it.
try {
  await unary("SubmitJob", {
    spec: { ...request.spec, hyperparameters: { epochs: 0 } },
  });
  summary.bad_request = "accepted";
} catch (error) {
  const [bytes] = error.metadata.get("grpc-status-details-bin");
  const status = rpc.lookupType("google.rpc.Status").decode(bytes);
  const badRequest = status.details.find((d) => d.type_url.endsWith("/google.rpc.BadRequest"));
  const errorInfo = status.details.find((d) => d.type_url.endsWith("/google.rpc.ErrorInfo"));
  summary.bad_request = {
    code: grpc.status[error.code],
    field: rpc.lookupType("google.rpc.BadRequest").decode(badRequest.value).fieldViolations[0]
      .field,
    reason: rpc.lookupType("google.rpc.ErrorInfo").decode(errorInfo.value).reason,
  };
}

const healthClient = new health.Health(args.address, grpc.credentials.createInsecure());
summary.health = await new Promise((resolve, reject) =>
  healthClient.Check({ service: "ftd.v1.FineTuning" }, (error, reply) =>
    error ? reject(error) : resolve(reply.status),
  ),
);
summary.reflection_v1 = await listServices("v1");
summary.reflection_v1alpha = await listServices("v1alpha");

console.log(JSON.stringify(summary));
process.exit(0);

