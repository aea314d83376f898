// A load test of ftd (tests/integration/load_test.cc runs it against the real
// daemon on loopback): --clients concurrent clients, each on its own
// connection, for --seconds, each doing one request after another at random:
// SubmitJob (a small job, cancelled at once so that the queue stays short),
// ListJobs, GetJob, and WatchJob on the job that trains meanwhile (read for
// up to half a second, then cancelled). Prints one JSON line: requests
// served, errors by code, and each RPC's p50/p99 latency in milliseconds
// (a watch's is the time to its first event), and how many events the
// watches received (a watch replays the job's history from its start, so
// what it streams in its half second grows as the job trains).
//
//   node load.mjs --address=HOST:PORT --protos=DIR --model=PATH --train=PATH
//                 --clients=N --seconds=S --watch_job=job-1
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const args = Object.fromEntries(
  process.argv.slice(2).map((a) => {
    const [key, ...value] = a.replace(/^--/, "").split("=");
    return [key, value.join("=")];
  }),
);
for (const required of ["address", "protos", "model", "train", "clients", "seconds", "watch_job"]) {
  if (!args[required]) throw new Error(`--${required} is required`);
}
const ftd = grpc.loadPackageDefinition(
  protoLoader.loadSync("ftd/v1/ftd.proto", {
    keepCase: true, longs: String, enums: String, defaults: false, oneofs: true,
    includeDirs: [args.protos],
  }),
).ftd.v1;

const latencies = {};  // method -> [ms]
const codes = {};  // method -> {code name -> count}
const codeName = Object.fromEntries(Object.entries(grpc.status).map(([k, v]) => [v, k]));
function record(method, ms, code) {
  (latencies[method] ??= []).push(ms);
  const c = (codes[method] ??= {});
  c[code] = (c[code] ?? 0) + 1;
}

function unary(client, method, request) {
  const start = performance.now();
  return new Promise((resolve) => {
    client[method](request, { deadline: Date.now() + 30000 }, (error, reply) => {
      record(method, performance.now() - start, error ? codeName[error.code] : "OK");
      resolve(error ? null : reply);
    });
  });
}

function watch(client, jobId) {
  const start = performance.now();
  return new Promise((resolve) => {
    const call = client.WatchJob({ job_id: jobId });
    let recorded = false;
    const note = (code) => {
      if (recorded) return;
      recorded = true;
      record("WatchJob", performance.now() - start, code);
    };
    call.on("data", () => {
      ++watchEvents;
      if (recorded) return;
      note("OK");  // the time to the first event
      setTimeout(() => call.cancel(), 500);
    });
    call.on("error", (error) => {
      if (error.code !== grpc.status.CANCELLED) note(codeName[error.code]);
      note("OK");
      resolve();
    });
    call.on("end", () => { note("OK"); resolve(); });
  });
}

const deadline = Date.now() + Number(args.seconds) * 1000;
let submitted = 0;
let watchEvents = 0;  // events the watches received, all of them
async function runClient(index) {
  // Each client on its own connection.
  const client = new ftd.FineTuning(args.address, grpc.credentials.createInsecure(), {
    "grpc.use_local_subchannel_pool": 1,
  });
  const known = [args.watch_job];
  while (Date.now() < deadline) {
    const r = Math.random();
    if (r < 0.2) {
      const job = await unary(client, "SubmitJob", {
        spec: {
          display_name: `load-${index}`,
          base_model: args.model,
          train_dataset: { path: args.train },
          hyperparameters: { epochs: 1, batch_size: 16, max_seq_length: 16 },
          labels: { load: "yes" },
        },
      });
      if (job) {
        ++submitted;
        known.push(job.id);
        if (known.length > 20) known.splice(1, 1);
        await unary(client, "CancelJob", { job_id: job.id });
      }
    } else if (r < 0.5) {
      await unary(client, "ListJobs", { page_size: 20 });
    } else if (r < 0.8) {
      await unary(client, "GetJob", { job_id: known[Math.floor(Math.random() * known.length)] });
    } else {
      await watch(client, args.watch_job);
    }
  }
  client.close();
}

const started = performance.now();
await Promise.all(Array.from({ length: Number(args.clients) }, (_, i) => runClient(i)));
const seconds = (performance.now() - started) / 1000;
const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
const report = {
  clients: Number(args.clients), seconds: Number(seconds.toFixed(1)), submitted, watch_events: watchEvents, rpcs: {},
};
let total = 0;
const errors = {};
for (const [method, values] of Object.entries(latencies)) {
  values.sort((a, b) => a - b);
  total += values.length;
  report.rpcs[method] = {
    count: values.length,
    p50_ms: Number(percentile(values, 50).toFixed(2)),
    p99_ms: Number(percentile(values, 99).toFixed(2)),
    codes: codes[method],
  };
  for (const [code, n] of Object.entries(codes[method])) {
    if (code !== "OK") errors[`${method}:${code}`] = n;
  }
}
report.requests = total;
report.requests_per_second = Number((total / seconds).toFixed(0));
report.errors = errors;
console.log(JSON.stringify(report));
