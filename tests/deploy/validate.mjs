// Validates Kubernetes objects (a JSON array, argv[2]) against the API
// schemas of the npm package kubernetes-models (and its Prometheus-operator
// models for ServiceMonitor), twice:
//   1. each model's JSON-schema validation: types, required fields, enums;
//   2. TypeScript's excess-property check, with each object written as a
//      literal of the model's interface: a field the API does not have (a
//      misspelt one, or one in the wrong place) is an error.
// Prints one line per problem and exits 1 when there is any.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const objects = JSON.parse(readFileSync(process.argv[2], "utf8"));

// "apps/v1" + "StatefulSet" -> the module of its model.
function modulePath(apiVersion, kind) {
  if (apiVersion.startsWith("monitoring.coreos.com/")) {
    return `@kubernetes-models/prometheus-operator/${apiVersion}/${kind}`;
  }
  return `kubernetes-models/${apiVersion}/${kind}`;
}

function describe(o) {
  return `${o.kind ?? "?"}/${o.metadata?.name ?? "?"}`;
}

const problems = [];
const typed = [];
for (const [i, o] of objects.entries()) {
  if (typeof o.apiVersion !== "string" || typeof o.kind !== "string") {
    problems.push(`object ${i}: no apiVersion or kind`);
    continue;
  }
  const spec = modulePath(o.apiVersion, o.kind);
  let Model;
  try {
    Model = (await import(spec))[o.kind];
  } catch (e) {
    problems.push(`${describe(o)}: no schema for ${o.apiVersion} ${o.kind} (${spec})`);
    continue;
  }
  try {
    new Model(o).validate();
  } catch (e) {
    problems.push(`${describe(o)}: ${e.message}`);
  }
  typed.push({ i, o, spec });
}

// TypeScript: one literal per object, typed by its model's interface, in a
// folder next to node_modules so that the imports resolve.
const dir = mkdtempSync(path.join(here, ".check-"));
try {
  const lines = [];
  for (const { i, o, spec } of typed) {
    lines.push(`import type { I${o.kind} as T${i} } from "${spec}";`);
  }
  for (const { i, o } of typed) {
    lines.push(`// ${describe(o)}`);
    lines.push(`export const o${i}: T${i} = ${JSON.stringify(o, null, 1)};`);
  }
  const file = path.join(dir, "objects.ts");
  writeFileSync(file, lines.join("\n") + "\n");
  writeFileSync(path.join(dir, "tsconfig.json"), JSON.stringify({
    compilerOptions: {
      strict: true, noEmit: true, module: "nodenext", moduleResolution: "nodenext", target: "es2022",
      skipLibCheck: true, types: [],
    },
    files: [file],
  }));
  const require = createRequire(import.meta.url);
  const tsc = require.resolve("typescript/bin/tsc");
  try {
    execFileSync(process.execPath, [tsc, "-p", path.join(dir, "tsconfig.json")], { encoding: "utf8" });
  } catch (e) {
    // "objects.ts(12,5): error TS2561: ..." -> the object the line belongs to.
    const source = readFileSync(file, "utf8").split("\n");
    for (const line of `${e.stdout}`.split("\n").filter((l) => l.includes("error TS"))) {
      const m = line.match(/\((\d+),\d+\): (error TS\d+: .*)/);
      let owner = "?";
      if (m) {
        for (let l = Number(m[1]) - 1; l >= 0; --l) {
          if (source[l].startsWith("// ")) { owner = source[l].slice(3); break; }
        }
      }
      problems.push(`${owner}: ${m ? m[2] : line}`);
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

for (const p of problems) console.log(p);
console.log(`${objects.length} objects, ${problems.length} problems`);
process.exit(problems.length ? 1 : 0);
